// The 16-bit wire on a ring buffer (createRingBuffer): the conversions run in WebAssembly SIMD
// (wire-simd.wat), eight values at a time, on the buffer, its receive slots and its packing slot in place.
// The JS conversions (wire.ts) cost about 0.3 CPU-seconds per rank and step on ResNet-50's gradients, which
// 8 ranks sharing 2 cores cannot afford; see BENCHMARKS.md. The last n mod 8 values of a message go through
// wire.ts's code, which rounds the same way, so a message's bits do not depend on the path.
import type { SimdBuffer, WireKernels } from './simd-add.js';
import { toBfloat16, toHalf, wireCodec, type WireCodec, type WireFormat } from './wire.js';

export class SimdWire {
  private readonly codec: WireCodec;
  private readonly encode: (src: Float32Array, dst: Uint16Array) => void;
  private readonly packKernel: (src: number, dst: number, n8: number) => void;
  private readonly unpackKernel: (dst: number, src: number, n8: number, add: number) => void;
  private readonly roundKernel: (buf: number, n4: number) => void;

  /** `memory` is the ArrayBuffer behind the ring buffer that `simd` describes. */
  constructor(
    format: Exclude<WireFormat, 'fp32'>,
    private readonly simd: SimdBuffer,
    kernels: WireKernels,
    private readonly memory: ArrayBufferLike,
  ) {
    this.codec = wireCodec(format);
    this.encode = format === 'bf16' ? toBfloat16 : toHalf;
    this.packKernel = format === 'bf16' ? kernels.bf16_pack : kernels.fp16_pack;
    this.unpackKernel = format === 'bf16' ? kernels.bf16_unpack : kernels.fp16_unpack;
    this.roundKernel = format === 'bf16' ? kernels.bf16_round : kernels.fp16_round;
  }

  /** The wire's view of receive slot `slot` for a message of n values (ceil(n/2) float32 elements). */
  slot(slot: number, n: number): Float32Array {
    return new Float32Array(this.memory, this.simd.slots[slot]!, Math.ceil(n / 2));
  }

  /** A copy of the message of n values in receive slot `slot`, to send on as it came; release() it once sent. */
  slotCopy(slot: number, n: number): Float32Array {
    const from = this.slot(slot, n);
    const out = this.simd.sendPool.take(from.length);
    out.set(from);
    return out;
  }

  /**
   * buf[off, off + n) as a message of n 16-bit words (the odd word's pad is zero), in a buffer of the send
   * pool: release() it once sent.
   */
  pack(buf: Float32Array, off: number, n: number): Float32Array {
    const n8 = n >>> 3;
    const out = this.simd.sendPool.take(Math.ceil(n / 2));
    const words = new Uint16Array(out.buffer, out.byteOffset, 2 * out.length);
    if (n & 1) words[n] = 0;
    if (n8 > 0) {
      this.packKernel(buf.byteOffset + 4 * off, this.simd.scratch, n8);
      words.set(new Uint16Array(this.memory, this.simd.scratch, 8 * n8));
    }
    if (8 * n8 < n) this.encode(buf.subarray(off + 8 * n8, off + n), words.subarray(8 * n8, n));
    return out;
  }

  /** Hands a message from pack() or slotCopy() back once the link no longer reads it. */
  readonly release = (msg: Float32Array): void => {
    this.simd.sendPool.give(msg);
  };

  /** buf[off + i] += (add) or = (!add) value i of the message of n values in receive slot `slot`. */
  unpack(buf: Float32Array, off: number, slot: number, n: number, add: boolean): void {
    const n8 = n >>> 3;
    const src = this.simd.slots[slot]!;
    if (n8 > 0) this.unpackKernel(buf.byteOffset + 4 * off, src, n8, add ? 1 : 0);
    const rest = n - 8 * n8;
    if (rest === 0) return;
    const tail = new Float32Array(this.memory, src + 16 * n8, Math.ceil(rest / 2));
    if (add) this.codec.addInto(buf, off + 8 * n8, tail, rest);
    else this.codec.copyInto(buf, off + 8 * n8, tail, rest);
  }

  /** Rounds buf[off, off + n) in place to what the wire carries of it. */
  round(buf: Float32Array, off: number, n: number): void {
    const n4 = n >>> 2;
    if (n4 > 0) this.roundKernel(buf.byteOffset + 4 * off, n4);
    if (4 * n4 < n) this.codec.round(buf, off + 4 * n4, n - 4 * n4);
  }
}

/** The SIMD wire for `buf`, when it lies in a ring buffer whose slots hold chunks of chunkElems; else null. */
export function simdWireFor(
  format: Exclude<WireFormat, 'fp32'>,
  buf: Float32Array,
  simd: SimdBuffer | undefined,
  chunkElems: number,
): SimdWire | null {
  if (simd === undefined || simd.wire === null) return null;
  if (buf.byteOffset + buf.byteLength > simd.dataEnd || chunkElems > simd.slotElems) return null;
  return new SimdWire(format, simd, simd.wire, buf.buffer);
}
