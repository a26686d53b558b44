// Compute benchmark: images/s of the full-width ResNet-50 (width 64, random init) on a TF.js backend,
// measured the way the PyTorch peer (bench/peers/peer_resnet50_cpu.py)
// measures torchvision's: one untimed warm-up, then the median of `reps` timed runs of
//   forward          eval-mode forward pass (moving statistics), logits read back
//   full_finetune    one training step of the whole network: forward and backward with BatchNorm in
//                    training mode, then Momentum SGD on every parameter (Replica.computeGradients +
//                    applyReduced, one replica, so no all-reduce)
//   frozen_backbone  the lab's transfer step: backbone in eval mode without gradients, the head trained
// On wasm a full fine-tuning step that would not fit the 4 GiB heap (batch 7+ at 224x224) runs at the
// largest batch that fits, and the result says so in `notes`.
// benchPeer runs the PyTorch script (2 threads by default) and parses its JSON line.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { selectBackend, type BackendChoice, type ConcreteBackend } from '../shared/backend/select.js';
import { tf } from '../shared/backend/tf.js';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Flavour } from '../shared/model/spec.js';
import type { Freeze } from '../shared/model/state.js';
import { initModel } from '../shared/model/weights.js';
import { packageRoot } from '../shared/paths.js';
import { Replica, type Batch } from '../shared/train/replica.js';
import { runCommand } from './command.js';
import { median, timeRuns } from './machine.js';
import { syntheticBatch } from './synthetic-batch.js';

export interface ModelBenchOptions {
  backend?: BackendChoice;
  imageSize?: number;
  batch?: number;
  reps?: number;
  /**
   * Which training steps to time: 'none' is full fine-tuning, 'backbone' the frozen-backbone step
   * (default both; [] times the forward pass only).
   */
  freeze?: readonly Freeze[];
  /** Padding and BatchNorm epsilon of the network (default torchvision, the peer's). */
  flavour?: Flavour;
  /** Progress (debug) and the backend choice (info). */
  logger?: Logger;
}

export interface ModelBenchResult {
  bench: 'wolfpack_resnet50';
  backend: ConcreteBackend;
  tf_backend: string;
  /** Threads the backend computes with (wasm in Node: 1). */
  threads: number | null;
  flavour: Flavour;
  width: number;
  params: number;
  image_size: number;
  batch: number;
  reps: number;
  forward_img_s: number;
  full_finetune_img_s?: number;
  /** Batch of the full fine-tuning step: smaller than `batch` when that would not fit the wasm heap. */
  full_finetune_batch?: number;
  frozen_backbone_img_s?: number;
  times_s: { forward: number[]; full_finetune?: number[]; frozen_backbone?: number[] };
  notes: string[];
}

const GiB = 2 ** 30;
/**
 * The wasm backend's heap is a 32-bit WebAssembly memory: 4 GiB at most, and an allocation beyond it
 * aborts the whole module. Peak tensor memory of a full fine-tuning step of ResNet-50 measured with
 * tf.profile: 1.32 GiB at batch 2, 2.39 at 4, 3.45 at 6 (224x224); batch 7 aborts.
 */
export const WASM_TENSOR_LIMIT_BYTES = 3.75 * GiB;

/** Estimated peak tensor bytes of a full fine-tuning step (0.25 GiB + 0.54 GiB per 224x224 image). */
export function fullStepPeakBytes(batch: number, imageSize: number): number {
  return (0.25 + 0.54 * batch * (imageSize / 224) ** 2) * GiB;
}

/** The largest batch <= `batch` whose full fine-tuning step fits the wasm heap (0 if none). */
export function largestWasmTrainBatch(batch: number, imageSize: number): number {
  let b = batch;
  while (b > 0 && fullStepPeakBytes(b, imageSize) > WASM_TENSOR_LIMIT_BYTES) b--;
  return b;
}

async function backendThreads(tfName: string): Promise<number | null> {
  if (tfName !== 'wasm') return null;
  try {
    const wasm = await import('@tensorflow/tfjs-backend-wasm');
    return wasm.getThreadsCount();
  } catch {
    return null;
  }
}

