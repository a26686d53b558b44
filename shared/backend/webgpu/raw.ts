// Runs wolfpack's own WGSL compute shaders inside TF.js's webgpu backend, in its command stream, with
// less per-dispatch work than TF.js's runWebGPUProgram: shapes are compiled into the shader as
// constants (one pipeline per shape, built once), so a dispatch needs no uniform buffer and no shader
// key string; a kernel may have several outputs. Also counts every dispatch (TF.js's and these) for
// the benchmark, by name.
import { tf } from '../tf.js';
import { BufferUsage, type GpuBuffer, type GpuPipeline, type WebGpuBackend } from './types.js';
import { WolfpackError } from '../../errors.js';

/**
 * The entry point of a one-thread-per-element kernel dispatched on grid(ceil(UNITS / 256)) workgroups of
 * 256: `i` is the element's index, and the threads past UNITS return. The kernel's constants before it
 * define UNITS and GX (the grid's x size).
 */
export const PER_ELEMENT_MAIN = `@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = i32(gid.y) * GX * 256 + i32(gid.x);
  if (i >= UNITS) { return; }`;

export interface DispatchStats {
  enabled: boolean;
  total: number;
  byName: Map<string, number>;
  /** CPU milliseconds spent recording, by name (only while `timing`). */
  cpuMs: Map<string, number>;
  timing: boolean;
  /** Synchronous GPU -> CPU reads (each a queue round trip). */
  syncReads: number;
}

export const dispatchStats: DispatchStats = {
  enabled: false,
  total: 0,
  byName: new Map(),
  cpuMs: new Map(),
  timing: false,
  syncReads: 0,
};

export function resetDispatchStats(opts: { timing?: boolean } = {}): void {
  dispatchStats.enabled = true;
  dispatchStats.total = 0;
  dispatchStats.byName.clear();
  dispatchStats.cpuMs.clear();
  dispatchStats.timing = opts.timing ?? false;
  dispatchStats.syncReads = 0;
}

function note(name: string, ms: number): void {
  if (!dispatchStats.enabled) return;
  dispatchStats.total++;
  dispatchStats.byName.set(name, (dispatchStats.byName.get(name) ?? 0) + 1);
  if (dispatchStats.timing) dispatchStats.cpuMs.set(name, (dispatchStats.cpuMs.get(name) ?? 0) + ms);
}

/** Counts `n` dispatches under `name` (a captured step's replay). */
export function noteDispatches(name: string, n: number): void {
  if (!dispatchStats.enabled) return;
  dispatchStats.total += n;
  dispatchStats.byName.set(name, (dispatchStats.byName.get(name) ?? 0) + n);
}

const counted = new WeakSet<object>();

/** Counts TF.js's own dispatches (by program class) and times runWebGPUProgram when asked. */
export function countTfjsDispatches(backend: WebGpuBackend): void {
  if (counted.has(backend)) return;
  counted.add(backend);
  const record = backend.recordAndSubmit.bind(backend);
  backend.recordAndSubmit = (program, ...rest) => {
    note(program.constructor.name, 0);
    record(program, ...rest);
  };
  const run = backend.runWebGPUProgram.bind(backend);
  backend.runWebGPUProgram = (program, ...rest) => {
    if (!dispatchStats.timing) return run(program, ...rest);
    const t0 = performance.now();
    try {
      return run(program, ...rest);
    } finally {
      const name = (program as { constructor: { name: string } }).constructor.name;
      dispatchStats.cpuMs.set(name, (dispatchStats.cpuMs.get(name) ?? 0) + performance.now() - t0);
    }
  };
}

export interface RawKernel {
  /** Name for counting and profiling. */
  name: string;
  /** Identifies the shader (name plus every constant compiled into it). */
  key: string;
  /** The WGSL source; called once per key. Bindings: outputs first (0..), then inputs. */
  code: () => string;
  workgroups: [number, number, number];
}

const pipelines = new WeakMap<object, Map<string, GpuPipeline>>();
const compileErrors: string[] = [];
let pendingCompiles: Promise<void>[] = [];

function throwCompileErrors(): void {
  if (compileErrors.length > 0) throw new WolfpackError('E_BACKEND', compileErrors.join('\n'));
}

/** Waits for every kernel compiled so far to be validated; throws the first errors. */
export async function checkKernelErrors(): Promise<void> {
  const waiting = pendingCompiles;
  pendingCompiles = [];
  await Promise.all(waiting);
  throwCompileErrors();
}

function pipelineFor(b: WebGpuBackend, k: RawKernel): GpuPipeline {
  let cache = pipelines.get(b.device);
  if (!cache) {
    cache = new Map();
    pipelines.set(b.device, cache);
  }
  let p = cache.get(k.key);
  if (!p) {
    // Compiled once per key. WebGPU reports a WGSL or validation error only asynchronously: it is
    // recorded, and the next dispatch (or checkKernelErrors) throws it, rather than computing garbage.
    b.device.pushErrorScope('validation');
    const module = b.device.createShaderModule({ code: k.code(), label: k.name });
    p = b.device.createComputePipeline({ layout: 'auto', compute: { module, entryPoint: 'main' }, label: k.name });
    const name = `${k.name} (${k.key})`;
    pendingCompiles.push(
      b.device.popErrorScope().then(
        (e) => {
          if (e) compileErrors.push(`webgpu kernel ${name} does not compile: ${e.message}`);
        },
        (e: unknown) => {
          compileErrors.push(`webgpu kernel ${name}: ${String(e)}`);
        },
      ),
    );
    cache.set(k.key, p);
  }
  return p;
}

