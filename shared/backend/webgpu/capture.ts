// Capture and replay of a GPU step on TF.js's webgpu backend (the technique of CUDA graphs; ONNX
// Runtime Web's WebGPU graph capture does the same for inference). TF.js spends ~0.2 ms of CPU a
// dispatch (autodiff bookkeeping, a shader key string, a uniform buffer, a bind group); with the
// shapes fixed, every one of those yields the same pipeline, bind group and workgroup counts each
// step. So a step is run once through TF.js with the WebGPU calls it makes recorded, and from then on
// it is replayed: the new inputs written into the captured input buffers, the recorded dispatches and
// copies encoded into one command encoder in a tight loop, one submit.
//
// What recording sees (the lowest level every dispatch goes through, TF.js's and raw.ts's alike):
//  - device.createCommandEncoder: the encoders TF.js records into are wrapped; their compute passes
//    report setPipeline / setBindGroup / dispatchWorkgroups, and copyBufferToBuffer is kept, all in
//    encoding order, across TF.js's submits (every 15 dispatches) and passes;
//  - device.createBindGroup: which buffers each bind group holds;
//  - the buffer pool: uniform buffers are made fresh for the capture instead of taken from (and given
//    back to) TF.js's pool, so each keeps the contents TF.js wrote into it once, and a replay writes no
//    uniform at all;
//  - uploads of host data (backend.uploadToGPU, queue.writeBuffer into other buffers) become copies,
//    at the same place in the stream, from a buffer holding the data: the step's inputs from their
//    input buffers (written by each replay), constants from one constants buffer written once;
//  - a read of GPU data on the host during the step, a timed (profiled) pass, or any command the
//    replay does not know makes the step impossible to capture: recording says why and the caller
//    runs the plain path.
// A step replays bit for bit what it recorded. Which buffers it touches is known at the end of
// recording; they are kept out of TF.js's pool (taken from its free list, or kept when their tensor
// is disposed) until the capture is disposed, so nothing else can reuse them meanwhile.
import { tf } from '../tf.js';
import { noteDispatches } from './raw.js';
import {
  BufferUsage,
  type ByteRange,
  type GpuBuffer,
  type GpuCommandEncoder,
  type GpuComputePass,
  type GpuPipeline,
  type WebGpuBackend,
} from './types.js';
import { WolfpackError } from '../../errors.js';

/** One recorded command: a dispatch (pipeline set) or a buffer copy (src set). */
interface Op {
  pipeline: GpuPipeline | null;
  bindGroup: unknown;
  x: number;
  y: number;
  z: number;
  src: GpuBuffer | null;
  srcOffset: number;
  dst: GpuBuffer | null;
  dstOffset: number;
  size: number;
}

function dispatchOp(pipeline: GpuPipeline, bindGroup: unknown, x: number, y: number, z: number): Op {
  return { pipeline, bindGroup, x, y, z, src: null, srcOffset: 0, dst: null, dstOffset: 0, size: 0 };
}

function copyOp(src: GpuBuffer | null, srcOffset: number, dst: GpuBuffer, dstOffset: number, size: number): Op {
  return { pipeline: null, bindGroup: null, x: 0, y: 0, z: 0, src, srcOffset, dst, dstOffset, size };
}

/** Whether copy `op` writes any of the bytes [begin, end) of its destination. */
function writesInto(op: Op, begin: number, end: number): boolean {
  return op.dstOffset < end && begin < op.dstOffset + op.size;
}

/**
 * A point of a replay where the commands so far are submitted, so that the host can act on their results
 * (map a staging buffer) while the GPU runs the rest of the step.
 */
export interface ReplayCut {
  /** Submit after this many recorded commands (CapturedStep.groupCopiesInto), 0 .. dispatches + copies. */
  after: number;
  /** Adds commands at the end of that submission (a copy into a staging buffer). */
  encode(enc: GpuCommandEncoder): void;
  /** Runs once they are submitted (mapAsync of the staging buffer). */
  submitted(): void;
}