function checkInt(name: string, v: number, min: number): void {
  if (!Number.isSafeInteger(v) || v < min)
    throw new WolfpackError('E_USAGE', `benchModel: ${name} must be an integer >= ${min}, got ${v}`);
}

/** Images/s of ResNet-50 (width 64) forward and training steps; see the module comment. */
export async function benchModel(opts: ModelBenchOptions = {}): Promise<ModelBenchResult> {
  const imageSize = opts.imageSize ?? 224;
  const batchSize = opts.batch ?? 8;
  const reps = opts.reps ?? 3;
  const freeze = opts.freeze ?? ['none', 'backbone'];
  const flavour = opts.flavour ?? 'torchvision';
  checkInt('imageSize', imageSize, 32);
  checkInt('batch', batchSize, 1);
  checkInt('reps', reps, 1);
  const log = opts.logger;
  const sel = await selectBackend(opts.backend ?? 'auto', log);
  const state = initModel({ flavour, width: 64, numClasses: 2 }, 0);
  const batch = syntheticBatch(batchSize, imageSize);
  const result: ModelBenchResult = {
    bench: 'wolfpack_resnet50',
    backend: sel.backend,
    tf_backend: sel.tfName,
    threads: await backendThreads(sel.tfName),
    flavour,
    width: 64,
    params: state.layout.paramCount,
    image_size: imageSize,
    batch: batchSize,
    reps,
    forward_img_s: 0,
    times_s: { forward: [] },
    notes: [],
  };
  const startTensors = tf.memory().numTensors;

  // A replica's tensors are rebuilt from the flat buffers after each step; the original values are
  // restored between phases so that every phase starts from the same initialised model.
  const params0 = Float32Array.from(state.params);
  const stats0 = Float32Array.from(state.stats);
  const phase = async (
    name: string,
    f: Freeze,
    bn: 'train' | 'frozen',
    step: (r: Replica) => Promise<void>,
  ): Promise<number[]> => {
    state.params.set(params0);
    state.stats.set(stats0);
    const replica = new Replica(state, { lr: 1e-3, momentum: 0.9, freeze: f, bn });
    try {
      log?.debug({ phase: name, batch: batchSize, imageSize, reps }, 'bench model: timing');
      const times = await timeRuns(() => step(replica), reps);
      log?.debug({ phase: name, times }, 'bench model: done');
      return times;
    } finally {
      replica.dispose();
    }
  };

  result.times_s.forward = await phase('forward', 'none', 'frozen', async (r) => {
    await r.predict(batch);
  });
  result.forward_img_s = batchSize / median(result.times_s.forward);
  const train =
    (b: Batch) =>
    async (r: Replica): Promise<void> => {
      await r.computeGradients(b, b.count);
      const m = r.applyReduced();
      if (m.samples !== b.count) throw new Error(`bench model: step saw ${m.samples} samples, expected ${b.count}`);
    };
  if (freeze.includes('none')) {
    const fits = sel.tfName === 'wasm' ? largestWasmTrainBatch(batchSize, imageSize) : batchSize;
    if (fits < batchSize) {
      const need = (fullStepPeakBytes(batchSize, imageSize) / GiB).toFixed(1);
      result.notes.push(
        fits > 0
          ? `full fine-tuning timed at batch ${fits}: batch ${batchSize} at ${imageSize}x${imageSize} ` +
              `needs ~${need} GiB of tensors, more than the wasm heap (4 GiB) holds`
          : `full fine-tuning skipped: even one ${imageSize}x${imageSize} image ` +
              'needs more than the wasm heap (4 GiB) holds',
      );
      log?.warn(
        { batch: batchSize, fits, imageSize },
        'bench model: full fine-tuning batch reduced to fit the wasm heap',
      );
    }
    if (fits > 0) {
      const small = fits === batchSize ? batch : { ...batch, count: fits };
      result.times_s.full_finetune = await phase('full_finetune', 'none', 'train', train(small));
      result.full_finetune_img_s = fits / median(result.times_s.full_finetune);
      result.full_finetune_batch = fits;
    }
  }
  if (freeze.includes('backbone')) {
    result.times_s.frozen_backbone = await phase('frozen_backbone', 'backbone', 'frozen', train(batch));
    result.frozen_backbone_img_s = batchSize / median(result.times_s.frozen_backbone);
  }
  if (tf.memory().numTensors !== startTensors) {
    throw new Error(`bench model: ${tf.memory().numTensors - startTensors} tensors leaked`);
  }
  return result;
}

