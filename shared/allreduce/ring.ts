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
// beside the buffer and added with WebAssembly SIMD (simd-add.ts, about 4x V8's scalar loop); into any other
// Float32Array, with an unrolled JS loop. Both add in place and round alike. With a 16-bit wire (wire.ts)
// every message of a ring buffer is received into a slot and converted with WebAssembly SIMD as well
// (wire-simd.ts, the same bits as wire.ts's JS code).
//
// Tags (link.ts's layout): message number `seq` of the all-reduce call numbered `step`, where seq counts
// a rank's messages in schedule order (its own segment's chunks, then each forwarded chunk by step and
// chunk index) -- the same numbering on both ends of a link.
// Distinct steps keep collectives that share a link at the same time apart.
import { WolfpackError } from '../errors.js';
import { composeTag, TAG_SEQS, type Link } from './link.js';
import { addInto, allocSimdBuffer, MAX_SLOT_PAIRS, simdBufferOf, type SimdBuffer } from './simd-add.js';
import { wireCodec, type WireFormat } from './wire.js';
import { simdWireFor } from './wire-simd.js';

/**
 * Default chunk size in elements: 2^20 (4 MiB of float32). Measured on 2 cores, 25.6M floats: 0.5-4 Mi
 * elements are within noise of each other at N = 2..4; 0.25 Mi is slower at N = 3 (more hand-offs between
 * processes that share cores), and 1M-float buffers gain nothing from smaller chunks.
 */
export const DEFAULT_CHUNK_ELEMS = 1 << 20;

/**
 * The chunk size as users set it (`--chunk-kib`): KiB of float32 values in one message, 1 .. MAX_CHUNK_KIB
 * (the ring buffer's receive slots hold DEFAULT_CHUNK_ELEMS). A 16-bit wire sends half the bytes.
 */
export const MAX_CHUNK_KIB = (DEFAULT_CHUNK_ELEMS * 4) / 1024;

/** Elements in a chunk of `kib` KiB of float32. */
export function chunkElemsOfKib(kib: number): number {
  return kib * 256;
}

export interface RingOptions {
  /** Most elements in one message (default DEFAULT_CHUNK_ELEMS). */
  chunkElems?: number;
  /** Number of this all-reduce call (default 0); part of every tag. */
  step?: number;
  /** How `buf` is cut into the N segments (default: evenly, segmentOffset/segmentLength). */
  partition?: Partition;
  /**
   * What travels between ranks (default 'fp32'). With 'bf16' or 'fp16' (./wire.ts) every message is
   * rounded to 16 bits: partial sums on each hop of the reduce-scatter, and each reduced segment, which its
   * owner rounds in place before sending it round, so every rank still ends with the same bits.
   */
  wire?: WireFormat;
  /**
   * Which pair of a ring buffer's receive slots this call uses, 0 .. MAX_SLOT_PAIRS - 1 (default 0). Calls
   * in flight at once on disjoint parts of one ring buffer must use different pairs (bucketedAllReduce's
   * `inflight`).
   */
  slotPair?: number;
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

/** The tag of message `seq` of all-reduce call `step` (link.ts's layout). */
export const ringTag = composeTag;

function usage(message: string, details: Record<string, unknown> = {}): WolfpackError {
  return new WolfpackError('E_USAGE', `ringAllReduce: ${message}`, details);
}

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
  if (!Number.isSafeInteger(length) || length < 0)
    throw usage(`createRingBuffer: length must be an integer >= 0, got ${length}`);
  if (!Number.isSafeInteger(slotElems) || slotElems < 1)
    throw usage(`createRingBuffer: maxChunkElems must be an integer >= 1, got ${slotElems}`);
  return allocSimdBuffer(length, slotElems) ?? new Float32Array(length);
}