/** A step input: the tensor whose upload each replay replaces with new data of the same size. */
export interface CaptureInput {
  name: string;
  tensor: tf.TensorInfo;
}

interface InputSlot {
  name: string;
  bytes: number;
  buffer: GpuBuffer;
}

// --- Buffers kept out of TF.js's pool while a capture refers to them ----------------------------

/** A buffer some capture refers to: how many, whether TF.js has let go of it, whether a capture made it. */
interface Hold {
  count: number;
  released: boolean;
  owned: boolean;
}
const holds = new Map<GpuBuffer, Hold>();
const pooled = new WeakSet<object>();
const realRelease = new WeakMap<object, WebGpuBackend['bufferManager']['releaseBuffer']>();

/** Makes the pool keep held buffers: a release of one is noted, not pooled (once per pool). */
function guardPool(b: WebGpuBackend): void {
  const pool = b.bufferManager;
  if (pooled.has(pool)) return;
  pooled.add(pool);
  const release = pool.releaseBuffer.bind(pool);
  realRelease.set(pool, release);
  pool.releaseBuffer = (buffer: GpuBuffer, reuse?: boolean): void => {
    const h = holds.get(buffer);
    if (h) h.released = true;
    else release(buffer, reuse);
  };
}

/** Takes `buffer` out of the pool's free list into its used list; false if it was not free. */
function takeFromFreeList(b: WebGpuBackend, buffer: GpuBuffer): boolean {
  const pool = b.bufferManager;
  const key = `${buffer.size}_${buffer.usage}`;
  const free = pool.freeBuffers.get(key);
  const i = free ? free.indexOf(buffer) : -1;
  if (i < 0) return false;
  free!.splice(i, 1);
  pool.numFreeBuffers--;
  if (!pool.usedBuffers.has(key)) pool.usedBuffers.set(key, []);
  pool.usedBuffers.get(key)!.push(buffer);
  pool.numUsedBuffers++;
  pool.numBytesUsed += buffer.size;
  return true;
}

function hold(b: WebGpuBackend, buffer: GpuBuffer, owned: boolean): void {
  const h = holds.get(buffer);
  if (h) {
    h.count++;
    return;
  }
  holds.set(buffer, { count: 1, released: owned || takeFromFreeList(b, buffer), owned });
}

function unhold(b: WebGpuBackend, buffer: GpuBuffer): void {
  const h = holds.get(buffer);
  if (!h || --h.count > 0) return;
  holds.delete(buffer);
  if (h.owned) buffer.destroy();
  else if (h.released) realRelease.get(b.bufferManager)!(buffer);
}

// --- Recording ----------------------------------------------------------------------------------

/** Sets obj[key] for the recording, and puts back what was there (an own property or the prototype's). */
class Patches {
  private readonly undo: (() => void)[] = [];
  set<T extends object, K extends keyof T>(obj: T, key: K, value: T[K]): void {
    const own = Object.prototype.hasOwnProperty.call(obj, key);
    const prev = obj[key];
    obj[key] = value;
    this.undo.push(() => {
      if (own) obj[key] = prev;
      else delete obj[key];
    });
  }
  restore(): void {
    for (const u of this.undo.reverse()) u();
    this.undo.length = 0;
  }
}

function bytesOf(data: ArrayBufferView | ArrayBuffer, dataOffset = 0, size?: number): Uint8Array {
  if (ArrayBuffer.isView(data)) {
    const el = (data as unknown as { BYTES_PER_ELEMENT?: number }).BYTES_PER_ELEMENT ?? 1;
    const len = size !== undefined ? size * el : data.byteLength - dataOffset * el;
    return new Uint8Array(data.buffer, data.byteOffset + dataOffset * el, len).slice();
  }
  return new Uint8Array(data, dataOffset, size ?? data.byteLength - dataOffset).slice();
}

