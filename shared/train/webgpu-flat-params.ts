// A model's trained parameters kept on the GPU in one flat buffer, in the layout of the host's flat
// Float32Arrays (shared/model/state.ts), with the Momentum accumulators and the gradients beside it:
//  - gradients are gathered into the flat gradient buffer with buffer copies (no dispatches), so a
//    step reads them back (for the ring all-reduce) in one transfer, together with any small tensors;
//  - or read back bucket by bucket while the backward pass runs (gradReader, for a replayed step);
//  - the all-reduced gradients go up through mapped staging buffers (staging.ts), not queue.writeBuffer;
//  - the Momentum update of the whole model is one dispatch over the flat buffers;
//  - the per-parameter tensors the forward pass uses are refreshed from the flat buffer by copies.
import { tf } from '../backend/tf.js';
import { grid } from '../backend/webgpu/kernels.js';
import { PER_ELEMENT_MAIN, dispatchOnBuffers, type RawKernel } from '../backend/webgpu/raw.js';
import { readBuffersAsync, readBuffersSync, type ReadPart } from '../backend/webgpu/sync-read.js';
import { MappedUpload, RangeReader } from '../backend/webgpu/staging.js';
import { BufferUsage, type ByteRange, type GpuBuffer, type WebGpuBackend } from '../backend/webgpu/types.js';
import { WolfpackError } from '../errors.js';

export interface FlatSlot {
  name: string;
  shape: number[];
  /** Offset in floats into the host's flat array. */
  offset: number;
  size: number;
}

/** accum = momentum * accum + grad; w -= lr * accum (torch.optim.SGD's and MindSpore's Momentum). */
export function momentumKernel(count: number): RawKernel {
  const g = grid(Math.ceil(count / 256));
  return {
    name: 'MomentumFlat',
    key: `wp_momentum_${count}_${g[0]}`,
    workgroups: g,
    code: () => `
struct Hyper { lr : f32, momentum : f32 };
@group(0) @binding(0) var<storage, read_write> w : array<f32>;
@group(0) @binding(1) var<storage, read_write> accum : array<f32>;
@group(0) @binding(2) var<storage, read> grad : array<f32>;
@group(0) @binding(3) var<uniform> hyper : Hyper;
const UNITS = ${count}; const GX = ${g[0]};
${PER_ELEMENT_MAIN}
  let a = hyper.momentum * accum[i] + grad[i];
  accum[i] = a;
  w[i] = w[i] - hyper.lr * a;
}`,
  };
}

/** flags[wg] = 1 if any of the workgroup's values is NaN or infinite (one dispatch, no atomics). */
export function nonFiniteKernel(count: number): { kernel: RawKernel; groups: number } {
  const per = 256 * 16;
  const groups = Math.ceil(count / per);
  const g = grid(groups);
  return {
    groups,
    kernel: {
      name: 'NonFiniteFlags',
      key: `wp_nonfinite_${count}_${g[0]}`,
      workgroups: g,
      code: () => `
@group(0) @binding(0) var<storage, read_write> flags : array<f32>;
@group(0) @binding(1) var<storage, read> v : array<f32>;
const COUNT = ${count}; const GX = ${g[0]}; const PER = ${per}; const GROUPS = ${groups};
var<workgroup> bad : array<u32, 256>;
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(local_invocation_id) lid : vec3<u32>, @builtin(workgroup_id) wid : vec3<u32>) {
  let wg = i32(wid.y) * GX + i32(wid.x);
  let t = i32(lid.x);
  var b = 0u;
  for (var j = 0; j < PER / 256; j = j + 1) {
    let i = wg * PER + j * 256 + t;
    if (i < COUNT) {
      let u = bitcast<u32>(v[i]);
      if ((u & 0x7f800000u) == 0x7f800000u) { b = 1u; }
    }
  }
  bad[t] = b;
  workgroupBarrier();
  for (var s = 128; s > 0; s = s / 2) {
    if (t < s) { bad[t] = bad[t] | bad[t + s]; }
    workgroupBarrier();
  }
  if (t == 0 && wg < GROUPS) { flags[wg] = f32(bad[0]); }
}`,
    },
  };
}