/** True when `buf` takes ringAllReduce's WebAssembly SIMD path (see createRingBuffer). */
export function isRingBuffer(buf: Float32Array): boolean {
  const s = simdBufferOf(buf);
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
  const slotPair = opts.slotPair ?? 0;
  if (!Number.isSafeInteger(slotPair) || slotPair < 0 || slotPair >= MAX_SLOT_PAIRS)
    throw usage(`slotPair must be an integer in [0, ${MAX_SLOT_PAIRS}), got ${String(opts.slotPair)}`);

  const codec = opts.wire === undefined || opts.wire === 'fp32' ? undefined : wireCodec(opts.wire);
  /** Float32 elements a message of n values takes on the link. */
  const wireElems = (n: number): number => (codec ? Math.ceil(n / 2) : n);
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
  // The SIMD paths, when buf lives in a ring buffer whose slots hold a whole chunk.
  const simdInfo = simdBufferOf(buf);
  const simdWire = codec ? simdWireFor(codec.format, buf, simdInfo, chunkElems) : null;
  /**
   * Sends `data`, the message of n values that goes to the right neighbour as `tag`; `release` gets it
   * back once sent (never after a failed send: the transport may still hold it).
   */
  const send = (tag: number, data: Float32Array, n: number, release?: (msg: Float32Array) => void): void => {
    outstanding++;
    stats.bytesSent += 4 * wireElems(n);
    stats.messagesSent++;
    const sent =
      release === undefined
        ? onSent
        : () => {
            release(data);
            onSent();
          };
    link.send(tag, data).then(sent, onSendFailed);
  };
  const sendRegion = (tag: number, off: number, n: number): void => {
    if (!codec) send(tag, buf.subarray(off, off + n), n);
    else if (simdWire) send(tag, simdWire.pack(buf, off, n), n, simdWire.release);
    else send(tag, codec.pack(buf, off, n), n);
  };
  const ignore = (): void => undefined;

  const simd =
    codec === undefined &&
    simdInfo !== undefined &&
    buf.byteOffset + buf.byteLength <= simdInfo.dataEnd &&
    chunkElems <= simdInfo.slotElems
      ? simdInfo
      : null;
  /** The receive slot of message `seq`: the pair's two in turn. */
  const slotOf = (seq: number): number => 2 * slotPair + (seq & 1);
  const simdAdd = (slot: number, off: number, n: number): void => {
    const s = simd as SimdBuffer;
    const n4 = n >>> 2;
    const at = s.slots[slot]!;
    s.add(buf.byteOffset + 4 * off, at, n4);
    if (n4 * 4 < n) {
      const tail = new Float32Array(buf.buffer, at + 16 * n4, n - 4 * n4);
      addInto(buf, off + 4 * n4, tail, tail.length);
    }
  };

  // Post the receive of chunk (g, j): reduce-scatter adds it (callback), all-gather lets the link write
  // it in place; then, unless g is the last step, forward the same region as message k0 + seq.
  const post = (g: number, seq: number, off: number, n: number): Promise<void> => {
    const tag = tagBase + seq;
    const fwd = g < lastStep ? tagBase + k0 + seq : -1;
    let p: Promise<void>;
    // 16-bit messages. A reduce-scatter hop adds the values and sends its partial sum on, rounded anew; the
    // last one leaves this rank the owner of the sum, which the others get rounded, so it rounds its own
    // copy too. An all-gather hop sends on the message as it came (the owner's rounding, not redone).
    if (simdWire) {
      // Into a slot, as the float32 SIMD path below.
      const slot = slotOf(seq);
      p = link.recv(tag, wireElems(n), simdWire.slot(slot, n)).then(() => {
        if (g < N - 1) {
          simdWire.unpack(buf, off, slot, n, true);
          if (g === N - 2) simdWire.round(buf, off, n);
          if (fwd >= 0) sendRegion(fwd, off, n);
        } else {
          simdWire.unpack(buf, off, slot, n, false);
          if (fwd >= 0) send(fwd, simdWire.slotCopy(slot, n), n, simdWire.release);
        }
      });
    } else if (codec) {
      p = link.recv(tag, wireElems(n), (packed) => {
        if (g < N - 1) {
          codec.addInto(buf, off, packed, n);
          if (g === N - 2) codec.round(buf, off, n);
          if (fwd >= 0) sendRegion(fwd, off, n);
        } else {
          codec.copyInto(buf, off, packed, n);
          if (fwd >= 0) send(fwd, packed.slice(), n);
        }
      });
    } else if (g < N - 1 && simd !== null) {
      // Into a slot; the receive of seq+2, which reuses it, is posted only after this one is summed.
      const slot = slotOf(seq);
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
    stats.bytesReceived += 4 * wireElems(n);
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