class Recorder {
  readonly ops: Op[] = [];
  /** Buffers each bind group holds. */
  readonly bindGroups = new Map<unknown, GpuBuffer[]>();
  /** Constant data and the copy op that will read it from the constants buffer. */
  readonly constants: { bytes: Uint8Array; op: Op }[] = [];
  readonly slots: (InputSlot & { op: Op })[] = [];
  /** Buffers made for this capture (uniforms). */
  readonly owned: GpuBuffer[] = [];
  readonly inputs = new Map<object, string>();
  failure: string | undefined;
  /** > 0 inside an upload: its own staging copy is not recorded (the upload is, as one copy). */
  quiet = 0;
  active = true;
  private pipeline: GpuPipeline | null = null;
  private bindGroup: unknown = null;

  constructor(private readonly b: WebGpuBackend) {}

  fail(why: string): void {
    this.failure ??= why;
  }

  /** The encoder TF.js (and raw.ts) will record into, reporting what is recorded. */
  wrapEncoder(enc: GpuCommandEncoder): GpuCommandEncoder {
    const wrapper: Record<string, unknown> = {
      beginComputePass: (desc?: Record<string, unknown>): GpuComputePass => {
        if (this.active && desc?.timestampWrites)
          this.fail('a compute pass is timed (timestamp queries, a GPU profile)');
        return this.wrapPass(enc.beginComputePass(desc));
      },
      copyBufferToBuffer: (
        src: GpuBuffer,
        srcOffset: number,
        dst: GpuBuffer,
        dstOffset: number,
        size: number,
      ): void => {
        if (this.active && this.quiet === 0) this.ops.push(copyOp(src, srcOffset, dst, dstOffset, size));
        enc.copyBufferToBuffer(src, srcOffset, dst, dstOffset, size);
      },
      finish: () => enc.finish(),
    };
    // Anything else TF.js might record (query resolves, clears, texture copies) is not replayed.
    for (const name of [
      'resolveQuerySet',
      'clearBuffer',
      'copyBufferToTexture',
      'copyTextureToBuffer',
      'copyTextureToTexture',
      'writeTimestamp',
      'beginRenderPass',
    ]) {
      const real = (enc as unknown as Record<string, (...a: unknown[]) => unknown>)[name];
      if (typeof real !== 'function') continue;
      wrapper[name] = (...a: unknown[]): unknown => {
        if (this.active) this.fail(`the step records ${name}, which capture does not replay`);
        return real.apply(enc, a);
      };
    }
    return wrapper as unknown as GpuCommandEncoder;
  }

  private wrapPass(pass: GpuComputePass): GpuComputePass {
    return {
      setPipeline: (p: GpuPipeline): void => {
        this.pipeline = p;
        pass.setPipeline(p);
      },
      setBindGroup: (i: number, g: unknown): void => {
        if (this.active && i !== 0) this.fail(`bind group ${i} (only group 0 is replayed)`);
        this.bindGroup = g;
        pass.setBindGroup(i, g);
      },
      dispatchWorkgroups: (x: number, y = 1, z = 1): void => {
        if (this.active) this.ops.push(dispatchOp(this.pipeline!, this.bindGroup, x, y, z));
        pass.dispatchWorkgroups(x, y, z);
      },
      end: () => pass.end(),
    };
  }

  /** Host data uploaded into `target` at this point of the stream: an input slot's or a constant. */
  upload(target: GpuBuffer, dstOffset: number, bytes: Uint8Array | number, slot?: string): void {
    const size = typeof bytes === 'number' ? bytes : bytes.byteLength;
    if (size % 4 !== 0 || dstOffset % 4 !== 0) {
      this.fail(`an upload of ${size} bytes at offset ${dstOffset} (copies need multiples of 4)`);
      return;
    }
    const op = copyOp(null, 0, target, dstOffset, size);
    this.ops.push(op);
    if (slot !== undefined) {
      const buffer = this.b.device.createBuffer({
        size: Math.max(4, size),
        usage: BufferUsage.COPY_SRC | BufferUsage.COPY_DST,
      });
      this.owned.push(buffer);
      op.src = buffer;
      this.slots.push({ name: slot, bytes: size, buffer, op });
    } else {
      this.constants.push({ bytes: bytes as Uint8Array, op });
    }
  }
}

