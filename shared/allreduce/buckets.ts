// Bucketed all-reduce, as PyTorch DDP overlaps communication with the backward pass: the buffer is cut
// into buckets in the order its values become ready (the backward pass produces the last layers'
// gradients first), and bucket k is all-reduced as soon as it is ready, while the rest is still being
// computed. Every rank reduces the buckets in the same order. Each bucket's segments are the whole
// buffer's segments cut to it (bucketPartition), so the result is the same bits as one ringAllReduce
// of the whole buffer. By default buckets run one after another on the link, and a
// bucket that is ready waits only for the previous one's transfer, never for compute.
import { WolfpackError } from '../errors.js';
import type { Link } from './link.js';
import { bucketPartition, ringAllReduce, type RingOptions, type RingStats } from './ring.js';
import { MAX_SLOT_PAIRS } from './simd-add.js';

/** A contiguous range [begin, end) of the buffer. */
export interface Bucket {
  begin: number;
  end: number;
}

/** Bucket size in float32 elements for a size in MiB (--bucket-mb). */
export function bucketElemsOfMb(bucketMb: number): number {
  return Math.max(1, Math.round((bucketMb * 1024 * 1024) / 4));
}

/** DDP's default bucket size (25 MiB), in float32 elements. */
export const DEFAULT_BUCKET_ELEMS = (25 * 1024 * 1024) / 4;

/**
 * Buckets of about `maxElems` over a buffer of `total` elements, from its end to its start (the order in
 * which a backward pass produces a model's gradients when they are laid out in forward order). `cuts`
 * are the offsets where a bucket may end (layer boundaries); without them any offset is a boundary.
 */
export function reverseBuckets(total: number, maxElems: number, cuts?: readonly number[]): Bucket[] {
  if (!Number.isSafeInteger(maxElems) || maxElems < 1)
    throw new WolfpackError('E_USAGE', `bucket size must be an integer >= 1 elements, got ${maxElems}`);
  const bounds = cuts
    ? [...new Set([0, ...cuts.filter((c) => c > 0 && c < total), total])].sort((a, b) => a - b)
    : undefined;
  const out: Bucket[] = [];
  let end = total;
  while (end > 0) {
    let begin = Math.max(0, end - maxElems);
    if (bounds) {
      // The lowest layer boundary that keeps the bucket within maxElems, or the next one below end.
      const within = bounds.filter((b) => b >= begin && b < end);
      begin = within[0] ?? Math.max(...bounds.filter((b) => b < end));
    }
    out.push({ begin, end });
    end = begin;
  }
  return out;
}

export interface BucketedOptions extends Omit<RingOptions, 'partition'> {
  /** The buckets, in the order they are reduced; together they must cover the buffer exactly once. */
  buckets: readonly Bucket[];
  /** Resolves when bucket k's values are final (default: all are). */
  ready?: (k: number) => Promise<void>;
  /**
   * Buckets in flight at once, 1 .. MAX_SLOT_PAIRS (default 1). With K, bucket k starts as soon as it is
   * ready and bucket k-K is done, so its hops fill the link while the earlier buckets' hops wait on the
   * ranks' turn-around (each of a ring's 2(N-1) hops costs a wake-up, a conversion and a send besides its
   * bytes). The calls use their own receive slots (RingOptions.slotPair) and tags, so the sums are the same
   * bits. Over the WebSocket ring the link must be unordered (connectRing's `ordered: false`) when K > 1:
   * the buckets' messages interleave.
   */
  inflight?: number;
}

/**
 * SUM all-reduce of `buf` bucket by bucket, each as soon as it is ready. Uses collective numbers
 * step .. step + buckets.length - 1 (the caller's next free number is step + buckets.length). Returns
 * the totals of what this rank sent and received.
 */
export async function bucketedAllReduce(
  buf: Float32Array,
  rank: number,
  size: number,
  link: Link,
  opts: BucketedOptions,
): Promise<RingStats> {
  checkCover(opts.buckets, buf.length);
  const step = opts.step ?? 0;
  const inflight = opts.inflight ?? 1;
  if (!Number.isSafeInteger(inflight) || inflight < 1 || inflight > MAX_SLOT_PAIRS)
    throw new WolfpackError(
      'E_USAGE',
      `bucketedAllReduce: inflight must be an integer from 1 to ${MAX_SLOT_PAIRS}, got ${String(inflight)}`,
    );
  const total: RingStats = { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
  const add = (s: RingStats): void => {
    total.bytesSent += s.bytesSent;
    total.bytesReceived += s.bytesReceived;
    total.messagesSent += s.messagesSent;
    total.messagesReceived += s.messagesReceived;
  };
  // running[pair]: the all-reduce of the last bucket started with that slot pair (bucket k uses pair k mod inflight)
  const running: (Promise<void> | undefined)[] = [];
  try {
    for (const [k, { begin, end }] of opts.buckets.entries()) {
      const pair = k % inflight;
      await opts.ready?.(k);
      await running[pair];
      running[pair] = ringAllReduce(buf.subarray(begin, end), rank, size, link, {
        chunkElems: opts.chunkElems,
        step: step + k,
        partition: bucketPartition(buf.length, size, begin, end),
        slotPair: pair,
        ...(opts.wire !== undefined ? { wire: opts.wire } : {}),
      }).then(add);
      running[pair].catch(() => undefined); // awaited below or at its pair's next turn
    }
    await Promise.all(running);
  } catch (err) {
    // the other bucket in flight fails with the same link; wait for it before reporting
    await Promise.allSettled(running);
    throw err;
  }
  return total;
}

function checkCover(buckets: readonly Bucket[], length: number): void {
  const sorted = [...buckets].sort((a, b) => a.begin - b.begin);
  let at = 0;
  for (const b of sorted) {
    if (b.begin !== at || b.end <= b.begin) {
      throw new WolfpackError(
        'E_USAGE',
        `bucketedAllReduce: buckets must cover [0, ${length}) without gaps or overlaps; ` +
          `found [${b.begin}, ${b.end}) at ${at}`,
      );
    }
    at = b.end;
  }
  if (at !== length)
    throw new WolfpackError('E_USAGE', `bucketedAllReduce: buckets end at ${at}, the buffer has ${length} elements`);
}
