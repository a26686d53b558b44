// Ring all-reduce (SUM, in place) over a Link: reduce-scatter then all-gather, N-1 steps each, as in
// Gloo's allreduce_ring / NCCL's ring. A pure schedule: it never touches a socket (see link.ts).
//
// The buffer of length L is split into N segments (segment s has floor(L/N) elements, plus one when
// s < L mod N). Step g = 0 .. 2N-3 of rank r sends segment (r-g) mod N to the right neighbour and
// receives segment (r-g-1) mod N from the left: during the first N-1 steps (reduce-scatter) the received
// partial sum is added into the local segment, during the last N-1 steps (all-gather) the fully reduced
// segment, computed once by its owner, is copied over the local one, so every rank ends bitwise identical.
// After reduce-scatter rank r owns segment (r+1) mod N.
//
// Segments travel in chunks of at most `chunkElems` elements, and the schedule is a pipeline: the chunk
// of a segment received at step g is summed and immediately sent on at step g+1, while the next chunk
// is on the wire, so sending, receiving and adding overlap. Receives never wait for sends (waiting would
// let a full ring of ranks block on each other); sends are zero-copy views of `buf` handed to the link,
// and all-gather chunks are received straight into `buf` (the link may read the wire into it).
// A region sent at step g is next written at step g+N-1, and the message that writes it can only arrive
// after the right neighbour consumed the one that read it (see the Link contract), so no region is
// overwritten while a send still reads it. The call returns only after every send resolved.
//
// Rank r sends every segment except (r+1) mod N during reduce-scatter and every segment except
// (r+2) mod N during all-gather: 4 * (2L - len((r+1) mod N) - len((r+2) mod N)) bytes, which is exactly
// 2(N-1)/N * 4L when N divides L (ringBytesSent below).
//
// Summing: into a Float32Array from createRingBuffer() the reduce-scatter chunks are received into slots
// beside the buffer and added with WebAssembly SIMD (about 4x V8's scalar loop); into any other
// Float32Array, with an unrolled JS loop. Both add in place and round alike.
//
// Tags: message number `seq` of the all-reduce call numbered `step` carries tag
// (step mod 2^21) * 2^32 + seq, where seq counts a rank's messages in schedule order (its own segment's
// chunks, then each forwarded chunk by step and chunk index) -- the same numbering on both ends of a link.
// Distinct steps keep collectives that share a link at the same time apart.
import { WolfpackError } from '../errors.js';
import type { Link } from './link.js';

/**
 * Default chunk size in elements: 2^20 (4 MiB of float32). Measured on 2 cores, 25.6M floats: 0.5-4 Mi
 * elements are within noise of each other at N = 2..4; 0.25 Mi is slower at N = 3 (more hand-offs between
 * processes that share cores), and 1M-float buffers gain nothing from smaller chunks.
 */
export const DEFAULT_CHUNK_ELEMS = 1 << 20;

/** Step numbers are taken modulo this in tags. */
export const TAG_STEPS = 2 ** 21;
/** Messages of one all-reduce call are numbered below this. */
export const TAG_SEQS = 2 ** 32;

export interface RingOptions {
  /** Most elements in one message (default DEFAULT_CHUNK_ELEMS). */
  chunkElems?: number;
  /** Number of this all-reduce call (default 0); part of every tag. */
  step?: number;
  /** How `buf` is cut into the N segments (default: evenly, segmentOffset/segmentLength). */
  partition?: Partition;
}

/** The N segments of a buffer: segment s is [offset(s), offset(s) + length(s)); in order, covering it. */
export interface Partition {
  offset(seg: number): number;
  length(seg: number): number;
}

/** The even split of `length` elements over `size` ranks (segmentOffset, segmentLength). */
export function evenPartition(length: number, size: number): Partition {
  return { offset: (seg) => segmentOffset(length, size, seg), length: (seg) => segmentLength(length, size, seg) };
}

/**
 * The segments of the bucket [begin, end) of a buffer of `total` elements: the whole buffer's even
 * segments cut to the bucket, offsets relative to it. Every element then belongs to the same segment as
 * in one all-reduce of the whole buffer, so it is summed over the ranks in the same order and the
 * results are the same bits, bucket by bucket (some segments of a bucket are empty).
 */
export function bucketPartition(total: number, size: number, begin: number, end: number): Partition {
  const clip = (seg: number) => {
    const a = Math.min(Math.max(segmentOffset(total, size, seg), begin), end);
    const b = Math.min(Math.max(segmentOffset(total, size, seg) + segmentLength(total, size, seg), begin), end);
    return [a - begin, b - a] as const;
  };
  return { offset: (seg) => clip(seg)[0], length: (seg) => clip(seg)[1] };
}

