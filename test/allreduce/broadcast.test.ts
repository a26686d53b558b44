// Chain broadcast over in-memory links: every rank ends with rank 0's buffer bit for bit, for several
// world sizes, chunk sizes and random delivery orders; each rank but the last forwards the buffer
// exactly once, and it shares the collective numbering (tags) with the all-reduce without mixing.
import t from 'tap';
import { chainBroadcast } from '../../shared/allreduce/broadcast.js';
import type { Link } from '../../shared/allreduce/link.js';
import { createMemoryRing } from '../../shared/transport/memory-link.js';
import { ringAllReduce } from '../../shared/allreduce/ring.js';
import { xorshiftRng } from '../helpers/numerics.js';

function randomBuffer(len: number, seed: number): Float32Array {
  const r = xorshiftRng(seed);
  return Float32Array.from({ length: len }, () => (r() * 2 - 1) * 1e3);
}

/** Wraps a link to count the float32 values it sends. */
function counting(link: Link): { link: Link; sent: () => number } {
  let n = 0;
  return {
    link: {
      send: (tag, data) => {
        n += data.length;
        return link.send(tag, data);
      },
      recv: (tag, count, into) => link.recv(tag, count, into),
      close: () => link.close(),
    },
    sent: () => n,
  };
}

t.test('every rank ends with the root buffer, bit for bit', async (t) => {
  for (const world of [2, 3, 5]) {
    for (const [len, chunk] of [
      [1, 4],
      [1000, 64],
      [1000, 1000],
      [1001, 100],
      [7, 3],
    ] as const) {
      const root = randomBuffer(len, world * 31 + len);
      const bufs = Array.from({ length: world }, (_, r) =>
        r === 0 ? root.slice() : new Float32Array(len).fill(Number.NaN),
      );
      const links = createMemoryRing(world, { delays: { seed: len + chunk }, reorder: true }).map(counting);
      await Promise.all(
        bufs.map((b, r) => chainBroadcast(b, r, world, links[r]!.link, { step: 3, chunkElems: chunk })),
      );
      for (let r = 0; r < world; r++) {
        t.ok(
          Buffer.from(bufs[r]!.buffer).equals(Buffer.from(root.buffer)),
          `world ${world}, ${len} floats in chunks of ${chunk}: rank ${r} equals the root`,
        );
        t.equal(
          links[r]!.sent(),
          r < world - 1 ? len : 0,
          `rank ${r} forwards the buffer ${r < world - 1 ? 'once' : 'never (last in the chain)'}`,
        );
      }
    }
  }
});

t.test('a single rank or an empty buffer sends nothing', async (t) => {
  const one = createMemoryRing(1).map(counting)[0]!;
  const b = randomBuffer(10, 1);
  await chainBroadcast(b, 0, 1, one.link, { step: 0 });
  t.equal(one.sent(), 0);
  const two = createMemoryRing(2).map(counting);
  await Promise.all([0, 1].map((r) => chainBroadcast(new Float32Array(0), r, 2, two[r]!.link, { step: 0 })));
  t.equal(two[0]!.sent() + two[1]!.sent(), 0);
});

t.test('a broadcast and an all-reduce on the same links, one collective number each, do not mix', async (t) => {
  const world = 3;
  const links = createMemoryRing(world, { delays: { seed: 9 }, reorder: true });
  const weights = randomBuffer(500, 5);
  const held = Array.from({ length: world }, (_, r) => (r === 0 ? weights.slice() : new Float32Array(500)));
  const grads = Array.from({ length: world }, (_, r) => randomBuffer(300, 100 + r));
  const expected = new Float64Array(300);
  for (const g of grads) for (let i = 0; i < 300; i++) expected[i] = expected[i]! + g[i]!;
  await Promise.all(
    Array.from({ length: world }, async (_, r) => {
      await Promise.all([
        chainBroadcast(held[r]!, r, world, links[r]!, { step: 0, chunkElems: 64 }),
        ringAllReduce(grads[r]!, r, world, links[r]!, { step: 1, chunkElems: 32 }),
      ]);
    }),
  );
  for (let r = 0; r < world; r++) {
    t.ok(Buffer.from(held[r]!.buffer).equals(Buffer.from(weights.buffer)), `rank ${r} got the weights`);
    let worst = 0;
    for (let i = 0; i < 300; i++)
      worst = Math.max(worst, Math.abs(grads[r]![i]! - expected[i]!) / Math.max(1, Math.abs(expected[i]!)));
    t.ok(worst < 1e-5, `rank ${r} has the sum (worst relative error ${worst.toExponential(1)})`);
  }
});