/** Frees what a failed recording made. */
function releaseOwned(b: WebGpuBackend, rec: Recorder): void {
  for (const u of rec.owned) {
    if (holds.has(u)) unhold(b, u);
    else u.destroy();
  }
}

/**
 * Runs `run` (synchronous: the GPU work of one step, recorded as TF.js and raw.ts issue it) and
 * captures it for replay. `inputs` are tensors made for the step and not yet on the GPU (e.g. the
 * batch's images and labels): they are uploaded first, so that every operation depending on them runs
 * on the GPU (TF.js computes small operations on host-resident tensors on the CPU), and a replay
 * writes new data in their place. Returns run's result, and either the capture or why there is none.
 * The step's work is submitted before this returns.
 */
export function captureStep<T>(
  backend: tf.KernelBackend,
  inputs: CaptureInput[],
  run: () => T,
): { result: T; step?: CapturedStep; why?: string } {
  const b = backend as WebGpuBackend;
  guardPool(b);
  // Work recorded before the step is not part of it: submitted now, so the step starts a new encoder.
  b.endComputePassEncoder();
  if (b.commandEncoder) b.submitQueue();
  const rec = new Recorder(b);
  if (b.activeTimers != null) rec.fail('the GPU is being profiled (timestamp queries)');
  if (tf.env().getBool('WEBGPU_ENGINE_COMPILE_ONLY')) rec.fail('WEBGPU_ENGINE_COMPILE_ONLY is set');
  const dev = b.device;
  const queue = b.queue;
  const pool = b.bufferManager;
  const patches = new Patches();
  const createEncoder = dev.createCommandEncoder.bind(dev);
  const createBindGroup = dev.createBindGroup.bind(dev);
  const writeBuffer = queue.writeBuffer.bind(queue);
  const acquire = pool.acquireBuffer.bind(pool);
  const uploadToGPU = b.uploadToGPU.bind(b);
  const readSync = b.readSync.bind(b);
  const read = b.read.bind(b);
  const ownedSet = new Set<GpuBuffer>();
  let result!: T;
  try {
    patches.set(dev, 'createCommandEncoder', () => rec.wrapEncoder(createEncoder()));
    patches.set(dev, 'createBindGroup', (d) => {
      const g = createBindGroup(d);
      if (rec.active)
        rec.bindGroups.set(
          g,
          d.entries.map((e) => e.resource.buffer),
        );
      return g;
    });
    patches.set(pool, 'acquireBuffer', (size, usage, mappedAtCreation, reuse) => {
      if (!(usage & BufferUsage.UNIFORM)) return acquire(size, usage, mappedAtCreation, reuse);
      // A uniform buffer of its own, never pooled: it keeps what TF.js writes into it next.
      const u = dev.createBuffer({ size, usage, mappedAtCreation });
      rec.owned.push(u);
      ownedSet.add(u);
      hold(b, u, true);
      return u;
    });
    patches.set(queue, 'writeBuffer', (buffer, offset, data, dataOffset, size) => {
      if (!ownedSet.has(buffer) && rec.quiet === 0) rec.upload(buffer, offset, bytesOf(data, dataOffset, size));
      writeBuffer(buffer, offset, data, dataOffset, size);
    });
    patches.set(b, 'uploadToGPU', (dataId: object) => {
      const d = b.tensorMap.get(dataId);
      if (!d || d.resource != null || d.values == null) {
        uploadToGPU(dataId);
        return;
      }
      if (d.dtype === 'string' || d.dtype === 'complex64') rec.fail(`an upload of a ${d.dtype} tensor`);
      const slot = rec.inputs.get(dataId);
      const data =
        slot !== undefined
          ? undefined
          : new Uint8Array(
              (d.dtype === 'int32' || d.dtype === 'bool'
                ? Int32Array.from(d.values as ArrayLike<number>)
                : Float32Array.from(d.values as ArrayLike<number>)
              ).buffer,
            );
      rec.quiet++;
      try {
        uploadToGPU(dataId);
      } finally {
        rec.quiet--;
      }
      const bytes = tf.util.sizeFromShape(d.shape) * 4;
      rec.upload(b.tensorMap.get(dataId)!.resource as GpuBuffer, 0, data ?? bytes, slot);
    });
    patches.set(b, 'readSync', (dataId: object) => {
      rec.fail('the step reads GPU data on the host (readSync)');
      return readSync(dataId);
    });
    patches.set(b, 'read', (dataId: object) => {
      rec.fail('the step reads GPU data on the host (read)');
      return read(dataId);
    });
    for (const input of inputs) {
      const d = b.tensorMap.get(input.tensor.dataId);
      if (!d || d.resource != null || d.values == null) {
        rec.fail(`input ${input.name} is already on the GPU (capture needs its upload)`);
        continue;
      }
      rec.inputs.set(input.tensor.dataId, input.name);
      b.uploadToGPU(input.tensor.dataId);
    }
    result = run();
  } catch (e) {
    rec.fail('the step threw');
    throw e;
  } finally {
    rec.active = false;
    // The step's work goes to the GPU now, while the hooks still see the uniform buffers TF.js
    // releases after a submit.
    try {
      b.endComputePassEncoder();
      if (b.commandEncoder) b.submitQueue();
    } finally {
      patches.restore();
      if (rec.failure !== undefined) releaseOwned(b, rec);
    }
  }
  if (rec.failure === undefined && rec.ops.length === 0) {
    rec.fail('the step records no GPU work');
    releaseOwned(b, rec);
  }
  if (rec.failure !== undefined) return { result, why: rec.failure };
  return { result, step: new CapturedStep(b, rec) };
}

