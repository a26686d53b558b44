// Health from the process itself: the health file a worker or coordinator writes (shared/health/state-file.ts)
// and `wolfpack health`, which judges it. A worker whose coordinator connection closes says `lost` at once
// and is unhealthy, even while another process on the host is connected to the coordinator's port (what
// the old health check, which counted the host's connections to that port, got wrong).
import t from 'tap';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { WebSocketServer } from 'ws';
import { checkHealth, HealthFile, HEALTHY, type HealthRecord } from '../../shared/health/state-file.js';
import { health } from '../../cli/commands/health.js';
import { packageRoot } from '../../shared/paths.js';
import { ensureBuilt } from '../helpers/build.js';
import { runCli } from '../helpers/processes.js';

const read = (path: string) => JSON.parse(readFileSync(path, 'utf8')) as HealthRecord;

/** `wolfpack health ARGV` in this process: its exit code and the line it wrote. */
async function healthCli(argv: string[]): Promise<{ code: number; out: string }> {
  let out = '';
  const [o, e] = [process.stdout.write, process.stderr.write];
  const capture = ((chunk: string | Uint8Array) => {
    out += String(chunk);
    return true;
  }) as typeof process.stdout.write;
  process.stdout.write = capture;
  process.stderr.write = capture;
  try {
    return { code: await health.run(argv), out };
  } finally {
    process.stdout.write = o;
    process.stderr.write = e;
  }
}

t.test('HealthFile: each state change is written at once, with the verdict for the role', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'health.json');
  let clock = Date.parse('2026-12-06T10:00:00Z');
  const f = new HealthFile(path, 'worker', undefined, 60_000, () => clock);
  t.teardown(() => f.close());
  t.notOk(existsSync(path), 'nothing before the first state');
  for (const state of ['starting', 'connecting', 'connected', 'admitted', 'training'] as const) {
    f.set(state, state === 'training' ? 'rank 1' : undefined);
    const r = read(path);
    t.equal(r.state, state);
    t.equal(r.healthy, HEALTHY.worker.includes(state), `${state}: healthy ${HEALTHY.worker.includes(state)}`);
    t.equal(r.role, 'worker');
    t.equal(r.pid, process.pid);
  }
  t.same(
    HEALTHY.worker,
    ['connected', 'admitted', 'training'],
    'a worker is healthy only while it holds its coordinator connection',
  );
  t.same(HEALTHY.coordinator, ['listening', 'training']);
  t.equal(read(path).detail, 'rank 1');
  t.same(readdirSync(dir), ['health.json'], 'no temp file left behind');

  clock += 7000;
  f.set('training', 'rank 1');
  t.equal(read(path).since, '2026-12-06T10:00:00.000Z', 'the same state again: not a new one');
  f.set('lost', 'connection closed');
  t.same([read(path).state, read(path).healthy, read(path).since], ['lost', false, '2026-12-06T10:00:07.000Z']);
  f.set('done');
  t.equal(read(path).state, 'done', 'lost may still end as done (the closing frame was the order to stop)');
  f.set('training');
  t.equal(read(path).state, 'done', 'done is final');
});

t.test('HealthFile: refreshed while the state stays; a file it cannot write is not an error', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'health.json');
  const f = new HealthFile(path, 'coordinator', undefined, 20);
  t.teardown(() => f.close());
  f.set('listening', 'port 7070');
  const first = read(path).updated;
  await new Promise((r) => setTimeout(r, 80));
  t.ok(read(path).updated > first, 'updated moves on');
  t.equal(read(path).since, read(path).since, 'since stays');
  const warnings: unknown[] = [];
  const bad = new HealthFile(
    join(dir, 'no-such-dir', 'health.json'),
    'worker',
    { warn: (...a: unknown[]) => warnings.push(a) } as never,
    60_000,
  );
  bad.set('connecting');
  bad.set('connected');
  bad.close();
  t.equal(warnings.length, 1, 'one warning, no throw');
});

