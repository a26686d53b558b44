// Converts between weight files' tensors (file names and layouts: OIHW convs, [out, in] dense) and
// a ModelState (flat buffers, model layout). Detects the flavour and width from the names and shapes,
// drops the pretrained head the way the lab does (end_point.* / fc.*, and moments.end_point.*), and
// checks everything before anything is copied: either the whole model loads or a WolfpackError lists
// every missing tensor and every shape mismatch, naming the file.
import { WolfpackError } from '../errors.js';
import { fromFloat32, toFloat32, type HostTensor, type TensorMap } from '../weights/host-tensor.js';
import { hwioToOihw, oihwToHwio, transpose2d } from '../weights/layout.js';
import { detectFlavour, headPrefix, resnet50Spec, type Flavour, type ModelConfig, type ParamSpec } from './spec.js';
import { emptyState, ParamLayout, type ModelState, type MutableRanges } from './state.js';

/** Optimizer state is stored beside the weights under this prefix, as MindSpore does. */
export const MOMENTS_PREFIX = 'moments.';

export interface FromTensorsOptions {
  /** Replace the file's head with a fresh one of `numClasses` outputs (the lab's transfer step). */
  dropHead?: boolean;
  /** Classes of a fresh head (default 2); ignored when the file's head is kept. */
  numClasses?: number;
  /** Seed of the fresh head's initialisation. */
  seed?: number;
  /** Also read `moments.*` as the Momentum accumulators (resuming a training state). */
  withMomentum?: boolean;
}