export interface RingStats {
  bytesSent: number;
  bytesReceived: number;
  messagesSent: number;
  messagesReceived: number;
}

/** Offset of segment `seg` when `length` elements are split over `size` ranks. */
export function segmentOffset(length: number, size: number, seg: number): number {
  return seg * Math.floor(length / size) + Math.min(seg, length % size);
}

/** Length of segment `seg` when `length` elements are split over `size` ranks. */
export function segmentLength(length: number, size: number, seg: number): number {
  return Math.floor(length / size) + (seg < length % size ? 1 : 0);
}

/** Bytes that rank `rank` sends in one ring all-reduce of `length` float32 elements over `size` ranks. */
export function ringBytesSent(length: number, size: number, rank: number): number {
  if (size <= 1 || length === 0) return 0;
  const a = segmentLength(length, size, (rank + 1) % size);
  const b = segmentLength(length, size, (rank + 2) % size);
  return 4 * (2 * length - a - b);
}

/** The tag of message `seq` of all-reduce call `step`. */
export function ringTag(step: number, seq: number): number {
  return (step % TAG_STEPS) * TAG_SEQS + seq;
}

function usage(message: string, details: Record<string, unknown> = {}): WolfpackError {
  return new WolfpackError('E_USAGE', `ringAllReduce: ${message}`, details);
}

/** dst[off .. off+n) += src[0 .. n), unrolled by four (about 1.3x a plain loop in V8). */
function addInto(dst: Float32Array, off: number, src: Float32Array, n: number): void {
  const m = n - (n & 3);
  let i = 0;
  for (; i < m; i += 4) {
    const o = off + i;
    dst[o] += src[i];
    dst[o + 1] += src[i + 1];
    dst[o + 2] += src[i + 2];
    dst[o + 3] += src[i + 3];
  }
  for (; i < n; i++) dst[off + i] += src[i];
}

// ---- WebAssembly SIMD summation ------------------------------------------------------------------
// V8 does not vectorise the loop above (about 4-5 GB/s); f32x4.add in WebAssembly runs at memory speed
// (about 20 GB/s here). WebAssembly code only reaches its own memory, so the fast path needs the buffer
// and the received chunk in one WebAssembly.Memory: createRingBuffer() allocates such a buffer with two
// receive slots after it, the link writes each reduce-scatter chunk straight into a slot, and the kernel
// adds the slot into the buffer in place. f32x4.add rounds each lane like a scalar float32 add, so both
// paths give the same bits.

// (module (import "e" "m" (memory 1))
//   (func (export "add") (param $dst i32) (param $src i32) (param $n4 i32) (local $end i32)
//     ;; for dst < dst + 16*n4: v128.store(dst, f32x4.add(v128.load(dst), v128.load(src))); dst += 16; src += 16
//   ))
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
const ADD_MODULE = new Uint8Array([
  0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // magic, version
  0x01, 0x07, 0x01, 0x60, 0x03, 0x7f, 0x7f, 0x7f, 0x00, // type: (i32 i32 i32) -> ()
  0x02, 0x08, 0x01, 0x01, 0x65, 0x01, 0x6d, 0x02, 0x00, 0x01, // import "e" "m" memory, min 1 page
  0x03, 0x02, 0x01, 0x00, // function 0 has type 0
  0x07, 0x07, 0x01, 0x03, 0x61, 0x64, 0x64, 0x00, 0x00, // export "add" = function 0
  0x0a, ADD_BODY.length + 2, 0x01, ADD_BODY.length, ...ADD_BODY, // code
]);

let addModule: WebAssembly.Module | null | undefined;
function simdModule(): WebAssembly.Module | null {
  if (addModule === undefined) {
    try {
      addModule = WebAssembly.validate(ADD_MODULE) ? new WebAssembly.Module(ADD_MODULE) : null;
    } catch {
      addModule = null;
    }
  }
  return addModule;
}

interface SimdBuffer {
  add: (dst: number, src: number, n4: number) => void;
  /** Byte offsets of the two receive slots. */
  slots: [number, number];
  slotElems: number;
  /** End of the data region, bytes. */
  dataEnd: number;
}

const simdBuffers = new WeakMap<ArrayBufferLike, SimdBuffer>();

export interface RingBufferOptions {
  /** Largest chunk the fast path takes (default DEFAULT_CHUNK_ELEMS); larger chunks use the JS loop. */
  maxChunkElems?: number;
}