/**
 * A recorded step: replay() runs it again on new inputs. Holds every buffer it touches (see the
 * file's head) until dispose().
 */
export class CapturedStep {
  /** Dispatches and copies a replay encodes. */
  readonly dispatches: number;
  readonly copies: number;
  /** Bytes of uniform and constant data captured. */
  readonly capturedBytes: number;
  private readonly b: WebGpuBackend;
  private readonly ops: Op[];
  private readonly slots: InputSlot[];
  private readonly held: GpuBuffer[];
  private readonly heldSet: Set<GpuBuffer>;
  /** Buffers each recorded bind group holds. */
  private readonly bound: Map<unknown, GpuBuffer[]>;
  /**
   * CPU milliseconds of the last replay's parts: submitting TF.js's pending work, writing the
   * inputs, encoding the commands, submitting them.
   */
  readonly lastReplay = { flush: 0, inputs: 0, encode: 0, submit: 0 };
  private disposed = false;

  constructor(b: WebGpuBackend, rec: Recorder) {
    this.b = b;
    this.ops = rec.ops;
    this.bound = rec.bindGroups;
    this.slots = rec.slots.map(({ name, bytes, buffer }) => ({ name, bytes, buffer }));
    this.dispatches = rec.ops.filter((o) => o.pipeline !== null).length;
    this.copies = rec.ops.length - this.dispatches;
    // The constants, packed into one buffer written once.
    let constBytes = 0;
    for (const c of rec.constants) {
      c.op.srcOffset = constBytes;
      constBytes += c.bytes.byteLength;
    }
    const owned = [...rec.owned];
    if (constBytes > 0) {
      const buf = b.device.createBuffer({ size: constBytes, usage: BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
      const all = new Uint8Array(constBytes);
      for (const c of rec.constants) {
        all.set(c.bytes, c.op.srcOffset);
        c.op.src = buf;
      }
      b.queue.writeBuffer(buf, 0, all);
      owned.push(buf);
    }
    this.capturedBytes = constBytes + rec.owned.reduce((s, u) => s + u.size, 0);
    // Every buffer the ops touch, held until dispose.
    const touched = new Set<GpuBuffer>();
    for (const op of this.ops) {
      if (op.pipeline !== null) for (const buf of this.boundBy(op)) touched.add(buf);
      else {
        touched.add(op.src!);
        touched.add(op.dst!);
      }
    }
    const ownedSet = new Set(owned);
    for (const u of owned) if (!holds.has(u)) hold(b, u, true);
    this.held = [...owned];
    for (const buf of touched) {
      if (ownedSet.has(buf)) continue;
      hold(b, buf, false);
      this.held.push(buf);
    }
    this.heldSet = new Set(this.held);
  }

  /** Whether the step reads or writes `buffer`. */
  touches(buffer: GpuBuffer): boolean {
    return this.heldSet.has(buffer);
  }

  private boundBy(op: Op): readonly GpuBuffer[] {
    return this.bound.get(op.bindGroup) ?? [];
  }

  /** Whether `op` may write `copy`'s source, or read or write its destination range. */
  private orderedBefore(op: Op, copy: Op): boolean {
    if (op.pipeline !== null) {
      const buffers = this.boundBy(op);
      return buffers.includes(copy.src!) || buffers.includes(copy.dst!);
    }
    if (op.dst === copy.src || op.src === copy.dst) return true;
    return op.dst === copy.dst && writesInto(op, copy.dstOffset, copy.dstOffset + copy.size);
  }

  /**
   * Rearranges the recorded commands so that the copies into each of `ranges` of `dst` (bytes, in the
   * order given) run together, as early as their sources allow: right after the last command that may
   * write one of their sources or touch their destinations, and not before the group of the range
   * before. A gradient gathered into a flat buffer at the end of the backward pass is then gathered
   * once the dispatches that finish its bucket have run (DDP's bucket-ready hook), in one group with
   * the rest of its bucket. Dependent commands keep their order, so a replay computes the same bits.
   * Returns after how many commands each range is complete: the replay's cuts (ReplayCut.after). Where
   * a group cannot move (a command after it must stay after it but comes before where its sources are
   * ready), nothing is rearranged and each range is complete after its last copy. The copies into `dst`
   * must write disjoint bytes.
   */
  groupCopiesInto(dst: GpuBuffer, ranges: readonly ByteRange[]): number[] {
    const ops = this.ops;
    const group = new Map<number, number>(); // op index -> range index
    ops.forEach((op, i) => {
      if (op.pipeline !== null || op.dst !== dst) return;
      const k = ranges.findIndex((r) => writesInto(op, r.begin, r.end));
      if (k >= 0) group.set(i, k);
    });
    const moved = [...group.keys()];
    for (const i of moved)
      for (const j of moved)
        if (i < j && writesInto(ops[i]!, ops[j]!.dstOffset, ops[j]!.dstOffset + ops[j]!.size))
          throw new WolfpackError('E_BACKEND', 'CapturedStep.groupCopiesInto: two copies write the same bytes');
    // Where each group may go: after its copies' last earlier dependency, before their first later one.
    const lo = ranges.map(() => 0);
    const hi = ranges.map(() => ops.length);
    for (const [i, k] of group) {
      let j = i - 1;
      while (j >= 0 && (group.has(j) || !this.orderedBefore(ops[j]!, ops[i]!))) j--;
      lo[k] = Math.max(lo[k]!, j + 1);
      j = i + 1;
      while (j < ops.length && (group.has(j) || !this.orderedBefore(ops[j]!, ops[i]!))) j++;
      hi[k] = Math.min(hi[k]!, j);
    }
    const at = ranges.map(() => 0);
    let feasible = true;
    ranges.forEach((_, k) => {
      at[k] = Math.max(lo[k]!, at[k - 1] ?? 0);
      if (at[k]! > hi[k]!) feasible = false;
    });
    const cuts: number[] = ranges.map(() => 0);
    if (!feasible) {
      let last = 0;
      ranges.forEach((_, k) => {
        for (let i = ops.length - 1; i >= 0; i--)
          if (group.get(i) === k) {
            last = Math.max(last, i + 1);
            break;
          }
        cuts[k] = last;
      });
      return cuts;
    }
    const out: Op[] = [];
    let next = 0; // the next group to place
    for (let j = 0; j <= ops.length; j++) {
      while (next < ranges.length && at[next] === j) {
        for (const [i, k] of group) if (k === next) out.push(ops[i]!);
        cuts[next++] = out.length;
      }
      if (j < ops.length && !group.has(j)) out.push(ops[j]!);
    }
    ops.splice(0, ops.length, ...out);
    return cuts;
  }

  /**
   * Runs the step again with new input data (by name, each exactly as many bytes as recorded). Work
   * TF.js recorded and has not submitted yet (e.g. the last update's copies) is submitted first. With
   * `cuts` (in order of `after`) the commands go to the GPU in several submissions, each cut's own
   * commands closing its submission.
   */
  replay(inputs: Record<string, ArrayBufferView>, cuts: readonly ReplayCut[] = []): void {
    if (this.disposed) throw new WolfpackError('E_BACKEND', 'CapturedStep.replay after dispose');
    cuts.forEach((c, i) => {
      if (!(Number.isSafeInteger(c.after) && c.after >= (cuts[i - 1]?.after ?? 0) && c.after <= this.ops.length))
        throw new WolfpackError(
          'E_BACKEND',
          `CapturedStep.replay: cut ${i} after ${c.after} commands (the step has ${this.ops.length}; cuts in order)`,
        );
    });
    const b = this.b;
    const t0 = performance.now();
    b.endComputePassEncoder();
    if (b.commandEncoder) b.submitQueue();
    const t1 = performance.now();
    const queue = b.queue;
    for (const s of this.slots) {
      const data = inputs[s.name];
      if (!data || data.byteLength !== s.bytes) {
        throw new WolfpackError(
          'E_BACKEND',
          `CapturedStep.replay: input ${s.name} has ${data?.byteLength ?? 'no'} bytes, the capture ${s.bytes}`,
        );
      }
      queue.writeBuffer(s.buffer, 0, data);
    }
    const t2 = performance.now();
    let submitMs = 0;
    let enc = b.device.createCommandEncoder();
    let pass: GpuComputePass | null = null;
    let pipeline: GpuPipeline | null = null;
    const ops = this.ops;
    let next = 0; // the next cut
    for (let i = 0; i <= ops.length; i++) {
      // The cuts after i commands: each closes a submission with its own commands.
      for (; next < cuts.length && cuts[next]!.after === i; next++) {
        if (pass !== null) {
          pass.end();
          pass = null;
        }
        cuts[next]!.encode(enc);
        const s0 = performance.now();
        queue.submit([enc.finish()]);
        submitMs += performance.now() - s0;
        cuts[next]!.submitted();
        enc = b.device.createCommandEncoder();
      }
      const op = ops[i];
      if (op === undefined) break;
      if (op.pipeline !== null) {
        if (pass === null) {
          pass = enc.beginComputePass();
          pipeline = null;
        }
        if (op.pipeline !== pipeline) {
          pass.setPipeline(op.pipeline);
          pipeline = op.pipeline;
        }
        pass.setBindGroup(0, op.bindGroup);
        pass.dispatchWorkgroups(op.x, op.y, op.z);
      } else {
        if (pass !== null) {
          pass.end();
          pass = null;
        }
        enc.copyBufferToBuffer(op.src!, op.srcOffset, op.dst!, op.dstOffset, op.size);
      }
    }
    if (pass !== null) pass.end();
    const commands = enc.finish();
    const t3 = performance.now();
    queue.submit([commands]);
    const r = this.lastReplay;
    r.flush = t1 - t0;
    r.inputs = t2 - t1;
    r.encode = t3 - t2 - submitMs;
    r.submit = performance.now() - t3 + submitMs;
    noteDispatches('CapturedStep', this.dispatches);
  }

  /** Gives the held buffers back to TF.js's pool and destroys the capture's own. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    // Submitted work may still use them: Dawn defers the destruction, the pool hands them out only
    // to work submitted later.
    for (const buf of this.held) unhold(this.b, buf);
  }
}
