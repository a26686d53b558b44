// Data parallelism is invisible in the result: one epoch from the same seed on 1, 2 and 3 workers
// (real processes, real sockets, ring all-reduce) gives the same weights, with --bn frozen, full
// fine-tuning and frozen backbone. (With --bn train each replica normalises with its own batch's
// statistics, as DDP without SyncBatchNorm does, so the result depends on the split by design; the
// replicas still stay identical to each other, which every epoch's checksum comparison enforces.)
import { join } from 'node:path';
import t from 'tap';
import { readCkpt } from '../../shared/weights/ckpt.js';
import { toFloat32 } from '../../shared/weights/host-tensor.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

async function weightsOf(file: string): Promise<Map<string, Float32Array>> {
  const m = await readCkpt(file);
  return new Map([...m].map(([k, v]) => [k, toFloat32(v)]));
}

/** Largest |a-b| / max(|b|) over all tensors, per tensor scale. */
function maxRelDiff(a: Map<string, Float32Array>, b: Map<string, Float32Array>): number {
  let worst = 0;
  for (const [name, vb] of b) {
    const va = a.get(name)!;
    let scale = 1e-12;
    let d = 0;
    for (let i = 0; i < vb.length; i++) {
      scale = Math.max(scale, Math.abs(vb[i]));
      d = Math.max(d, Math.abs(va[i] - vb[i]));
    }
    worst = Math.max(worst, d / scale);
  }
  return worst;
}

t.test('1, 2 and 3 workers reach the same weights', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  for (const mode of [['--bn', 'frozen'], ['--freeze', 'backbone', '--bn', 'frozen']]) {
    const runs: Map<string, Float32Array>[] = [];
    for (const n of [1, 2, 3]) {
      const out = join(job.dir, `out-${mode.join('')}-${n}`);
      const r = await runCli(['train', '--workers', String(n), ...tinyTrainArgs(job, out, mode)], 120_000);
      t.equal(r.code, 0, `${mode.join(' ')} on ${n} worker(s) exits 0${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`);
      t.match(r.stdout, /End training, the best Accuracy is: [\d.]+, the best Accuracy epoch is 1/);
      runs.push(await weightsOf(join(out, 'last.ckpt')));
    }
    const start = await weightsOf(job.weights);
    const convs = (m: Map<string, Float32Array>) => new Map([...m].filter(([k]) => k.endsWith('conv1.weight') || k.endsWith('conv2.weight')));
    const moved = maxRelDiff(convs(runs[0]), convs(start));
    if (mode.includes('backbone')) t.equal(moved, 0, 'the frozen backbone did not move');
    else t.ok(moved > 1e-4, `training moved the backbone (max rel ${moved.toExponential(2)})`);
    for (const n of [2, 3]) {
      const d = maxRelDiff(runs[n - 1], runs[0]);
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
  const start = await weightsOf(job.weights);
  const last = await weightsOf(join(out, 'last.ckpt'));
  const mean = [...last.keys()].find((k) => k.endsWith('bn1.moving_mean'))!;
  t.ok(maxRelDiff(new Map([[mean, last.get(mean)!]]), new Map([[mean, start.get(mean)!]])) > 0, 'moving statistics were updated');
});