/**
 * A zero-filled Float32Array of `length` elements on which ringAllReduce sums with WebAssembly SIMD:
 * backed by its own WebAssembly.Memory, with two receive slots of maxChunkElems after the data. Any
 * Float32Array works with ringAllReduce; this one is about 4x faster to sum into (measured). Falls back
 * to a plain Float32Array where WebAssembly SIMD is not available or the memory cannot be had.
 */
export function createRingBuffer(length: number, opts: RingBufferOptions = {}): Float32Array {
  const slotElems = opts.maxChunkElems ?? DEFAULT_CHUNK_ELEMS;
  if (!Number.isSafeInteger(length) || length < 0) throw usage(`createRingBuffer: length must be an integer >= 0, got ${length}`);
  if (!Number.isSafeInteger(slotElems) || slotElems < 1) throw usage(`createRingBuffer: maxChunkElems must be an integer >= 1, got ${slotElems}`);
  const mod = simdModule();
  const dataEnd = Math.ceil((length * 4) / 16) * 16;
  const slotBytes = Math.ceil((slotElems * 4) / 16) * 16;
  const pages = Math.ceil((dataEnd + 2 * slotBytes) / 65536) || 1;
  if (mod === null || pages > 65535) return new Float32Array(length);
  let mem: WebAssembly.Memory;
  try {
    mem = new WebAssembly.Memory({ initial: pages, maximum: pages });
  } catch {
    return new Float32Array(length);
  }
  const inst = new WebAssembly.Instance(mod, { e: { m: mem } });
  simdBuffers.set(mem.buffer, {
    add: inst.exports.add as (dst: number, src: number, n4: number) => void,
    slots: [dataEnd, dataEnd + slotBytes],
    slotElems,
    dataEnd,
  });
  return new Float32Array(mem.buffer, 0, length);
}

/** True when `buf` takes ringAllReduce's WebAssembly SIMD path (see createRingBuffer). */
export function isRingBuffer(buf: Float32Array): boolean {
  const s = simdBuffers.get(buf.buffer);
  return s !== undefined && buf.byteOffset + buf.byteLength <= s.dataEnd;
}

/**
 * In-place SUM all-reduce of `buf` over the `size` ranks of a ring; `link` sends to rank (rank+1) mod
 * size and receives from rank (rank-1) mod size. Every rank must call it with the same length, size,
 * chunkElems and step. Resolves with what this rank sent and received, after all its sends completed.
 * Rejects with the link's error (E_PROTOCOL, E_WORKER) if the link fails; a failed send closes the link.
 */
