// Buckets in flight at once over the real WebSocket ring (one process, loopback): with the link unordered, the
// messages of three all-reduces interleave on each connection and are matched by tag, and the result is the
// bits of the buckets reduced one at a time, on ring buffers (WebSocket receives into the SIMD slot pairs),
// in fp32 and bf16.
import t from 'tap';
import { bucketedAllReduce, reverseBuckets } from '../../shared/allreduce/buckets.js';
import { createRingBuffer } from '../../shared/allreduce/ring.js';
import { wsRing } from '../helpers/ws-ring.js';
import { xorshiftRng } from '../helpers/numerics.js';

const same = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

for (const wire of ['fp32', 'bf16'] as const) {
  t.test(`N=3, ${wire}: 3 buckets in flight on an unordered WebSocket ring = 1 at a time`, async (t) => {
    const n = 3;
    const len = 1_000_003;
    const r = xorshiftRng(5);
    const orig = Array.from({ length: n }, () => Float32Array.from({ length: len }, () => r() * 2 - 1));
    const buckets = reverseBuckets(len, 150_000);
    const results: Float32Array[][] = [];
    for (const [inflight, ordered] of [
      [1, true],
      [3, false],
    ] as const) {
      const links = await wsRing(n, { ordered, jobId: 'buckets-ws' });
      t.teardown(() => links.forEach((l) => l.close()));
      const bufs = orig.map((a) => {
        const b = createRingBuffer(len, { maxChunkElems: 1 << 16 });
        b.set(a);
        return b;
      });
      await Promise.all(
        bufs.map((b, rank) =>
          bucketedAllReduce(b, rank, n, links[rank]!, { buckets, chunkElems: 1 << 16, wire, inflight }),
        ),
      );
      results.push(bufs);
      for (const l of links) l.close();
    }
    const [one, two] = results as [Float32Array[], Float32Array[]];
    t.ok(
      two.every((b, rank) => same(b, one[rank]!)),
      `${buckets.length} buckets: every rank has the same bits both ways`,
    );
    t.ok(
      two.every((b) => same(b, two[0]!)),
      'and all ranks agree',
    );
  });
}
