// The data plan: every epoch's batches are a permutation's consecutive slices (the remainder dropped),
// the rank shares of a batch partition it in order with sizes differing by at most one, and so every
// sample trains at most once an epoch, exactly once unless it falls in the dropped remainder, whatever
// the number of workers.
import t from 'tap';
import { epochBatches, rankShare, shareSizes, stepsPerEpoch } from '../../coordinator/data-plan.js';

t.test('share sizes: the first total % world ranks get one more, and they add up', async (t) => {
  t.same(shareSizes(10, 3), [4, 3, 3]);
  t.same(shareSizes(6, 3), [2, 2, 2]);
  t.same(shareSizes(2, 3), [1, 1, 0]);
  t.same(shareSizes(0, 2), [0, 0]);
  for (let total = 0; total <= 40; total++) {
    for (let world = 1; world <= 9; world++) {
      const s = shareSizes(total, world);
      t.equal(
        s.reduce((a, b) => a + b, 0),
        total,
      );
      t.ok(Math.max(...s) - Math.min(...s) <= 1);
    }
  }
});

t.test(
  'epoch batches: whole batches of a permutation, the remainder dropped, a pure function of seed and epoch',
  async (t) => {
    const samples = 103;
    const B = 10;
    const batches = epochBatches(samples, B, 7, 2);
    t.equal(batches.length, 10);
    t.equal(stepsPerEpoch(samples, B), 10);
    const seen = new Set<number>();
    for (const b of batches) {
      t.equal(b.length, B);
      for (const i of b) {
        t.ok(i < samples && !seen.has(i), `sample ${i} appears once`);
        seen.add(i);
      }
    }
    t.equal(seen.size, 100, 'all but the 3 dropped samples train');
    t.same(
      epochBatches(samples, B, 7, 2).map((b) => [...b]),
      batches.map((b) => [...b]),
      'the same seed and epoch give the same plan',
    );
    t.notSame(
      epochBatches(samples, B, 7, 3).map((b) => [...b]),
      batches.map((b) => [...b]),
      'another epoch is shuffled differently',
    );
    t.notSame(
      epochBatches(samples, B, 8, 2).map((b) => [...b]),
      batches.map((b) => [...b]),
      'another seed is shuffled differently',
    );
    t.same(epochBatches(5, 6, 0, 0), [], 'fewer samples than a batch: no step');
  },
);

t.test('rank shares partition each batch in order, for any number of workers', async (t) => {
  const batches = epochBatches(60, 7, 1, 0);
  for (let world = 1; world <= 8; world++) {
    for (const b of batches) {
      const joined = Array.from({ length: world }, (_, r) => rankShare(b, world, r)).flat();
      t.same(joined, [...b], `world ${world}: the shares, concatenated, are the batch`);
    }
  }
  t.same(rankShare([10, 11, 12, 13, 14], 2, 0), [10, 11, 12]);
  t.same(rankShare([10, 11, 12, 13, 14], 2, 1), [13, 14]);
});
