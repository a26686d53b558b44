// The counter-based rng: same inputs give the same numbers anywhere, neighbouring (epoch, index)
// streams look unrelated, draws are uniform, and the epoch permutation is a real, repeatable shuffle.
import t from 'tap';
import { epochPermutation, sampleRng, STREAM } from '../../shared/data/rng.js';

const draws = (rng: { next(): number }, n: number): number[] => Array.from({ length: n }, () => rng.next());

function correlation(x: number[], y: number[]): number {
  const n = x.length;
  const mx = x.reduce((a, b) => a + b, 0) / n;
  const my = y.reduce((a, b) => a + b, 0) / n;
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < n; i++) {
    sxy += (x[i]! - mx) * (y[i]! - my);
    sxx += (x[i]! - mx) ** 2;
    syy += (y[i]! - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

// Pearson chi-square of values in [0, 1) over `bins` equal bins.
function chiSquare(values: number[], bins: number): number {
  const counts = new Array<number>(bins).fill(0);
  for (const v of values) {
    const bin = Math.floor(v * bins);
    counts[bin] = counts[bin]! + 1;
  }
  const expected = values.length / bins;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}

t.test('a sample rng is a pure function of (seed, epoch, index, stream)', async (t) => {
  t.same(draws(sampleRng(7, 3, 11), 50), draws(sampleRng(7, 3, 11), 50));
  const base = draws(sampleRng(7, 3, 11), 8);
  t.notSame(draws(sampleRng(8, 3, 11), 8), base, 'seed matters');
  t.notSame(draws(sampleRng(7, 4, 11), 8), base, 'epoch matters');
  t.notSame(draws(sampleRng(7, 3, 12), 8), base, 'index matters');
  t.notSame(draws(sampleRng(7, 3, 11, STREAM.PERMUTATION), 8), base, 'stream matters');
  // Large and negative integers are keys too: the high words count.
  t.notSame(draws(sampleRng(2 ** 40, 0, 0), 4), draws(sampleRng(0, 0, 0), 4));
  t.notSame(draws(sampleRng(-1, 0, 0), 4), draws(sampleRng(2 ** 32 - 1, 0, 0), 4));
  // Known values pin the algorithm: a change here changes every augmentation ever drawn.
  t.same(
    draws(sampleRng(0, 0, 0), 4).map((v) => v.toFixed(12)),
    ['0.750483332642', '0.827562307234', '0.883223287741', '0.689976810513'],
    'first draws of (0, 0, 0)',
  );
});

t.test('draws are in [0, 1) with more than 32 bits of resolution, and uniform', async (t) => {
  const xs = draws(sampleRng(1, 2, 3), 20000);
  t.ok(
    xs.every((v) => v >= 0 && v < 1),
    'all in [0, 1)',
  );
  t.ok(
    xs.some((v) => !Number.isInteger(v * 2 ** 32)),
    'finer than 2^-32',
  );
  const chi = chiSquare(xs, 20);
  t.ok(chi < 45, `one stream, 20 bins: chi-square ${chi.toFixed(1)} (df 19, p = 0.001 at 43.8)`);
  const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
  t.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean.toFixed(4)}`);
  const rng = sampleRng(1, 2, 4);
  for (let i = 0; i < 1000; i++) {
    const u = rng.uniform(-3, 5);
    if (u < -3 || u >= 5) t.fail(`uniform(-3, 5) gave ${u}`);
    const k = rng.below(6);
    if (!Number.isInteger(k) || k < 0 || k >= 6) t.fail(`below(6) gave ${k}`);
  }
});

t.test('neighbouring streams are independent', async (t) => {
  // The first draw of consecutive sample indices, and of consecutive epochs, as the pipeline uses them.
  const n = 20000;
  const byIndex = Array.from({ length: n + 1 }, (_, i) => sampleRng(0, 0, i).next());
  const byEpoch = Array.from({ length: n + 1 }, (_, e) => sampleRng(0, e, 5).next());
  t.ok(chiSquare(byIndex, 20) < 45, 'first draws across indices are uniform');
  t.ok(chiSquare(byEpoch, 20) < 45, 'first draws across epochs are uniform');
  const limit = 4 / Math.sqrt(n);
  const r1 = correlation(byIndex.slice(0, n), byIndex.slice(1));
  const r2 = correlation(byEpoch.slice(0, n), byEpoch.slice(1));
  const r3 = correlation(byIndex.slice(0, n), byEpoch.slice(0, n));
  t.ok(Math.abs(r1) < limit, `index i vs i+1: r = ${r1.toFixed(4)}`);
  t.ok(Math.abs(r2) < limit, `epoch e vs e+1: r = ${r2.toFixed(4)}`);
  t.ok(Math.abs(r3) < limit, `index vs epoch streams: r = ${r3.toFixed(4)}`);
  // Successive draws within one stream.
  const xs = draws(sampleRng(0, 0, 0), n + 1);
  const r4 = correlation(xs.slice(0, n), xs.slice(1));
  t.ok(Math.abs(r4) < limit, `draw k vs k+1: r = ${r4.toFixed(4)}`);
});

t.test('bad keys are usage errors', async (t) => {
  t.throws(() => sampleRng(0.5, 0, 0), { code: 'E_USAGE' });
  t.throws(() => sampleRng(0, Number.NaN, 0), { code: 'E_USAGE' });
  t.throws(() => epochPermutation(0, 0, -1), { code: 'E_USAGE' });
});

t.test('epochPermutation is a repeatable shuffle', async (t) => {
  const p = epochPermutation(3, 1, 1000);
  t.equal(p.length, 1000);
  t.same(
    [...p].sort((a, b) => a - b),
    Array.from({ length: 1000 }, (_, i) => i),
    'every index exactly once',
  );
  t.same(epochPermutation(3, 1, 1000), p, 'deterministic');
  t.notSame(epochPermutation(3, 2, 1000), p, 'another epoch, another order');
  t.notSame(epochPermutation(4, 1, 1000), p, 'another seed, another order');
  t.same(epochPermutation(0, 0, 0), new Uint32Array(0));
  t.same(epochPermutation(0, 0, 1), new Uint32Array([0]));
  // Where item 0 lands over many epochs: uniform over 10 positions.
  const landing = Array.from({ length: 5000 }, (_, e) => epochPermutation(9, e, 10).indexOf(0) / 10);
  const chi = chiSquare(landing, 10);
  t.ok(chi < 30, `item 0's position over 5000 epochs: chi-square ${chi.toFixed(1)} (df 9)`);
});
