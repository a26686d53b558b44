// The dashboard's server without a browser or a job: its Server-Sent Events stream (a snapshot, then
// each JobEvents call as one frame, in order), its page and headers, who it lets in (loopback Host
// names without a token; the token, once, then a session cookie, with one), and its limits.
import { request } from 'node:http';
import t from 'tap';
import { SharedSecret } from '../../shared/auth/secret.js';
import { isWolfpackError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import { DashboardServer } from '../../coordinator/dashboard/server.js';
import { DashboardState } from '../../coordinator/dashboard/state.js';
import type { EpochMetrics } from '../../coordinator/checkpoints.js';
import { SseReader, within } from './sse-reader.js';

interface Reply {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

function fetchRaw(url: string, opts: { method?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: opts.method ?? 'GET', headers: opts.headers ?? {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(5000, () => req.destroy(new Error(`no answer from ${url} within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

const TOKEN = 'dashboard-test-token-0123456789abcdef';

const members = [
  { memberId: 'm-a', rank: 0, host: 'host-a', pid: 101, backend: 'wasm', ringHost: '127.0.0.1', ringPort: 5001 },
  { memberId: 'm-b', rank: 1, host: 'host-b', pid: 102, backend: 'cpu', ringHost: '127.0.0.1', ringPort: 5002 },
];

const metrics: EpochMetrics = {
  epoch: 1,
  train_loss: 0.7,
  last_loss: 0.6,
  val_accuracy: 0.75,
  images_per_s: 40,
  step_time_s: 0.15,
  allreduce_share: 0.2,
  skipped_steps: 0,
  epoch_time_s: 0.6,
  workers: 2,
};

t.test('the event stream: a snapshot, then one frame per JobEvents call, in order', async (t) => {
  const beats = new Map<string, number>();
  const state = new DashboardState({ epochs: 2, batchSize: 6, workers: 2 }, { heartbeatPushMs: 50 });
  const server = await DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    security: {},
    logger: silentLogger(),
    state,
  });
  t.teardown(() => server.close());
  t.match(server.url, /^http:\/\/127\.0\.0\.1:\d+\/$/);

  const sse = new SseReader(`${server.url}events`);
  t.teardown(() => sse.close());
  const res = await sse.opened;
  t.equal(res.statusCode, 200);
  t.match(res.headers['content-type'], /^text\/event-stream/);
  t.equal(res.headers['cache-control'], 'no-store');
  const snap = await sse.next();
  t.equal(snap.event, 'snapshot', 'the first frame is the snapshot');
  t.equal(snap.data.status, 'starting');
  t.same(snap.data.job, { epochs: 2, batchSize: 6, workers: 2 });
  t.same(snap.data.steps, []);
  t.match(sse.raw, /^retry: \d+\n\n/, 'the stream starts with a reconnection delay');

  state.listening({
    port: 4321,
    heartbeat: (id) => (beats.has(id) ? { last: beats.get(id)!, closed: false } : undefined),
  });
  t.match((await sse.nextEvent('status')).data, { status: 'waiting for workers', message: /4321/ });

  state.event({ kind: 'joined', text: '2 worker(s) joined', memberIds: ['m-a', 'm-b'] });
  t.match((await sse.nextEvent('event')).data, { kind: 'joined', text: '2 worker(s) joined' });

  state.members(members, 0);
  const m = await sse.nextEvent('members');
  t.equal(m.data.generation, 0);
  t.same(m.data.ring, ['m-a', 'm-b']);
  t.same(
    m.data.workers.map((w: { host: string; state: string }) => [w.host, w.state]),
    [
      ['host-a', 'in ring'],
      ['host-b', 'in ring'],
    ],
  );
  t.match((await sse.nextEvent('event')).data, {
    kind: 'ring',
    text: /generation 0, 2 worker\(s\): 0: host-a\/pid 101 -> 1: host-b\/pid 102/,
  });

  state.step({
    epoch: 1,
    step: 1,
    steps: 4,
    global_step: 1,
    loss: 0.69,
    skipped: false,
    accuracy: 0.5,
    images_per_s: 30,
    allreduce_share: 0.25,
    ranks: [
      { rank: 0, samples: 3, step_ms: 100, allreduce_ms: 20, images_per_s: 30 },
      { rank: 1, samples: 3, step_ms: 60, allreduce_ms: 20, images_per_s: 50 },
    ],
  });
  t.match((await sse.nextEvent('status')).data, { status: 'training' }, 'the first step marks the run as training');
  const s1 = await sse.nextEvent('step');
  t.equal(s1.data.point[0], 1, 'global step');
  t.equal(s1.data.point[3], 0.69, 'loss');
  t.equal(s1.data.point[4], 30, 'images/s');
  t.same(
    s1.data.ranks,
    [
      { memberId: 'm-a', images_per_s: 30 },
      { memberId: 'm-b', images_per_s: 50 },
    ],
    'ranks are named by member',
  );

  state.step({
    epoch: 1,
    step: 2,
    steps: 4,
    global_step: 2,
    loss: NaN,
    skipped: true,
    accuracy: NaN,
    images_per_s: 31,
    allreduce_share: 0,
    ranks: [],
  });
  t.equal((await sse.nextEvent('step')).data.point[3], null, 'a skipped step has no loss (a gap in the curve)');

  state.epoch(metrics);
  t.same((await sse.nextEvent('epoch')).data, metrics);
  state.event({ kind: 'best', text: 'epoch 1: val accuracy 0.7500, saved best.ckpt' });
  t.match((await sse.nextEvent('event')).data, { kind: 'best' });

  beats.set('m-a', 1_700_000_000_000);
  const hb = await sse.nextEvent('heartbeats', 3000);
  t.same(
    hb.data.beats,
    { 'm-a': 1_700_000_000_000 },
    'heartbeats read from the coordinator are pushed when they change',
  );

  state.event({ kind: 'lost', text: 'worker host-b lost: its connection closed', memberIds: ['m-b'] });
  const lost = await sse.nextEvent('members');
  t.equal(
    lost.data.workers.find((w: { memberId: string }) => w.memberId === 'm-b').state,
    'lost',
    'a lost worker is marked, not dropped',
  );

  // A viewer that connects late gets everything so far in its snapshot.
  const late = new SseReader(`${server.url}events`);
  t.teardown(() => late.close());
  const ls = await late.nextEvent('snapshot');
  t.equal(ls.data.steps.length, 2);
  t.equal(ls.data.stepsPerEpoch, 4);
  t.equal(ls.data.epochs.length, 1);
  t.same(ls.data.best, { epoch: 1, accuracy: 0.75 });
  t.equal(ls.data.workers.length, 2);
  t.ok(ls.data.events.some((e: { kind: string }) => e.kind === 'lost'));
  t.equal(server.clients, 2);

  server.finish({ bestAccuracy: 0.75, bestEpoch: 1 });
  t.match((await sse.nextEvent('status')).data, { status: 'finished', message: /best accuracy 0\.7500 at epoch 1/ });
  await server.close();
  await within(sse.ended, 5000, () => 'stream still open after close()');
  t.pass('close() ends the streams');
});

t.test('the page, its headers and what is refused', async (t) => {
  const server = await DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    security: {},
    logger: silentLogger(),
    maxClients: 1,
  });
  t.teardown(() => server.close());
  const page = await fetchRaw(server.url);
  t.equal(page.status, 200);
  t.match(page.headers['content-type'], /^text\/html/);
  t.match(
    page.headers['content-security-policy'],
    /default-src 'none'; script-src 'self'/,
    'scripts from this origin only',
  );
  t.match(page.body, /<svg id="loss-chart"/);
  t.notMatch(page.body, /https?:\/\/(?!www\.w3\.org)/, 'the page loads nothing from another origin');
  const js = await fetchRaw(`${server.url}dashboard.js`);
  t.equal(js.status, 200);
  t.match(js.headers['content-type'], /^text\/javascript/);
  t.match(js.body, /new EventSource\('events'\)/, 'pushed, not polled');
  t.notMatch(js.body, /setInterval\([^)]*fetch|XMLHttpRequest|innerHTML/, 'no polling, no HTML injection');
  const state = await fetchRaw(`${server.url}state`);
  t.equal(state.status, 200);
  t.equal(JSON.parse(state.body).status, 'starting');
  t.equal((await fetchRaw(`${server.url}nope`)).status, 404);
  t.equal((await fetchRaw(server.url, { method: 'POST' })).status, 405, 'read-only');
  const rebound = await fetchRaw(server.url, { headers: { host: `evil.example:${server.port}` } });
  t.equal(rebound.status, 403, 'without a token, only loopback Host names are answered (DNS rebinding)');
  t.equal((await fetchRaw(server.url, { headers: { host: `localhost:${server.port}` } })).status, 200);

  const first = new SseReader(`${server.url}events`);
  t.teardown(() => first.close());
  await first.nextEvent('snapshot');
  const second = await fetchRaw(`${server.url}events`);
  t.equal(second.status, 503, 'viewers beyond maxClients are refused');
});

t.test('beyond loopback only with a token; with one, every request shows it', async (t) => {
  await t.rejects(DashboardServer.start({ host: '0.0.0.0', port: 0, security: {}, logger: silentLogger() }), {
    code: 'E_USAGE',
    message: /dashboard \(--host\) 0\.0\.0\.0: refusing to listen beyond loopback without a shared token/,
  });

  const secret = new SharedSecret(TOKEN, 'test');
  const server = await DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    security: { secret },
    logger: silentLogger(),
  });
  t.teardown(() => server.close());
  const none = await fetchRaw(server.url);
  t.equal(none.status, 401);
  t.match(none.body, /needs the job's shared token/);
  t.notMatch(none.body, TOKEN);
  t.equal((await fetchRaw(`${server.url}?token=wrong-token-wrong-token`)).status, 401);
  t.equal((await fetchRaw(`${server.url}events`)).status, 401, 'the stream too');

  const login = await fetchRaw(`${server.url}?token=${TOKEN}`);
  t.equal(login.status, 303, 'the right token once: a redirect that drops it from the address bar');
  t.equal(login.headers.location, '/');
  const cookie = String(login.headers['set-cookie']).split(';')[0]!;
  t.match(String(login.headers['set-cookie']), /HttpOnly; SameSite=Strict/);
  t.notMatch(cookie, TOKEN, 'the cookie is not the token');
  t.equal(
    (await fetchRaw(server.url, { headers: { cookie } })).status,
    200,
    'then the session cookie lets the page in',
  );
  t.equal(
    (await fetchRaw(`${server.url}state`, { headers: { authorization: `Bearer ${TOKEN}` } })).status,
    200,
    'so does the token as a bearer',
  );
  t.equal((await fetchRaw(`${server.url}state`, { headers: { cookie: 'wolfpack_dashboard=00' } })).status, 401);
  const sse = new SseReader(`${server.url}events`, { cookie });
  t.teardown(() => sse.close());
  t.equal((await sse.nextEvent('snapshot')).data.status, 'starting');

  // Another server (another run) does not take this one's cookie.
  const other = await DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    security: { secret },
    logger: silentLogger(),
  });
  t.teardown(() => other.close());
  t.equal((await fetchRaw(other.url, { headers: { cookie } })).status, 401);

  const busy = await DashboardServer.start({ host: '127.0.0.1', port: 0, security: {}, logger: silentLogger() });
  t.teardown(() => busy.close());
  const clash = await DashboardServer.start({
    host: '127.0.0.1',
    port: busy.port,
    security: {},
    logger: silentLogger(),
  }).catch((e: unknown) => e);
  t.ok(isWolfpackError(clash, 'E_IO'), 'a port in use is E_IO');
});