export async function ringAllReduce(
  buf: Float32Array,
  rank: number,
  size: number,
  link: Link,
  opts: RingOptions = {},
): Promise<RingStats> {
  const chunkElems = opts.chunkElems ?? DEFAULT_CHUNK_ELEMS;
  const step = opts.step ?? 0;
  if (!(buf instanceof Float32Array)) throw usage('buf must be a Float32Array');
  if (!Number.isSafeInteger(size) || size < 1) throw usage(`size must be an integer >= 1, got ${size}`, { size });
  if (!Number.isSafeInteger(rank) || rank < 0 || rank >= size) {
    throw usage(`rank must be an integer in [0, ${size}), got ${rank}`, { rank, size });
  }
  if (!Number.isSafeInteger(chunkElems) || chunkElems < 1) {
    throw usage(`chunkElems must be an integer >= 1, got ${chunkElems}`, { chunkElems });
  }
  if (!Number.isSafeInteger(step) || step < 0) throw usage(`step must be an integer >= 0, got ${step}`, { step });

  const stats: RingStats = { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
  const N = size;
  const L = buf.length;
  if (N === 1 || L === 0) return stats;
  const part = opts.partition ?? evenPartition(L, N);
  const lastStep = 2 * (N - 1) - 1;

  // Messages per call must fit the seq field of the tag.
  let messages = 0;
  for (let g = 0; g <= lastStep; g++) {
    messages += Math.ceil(part.length((((rank - g - 1) % N) + N) % N) / chunkElems);
  }
  messages += Math.ceil(part.length(rank) / chunkElems);
  if (messages >= TAG_SEQS) throw usage(`too many chunks (${messages}); raise chunkElems`, { chunkElems, length: L });

  const tagBase = ringTag(step, 0);
  // Message numbers: the chunk j received at step g is message recvBase(g) + j of the left neighbour's
  // sends (recvBase = chunks received before step g); this rank sends its own segment first (k0
  // messages), and the chunk received at step g, forwarded at step g+1, is its message k0 + recvBase(g) + j.
  // Numbers depend only on (g, j), so the order sends are issued in never changes a tag.
  const k0 = Math.ceil(part.length(rank) / chunkElems);

  // Send bookkeeping: a counter, not a list of promises.
  let outstanding = 0;
  let sendError: unknown = undefined;
  let drained: (() => void) | null = null;
  const onSent = (): void => {
    outstanding--;
    if (outstanding === 0 && drained !== null) drained();
  };
  const onSendFailed = (err: unknown): void => {
    outstanding--;
    if (sendError === undefined) {
      sendError = err;
      link.close(); // wakes the receives that would otherwise wait for data that cannot come
    }
    if (outstanding === 0 && drained !== null) drained();
  };
  const sendRegion = (tag: number, off: number, n: number): void => {
    outstanding++;
    stats.bytesSent += 4 * n;
    stats.messagesSent++;
    link.send(tag, buf.subarray(off, off + n)).then(onSent, onSendFailed);
  };
  const ignore = (): void => undefined;

  // The SIMD path, when buf lives in a ring buffer whose slots hold a whole chunk.
  const simdInfo = simdBuffers.get(buf.buffer);
  const simd = simdInfo !== undefined && buf.byteOffset + buf.byteLength <= simdInfo.dataEnd && chunkElems <= simdInfo.slotElems
    ? simdInfo : null;
  const simdAdd = (slot: number, off: number, n: number): void => {
    const s = simd as SimdBuffer;
    const n4 = n >>> 2;
    s.add(buf.byteOffset + 4 * off, s.slots[slot], n4);
    if (n4 * 4 < n) {
      const tail = new Float32Array(buf.buffer, s.slots[slot] + 16 * n4, n - 4 * n4);
      addInto(buf, off + 4 * n4, tail, tail.length);
    }
  };

  // Post the receive of chunk (g, j): reduce-scatter adds it (callback), all-gather lets the link write
  // it in place; then, unless g is the last step, forward the same region as message k0 + seq.
  const post = (g: number, seq: number, off: number, n: number): Promise<void> => {
    const tag = tagBase + seq;
    const fwd = g < lastStep ? tagBase + k0 + seq : -1;
    let p: Promise<void>;
    if (g < N - 1 && simd !== null) {
      // Into a slot; the receive of seq+2, which reuses it, is posted only after this one is summed.
      const slot = seq & 1;
      p = link.recv(tag, n, new Float32Array(buf.buffer, simd.slots[slot], n)).then(() => {
        simdAdd(slot, off, n);
        if (fwd >= 0) sendRegion(fwd, off, n);
      });
    } else if (g < N - 1) {
      p = link.recv(tag, n, (chunk) => {
        addInto(buf, off, chunk, n);
        if (fwd >= 0) sendRegion(fwd, off, n);
      });
    } else {
      p = link.recv(tag, n, buf.subarray(off, off + n));
      if (fwd >= 0) p = p.then(() => sendRegion(fwd, off, n));
    }
    p.catch(ignore); // awaited below, possibly after it settled
    stats.bytesReceived += 4 * n;
    stats.messagesReceived++;
    return p;
  };

  try {
    // Step 0: this rank's own segment.
    {
      const segLen = part.length(rank);
      if (segLen > 0) {
        const cb = Math.floor(segLen / k0);
        const ce = segLen % k0;
        let off = part.offset(rank);
        for (let j = 0; j < k0; j++) {
          const n = cb + (j < ce ? 1 : 0);
          sendRegion(tagBase + j, off, n);
          off += n;
        }
      }
    }
    // Receives, each posted while the previous one is still pending, so that the link always knows
    // where the next payload goes.
    let seq = 0;
    let prev: Promise<void> | null = null;
    for (let g = 0; g <= lastStep; g++) {
      const seg = (((rank - g - 1) % N) + N) % N;
      const segLen = part.length(seg);
      if (segLen === 0) continue;
      const k = Math.ceil(segLen / chunkElems);
      const cb = Math.floor(segLen / k);
      const ce = segLen % k;
      let off = part.offset(seg);
      for (let j = 0; j < k; j++) {
        const n = cb + (j < ce ? 1 : 0);
        const p = post(g, seq++, off, n);
        off += n;
        if (prev !== null) await prev;
        prev = p;
        if (sendError !== undefined) throw sendError;
      }
    }
    if (prev !== null) await prev;
    if (outstanding > 0) {
      await new Promise<void>((resolve) => {
        drained = resolve;
      });
    }
  } catch (err) {
    throw sendError !== undefined ? sendError : err;
  }
  if (sendError !== undefined) throw sendError;
  return stats;
}
