// What runJob reports reaches the dashboard's stream, in real runs (the CLI in its own process, real
// workers), read without a browser: `train --dashboard-port 0` streams every step, every epoch, the
// ring and the end; a worker killed mid-run shows as a 'lost' event and a re-formed ring of the others.
// The reader connects, and the worker is killed, while the run holds at a step (--hold-at), so neither
// depends on how fast the run goes.
import { join } from 'node:path';
import t from 'tap';
import { Hold } from '../helpers/hold.js';
import { exited, Output, startCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';
import { SseReader, within, type SseFrame } from './sse-reader.js';

const DASHBOARD_URL = /"url":"(http:\/\/127\.0\.0\.1:\d+\/)"[^\n]*"msg":"dashboard: /;

t.test('train --dashboard-port: every step, epoch and ring, then the end', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const hold = new Hold(job.dir);
  const p = startCli([
    'train',
    '--workers',
    '2',
    '--dashboard-port',
    '0',
    ...tinyTrainArgs(job, join(job.dir, 'out'), ['--epochs', '2', ...hold.args('1:1')]),
  ]);
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  const log = new Output(p);
  const url = (await log.waitFor(DASHBOARD_URL, 30_000))[1];
  // Connected while the run holds after its first step: the snapshot has that step, the stream the rest.
  await hold.reached(log, 'epoch 1 step 1');
  const sse = new SseReader(`${url}events`);
  t.teardown(() => sse.close());
  const snap = (await sse.nextEvent('snapshot')).data;
  t.match(snap.job, { epochs: 2, batchSize: 6, workers: 2 });
  t.same(
    snap.steps.map((s: number[]) => s[0]),
    [1],
    'the snapshot holds the one step done before the hold',
  );
  hold.release();
  await within(sse.ended, 120_000, () => `the stream did not end within 120 s: ${log.text.slice(-2000)}`);
  t.equal(await exited(p, 30_000), 0, 'train exits 0');

  const frames: SseFrame[] = sse.frames;
  const steps = [...snap.steps, ...frames.filter((f) => f.event === 'step').map((f) => f.data.point)];
  t.same(
    steps.map((s: number[]) => s[0]),
    [1, 2, 3, 4, 5, 6, 7, 8],
    'every global step, in order (2 epochs of 4)',
  );
  t.same(
    steps.map((s: number[]) => s[1]),
    [1, 1, 1, 1, 2, 2, 2, 2],
    'with its epoch',
  );
  t.ok(
    steps.every((s: (number | null)[]) => typeof s[3] === 'number' && typeof s[4] === 'number' && s[4] > 0),
    'a loss and images/s for each',
  );
  const stepFrames = frames.filter((f) => f.event === 'step');
  t.ok(
    stepFrames.every((f) => f.data.ranks.length === 2),
    'per-worker images/s on every step',
  );
  const epochs = frames.filter((f) => f.event === 'epoch').map((f) => f.data);
  t.same(
    epochs.map((e) => e.epoch),
    [1, 2],
  );
  t.ok(epochs.every((e) => e.val_accuracy >= 0 && e.val_accuracy <= 1 && e.workers === 2));
  // The ring was formed before the reader connected: the snapshot has it, and no other ring follows.
  t.equal(snap.generation, 0, 'the snapshot has the first ring');
  t.same(
    frames.filter((f) => f.event === 'members'),
    [],
    'one ring',
  );
  t.same(
    snap.workers.map((w: { rank: number; backend: string }) => [w.rank, w.backend]),
    [
      [0, 'wasm'],
      [1, 'wasm'],
    ],
  );
  const kinds = [...snap.events, ...frames.filter((f) => f.event === 'event').map((f) => f.data)].map(
    (e: { kind: string }) => e.kind,
  );
  t.ok(
    kinds.includes('joined') && kinds.includes('ring') && kinds.includes('best'),
    `joined, ring, best among ${kinds.join(', ')}`,
  );
  const last = frames.filter((f) => f.event === 'status').at(-1);
  t.match(last?.data, { status: 'finished', message: /best accuracy/ }, 'the last status is finished');
  t.match(log.text, /End training, the best Accuracy is/);
});

t.test('a worker killed mid-run: a lost event, then a re-formed ring', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const hold = new Hold(job.dir);
  const coord = startCli([
    'coordinator',
    '--workers',
    '3',
    '--port',
    '0',
    '--dashboard-port',
    '0',
    ...tinyTrainArgs(job, join(job.dir, 'out'), ['--epochs', '3', '--timeout', '10', ...hold.args('1:2')]),
  ]);
  t.teardown(() => {
    coord.kill('SIGKILL');
  });
  const log = new Output(coord);
  const url = (await log.waitFor(DASHBOARD_URL, 30_000))[1];
  const port = Number((await log.waitFor(/"port":(\d+)[^\n]*"msg":"listening for workers"/, 30_000))[1]);
  const sse = new SseReader(`${url}events`);
  t.teardown(() => sse.close());
  await sse.nextEvent('snapshot');
  const workers = [0, 1, 2].map(() =>
    startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '60']),
  );
  t.teardown(() => {
    for (const w of workers) w.kill('SIGKILL');
  });

  const ring = await sse.nextEvent('members', 120_000);
  t.equal(ring.data.ring.length, 3);
  // Killed while the run holds after step 2 of epoch 1, which the stream has already shown.
  await hold.reached(log, 'epoch 1 step 2');
  await sse.next((f) => f.event === 'step' && f.data.point[0] === 2, 30_000);
  const victim = ring.data.workers.find((w: { rank: number }) => w.rank === 1);
  const proc = workers.find((w) => w.pid === victim.pid)!;
  t.ok(proc, `rank 1 is worker pid ${victim.pid}`);
  proc.kill('SIGKILL');
  await exited(proc, 30_000);
  hold.release();

  const lost = await sse.next((f) => f.event === 'event' && f.data.kind === 'lost', 60_000);
  t.same(lost.data.memberIds, [victim.memberId], 'the lost event names the killed worker');
  t.match(lost.data.text, new RegExp(`pid ${victim.pid}`));
  const reformed = await sse.next((f) => f.event === 'members' && f.data.ring.length === 2, 120_000);
  t.ok(reformed.data.generation > ring.data.generation, `a new generation (${reformed.data.generation})`);
  t.notOk(reformed.data.ring.includes(victim.memberId), 'without the lost worker');
  t.equal(
    reformed.data.workers.find((w: { memberId: string }) => w.memberId === victim.memberId)?.state,
    'lost',
    'which the table keeps, marked lost',
  );
  await sse.next((f) => f.event === 'status' && f.data.status === 'finished', 180_000);
  t.same(
    sse.frames.filter((f) => f.event === 'epoch').map((f) => f.data.workers),
    [2, 2, 2],
    'killed in epoch 1: every epoch ends on the other two',
  );
  t.equal(await exited(coord, 30_000), 0, `the run finishes${coord.exitCode ? `: ${log.text.slice(-2000)}` : ''}`);
});
