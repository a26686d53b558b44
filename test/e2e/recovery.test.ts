// What a recovery must keep: the weights of the uninterrupted run and every sample of every epoch
// counted once (metrics.jsonl `samples`). A worker killed while a step is in flight and the next one
// already sent: the survivors must not run that next step without a ring (each would apply its own
// share of the gradient alone), and their answers to the abort must not be taken for late step
// replies (which evicted them all). Every worker killed mid-epoch and fresh ones started: with nobody
// holding the epoch's progress, it restarts from the coordinator's copy (the ring used to be re-formed
// from a fresh worker's blank state). The head alone trains (--freeze backbone --bn frozen), so runs
// that split batches differently stay within rounding of each other (bench/chaos.ts says why).
// Each fault is made while the coordinator holds after a step (--hold-at, test/helpers/hold.ts).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { Hold } from '../helpers/hold.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { exited, Output, runCli, startCli, startCluster } from '../helpers/processes.js';
import { makeTinyJob, type TinyJob } from '../helpers/tiny-job.js';

// Three training runs: on a loaded machine they may take longer than tap's 300 s a file.
t.setTimeout(900_000);

const EPOCHS = 3;
const BATCH = 6;

function jobArgs(job: TinyJob, out: string, extra: string[] = []): string[] {
  return [
    '--data',
    job.data,
    '--weights',
    job.weights,
    '--epochs',
    String(EPOCHS),
    '--batch-size',
    String(BATCH),
    '--image-size',
    '32',
    '--out',
    out,
    '--backend',
    'wasm',
    '--lr',
    '0.01',
    '--freeze',
    'backbone',
    '--bn',
    'frozen',
    '--timeout',
    '4',
    '--log-level',
    'debug',
    ...extra,
  ];
}

function metrics(out: string): { epoch: number; samples?: number }[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { epoch: number; samples?: number });
}

t.test('recoveries keep the uninterrupted weights and count every sample once', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const perEpoch = Math.floor(60 / BATCH) * BATCH;
  const ref = join(job.dir, 'uninterrupted');
  const a = await runCli(['train', '--workers', '2', ...jobArgs(job, ref)], 300_000);
  t.equal(a.code, 0, `the uninterrupted run finishes${a.code ? `: ${a.stderr.slice(-1500)}` : ''}`);
  t.same(
    metrics(ref).map((m) => m.samples),
    [perEpoch, perEpoch, perEpoch],
    'the uninterrupted run counts steps x batch samples an epoch',
  );
  const want = await readCkptFloats(join(ref, 'last.ckpt'));

  const check = async (t: Test, out: string, co: Output, coord: ReturnType<typeof startCli>) => {
    t.equal(
      await exited(coord, 300_000),
      0,
      `the coordinator finishes${coord.exitCode ? `: ${co.text.slice(-2000)}` : ''}`,
    );
    t.same(
      metrics(out).map((m) => m.samples),
      [perEpoch, perEpoch, perEpoch],
      'every epoch counts its samples once',
    );
    const worst = worstTensorRelDiff(await readCkptFloats(join(out, 'last.ckpt')), want);
    t.ok(
      worst <= 1e-5,
      `weights and momentum vs the uninterrupted run: max rel diff ${worst.toExponential(2)} <= 1e-5`,
    );
  };

  await t.test('a worker killed with a step in flight and the next one sent', async (t) => {
    const out = join(job.dir, 'killed');
    const hold = new Hold(job.dir, 'hold-killed');
    const { coord, co, workers } = await startCluster(t, jobArgs(job, out, hold.args('1:3')), 3);
    await hold.reached(co, 'epoch 1 step 3');
    workers[1]!.kill('SIGKILL');
    await exited(workers[1]!, 30_000);
    hold.release();
    await check(t, out, co, coord);
    t.match(co.text, /ring will be re-formed/);
    t.notMatch(co.text, /worker lost while aborting/, 'no survivor is lost while answering the abort');
  });

  await t.test(
    'every worker killed mid-epoch, fresh ones started: the epoch restarts from the coordinator',
    async (t) => {
      const out = join(job.dir, 'all-lost');
      const hold = new Hold(job.dir, 'hold-all-lost');
      const { coord, co, workers, startWorker } = await startCluster(t, jobArgs(job, out, hold.args('2:4')), 2);
      await hold.reached(co, 'epoch 2 step 4');
      for (const w of [...workers]) w.kill('SIGKILL');
      for (const w of [...workers]) await exited(w, 30_000);
      hold.release();
      await co.waitFor(/"have":0,"need":1,"msg":"waiting for workers to \(re\)join"/, 120_000);
      startWorker();
      startWorker();
      // Epoch 2 starts over, so the run comes to its hold point a second time.
      await co.waitFor(
        /"msg":"holding at epoch 2 step 4 until [\s\S]*"msg":"holding at epoch 2 step 4 until /,
        180_000,
      );
      hold.release();
      await check(t, out, co, coord);
      t.match(
        co.text,
        /"resumeAtStep":10,"epoch":2,[^\n]*"msg":"ring will be re-formed/,
        'training goes on from the start of epoch 2',
      );
      t.match(
        co.text.slice(co.text.indexOf('waiting for workers to (re)join')),
        /"from":"coordinator","msg":"ring formed"/,
        'the ring gets the state from the coordinator, not from a fresh worker',
      );
    },
  );
});