function bufferOfTensor(b: WebGpuBackend, t: tf.TensorInfo): GpuBuffer {
  b.uploadToGPU(t.dataId);
  const d = b.tensorMap.get(t.dataId);
  if (!d?.resource) throw new WolfpackError('E_BACKEND', 'webgpu flat params: a tensor has no GPU buffer');
  return d.resource as GpuBuffer;
}

/**
 * Trained parameters, Momentum accumulators and gradients of one contiguous range of the host's flat
 * arrays, on the GPU. `slots` must tile [begin, end) in order (ParamLayout.trainableFor does).
 */
export class FlatGpuParams {
  readonly begin: number;
  readonly count: number;
  readonly slots: readonly FlatSlot[];
  private readonly b: WebGpuBackend;
  private readonly w: GpuBuffer;
  private readonly accum: GpuBuffer;
  private readonly grad: GpuBuffer;
  private readonly hyper: GpuBuffer;
  private readonly flags: GpuBuffer;
  private readonly flagGroups: number;
  private readonly tensors = new Map<string, tf.Tensor>();
  private readonly hyperData = new Float32Array(4);
  private readonly gradUpload: MappedUpload;

  constructor(slots: readonly FlatSlot[], params: Float32Array, accum: Float32Array) {
    this.b = tf.backend() as WebGpuBackend;
    if (tf.getBackend() !== 'webgpu') throw new WolfpackError('E_BACKEND', 'FlatGpuParams needs the webgpu backend');
    this.slots = slots;
    const first = slots[0];
    const last = slots[slots.length - 1];
    if (first === undefined || last === undefined)
      throw new WolfpackError('E_BACKEND', 'FlatGpuParams: no slots (there is no trained parameter)');
    this.begin = first.offset;
    const end = last.offset + last.size;
    this.count = end - this.begin;
    slots.forEach((s, i) => {
      const prev = slots[i - 1];
      const expect = prev === undefined ? this.begin : prev.offset + prev.size;
      if (s.offset !== expect)
        throw new WolfpackError(
          'E_BACKEND',
          `FlatGpuParams: slot ${s.name} at ${s.offset}, expected ${expect} (slots must be contiguous)`,
        );
    });
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
    const bytes = Math.max(16, this.count * 4);
    const dev = this.b.device;
    this.w = dev.createBuffer({ size: bytes, usage });
    this.accum = dev.createBuffer({ size: bytes, usage });
    this.grad = dev.createBuffer({ size: bytes, usage });
    this.hyper = dev.createBuffer({ size: 16, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    this.flagGroups = nonFiniteKernel(this.count).groups;
    this.flags = dev.createBuffer({ size: Math.max(16, this.flagGroups * 4), usage });
    this.gradUpload = new MappedUpload(this.b, this.count * 4);
    this.upload(params, accum);
    for (const s of slots) {
      const info = this.b.makeTensorInfo(s.shape, 'float32');
      bufferOfTensor(this.b, info);
      this.tensors.set(s.name, tf.keep(tf.engine().makeTensorFromTensorInfo(info)));
    }
    this.scatter();
  }

  /** The tensor of a trained parameter (its values are refreshed in place by scatter()). */
  get(name: string): tf.Tensor | undefined {
    return this.tensors.get(name);
  }

  /** Writes host params and accumulators (e.g. after weights were replaced) into the flat buffers. */
  upload(params: Float32Array, accum: Float32Array): void {
    const q = this.b.device.queue;
    q.writeBuffer(this.w, 0, params.subarray(this.begin, this.begin + this.count));
    q.writeBuffer(this.accum, 0, accum.subarray(this.begin, this.begin + this.count));
  }

  private encoder(): NonNullable<WebGpuBackend['commandEncoder']> {
    this.b.ensureCommandEncoderReady();
    this.b.endComputePassEncoder();
    return this.b.commandEncoder!;
  }

  /**
   * Copies the flat parameters into the per-parameter tensors (buffer copies, in stream order) and
   * submits them, so that the next step's work (a replayed capture above all) starts with nothing
   * of the update left to submit.
   */
  scatter(): void {
    const enc = this.encoder();
    for (const s of this.slots) {
      const dst = bufferOfTensor(this.b, this.tensors.get(s.name)!);
      enc.copyBufferToBuffer(this.w, (s.offset - this.begin) * 4, dst, 0, s.size * 4);
    }
    this.b.submitQueue();
  }

  /**
   * Copies each gradient (in slot order) into the flat gradient buffer and flags non-finite values.
   * The gradient tensors may be disposed right after: the copies are already recorded.
   */
  gather(grads: readonly tf.Tensor[]): void {
    if (grads.length !== this.slots.length)
      throw new WolfpackError(
        'E_BACKEND',
        `FlatGpuParams.gather: ${grads.length} gradients for ${this.slots.length} slots`,
      );
    const enc = this.encoder();
    grads.forEach((g, i) => {
      const s = this.slots[i]!;
      if (g.size !== s.size)
        throw new WolfpackError(
          'E_BACKEND',
          `FlatGpuParams.gather: gradient ${i} has ${g.size} values, ${s.name} has ${s.size}`,
        );
      enc.copyBufferToBuffer(bufferOfTensor(this.b, g), 0, this.grad, (s.offset - this.begin) * 4, s.size * 4);
      this.b.commandQueueOwnedIds.add(g.dataId);
    });
    const nf = nonFiniteKernel(this.count);
    dispatchOnBuffers(this.b, nf.kernel, [this.flags, this.grad]);
  }

  /** Read parts for the gradients and the non-finite flags (to pass to readParts with others). */
  gradParts(): { grads: ReadPart; flags: ReadPart } {
    return {
      grads: { buffer: this.grad, size: this.count * 4 },
      flags: { buffer: this.flags, size: this.flagGroups * 4 },
    };
  }

  /** The flat gradient buffer, as the destination of gather()'s copies (CapturedStep.groupCopiesInto). */
  get gradBuffer(): GpuBuffer {
    return this.grad;
  }

  /** Staging buffers reading back byte `ranges` of the flat gradient buffer. */
  gradReader(ranges: readonly ByteRange[]): RangeReader {
    return new RangeReader(this.b, this.grad, ranges);
  }

  /** Reads GPU ranges (these buffers' and tensors') in one transfer, asynchronously. */
  readParts<T>(parts: ReadPart[], use: (bytes: ArrayBuffer) => T): Promise<T> {
    return readBuffersAsync(this.b, parts, use);
  }

  /** A tensor's buffer as a read part. */
  tensorPart(t: tf.Tensor): ReadPart {
    return { buffer: bufferOfTensor(this.b, t), size: t.size * 4 };
  }

  /** Replaces the flat gradients with `grads` (the all-reduced sum). */
  writeGrads(grads: Float32Array): void {
    if (grads.length < this.count)
      throw new WolfpackError('E_BACKEND', `FlatGpuParams.writeGrads: ${grads.length} values for ${this.count}`);
    this.gradUpload.write(this.grad, 0, grads.subarray(0, this.count));
  }

  /** One Momentum step over every parameter: one dispatch, submitted at once. */
  momentumStep(lr: number, momentum: number): void {
    this.hyperData[0] = lr;
    this.hyperData[1] = momentum;
    this.b.device.queue.writeBuffer(this.hyper, 0, this.hyperData);
    dispatchOnBuffers(this.b, momentumKernel(this.count), [this.w, this.accum, this.grad, this.hyper]);
    this.b.endComputePassEncoder();
    this.b.submitQueue(); // the next step's writeBuffer of the hyper-parameters must come after this
  }

  /** Writes new parameters computed on the host (one transfer) and refreshes the tensors. */
  writeParams(params: Float32Array): void {
    this.b.device.queue.writeBuffer(this.w, 0, params.subarray(this.begin, this.begin + this.count));
    this.scatter();
  }

  /** Copies the GPU's parameters and accumulators into the host arrays (blocking). */
  download(params: Float32Array, accum: Float32Array): void {
    readBuffersSync(
      this.b,
      [
        { buffer: this.w, size: this.count * 4 },
        { buffer: this.accum, size: this.count * 4 },
      ],
      (ab) => {
        params.set(new Float32Array(ab, 0, this.count), this.begin);
        accum.set(new Float32Array(ab, this.count * 4, this.count), this.begin);
      },
    );
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
    // Pending work may still use the buffers: submit first, destroy after (Dawn defers the release).
    this.b.endComputePassEncoder();
    if (this.b.commandEncoder) this.b.submitQueue();
    for (const buf of [this.w, this.accum, this.grad, this.hyper, this.flags]) buf.destroy();
    this.gradUpload.dispose();
  }
}
