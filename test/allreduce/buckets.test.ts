// Bucketed all-reduce: the same bits as one all-reduce of the whole buffer (each element summed over the
// ranks in the same order), for several world sizes, bucket sizes and random delivery orders; exactly
// the bytes of the whole-buffer ring in total; bucket k starts only once it is ready; reverse buckets
// follow layer boundaries. (The memory rings deliver with delays: delivered synchronously, a rank could
// forward inside the callback that consumes its neighbour's zero-copy view, which no real link does.)
import t from 'tap';
import { bucketedAllReduce, reverseBuckets, type Bucket } from '../../shared/allreduce/buckets.js';
import { createMemoryRing } from '../../shared/transport/memory-link.js';
import { createRingBuffer, ringAllReduce, ringBytesSent } from '../../shared/allreduce/ring.js';
import { xorshiftRng } from '../helpers/numerics.js';

function inputs(n: number, len: number, seed: number, ringBuffers: boolean): Float32Array[] {
  const r = xorshiftRng(seed);
  return Array.from({ length: n }, () => {
    const a = ringBuffers ? createRingBuffer(len, { maxChunkElems: 64 }) : new Float32Array(len);
    // Mixed magnitudes, so the order of summation shows in the last bits.
    for (let i = 0; i < len; i++) a[i] = (r() * 2 - 1) * (r() < 0.2 ? 1e4 : 1e-2);
    return a;
  });
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

t.test('bucket by bucket gives the bits of one whole-buffer all-reduce', async (t) => {
  for (const n of [2, 3, 4, 5]) {
    for (const [len, bucketElems] of [
      [1000, 100],
      [1000, 333],
      [997, 1000],
      [50, 7],
    ] as const) {
      for (const simd of [false, true]) {
        const whole = inputs(n, len, n * 100 + len, simd);
        const bucketed = whole.map((a) => {
          const c = simd ? createRingBuffer(len, { maxChunkElems: 64 }) : new Float32Array(len);
          c.set(a);
          return c;
        });
        const ref = createMemoryRing(n, { delays: { seed: 1 } });
        await Promise.all(whole.map((b, r) => ringAllReduce(b, r, n, ref[r]!, { chunkElems: 64 })));
        const links = createMemoryRing(n, { delays: { seed: len + n }, reorder: true });
        const buckets = reverseBuckets(len, bucketElems);
        const stats = await Promise.all(
          bucketed.map((b, r) => bucketedAllReduce(b, r, n, links[r]!, { buckets, chunkElems: 64, step: 5 })),
        );
        for (let r = 0; r < n; r++) {
          t.ok(
            sameBits(bucketed[r]!, whole[r]!),
            `N=${n}, ${len} floats in ${buckets.length} buckets${simd ? ', SIMD' : ''}: ` +
              `rank ${r} has the whole-buffer bits`,
          );
          t.equal(stats[r]!.bytesSent, ringBytesSent(len, n, r), `rank ${r} sends exactly the whole ring's bytes`);
        }
      }
    }
  }
});

t.test('a bucket is reduced only once it is ready, in order', async (t) => {
  const n = 3;
  const len = 300;
  const bufs = inputs(n, len, 1, false);
  const links = createMemoryRing(n, { delays: { seed: 2 } });
  const buckets = reverseBuckets(len, 100);
  const released: number[] = [];
  const gates = buckets.map(() => {
    let open!: () => void;
    const p = new Promise<void>((r) => {
      open = r;
    });
    return { p, open };
  });
  const done = Promise.all(
    bufs.map((b, r) => bucketedAllReduce(b, r, n, links[r]!, { buckets, ready: (k) => gates[k]!.p, step: 0 })),
  );
  const untouched = bufs[0]!.slice();
  await new Promise((r) => setImmediate(r));
  t.ok(sameBits(bufs[0]!, untouched), 'nothing is summed before the first bucket is ready');
  gates[0]!.open();
  released.push(0);
  await new Promise((r) => setTimeout(r, 20));
  t.notOk(
    sameBits(bufs[0]!.subarray(200, 300), untouched.subarray(200, 300)),
    'bucket 0 (the end of the buffer) is reduced once ready',
  );
  t.ok(sameBits(bufs[0]!.subarray(0, 200), untouched.subarray(0, 200)), 'the buckets not yet ready are untouched');
  gates[1]!.open();
  gates[2]!.open();
  await done;
  t.notOk(sameBits(bufs[0]!.subarray(0, 100), untouched.subarray(0, 100)), 'then the rest');
});

t.test('reverse buckets: from the end, at most maxElems, ending on layer boundaries', async (t) => {
  t.same(reverseBuckets(10, 4), [
    { begin: 6, end: 10 },
    { begin: 2, end: 6 },
    { begin: 0, end: 2 },
  ]);
  const layers = [0, 3, 5, 9, 10];
  const b: Bucket[] = reverseBuckets(12, 4, layers);
  t.same(b, [
    { begin: 9, end: 12 },
    { begin: 5, end: 9 },
    { begin: 3, end: 5 },
    { begin: 0, end: 3 },
  ]);
  t.same(
    reverseBuckets(12, 2, [0, 8]),
    [
      { begin: 8, end: 12 },
      { begin: 0, end: 8 },
    ],
    'a layer larger than a bucket is a bucket of its own',
  );
  t.throws(() => reverseBuckets(10, 0), { code: 'E_USAGE' });
});

t.test('buckets that do not cover the buffer are refused', async (t) => {
  const l = createMemoryRing(1)[0]!;
  await t.rejects(bucketedAllReduce(new Float32Array(10), 0, 1, l, { buckets: [{ begin: 0, end: 5 }] }), {
    code: 'E_USAGE',
    message: /end at 5/,
  });
  await t.rejects(
    bucketedAllReduce(new Float32Array(10), 0, 1, l, {
      buckets: [
        { begin: 0, end: 6 },
        { begin: 5, end: 10 },
      ],
    }),
    { code: 'E_USAGE' },
  );
});

t.test('buckets in flight at once give the bits of one at a time, whatever the readiness order', async (t) => {
  for (const [n, inflight] of [
    [2, 2],
    [3, 3],
    [4, 2],
    [4, 4],
  ] as const) {
    for (const wire of ['fp32', 'bf16'] as const) {
      for (const simd of [false, true]) {
        const len = 5003;
        const orig = inputs(n, len, n * 7 + (simd ? 1 : 0), false);
        const copies = (): Float32Array[] =>
          orig.map((a) => {
            const c = simd ? createRingBuffer(len, { maxChunkElems: 64 }) : new Float32Array(len);
            c.set(a);
            return c;
          });
        const one = copies();
        const two = copies();
        const buckets = reverseBuckets(len, 700);
        const refLinks = createMemoryRing(n, { delays: { seed: 3 } });
        await Promise.all(
          one.map((b, r) => bucketedAllReduce(b, r, n, refLinks[r]!, { buckets, chunkElems: 64, step: 1, wire })),
        );
        // readiness at random moments, different on every rank, so buckets overlap in ever new ways
        const links = createMemoryRing(n, { delays: { seed: n + 11 }, reorder: true });
        const stats = await Promise.all(
          two.map((b, r) => {
            const rnd = xorshiftRng(100 * n + r);
            return bucketedAllReduce(b, r, n, links[r]!, {
              buckets,
              chunkElems: 64,
              step: 1,
              wire,
              inflight,
              ready: () => sleep(Math.floor(rnd() * 4)),
            });
          }),
        );
        t.ok(
          two.every((b, r) => sameBits(b, one[r]!)),
          `N=${n} ${wire}${simd ? ' SIMD' : ''}: ${buckets.length} buckets, ` +
            `${inflight} in flight: the same bits on every rank`,
        );
        if (wire === 'fp32')
          t.ok(
            stats.every((s, r) => s.bytesSent === ringBytesSent(len, n, r)),
            'and exactly the whole ring bytes',
          );
      }
    }
  }
});

t.test('inflight other than 1 or 2 is refused', async (t) => {
  const l = createMemoryRing(1)[0]!;
  await t.rejects(bucketedAllReduce(new Float32Array(4), 0, 1, l, { buckets: [{ begin: 0, end: 4 }], inflight: 5 }), {
    code: 'E_USAGE',
    message: /inflight must be an integer from 1 to 4/,
  });
});

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