/** WGSL declarations of the storage bindings: outputs (read_write) then inputs (read). */
export function bindingDecls(
  outputs: string[],
  inputs: string[],
  type: (name: string) => string = () => 'f32',
): string {
  const lines: string[] = [];
  outputs.forEach((n, i) => lines.push(`@group(0) @binding(${i}) var<storage, read_write> ${n} : array<${type(n)}>;`));
  inputs.forEach((n, i) =>
    lines.push(`@group(0) @binding(${outputs.length + i}) var<storage, read> ${n} : array<${type(n)}>;`),
  );
  return lines.join('\n');
}

function bufferOf(b: WebGpuBackend, t: tf.TensorInfo): GpuBuffer {
  b.uploadToGPU(t.dataId);
  const d = b.tensorMap.get(t.dataId);
  if (!d || !d.resource) throw new WolfpackError('E_BACKEND', 'webgpu raw kernel: a tensor has no GPU buffer');
  return d.resource as GpuBuffer;
}

/**
 * Records one dispatch of `k` into the backend's current compute pass and returns the new output
 * tensors (float32 unless given), one per entry of `outputs`. Inputs stay alive until the batch is
 * submitted, as with TF.js's own kernels. Under tf.profile with timestamp queries the dispatch gets its
 * own timed pass.
 */
export function runRaw<O extends { shape: number[]; dtype?: tf.DataType }[]>(
  backend: tf.KernelBackend,
  k: RawKernel,
  inputs: tf.TensorInfo[],
  outputs: [...O],
): { [I in keyof O]: tf.TensorInfo } {
  const b = backend as WebGpuBackend;
  throwCompileErrors();
  const t0 = dispatchStats.timing ? performance.now() : 0;
  const outs = outputs.map((o) => b.makeTensorInfo(o.shape, o.dtype ?? 'float32'));
  const entries = [...outs, ...inputs].map((t, i) => ({ binding: i, resource: { buffer: bufferOf(b, t) } }));
  const pipeline = pipelineFor(b, k);
  const bindGroup = b.device.createBindGroup({ layout: pipeline.getBindGroupLayout(0), entries });
  for (const t of inputs) b.commandQueueOwnedIds.add(t.dataId);
  for (const t of outs) b.commandQueueOwnedIds.add(t.dataId);
  b.ensureCommandEncoderReady();
  const timed = b.activeTimers != null;
  if (timed && b.supportTimestampQuery) {
    b.endComputePassEncoder();
    b.querySet ??= (
      b.device as unknown as { createQuerySet(d: { type: string; count: number }): unknown }
    ).createQuerySet({ type: 'timestamp', count: b.querySetCount });
    b.computePassEncoder = b.commandEncoder!.beginComputePass({
      timestampWrites: { querySet: b.querySet, beginningOfPassWriteIndex: 0, endOfPassWriteIndex: 1 },
    });
  } else if (!b.computePassEncoder) {
    b.computePassEncoder = b.commandEncoder!.beginComputePass({});
  }
  const pass = b.computePassEncoder!;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(k.workgroups[0], k.workgroups[1], k.workgroups[2]);
  b.dispatchCountInPass++;
  if (timed || tf.env().getNumber('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE') <= b.dispatchCountInPass) {
    b.endComputePassEncoder();
    if (timed) b.activeTimers!.push({ name: k.name, query: b.getQueryTime() });
    else b.submitQueue();
  }
  note(k.name, dispatchStats.timing ? performance.now() - t0 : 0);
  return outs as { [I in keyof O]: tf.TensorInfo };
}

/**
 * Records one dispatch of `k` over buffers wolfpack owns (not tensors): `buffers` bind in order
 * (the kernel's WGSL says which are read_write). For in-place updates such as the optimizer's.
 */
export function dispatchOnBuffers(backend: tf.KernelBackend, k: RawKernel, buffers: GpuBuffer[]): void {
  const b = backend as WebGpuBackend;
  const pipeline = pipelineFor(b, k);
  const bindGroup = b.device.createBindGroup({
    layout: pipeline.getBindGroupLayout(0),
    entries: buffers.map((buffer, i) => ({ binding: i, resource: { buffer } })),
  });
  b.ensureCommandEncoderReady();
  b.computePassEncoder ??= b.commandEncoder!.beginComputePass({});
  const pass = b.computePassEncoder;
  pass.setPipeline(pipeline);
  pass.setBindGroup(0, bindGroup);
  pass.dispatchWorkgroups(k.workgroups[0], k.workgroups[1], k.workgroups[2]);
  b.dispatchCountInPass++;
  note(k.name, 0);
}

/** Uploads `data` into a new float32 tensor with one queue.writeBuffer (no staging buffer). */
export function writeTensor(backend: tf.KernelBackend, data: Float32Array, shape: number[]): tf.TensorInfo {
  const b = backend as WebGpuBackend;
  const info = b.makeTensorInfo(shape, 'float32');
  const buffer = bufferOf(b, info);
  b.device.queue.writeBuffer(buffer, 0, data);
  return info;
}

export { BufferUsage };
