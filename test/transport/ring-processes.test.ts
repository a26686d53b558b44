// The WebSocket ring with real processes: N = 2..4 node processes (the dist build of
// bench/allreduce-rank.ts) on 127.0.0.1, seeded random inputs, results checked against a float64 sum
// here and in every rank, bitwise identity across ranks, and the bytes each rank sent.
// Needs the build: npx tsc -p tsconfig.build.json (npm test builds first).
import t from 'tap';
import { existsSync } from 'node:fs';
import { runAllreduceBench, runRawTcpBench } from '../../bench/allreduce.js';
import { benchValue } from '../../bench/allreduce-rank.js';
import { ringBytesSent } from '../../shared/allreduce/ring.js';
import { distPath } from '../../shared/paths.js';

if (!existsSync(distPath('bench/allreduce-rank.js'))) {
  t.fail('dist/bench/allreduce-rank.js is missing: run npx tsc -p tsconfig.build.json first');
} else {
  const cases: Array<{ n: number; elements: number; buffer: 'ring' | 'plain'; chunkElems?: number }> = [
    { n: 2, elements: 100_003, buffer: 'ring', chunkElems: 10_000 },
    { n: 2, elements: 100_003, buffer: 'plain', chunkElems: 10_000 },
    { n: 3, elements: 100_003, buffer: 'ring', chunkElems: 7_919 },
    { n: 3, elements: 65_537, buffer: 'plain' },
    { n: 4, elements: 100_003, buffer: 'ring', chunkElems: 10_000 },
    { n: 4, elements: 3, buffer: 'ring' }, // fewer elements than ranks
  ];
  for (const c of cases) {
    t.test(`N=${c.n}, ${c.elements} floats, ${c.buffer} buffer, chunk ${c.chunkElems ?? 'default'}`, async (tt) => {
      const seed = 1000 + c.n;
      const r = await runAllreduceBench({
        workers: c.n,
        elements: c.elements,
        reps: 1,
        repsSmall: 1,
        warmup: 1,
        fill: 'random',
        seed,
        buffer: c.buffer,
        timeoutMs: 25_000,
        ...(c.chunkElems !== undefined ? { chunkElems: c.chunkElems } : {}),
      });
      tt.equal(r.procs, c.n);
      tt.ok(r.verified, 'every rank matched its float64 sum and all ranks are bitwise identical');
      const hashes = new Set(r.ranks.map((x) => x.sha256));
      tt.equal(hashes.size, 1, 'one result hash across ranks');
      for (const rk of r.ranks) {
        tt.ok(rk.ok, `rank ${rk.rank}: ${rk.first_bad ?? 'ok'}`);
        tt.equal(
          rk.bytes_sent,
          ringBytesSent(c.elements, c.n, rk.rank),
          `rank ${rk.rank} sent the ring's share of bytes`,
        );
      }
      // our own check of some elements, from the inputs' definition
      const r0 = r.ranks[0]!;
      for (let k = 0; k < r0.sample_idx.length; k++) {
        const i = r0.sample_idx[k]!;
        let sum = 0;
        let mag = 0;
        for (let rank = 0; rank < c.n; rank++) {
          const v = benchValue(seed, rank, i);
          sum += v;
          mag += Math.abs(v);
        }
        const err = Math.abs(r0.sample_val[k]! - sum);
        if (err > (c.n - 1) * 2 ** -24 * mag) tt.fail(`element ${i}: ${r0.sample_val[k]} vs float64 sum ${sum}`);
      }
      tt.ok(r.median_s > 0 && Number.isFinite(r.busbw_MBps), 'timing figures');
      tt.equal(r.busbw_Bps, (r.algbw_Bps * 2 * (c.n - 1)) / c.n, 'busbw = algbw * 2(N-1)/N');
    });
  }

  t.test('constant fill (the Gloo peer measurement) with default settings', async (tt) => {
    const r = await runAllreduceBench({
      workers: 2,
      elements: 4098,
      reps: 3,
      repsSmall: 3,
      warmup: 1,
      timeoutMs: 20_000,
    });
    tt.ok(r.verified, 'N(N+1)/2 everywhere');
    tt.equal(r.times_s.length, 3);
    tt.equal(r.bench, 'wolfpack_ws_ring_allreduce');
  });

  t.test('raw TCP baseline runs', async (tt) => {
    const r = await runRawTcpBench(8 << 20, { timeoutMs: 20_000 });
    tt.equal(r.bytes, 8 << 20);
    tt.ok(r.MBps > 0, `${r.MBps.toFixed(0)} MB/s`);
  });

  t.test('bad options', async (tt) => {
    await tt.rejects(runAllreduceBench({ workers: 0, elements: 10 }), { code: 'E_USAGE' });
    await tt.rejects(runAllreduceBench({ workers: 2, elements: -1 }), { code: 'E_USAGE' });
  });
}
