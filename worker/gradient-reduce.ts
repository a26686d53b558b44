// A step's all-reduce of the replica's buffer among the ranks, [ gradients | statistics | metrics ]:
//  - without buckets, once the gradients are computed: the whole buffer in one ring all-reduce on a
//    float32 wire; on a 16-bit wire the gradients alone, the rest (sums of squares would overflow fp16,
//    the counts and the non-finite flag) in float32 after them;
//  - with buckets (--bucket-mb, PyTorch DDP's overlap of communication with the backward pass): the
//    gradients bucket by bucket, last layers first, each as soon as the replica hands it over (the
//    webgpu replica reads them back while the backward pass runs; others hand over all of them when they
//    finish), then the rest, in float32, once the computation is done. Every rank cuts the same buckets
//    from the same layout, and a bucket's values are summed in the order the whole buffer's ring would
//    sum them (bucketPartition), so the result is the same bits with buckets as without.
import type { Bucket } from '../shared/allreduce/buckets.js';
import { bucketedAllReduce } from '../shared/allreduce/buckets.js';
import type { Link } from '../shared/allreduce/link.js';
import { ringAllReduce } from '../shared/allreduce/ring.js';
import type { WireFormat } from '../shared/allreduce/wire.js';
import type { GradientStream } from '../shared/train/training-replica.js';

/** A rank's place in the ring for a step's all-reduce. */
export interface StepRing {
  rank: number;
  world: number;
  link: Link;
  chunkElems: number;
  wire: WireFormat;
  /** Takes `count` consecutive collective numbers and returns the first. */
  take(count: number): number;
}

/**
 * The replica's hand-over of buckets, as bucketedAllReduce's `ready`; `after` more buckets of the reduce
 * (the statistics and metrics) are ready only when the whole computation is (landAll).
 */
class BucketFeed implements GradientStream {
  private readonly landings: { promise: Promise<void>; resolve: () => void; reject: (e: unknown) => void }[];
  /** Buckets handed over before the computation was done. */
  early = 0;

  constructor(
    readonly buckets: readonly Bucket[],
    after: number,
  ) {
    this.landings = Array.from({ length: buckets.length + after }, () => {
      let resolve!: () => void;
      let reject!: (e: unknown) => void;
      const promise = new Promise<void>((res, rej) => {
        resolve = res;
        reject = rej;
      });
      promise.catch(() => undefined); // a failed step rejects buckets nobody waits for yet
      return { promise, resolve, reject };
    });
  }

  landed(k: number): void {
    if (k < this.buckets.length) {
      this.landings[k]!.resolve();
      this.early++;
    }
  }

  readonly ready = (k: number): Promise<void> => this.landings[k]!.promise;

  /** The gradients are computed: every bucket is final. */
  landAll(): void {
    for (const l of this.landings) l.resolve();
  }

  /** The gradients will not come: the all-reduce waiting for them fails with `e`. */
  fail(e: unknown): void {
    for (const l of this.landings) l.reject(e);
  }
}

/** When a step's computation ended (performance.now()), and how many buckets it handed over before that. */
export interface ReduceTimes {
  computed: number;
  early: number;
}

/**
 * Runs `compute` (which fills `buffer`, and may hand over buckets through the stream it is given) and
 * all-reduces `buffer` on `ring` (none: one rank, nothing to reduce). Resolves when both are done.
 */
export async function computeAndReduce(
  buffer: Float32Array,
  statsOffset: number,
  compute: (stream?: GradientStream) => Promise<void>,
  ring: StepRing | undefined,
  buckets: readonly Bucket[] | undefined,
): Promise<ReduceTimes> {
  if (!ring) {
    await compute();
    return { computed: performance.now(), early: 0 };
  }
  const { rank, world, link, chunkElems, wire } = ring;
  const grads = buffer.subarray(0, statsOffset);
  const rest = buffer.subarray(statsOffset);
  let computed: number;
  let early = 0;
  if (buckets) {
    // On a float32 wire the rest is one more bucket of the same all-reduce (so each value is summed in
    // the order of the whole-buffer ring); a 16-bit one carries the gradients only.
    const all = wire === 'fp32' ? [...buckets, { begin: statsOffset, end: buffer.length }] : buckets;
    const feed = new BucketFeed(buckets, all.length - buckets.length);
    const reducing = bucketedAllReduce(wire === 'fp32' ? buffer : grads, rank, world, link, {
      buckets: all,
      ready: feed.ready,
      step: ring.take(all.length),
      chunkElems,
      ...(wire !== 'fp32' ? { wire } : {}),
    });
    try {
      await compute(feed);
    } catch (e) {
      // Not awaited: a bucket already on the ring ends with the peers or when the link is closed.
      feed.fail(e);
      reducing.catch(() => undefined);
      throw e;
    }
    computed = performance.now();
    early = feed.early;
    feed.landAll();
    await reducing;
    if (wire === 'fp32') return { computed, early };
  } else {
    await compute();
    computed = performance.now();
    if (wire === 'fp32') {
      await ringAllReduce(buffer, rank, world, link, { step: ring.take(1), chunkElems });
      return { computed, early };
    }
    await ringAllReduce(grads, rank, world, link, { step: ring.take(1), chunkElems, wire });
  }
  await ringAllReduce(rest, rank, world, link, { step: ring.take(1), chunkElems });
  return { computed, early };
}
