// Faults with real processes: a worker killed (-9) or frozen (SIGSTOP) mid-epoch is evicted and the
// run finishes on the survivors with every epoch's metrics; a worker started late joins at a step
// boundary; a killed coordinator resumed with --resume reaches the uninterrupted result; a run whose
// loss is non-finite stops after --max-bad-steps.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { exited, Output, runCli, startCli } from '../helpers/processes.js';
import { makeTinyJob, type TinyJob } from '../helpers/tiny-job.js';

function jobArgs(job: TinyJob, out: string, extra: string[] = []): string[] {
  return ['--data', job.data, '--weights', job.weights, '--batch-size', '6', '--image-size', '32', '--out', out,
    '--backend', 'wasm', '--lr', '0.01', '--bn', 'frozen', '--log-level', 'debug', ...extra];
}

function metrics(out: string): { epoch: number; workers: number }[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { epoch: number; workers: number });
}

/** Coordinator on a fixed free port plus `n` worker processes that the test owns. */
async function cluster(job: TinyJob, out: string, n: number, extra: string[]) {
  const coord = startCli(['coordinator', '--workers', String(n), '--port', '0', ...jobArgs(job, out, extra)]);
  const co = new Output(coord);
  const port = (await co.waitFor(/"port":(\d+).*listening for workers/, 30_000))[1];
  const workers = Array.from({ length: n }, () => startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '60']));
  return { coord, co, port, workers };
}

t.test('a worker killed with SIGKILL mid-epoch: the run finishes on the survivors', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const out = join(job.dir, 'killed');
  const { coord, co, workers } = await cluster(job, out, 3, ['--epochs', '3', '--timeout', '5']);
  t.teardown(() => { for (const w of workers) w.kill('SIGKILL'); coord.kill('SIGKILL'); });
  await co.waitFor(/"epoch":2,"step":2,/, 120_000);
  workers[1].kill('SIGKILL');
  t.equal(await exited(coord, 120_000), 0, 'the coordinator finishes');
  t.match(co.text, /worker lost/);
  t.match(co.text, /ring will be re-formed/);
  t.match(co.text, /End training, the best Accuracy is/);
  const m = metrics(out);
  t.same(m.map((x) => x.epoch), [1, 2, 3], 'every epoch has its metrics');
  t.equal(m[0].workers, 3);
  t.equal(m[2].workers, 2, 'the last epoch ran on the two survivors');
});

t.test('a frozen worker (SIGSTOP) is evicted after --timeout', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const out = join(job.dir, 'stopped');
  const { coord, co, workers } = await cluster(job, out, 3, ['--epochs', '2', '--timeout', '4']);
  t.teardown(() => { for (const w of workers) { w.kill('SIGCONT'); w.kill('SIGKILL'); } coord.kill('SIGKILL'); });
  await co.waitFor(/"epoch":1,"step":3,/, 120_000);
  const stoppedAt = Date.now();
  workers[2].kill('SIGSTOP');
  const lost = await co.waitFor(/"reason":"[^"]*pid (\d+)[^"]*no heartbeat for ([\d.]+) s[^"]*","msg":"worker lost"/, 60_000);
  const waited = (Date.now() - stoppedAt) / 1000;
  // The silence is counted from the last heartbeat received (every 1 s; later on a loaded machine).
  t.equal(Number(lost[1]), workers[2].pid, 'the frozen worker is the one evicted');
  t.ok(Number(lost[2]) >= 4, `evicted after ${lost[2]} s without a heartbeat (--timeout 4 s), ${waited.toFixed(1)} s after SIGSTOP`);
  t.equal(await exited(coord, 120_000), 0, 'the coordinator finishes');
  t.same(metrics(out).map((x) => x.epoch), [1, 2]);
});

t.test('a worker started late joins at a step boundary and gets the state from a peer', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const out = join(job.dir, 'joined');
  const { coord, co, port, workers } = await cluster(job, out, 2, ['--epochs', '3']);
  await co.waitFor(/"epoch":1,"step":2,/, 120_000);
  const late = startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '60']);
  workers.push(late);
  t.teardown(() => { for (const w of workers) w.kill('SIGKILL'); coord.kill('SIGKILL'); });
  t.equal(await exited(coord, 120_000), 0, 'the coordinator finishes');
  t.match(co.text, /workers joined at a step boundary/);
  t.match(co.text, /"from":"rank 0 \(a peer\)"/, 'the re-formed ring got its state from a peer');
  const m = metrics(out);
  t.same(m.map((x) => x.epoch), [1, 2, 3]);
  t.equal(m[2].workers, 3, 'the late worker trains in later epochs');
  t.equal(await exited(late, 30_000), 0, 'the late worker exits cleanly at shutdown');
});

t.test('a killed coordinator resumed with --resume reaches the uninterrupted result', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const ref = join(job.dir, 'uninterrupted');
  const a = await runCli(['train', '--workers', '2', ...jobArgs(job, ref, ['--epochs', '3'])], 180_000);
  t.equal(a.code, 0, 'the uninterrupted run finishes');

  const out = join(job.dir, 'resumed');
  const first = startCli(['train', '--workers', '2', ...jobArgs(job, out, ['--epochs', '3'])]);
  const fo = new Output(first);
  t.teardown(() => first.kill('SIGKILL'));
  await fo.waitFor(/Epoch: 2\/3/, 120_000);
  first.kill('SIGKILL'); // its workers lose their coordinator and exit
  await exited(first, 10_000);
  t.same(metrics(out).map((x) => x.epoch), [1, 2], 'two epochs were saved before the crash');
  const b = await runCli(['train', '--workers', '2', ...jobArgs(job, out, ['--epochs', '3', '--resume', out])], 180_000);
  t.equal(b.code, 0, `the resumed run finishes${b.code ? `: ${b.stderr.slice(-1500)}` : ''}`);
  t.match(b.stderr, /resuming/);
  t.same(metrics(out).map((x) => x.epoch), [1, 2, 3]);
  const worst = worstTensorRelDiff(await readCkptFloats(join(out, 'last.ckpt')), await readCkptFloats(join(ref, 'last.ckpt')));
  t.ok(worst <= 1e-5, `resumed vs uninterrupted weights and momentum: max rel diff ${worst.toExponential(2)} <= 1e-5`);
});

t.test('resume refuses a run directory from a different job', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'r');
  const a = await runCli(['train', '--workers', '1', ...jobArgs(job, out, ['--epochs', '1'])], 120_000);
  t.equal(a.code, 0);
  const b = await runCli(['train', '--workers', '1', ...jobArgs(job, out, ['--epochs', '2', '--resume', out, '--image-size', '40'])], 60_000);
  t.equal(b.code, 1);
  t.match(b.stderr, /--resume .* is from a different job \(image size: saved 32, now 40\)/);
});

t.test('non-finite losses skip the step on every replica, then stop after --max-bad-steps', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'nan');
  const r = await runCli(['train', '--workers', '2', ...jobArgs(job, out, ['--epochs', '1', '--lr', '1e38', '--max-bad-steps', '2'])], 120_000);
  t.equal(r.code, 1);
  t.match(r.stderr, /step skipped on every replica/);
  t.match(r.stderr, /training diverged: 2 steps in a row had a non-finite loss or gradient \(last on rank\(s\) 0, 1\)/);
});
