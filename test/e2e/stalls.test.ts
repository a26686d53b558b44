// Slow is not dead: a coordinator whose own event loop was frozen for longer than --timeout evicts no
// worker when it wakes (its stall is not their silence), and workers that all went quiet together are
// given twice the timeout before anyone is blamed. A single silent worker among heard ones is evicted
// after --timeout (test/e2e/faults.test.ts, "a frozen worker").
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { exited, Output, startCli } from '../helpers/processes.js';
import { makeTinyJob, type TinyJob } from '../helpers/tiny-job.js';

function metrics(out: string): { epoch: number; workers: number }[] {
  return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { epoch: number; workers: number });
}

async function cluster(job: TinyJob, out: string, n: number, timeoutS: number) {
  const coord = startCli([
    'coordinator',
    '--workers',
    String(n),
    '--port',
    '0',
    '--data',
    job.data,
    '--weights',
    job.weights,
    '--batch-size',
    '6',
    '--image-size',
    '32',
    '--out',
    out,
    '--backend',
    'wasm',
    '--bn',
    'frozen',
    '--epochs',
    '3',
    '--timeout',
    String(timeoutS),
    '--log-level',
    'debug',
  ]);
  const co = new Output(coord);
  const port = (await co.waitFor(/"port":(\d+).*listening for workers/, 60_000))[1];
  const workers = Array.from({ length: n }, () =>
    startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '120']),
  );
  return { coord, co, workers };
}

function pause(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

t.test('a coordinator frozen (SIGSTOP) for over twice --timeout evicts no healthy worker when it wakes', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const out = join(job.dir, 'frozen-coordinator');
  const { coord, co, workers } = await cluster(job, out, 3, 3);
  t.teardown(() => {
    coord.kill('SIGCONT');
    for (const w of workers) w.kill('SIGKILL');
    coord.kill('SIGKILL');
  });
  await co.waitFor(/"epoch":1,"step":2,/, 180_000);
  coord.kill('SIGSTOP'); // the run cannot advance while its coordinator is frozen
  await pause(7_000); // the freeze under test: well over 2 x --timeout
  coord.kill('SIGCONT');
  t.equal(await exited(coord, 180_000), 0, 'the coordinator finishes');
  t.notMatch(co.text, /worker lost/, 'no worker was evicted');
  const stall = co.text.match(/"stalled_ms":(\d+)[^\n]*event loop stalled/);
  t.ok(stall && Number(stall[1]) >= 6_000, `the coordinator logged its own stall (${stall?.[1]} ms)`);
  t.same(
    metrics(out).map((m) => m.workers),
    [3, 3, 3],
    'every epoch ran on all three workers',
  );
});

t.test('workers that all go silent together get twice --timeout before anyone is evicted', async (t) => {
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const out = join(job.dir, 'all-silent');
  const { coord, co, workers } = await cluster(job, out, 2, 4);
  t.teardown(() => {
    for (const w of workers) {
      w.kill('SIGCONT');
      w.kill('SIGKILL');
    }
    coord.kill('SIGKILL');
  });
  await co.waitFor(/"epoch":1,"step":2,/, 180_000);
  for (const w of workers) w.kill('SIGSTOP');
  await pause(5_000); // over --timeout (4 s), under twice it: nobody was heard, so nobody is blamed yet
  for (const w of workers) w.kill('SIGCONT');
  t.equal(await exited(coord, 180_000), 0, 'the coordinator finishes');
  t.notMatch(co.text, /worker lost/, 'no worker was evicted');
  t.same(
    metrics(out).map((m) => m.workers),
    [2, 2, 2],
    'every epoch ran on both workers',
  );
});