export interface LoadedModel {
  config: ModelConfig;
  state: ModelState;
  /** Whether the head came from the file (false: freshly initialised). */
  headFromFile: boolean;
  /** Momentum accumulators, when asked for and present. */
  accum?: Float32Array;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(',')}]`;
}

function toModelLayout(spec: ParamSpec, data: Float32Array): Float32Array {
  if (spec.role === 'conv') return oihwToHwio(data, spec.fileShape as [number, number, number, number]);
  if (spec.role === 'fc.weight') return transpose2d(data, spec.fileShape as [number, number]);
  return data;
}

function toFileLayout(spec: ParamSpec, data: Float32Array): Float32Array {
  if (spec.role === 'conv') return hwioToOihw(data, spec.shape as [number, number, number, number]);
  if (spec.role === 'fc.weight') return transpose2d(data, spec.shape as [number, number]);
  return data;
}

/** Flavour and width of a weights file, from its tensor names and the stem's shape. */
export function inspectTensors(
  tensors: TensorMap,
  source: string,
): { flavour: Flavour; width: number; headClasses?: number } {
  const flavour = detectFlavour(tensors.keys());
  if (!flavour) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `${source}: not a ResNet-50 weights file: no bn1.gamma/end_point.* (MindSpore) ` +
        'or bn1.running_mean/fc.* (torchvision) tensors',
      { file: source },
    );
  }
  const stem = tensors.get('conv1.weight');
  if (!stem)
    throw new WolfpackError('E_WEIGHTS', `${source}: missing tensor conv1.weight`, {
      file: source,
      missing: ['conv1.weight'],
    });
  if (stem.shape.length !== 4 || stem.shape[1] !== 3 || stem.shape[2] !== 7 || stem.shape[3] !== 7) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `${source}: tensor conv1.weight: expected shape [W,3,7,7], found ${fmt(stem.shape)}`,
      { file: source, tensor: 'conv1.weight' },
    );
  }
  const fcw = tensors.get(`${headPrefix(flavour)}weight`);
  return { flavour, width: stem.shape[0]!, headClasses: fcw && fcw.shape.length === 2 ? fcw.shape[0] : undefined };
}

/** Deterministic N(0, sigma) draws (splitmix32 + Box-Muller) for a fresh head. */
function normalFill(out: Float32Array, sigma: number, seed: number): void {
  let s = (seed ^ 0x9e3779b9) >>> 0;
  const u32 = (): number => {
    s = (s + 0x9e3779b9) >>> 0;
    let z = s;
    z = Math.imul(z ^ (z >>> 16), 0x85ebca6b) >>> 0;
    z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35) >>> 0;
    return (z ^ (z >>> 16)) >>> 0;
  };
  for (let i = 0; i < out.length; i += 2) {
    const u1 = (u32() + 1) / 4294967297;
    const u2 = u32() / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1)) * sigma;
    out[i] = r * Math.cos(2 * Math.PI * u2);
    if (i + 1 < out.length) out[i + 1] = r * Math.sin(2 * Math.PI * u2);
  }
}

/** Builds a ModelState from a file's tensors; see the module comment for what is checked. */
export function modelFromTensors(tensors: TensorMap, source: string, opts: FromTensorsOptions = {}): LoadedModel {
  const { flavour, width, headClasses } = inspectTensors(tensors, source);
  const keepHead = !opts.dropHead && headClasses !== undefined;
  const numClasses = keepHead ? headClasses! : (opts.numClasses ?? 2);
  const config: ModelConfig = { flavour, width, numClasses };
  const layout = new ParamLayout(resnet50Spec(config));
  const wanted = layout.net.params.filter((p) => keepHead || !p.head);

  const missing: string[] = [];
  const mismatched: string[] = [];
  for (const p of wanted) {
    const t = tensors.get(p.name);
    if (!t) missing.push(p.name);
    else if (fmt(t.shape) !== fmt(p.fileShape))
      mismatched.push(`${p.name}: expected ${fmt(p.fileShape)}, found ${fmt(t.shape)}`);
  }
  if (opts.withMomentum) {
    for (const p of wanted.filter((q) => q.trainable)) {
      const t = tensors.get(MOMENTS_PREFIX + p.name);
      if (!t) missing.push(MOMENTS_PREFIX + p.name);
      else if (fmt(t.shape) !== fmt(p.fileShape))
        mismatched.push(`${MOMENTS_PREFIX}${p.name}: expected ${fmt(p.fileShape)}, found ${fmt(t.shape)}`);
    }
  }
  if (missing.length > 0 || mismatched.length > 0) {
    const parts = [];
    if (missing.length > 0) parts.push(`${missing.length} missing tensor(s): ${missing.join(', ')}`);
    if (mismatched.length > 0) parts.push(`shape mismatch: ${mismatched.join('; ')}`);
    throw new WolfpackError('E_WEIGHTS', `${source} (${flavour} ResNet-50, width ${width}): ${parts.join('; ')}`, {
      file: source,
      missing,
      mismatched,
    });
  }

  const state = emptyState(layout);
  const accum = opts.withMomentum ? new Float32Array(layout.paramCount) : undefined;
  for (const p of wanted) {
    const hit = layout.find(p.name)!;
    const target = hit.kind === 'params' ? state.params : state.stats;
    target.set(toModelLayout(p, toFloat32(tensors.get(p.name)!)), hit.slot.offset);
    if (accum && p.trainable)
      accum.set(toModelLayout(p, toFloat32(tensors.get(MOMENTS_PREFIX + p.name)!)), hit.slot.offset);
  }
  if (!keepHead) {
    // The lab's fresh nn.Dense head: weights N(0, 0.01), zero bias.
    const w = layout.find(layout.net.fc.weight)!.slot;
    normalFill(state.params.subarray(w.offset, w.offset + w.size), 0.01, opts.seed ?? 0);
  }
  return { config, state, headFromFile: keepHead, accum };
}

/** A tensor of a checkpoint: its name, the floats of the state it is made of, and how to build it. */
export interface ModelTensorSource {
  name: string;
  kind: keyof MutableRanges;
  offset: number;
  size: number;
  /** The tensor in file layout (built on demand: the layout change is the costly part). */
  tensor(): HostTensor;
}

/** What tensorsFromModel returns, in its order, each built only when asked for. */
export function modelTensorSources(state: ModelState, accum?: Float32Array): ModelTensorSource[] {
  const out: ModelTensorSource[] = [];
  for (const p of state.layout.net.params) {
    const hit = state.layout.find(p.name)!;
    const src = hit.kind === 'params' ? state.params : state.stats;
    const { offset, size } = hit.slot;
    out.push({
      name: p.name,
      kind: hit.kind,
      offset,
      size,
      tensor: () => fromFloat32([...p.fileShape], toFileLayout(p, src.subarray(offset, offset + size))),
    });
  }
  if (accum) {
    for (const slot of state.layout.trainable) {
      const { offset, size, spec } = slot;
      out.push({
        name: MOMENTS_PREFIX + spec.name,
        kind: 'accum',
        offset,
        size,
        tensor: () => fromFloat32([...spec.fileShape], toFileLayout(spec, accum.subarray(offset, offset + size))),
      });
    }
  }
  return out;
}

/** The state's tensors in file layout and the flavour's names, plus `moments.*` when given. */
export function tensorsFromModel(state: ModelState, accum?: Float32Array): TensorMap {
  return new Map(modelTensorSources(state, accum).map((s) => [s.name, s.tensor()]));
}

/** A randomly initialised model (Kaiming-normal convs, unit BN): the demo's starting point. */
export function initModel(config: ModelConfig, seed: number): ModelState {
  const layout = new ParamLayout(resnet50Spec(config));
  const state = emptyState(layout);
  let k = 0;
  for (const slot of layout.trainable) {
    const dst = state.params.subarray(slot.offset, slot.offset + slot.size);
    const s = slot.spec;
    if (s.role === 'conv') {
      // fan_out, as torchvision initialises ResNets
      const [kh, kw, , out] = s.shape as [number, number, number, number];
      normalFill(dst, Math.sqrt(2 / (kh * kw * out)), seed * 7919 + k++);
    } else if (s.role === 'bn.gamma') dst.fill(1);
    else if (s.role === 'fc.weight') normalFill(dst, 0.01, seed * 7919 + k++);
  }
  for (const slot of layout.stats) {
    if (slot.spec.role === 'bn.var') state.stats.subarray(slot.offset, slot.offset + slot.size).fill(1);
  }
  return state;
}
