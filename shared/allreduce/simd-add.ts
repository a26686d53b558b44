// Summing a received chunk into the ring buffer, the all-reduce's only arithmetic.
// V8 does not vectorise a JS loop (addInto) (about 4-5 GB/s); f32x4.add in WebAssembly runs at memory speed
// (about 20 GB/s here). WebAssembly code only reaches its own memory, so the fast path needs the buffer
// and the received chunk in one WebAssembly.Memory: createRingBuffer() allocates such a buffer with two
// receive slots after it, the link writes each reduce-scatter chunk straight into a slot, and the kernel
// adds the slot into the buffer in place. f32x4.add rounds each lane like a scalar float32 add, so both
// paths give the same bits.
import { WIRE_SIMD_WASM } from './wire-simd-module.js';
import { MessagePool } from './message-pool.js';

/** dst[off .. off+n) += src[0 .. n), unrolled by four (about 1.3x a plain loop in V8). */
export function addInto(dst: Float32Array, off: number, src: Float32Array, n: number): void {
  const m = n - (n & 3);
  let i = 0;
  for (; i < m; i += 4) {
    const o = off + i;
    dst[o] = dst[o]! + src[i]!;
    dst[o + 1] = dst[o + 1]! + src[i + 1]!;
    dst[o + 2] = dst[o + 2]! + src[i + 2]!;
    dst[o + 3] = dst[o + 3]! + src[i + 3]!;
  }
  for (; i < n; i++) dst[off + i] = dst[off + i]! + src[i]!;
}

// (module (import "e" "m" (memory 1))
//   (func (export "add") (param $dst i32) (param $src i32) (param $n4 i32) (local $end i32)
//     ;; for dst < dst + 16*n4: v128.store(dst, f32x4.add(v128.load(dst), v128.load(src))); dst += 16; src += 16
//   ))
// prettier-ignore
const ADD_BODY = [
  0x01, 0x01, 0x7f, // one local i32 ($end)
  0x20, 0x00, 0x20, 0x02, 0x41, 0x04, 0x74, 0x6a, 0x21, 0x03, // end = dst + (n4 << 4)
  0x02, 0x40, 0x03, 0x40, // block, loop
  0x20, 0x00, 0x20, 0x03, 0x4f, 0x0d, 0x01, // br_if 1 (dst >= end)
  0x20, 0x00, // address for the store
  0x20, 0x00, 0xfd, 0x00, 0x02, 0x00, // v128.load dst
  0x20, 0x01, 0xfd, 0x00, 0x02, 0x00, // v128.load src
  0xfd, 0xe4, 0x01, // f32x4.add
  0xfd, 0x0b, 0x02, 0x00, // v128.store
  0x20, 0x00, 0x41, 0x10, 0x6a, 0x21, 0x00, // dst += 16
  0x20, 0x01, 0x41, 0x10, 0x6a, 0x21, 0x01, // src += 16
  0x0c, 0x00, 0x0b, 0x0b, 0x0b, // br 0, end loop, end block, end func
];
// prettier-ignore
const ADD_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32 i32 i32) -> ()
  0x02, 0x08, 0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x00, 0x01, // import "e" "m" memory, min 1 page
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, // export "add" = function 0
  0x0a, ADD_BODY.length + 2, 0x01, ADD_BODY.length, ...ADD_BODY, // code
]);

/** The module of `bytes`, compiled on first use; null where this engine cannot (no WebAssembly SIMD). */
function compiledOnce(bytes: BufferSource): () => WebAssembly.Module | null {
  let mod: WebAssembly.Module | null | undefined;
  return () => {
    if (mod === undefined) {
      try {
        mod = WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null;
      } catch {
        mod = null;
      }
    }
    return mod;
  };
}

const simdModule = compiledOnce(ADD_MODULE);
const wireSimdModule = compiledOnce(WIRE_SIMD_WASM);

/** The 16-bit wire's SIMD kernels (wire-simd.wat), on the same memory; byte addresses, groups of 8 or 4. */
export interface WireKernels {
  bf16_pack(src: number, dst: number, n8: number): void;
  fp16_pack(src: number, dst: number, n8: number): void;
  /** `add` 1: dst += the values; 0: dst = them. */
  bf16_unpack(dst: number, src: number, n8: number, add: number): void;
  fp16_unpack(dst: number, src: number, n8: number, add: number): void;
  bf16_round(buf: number, n4: number): void;
  fp16_round(buf: number, n4: number): void;
}

export interface SimdBuffer {
  add: (dst: number, src: number, n4: number) => void;
  /** The wire's conversions, where their module compiles (null otherwise: wire.ts's JS code then does them). */
  wire: WireKernels | null;
  /**
   * Byte offsets of the receive slots: MAX_SLOT_PAIRS pairs, one for each all-reduce in flight at once on
   * disjoint parts of the buffer (bucketedAllReduce's `inflight`); one all-reduce alternates within its pair.
   */
  slots: readonly number[];
  /** Byte offset of a third slot, where a message to send is packed (16-bit wire) before it is copied out. */
  scratch: number;
  slotElems: number;
  /** End of the data region, bytes. */
  dataEnd: number;
  /** Buffers for the 16-bit messages the ring sends (message-pool.ts). */
  sendPool: MessagePool;
}

/** All-reduces a ring buffer can have in flight at once (bucketedAllReduce's `inflight`): one slot pair each. */
export const MAX_SLOT_PAIRS = 4;

const simdBuffers = new WeakMap<ArrayBufferLike, SimdBuffer>();

/**
 * A zero-filled Float32Array of `length` elements backed by its own WebAssembly.Memory, with 2 x
 * MAX_SLOT_PAIRS receive slots and a packing slot of `slotElems` after the data; null where WebAssembly SIMD or the
 * memory cannot be had.
 */
export function allocSimdBuffer(length: number, slotElems: number): Float32Array | null {
  const mod = simdModule();
  const dataEnd = Math.ceil((length * 4) / 16) * 16;
  const slotBytes = Math.ceil((slotElems * 4) / 16) * 16;
  const slotCount = 2 * MAX_SLOT_PAIRS;
  // Pages nobody touches cost address space only: a buffer of the default chunk reserves 36 MiB of slots.
  const pages = Math.ceil((dataEnd + (slotCount + 1) * slotBytes) / 65536) || 1;
  if (mod === null || pages > 65535) return null;
  let mem: WebAssembly.Memory;
  try {
    mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
  } catch {
    return null;
  }
  const inst = new WebAssembly.Instance(mod, { e: { m: mem } });
  const wire = wireSimdModule();
  simdBuffers.set(mem.buffer, {
    add: inst.exports.add as (dst: number, src: number, n4: number) => void,
    wire: wire === null ? null : (new WebAssembly.Instance(wire, { e: { m: mem } }).exports as unknown as WireKernels),
    slots: Array.from({ length: slotCount }, (_, i) => dataEnd + i * slotBytes),
    scratch: dataEnd + slotCount * slotBytes,
    slotElems,
    dataEnd,
    sendPool: new MessagePool(),
  });
  return new Float32Array(mem.buffer, 0, length);
}

/** The SIMD adder of the memory behind `buf` (allocSimdBuffer), if any. */
export function simdBufferOf(buf: Float32Array): SimdBuffer | undefined {
  return simdBuffers.get(buf.buffer);
}