t.test('checkHealth and `wolfpack health`: exit 0 only for a healthy state in a fresh file', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'h.json');
  const now = Date.parse('2026-12-06T10:00:00Z');
  const rec = (state: string, healthy: boolean, ageS: number, at = now): HealthRecord =>
    ({
      role: 'worker',
      state,
      healthy,
      pid: 1,
      since: '2026-12-06T09:00:00.000Z',
      updated: new Date(at - ageS * 1000).toISOString(),
    }) as HealthRecord;

  t.match(checkHealth(path, 60, now), { ok: false, reason: /does not exist/ });
  writeFileSync(path, 'not json');
  t.match(checkHealth(path, 60, now), { ok: false, reason: /not JSON/ });
  writeFileSync(path, '{"hello":1}');
  t.match(checkHealth(path, 60, now), { ok: false, reason: /not a wolfpack health file/ });
  writeFileSync(path, JSON.stringify(rec('training', true, 5)));
  t.match(checkHealth(path, 60, now), { ok: true, reason: /^healthy: worker training since .* updated 5\.0 s ago/ });
  t.match(checkHealth(path, 4, now), { ok: false, reason: /^stale: .*more than 4 s/ });
  writeFileSync(path, JSON.stringify({ ...rec('lost', false, 1), detail: 'connection closed' }));
  t.match(checkHealth(path, 60, now), { ok: false, reason: /^unhealthy: worker lost \(connection closed\)/ });

  // the command judges against the clock
  writeFileSync(path, JSON.stringify(rec('training', true, 0, Date.now())));
  const ok = await healthCli(['--file', path]);
  t.equal(ok.code, 0);
  t.match(ok.out, /^healthy: worker training/);
  writeFileSync(path, JSON.stringify(rec('training', true, 300, Date.now())));
  t.equal((await healthCli(['--file', path])).code, 1, 'older than the default --max-age (120 s)');
  t.equal((await healthCli(['--file', path, '--max-age', '600'])).code, 0, '--max-age 600');
  t.equal((await healthCli(['--file', join(dir, 'nope.json')])).code, 1);
  await t.rejects(health.run([]), { code: 'E_USAGE', message: /--file is required/ });
});

t.test('a worker says lost the moment its coordinator connection closes, whoever else is connected', async (t) => {
  ensureBuilt(join(packageRoot, 'dist', 'cli', 'commands', 'health.js'));
  const dir = t.testdir();
  const file = join(dir, 'worker-health.json');
  // a "coordinator" that accepts the worker's connections, then closes them after a while
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await new Promise((resolve) => wss.once('listening', resolve));
  const port = (wss.address() as AddressInfo).port;
  const seen: string[] = [];
  wss.on('connection', (ws) => {
    const poll = setInterval(() => {
      if (existsSync(file)) seen.push(read(file).state);
    }, 20);
    setTimeout(() => {
      clearInterval(poll);
      ws.close(1001, 'going away');
    }, 1500);
  });
  // a neighbour's connection to the same port, as on a host-network worker host
  const neighbour: Socket = connect(port, '127.0.0.1');
  await new Promise((resolve) => neighbour.once('connect', resolve));
  t.teardown(() => {
    neighbour.destroy();
    wss.close();
  });

  const r = await runCli(
    ['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'cpu', '--timeout', '20', '--health-file', file],
    60_000,
  );
  t.not(r.code, 0, 'the worker exits with an error');
  t.ok(seen.includes('connected'), `connected while the connection was up (seen: ${[...new Set(seen)].join(', ')})`);
  const last = read(file);
  t.equal(last.state, 'lost', 'then lost');
  t.equal(last.healthy, false);
  t.match(last.detail, /closed/);
  const verdict = await healthCli(['--file', file]);
  t.equal(verdict.code, 1, '`wolfpack health` says unhealthy while the neighbour is still connected');
  t.match(verdict.out, /^unhealthy: worker lost/);
});
