// Stopping cleanly (coordinator/stop.ts, cli/stop-signals.ts): SIGINT or SIGTERM to `train` (as a
// terminal's Ctrl-C or `docker stop` sends) or to `coordinator` aborts the step in flight, saves the state
// after the last completed step in last.ckpt, tells the workers to stop, and exits 0 with the line that
// says how to resume; `--resume DIR` alone then finishes the run with the weights and per-epoch sample
// counts of a run that was never stopped. A worker sent SIGTERM leaves at once and the job goes on without
// it. Every signal is sent while the coordinator holds at a step (--hold-at), so nothing races the trainer.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { Hold } from '../helpers/hold.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { alive, exited, Output, runCli, startCli, startCluster } from '../helpers/processes.js';
import { makeTinyJob, type TinyJob } from '../helpers/tiny-job.js';

t.setTimeout(900_000);

const EPOCHS = 3;
const BATCH = 6;
const TRAIN = 60; // 30 a class
const S = Math.floor(TRAIN / BATCH);

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
    '20',
    '--log-level',
    'debug',
    ...extra,
  ];
}

interface Saved {
  epoch: number;
  step: number;
  stepsPerEpoch: number;
  partial?: { samples: number; steps: number };
  job?: { data: string; epochs: number; workers: number };
}
const trainState = (out: string) => JSON.parse(readFileSync(join(out, 'train-state.json'), 'utf8')) as Saved;
const samples = (out: string) =>
  readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => (JSON.parse(l) as { samples: number }).samples);

t.test('a stopped run saves its last step and resumes from it to the uninterrupted weights', async (t) => {
  const job = await makeTinyJob({ trainPerClass: TRAIN / 2 });
  t.teardown(job.cleanup);
  const ref = join(job.dir, 'uninterrupted');
  const a = await runCli(['train', '--workers', '2', ...jobArgs(job, ref)], 300_000);
  t.equal(a.code, 0, `the uninterrupted run finishes${a.code ? `: ${a.stderr.slice(-1500)}` : ''}`);
  const want = await readCkptFloats(join(ref, 'last.ckpt'));

  await t.test('SIGINT to train mid-epoch, then --resume DIR alone', async (t) => {
    const out = join(job.dir, 'stopped');
    const hold = new Hold(job.dir, 'hold-sigint');
    const train = startCli(['train', '--workers', '2', ...jobArgs(job, out, hold.args('2:3'))]);
    t.teardown(() => {
      train.kill('SIGKILL');
    });
    const co = new Output(train);
    await hold.reached(co, 'epoch 2 step 3');
    const pids = JSON.parse((await co.waitFor(/"pids":(\[[\d,]+\])/, 10_000))[1]!) as number[];
    t.equal(pids.length, 2, 'two local workers were started');
    const sent = performance.now();
    train.kill('SIGINT');
    const code = await exited(train, 60_000);
    t.comment(`SIGINT to exit: ${((performance.now() - sent) / 1000).toFixed(2)} s`);
    t.equal(code, 0, `train exits 0 after a clean stop${code ? `: ${co.text.slice(-2000)}` : ''}`);
    t.match(
      co.text,
      new RegExp(
        `stopped \\(SIGINT\\): the state after epoch 2, step [34]/${S} is saved in ` +
          `${out.replace(/[/\\]/g, '.')}; resume with: wolfpack train --resume `,
      ),
    );
    t.notOk(pids.some(alive), 'no local worker is left running');
    t.match(co.text, /"msg":"shutdown"/, 'the workers were told to stop');
    const saved = trainState(out);
    t.equal(saved.epoch, 1, 'train-state.json: one epoch completed');
    t.ok(
      saved.step === S + 3 || saved.step === S + 4,
      `train-state.json: step ${saved.step} is the last completed one ` +
        `(${S + 3} or ${S + 4}, the one in flight at the hold)`,
    );
    t.same(saved.partial?.samples, (saved.step - S) * BATCH, "the epoch's samples so far are kept");
    t.same(
      saved.job,
      { data: job.data, epochs: EPOCHS, workers: 2 },
      "the job's data, epochs and workers are kept for --resume alone",
    );
    t.same(samples(out), [S * BATCH], 'metrics.jsonl has the completed epoch only');

    const r = await runCli(['train', '--resume', out], 300_000);
    t.equal(r.code, 0, `--resume DIR alone finishes the run${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`);
    t.match(
      r.stdout + r.stderr,
      new RegExp(`"step":${saved.step},[^\\n]*"msg":"resuming"`),
      'it resumes at the saved step',
    );
    t.same(samples(out), [S * BATCH, S * BATCH, S * BATCH], 'every epoch counts its samples once, the stopped one too');
    const worst = worstTensorRelDiff(await readCkptFloats(join(out, 'last.ckpt')), want);
    t.ok(
      worst <= 1e-5,
      `weights and momentum vs the uninterrupted run: max rel diff ${worst.toExponential(2)} <= 1e-5`,
    );

    const contra = await runCli(['train', '--resume', out, '--batch-size', '4'], 120_000);
    t.equal(contra.code, 1, 'a flag that contradicts the saved job is refused');
    t.match(contra.stderr, /from a different job \(batch size: saved 6, now 4\)/);
  });

  await t.test(
    'SIGTERM to a worker: it leaves at once; SIGTERM to the coordinator: all stop, last step saved',
    async (t) => {
      const out = join(job.dir, 'sigterm');
      const hold = new Hold(job.dir, 'hold-sigterm');
      const { coord, co, workers } = await startCluster(t, jobArgs(job, out, hold.args('1:2,2:2')), 3);
      const wo = workers.map((w) => new Output(w));
      await hold.reached(co, 'epoch 1 step 2');
      workers[2]!.kill('SIGTERM');
      t.equal(await exited(workers[2]!, 60_000), 0, 'the worker sent SIGTERM exits 0');
      t.match(wo[2]!.text, /"msg":"stopping: leaving the job"/);
      t.match(wo[2]!.text, /"msg":"stopped"/);
      hold.release();
      await hold.reached(co, 'epoch 2 step 2');
      t.match(co.text, /"workers":2,[^\n]*"msg":"ring will be re-formed/, 'the job went on with the other two');
      coord.kill('SIGTERM');
      t.equal(
        await exited(coord, 60_000),
        0,
        `the coordinator exits 0 on SIGTERM${coord.exitCode ? `: ${co.text.slice(-2000)}` : ''}`,
      );
      for (const i of [0, 1]) t.equal(await exited(workers[i]!, 60_000), 0, `worker ${i} exits 0 when told to stop`);
      t.match(co.text, /resume with: wolfpack coordinator --resume /);
      const saved = trainState(out);
      t.ok(
        saved.epoch === 1 && saved.step > S && saved.step <= S + 3,
        `train-state.json: epoch 1 done, step ${saved.step} within epoch 2`,
      );
    },
  );
});

t.test('SIGTERM to a coordinator still waiting for its workers: exit 0, nothing to resume', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const coord = startCli(['coordinator', '--workers', '2', '--port', '0', ...jobArgs(job, join(job.dir, 'waiting'))]);
  t.teardown(() => {
    coord.kill('SIGKILL');
  });
  const co = new Output(coord);
  // the job is prepared and waits for workers that never come: the stop must end that wait (and its timers)
  await co.waitFor(/"msg":"waiting for the first workers to join"/, 120_000);
  coord.kill('SIGTERM');
  t.equal(await exited(coord, 60_000), 0, `exit 0${coord.exitCode ? `: ${co.text.slice(-1500)}` : ''}`);
  t.match(co.text, /stopped \(SIGTERM\) before any step was saved: nothing to resume/);
});

