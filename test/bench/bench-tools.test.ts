// The benchmark tooling: `wolfpack bench allreduce` prints median time, algbw and busbw; the all-reduce
// curve draws as a PNG with both systems' series; the machine record and the spread of repeats.
import t from 'tap';
import sharp from 'sharp';
import { curveSvg, type CurveResult } from '../../bench/allreduce-compare.js';
import { machineInfo, median, spread } from '../../bench/machine.js';
import { runCli } from '../helpers/processes.js';

t.test('bench allreduce prints median time, algbw and busbw, and --json the same figures', async (t) => {
  const text = await runCli(
    ['bench', 'allreduce', '--workers', '2', '--elements', '4098', '--reps', '3', '--warmup', '1'],
    60_000,
  );
  t.equal(text.code, 0, text.stderr.slice(-500));
  t.match(
    text.stdout,
    /N=2 4,098 floats .*median [\d.]+ ms over \d+ reps, algbw [\d.]+ MB\/s, busbw [\d.]+ MB\/s, verified true/,
  );
  const json = await runCli(
    ['bench', 'allreduce', '--workers', '3', '--elements', '100000', '--reps', '2', '--warmup', '0', '--json'],
    60_000,
  );
  t.equal(json.code, 0, json.stderr.slice(-500));
  const r = JSON.parse(json.stdout) as {
    procs: number;
    median_s: number;
    algbw_MBps: number;
    busbw_MBps: number;
    verified: boolean;
  };
  t.equal(r.procs, 3);
  t.ok(r.median_s > 0 && r.verified);
  t.ok(Math.abs(r.busbw_MBps - (r.algbw_MBps * 4) / 3) < 1e-6 * r.busbw_MBps, 'busbw = algbw * 2(N-1)/N');
});

t.test('the curve plot has a line per system and N, and rasterises', async (t) => {
  const c: CurveResult = {
    procs: [2, 4],
    sizes: [1024, 4096],
    gloo_command: 'x',
    quiet: { busy_before: 0, load1: 0, waited_s: 0, quiet: true },
    points: [2, 4].flatMap((n) =>
      [1024, 4096].map((e) => ({
        procs: n,
        elems: e,
        bytes: e * 4,
        wolfpack_s: 1e-4,
        wolfpack_busbw_MBps: e / 100,
        gloo_s: 2e-4,
        gloo_busbw_MBps: e / 200,
      })),
    ),
  };
  const svg = curveSvg(c);
  t.equal((svg.match(/<polyline /g) ?? []).length, 4, 'wolfpack and Gloo for N=2 and N=4');
  t.match(svg, /Gloo N=4/);
  const meta = await sharp(await sharp(Buffer.from(svg)).png().toBuffer()).metadata();
  t.equal(meta.format, 'png');
});

t.test('machine record and spread', async (t) => {
  const m = machineInfo();
  t.ok(m.cores >= 1 && m.cpu_model.length > 0);
  t.equal(median([3, 1, 2]), 2);
  t.equal(median([4, 1, 2, 3]), 2.5);
  t.equal(spread([90, 100, 110]), 0.2);
});