// ---- the PyTorch peers (scripts in bench/peers, run with Debian's python) ----

export const PEER_PYTHON = '/usr/bin/python3';

/** Path of a peer script: the `shared` folder beside the repository root. */
/** A peer script of bench/peers/ (shipped with the package, so that anyone can rerun every comparison). */
export function peerScript(name: string): string {
  return resolve(packageRoot, 'bench', 'peers', name);
}

export type PeerRun<T> = { ok: true; command: string; result: T } | { ok: false; command: string; skipped: string };

/** Why the PyTorch peers cannot run here, or undefined when they can. */
export async function peerUnavailable(script: string): Promise<string | undefined> {
  if (!existsSync(PEER_PYTHON)) return `${PEER_PYTHON} not found (the peers need Debian's python3 with python3-torch)`;
  if (!existsSync(script)) return `peer script ${script} not found`;
  const probe = await runCommand(PEER_PYTHON, ['-c', 'import torch, torchvision'], 60_000);
  if (probe.code !== 0) {
    const last = probe.stderr.trim().split('\n').pop() ?? '';
    return (
      `python3-torch is not installed for ${PEER_PYTHON} (${last}); ` +
      'apt-get install -y python3-torch python3-torchvision'
    );
  }
  return undefined;
}

/**
 * Runs the python script at `script` (shown as `shown` in the command line it reports) and parses every
 * JSON line it prints; skipped (with why) when torch is missing.
 */
export async function runPeerFile<T>(
  script: string,
  shown: string,
  args: string[],
  timeoutMs: number,
): Promise<PeerRun<T[]>> {
  const command = [PEER_PYTHON, shown, ...args].join(' ');
  const why = await peerUnavailable(script);
  if (why) return { ok: false, command, skipped: why };
  const r = await runCommand(PEER_PYTHON, [script, ...args], timeoutMs);
  if (r.code !== 0) {
    throw new WolfpackError(
      'E_WORKER',
      `peer ${command} failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`,
    );
  }
  const lines = r.stdout.split('\n').filter((l) => l.trim().startsWith('{'));
  if (lines.length === 0)
    throw new WolfpackError('E_WORKER', `peer ${command} printed no JSON line: ${r.stdout.slice(0, 200)}`);
  return { ok: true, command, result: lines.map((l) => JSON.parse(l) as T) };
}

/** A script of bench/peers, as runPeerFile runs it. */
export function runPeerScript<T>(name: string, args: string[], timeoutMs: number): Promise<PeerRun<T[]>> {
  const script = peerScript(name);
  return runPeerFile<T>(script, script, args, timeoutMs);
}

export interface PeerModelResult {
  threads: number;
  batch: number;
  forward_img_s: number;
  full_finetune_img_s: number;
}

/** torchvision ResNet-50 images/s at 224x224 with `threads` threads (the peer script's JSON). */
export async function benchPeer(
  opts: { threads?: number; batch?: number; timeoutMs?: number } = {},
): Promise<PeerRun<PeerModelResult>> {
  const threads = opts.threads ?? 2;
  const batch = opts.batch ?? 8;
  checkInt('threads', threads, 1);
  checkInt('batch', batch, 1);
  const r = await runPeerScript<PeerModelResult>(
    'peer_resnet50_cpu.py',
    [String(threads), String(batch)],
    opts.timeoutMs ?? 600_000,
  );
  return r.ok ? { ok: true, command: r.command, result: r.result[0]! } : r;
}