t.test('train checks its paths before it starts a worker', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const missing = join(job.dir, 'nonexistent');
  const r = await runCli(['train', '--data', missing, '--weights', job.weights, '--out', join(job.dir, 'o1')], 60_000);
  t.equal(r.code, 1);
  t.match(r.stderr, `--data ${missing}: no such folder`);
  t.notMatch(r.stdout + r.stderr, /local worker/, 'no worker was started');
  const w = await runCli(
    ['train', '--data', job.data, '--weights', join(job.dir, 'nope.ckpt'), '--out', join(job.dir, 'o2')],
    60_000,
  );
  t.equal(w.code, 1);
  t.match(w.stderr, /--weights \S+nope\.ckpt: no such file/);

  const out = join(job.dir, 'run');
  const first = await runCli(['train', '--workers', '1', ...jobArgs(job, out, ['--epochs', '1'])], 300_000);
  t.equal(first.code, 0, `a first run into --out${first.code ? `: ${first.stderr.slice(-1500)}` : ''}`);
  const before = readFileSync(join(out, 'metrics.jsonl'), 'utf8');
  const again = await runCli(['train', '--workers', '1', ...jobArgs(job, out, ['--epochs', '1'])], 60_000);
  t.equal(again.code, 2, 'a second new run into the same --out is refused');
  t.match(
    again.stderr,
    /already holds a run \(train-state\.json, last\.ckpt, best\.ckpt, metrics\.jsonl, steps\.jsonl, curves\.png\): continue it with --resume/,
  );
  t.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8'), before, "and the first run's files are untouched");
  const over = await runCli(
    ['train', '--workers', '1', ...jobArgs(job, out, ['--epochs', '1', '--overwrite'])],
    300_000,
  );
  t.equal(over.code, 0, '--overwrite replaces it');
  t.equal(samples(out).length, 1, 'metrics.jsonl starts afresh, not appended to');

  const typo = await runCli(['train', '--epoch', '3'], 60_000);
  t.equal(typo.code, 2);
  t.match(typo.stderr, 'unknown flag --epoch; did you mean --epochs?');
});
