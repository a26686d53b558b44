// Data parallelism is invisible in the result: one epoch from the same seed on 1, 2 and 3 workers
// (real processes, real sockets, ring all-reduce) gives the same weights, with --bn frozen, full
// fine-tuning and frozen backbone. (With --bn train each replica normalises with its own batch's
// statistics, as DDP without SyncBatchNorm does, so the result depends on the split by design; the
// replicas still stay identical to each other, which every epoch's checksum comparison enforces.)
import { join } from 'node:path';
import t from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

t.test('1, 2 and 3 workers reach the same weights', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  for (const mode of [
    ['--bn', 'frozen'],
    ['--freeze', 'backbone', '--bn', 'frozen'],
  ]) {
    const runs: Map<string, Float32Array>[] = [];
    for (const n of [1, 2, 3]) {
      const out = join(job.dir, `out-${mode.join('')}-${n}`);
      const r = await runCli(['train', '--workers', String(n), ...tinyTrainArgs(job, out, mode)], 120_000);
      t.equal(r.code, 0, `${mode.join(' ')} on ${n} worker(s) exits 0${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`);
      t.match(r.stdout, /End training, the best Accuracy is: [\d.]+, the best Accuracy epoch is 1/);
      runs.push(await readCkptFloats(join(out, 'last.ckpt')));
    }
    const start = await readCkptFloats(job.weights);
    const convs = (m: Map<string, Float32Array>) =>
      new Map([...m].filter(([k]) => k.endsWith('conv1.weight') || k.endsWith('conv2.weight')));
    const moved = worstTensorRelDiff(convs(runs[0]!), convs(start));
    if (mode.includes('backbone')) t.equal(moved, 0, 'the frozen backbone did not move');
    else t.ok(moved > 1e-4, `training moved the backbone (max rel ${moved.toExponential(2)})`);
    for (const n of [2, 3]) {
      const d = worstTensorRelDiff(runs[n - 1]!, runs[0]!);
      t.ok(d <= 1e-5, `${mode.join(' ')}: ${n} workers vs 1, max rel diff ${d.toExponential(2)} <= 1e-5`);
    }
  }
});

t.test('--bn train on 2 workers: replicas stay identical (checksums compared each epoch)', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out-bn-train');
  const r = await runCli(['train', '--workers', '2', ...tinyTrainArgs(job, out, ['--epochs', '2'])], 120_000);
  t.equal(r.code, 0, `exits 0${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`);
  t.notMatch(r.stderr, /E_REPLICA/);
  const start = await readCkptFloats(job.weights);
  const last = await readCkptFloats(join(out, 'last.ckpt'));
  const mean = [...last.keys()].find((k) => k.endsWith('bn1.moving_mean'))!;
  t.ok(
    worstTensorRelDiff(new Map([[mean, last.get(mean)!]]), new Map([[mean, start.get(mean)!]])) > 0,
    'moving statistics were updated',
  );
});
