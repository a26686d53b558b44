// A step's all-reduce (worker/gradient-reduce.ts) over a real WebSocket ring of three ranks in one process:
// bucket by bucket (--bucket-mb) it sums the same bits as the whole buffer at once, on a float32 and on a
// bf16 wire; a bucket handed over during compute is reduced while compute still runs (each rank waits,
// inside its compute, until its first bucket holds the ring's sum); a compute that fails fails the step; and
// the buckets follow a real layout's parameter boundaries, last layers first.
import t from 'tap';
import type { Link } from '../../shared/allreduce/link.js';
import { createRingBuffer } from '../../shared/allreduce/ring.js';
import { resnet50Spec } from '../../shared/model/spec.js';
import { ParamLayout } from '../../shared/model/state.js';
import { ReduceLayout } from '../../shared/train/reduce-buffer.js';
import type { GradientStream } from '../../shared/train/training-replica.js';
import { wsRing } from '../helpers/ws-ring.js';
import { computeAndReduce, type StepRing } from '../../worker/gradient-reduce.js';
import { reverseBuckets } from '../../shared/allreduce/buckets.js';
import { xorshiftRng } from '../helpers/numerics.js';

const N = 3;

const same = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

/** Resolves once `done()` holds, checking after each turn of the event loop; fails after `limitMs`. */
async function until(done: () => boolean, what: string, limitMs = 120_000): Promise<void> {
  const t0 = performance.now();
  while (!done()) {
    if (performance.now() - t0 > limitMs) throw new Error(`gave up waiting for ${what}`);
    await new Promise((r) => setImmediate(r));
  }
}

const GRADS = 300_001;
const REST = 1_003;
const rng = xorshiftRng(11);
const data = Array.from({ length: N }, () => Float32Array.from({ length: GRADS + REST }, () => rng() * 2 - 1));
const ringOf = (rank: number, link: Link, wire: StepRing['wire']): StepRing => {
  let next = 0;
  return { rank, world: N, link, chunkElems: 1 << 14, wire, take: (count) => (next += count) - count };
};

for (const wire of ['fp32', 'bf16'] as const) {
  t.test(`${wire}: bucket by bucket, during compute, the same bits as the whole buffer after it`, async (t) => {
    const buckets = reverseBuckets(GRADS, 70_000);
    const run = async (
      bucketed: boolean,
    ): Promise<{ bufs: Float32Array[]; firstSummedInCompute: boolean[]; early: number[] }> => {
      const links = await wsRing(N, { jobId: 'gradient-reduce' });
      t.teardown(() => links.forEach((l) => l.close()));
      const bufs = data.map(() => createRingBuffer(GRADS + REST, { maxChunkElems: 1 << 14 }));
      const firstSummedInCompute = bufs.map(() => false);
      const times = await Promise.all(
        bufs.map((buf, rank) =>
          computeAndReduce(
            buf,
            GRADS,
            async (stream?: GradientStream) => {
              // the backward pass: the last layers' gradients first
              const b0 = buckets[0]!;
              buf.set(data[rank]!.subarray(b0.begin, b0.end), b0.begin);
              if (stream) {
                stream.landed(0);
                // still computing: the ring reduces bucket 0 meanwhile
                const mine = data[rank]!.subarray(b0.begin, b0.end);
                await until(() => !same(buf.subarray(b0.begin, b0.end), mine), `rank ${rank}'s bucket 0 sum`);
                firstSummedInCompute[rank] = true;
              }
              for (let k = 1; k < buckets.length; k++) {
                const { begin, end } = buckets[k]!;
                buf.set(data[rank]!.subarray(begin, end), begin);
                stream?.landed(k);
                await new Promise((r) => setImmediate(r));
              }
              buf.set(data[rank]!.subarray(GRADS), GRADS);
            },
            ringOf(rank, links[rank]!, wire),
            bucketed ? buckets : undefined,
          ),
        ),
      );
      for (const l of links) l.close();
      return { bufs, firstSummedInCompute, early: times.map((r) => r.early) };
    };
    const whole = await run(false);
    const inBuckets = await run(true);
    t.same(
      inBuckets.firstSummedInCompute,
      [true, true, true],
      'every rank had bucket 0 summed before its compute ended',
    );
    t.same(inBuckets.early, [5, 5, 5], 'each rank reports the 5 buckets it handed over during compute');
    t.same(whole.early, [0, 0, 0]);
    t.ok(
      inBuckets.bufs.every((b, rank) => same(b, whole.bufs[rank]!)),
      `${buckets.length} buckets: every rank has the bits of the whole-buffer all-reduce`,
    );
    t.ok(
      whole.bufs.every((b) => same(b, whole.bufs[0]!)),
      'all ranks agree',
    );
    // the statistics and metrics after the gradients are summed in float32 on any wire
    const rest = whole.bufs[0]!.subarray(GRADS);
    const exact = Float32Array.from({ length: REST }, (_, i) => data.reduce((s, d) => s + d[GRADS + i]!, 0));
    t.ok(
      rest.every((v, i) => Math.abs(v - exact[i]!) < 1e-6),
      'statistics and metrics: float32 sums',
    );
  });
}

t.test('a compute that fails after handing over a bucket fails the step', async (t) => {
  const links = await wsRing(N, { jobId: 'gradient-reduce' });
  t.teardown(() => links.forEach((l) => l.close()));
  const buckets = reverseBuckets(GRADS, 100_000);
  const results = await Promise.allSettled(
    data.map((d, rank) =>
      computeAndReduce(
        createRingBuffer(GRADS + REST),
        GRADS,
        async (stream) => {
          stream!.landed(0);
          await new Promise((r) => setImmediate(r));
          throw new Error(`rank ${rank}: the GPU read-back failed`);
        },
        ringOf(rank, links[rank]!, 'fp32'),
        buckets,
      ),
    ),
  );
  t.same(
    results.map((r) => (r.status === 'rejected' ? (r.reason as Error).message : 'resolved')),
    [0, 1, 2].map((rank) => `rank ${rank}: the GPU read-back failed`),
  );
});

t.test('buckets over a real layout: parameter boundaries, last layers first, the whole gradient region', async (t) => {
  const layout = new ParamLayout(resnet50Spec({ flavour: 'mindspore', width: 8, numClasses: 2 }));
  for (const freeze of ['none', 'backbone'] as const) {
    const reduce = new ReduceLayout(layout, freeze, 'train');
    const elems = Math.ceil(layout.paramCount / 7);
    const buckets = reduce.gradientBuckets(elems);
    t.equal(
      reduce.gradientBuckets(elems),
      buckets,
      `${freeze}: the same array at every step (a webgpu replica's plan)`,
    );
    const starts = new Set(layout.trainableFor(freeze).map((s) => s.offset - reduce.gradBegin));
    t.equal(buckets[0]!.end, reduce.statsOffset, `${freeze}: the first bucket ends the gradient region`);
    t.equal(buckets.at(-1)!.begin, 0, `${freeze}: the last one starts it`);
    t.ok(
      buckets.every((b, k) => k === 0 || b.end === buckets[k - 1]!.begin),
      `${freeze}: ${buckets.length} buckets, contiguous, from the end`,
    );
    t.ok(
      buckets.every((b) => starts.has(b.begin)),
      `${freeze}: each starts at a parameter`,
    );
  }
});
