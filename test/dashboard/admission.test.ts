// The dashboard under the admission guard (shared/transport/admission.ts), on real sockets: a connection
// must complete a request that passes the token check within the deadline; an idle one or an unfinished
// head is cut at the deadline, an oversized head is answered 431, a request without the token is answered
// 401 and its connection closed, while a viewer with the token keeps its stream; refusals are logged once
// per address.
import { once } from 'node:events';
import net from 'node:net';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t from 'tap';
import { DashboardServer } from '../../coordinator/dashboard/server.js';
import { SharedSecret } from '../../shared/auth/secret.js';
import type { Logger } from '../../shared/log.js';
import { openFlood } from '../helpers/flood.js';
import { SseReader } from './sse-reader.js';

const TOKEN = 'dashboard-admission-token-0123456789';
const BOUND_MS = 15_000;

function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not within ${BOUND_MS} ms`)), BOUND_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

t.test('only a request that passes the token check admits a dashboard connection', async (t) => {
  const lines: Record<string, unknown>[] = [];
  const sink = new Writable({
    write(c: Buffer, _e, cb) {
      for (const l of c.toString().split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l));
      cb();
    },
  });
  const server = await DashboardServer.start({
    host: '127.0.0.1',
    port: 0,
    security: { secret: new SharedSecret(TOKEN, 'test') },
    logger: pino({ level: 'info' }, sink) as unknown as Logger,
    admission: { deadlineMs: 400 },
  });
  t.teardown(() => server.close());
  const sse = new SseReader(`${server.url}events`, { authorization: `Bearer ${TOKEN}` });
  t.teardown(() => sse.close());
  t.equal(
    (await bounded(sse.nextEvent('snapshot'), 'the snapshot')).event,
    'snapshot',
    'a viewer with the token gets the stream',
  );

  const idle = openFlood(server.port, '127.0.0.2', 'idle');
  const slow = openFlood(server.port, '127.0.0.3', 'partial-head');
  const big = openFlood(server.port, '127.0.0.4', 'big-head');
  const stranger = net.connect({ port: server.port, host: '127.0.0.1', localAddress: '127.0.0.5' });
  t.teardown(() => {
    for (const s of [idle, slow, big]) s.socket.destroy();
    stranger.destroy();
  });
  let answer = '';
  stranger.on('data', (d: Buffer) => {
    answer += d.toString();
  });
  stranger.on('error', () => undefined);
  await once(stranger, 'connect');
  stranger.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n');
  await bounded(once(stranger, 'close'), 'the connection of a request without the token closing');
  t.match(answer, /^HTTP\/1\.1 401 /, 'a request without the token: 401');
  t.match(answer, /[Cc]onnection: close/, 'and its connection is closed, keep-alive or not');

  await bounded(big.closed, 'the oversized head being refused');
  t.match(big.received, /^HTTP\/1\.1 431 /, 'an oversized head: 431');
  for (const s of [idle, slow]) {
    await bounded(s.closed, `the ${s.kind} connection being cut`);
    t.ok(s.closedAt! - s.openedAt >= 350, `${s.kind}: cut at the deadline (${s.closedAt! - s.openedAt} ms)`);
  }
  t.equal(server.clients, 1, "the viewer's stream (opened first) is still open");
  const refused = lines.filter((l) => l.msg === 'connection refused');
  t.same(
    Object.fromEntries(refused.map((l) => [l.address, l.kind])),
    { '127.0.0.2': 'deadline', '127.0.0.3': 'deadline', '127.0.0.4': 'oversized', '127.0.0.5': 'request' },
    'each refusal is logged, once for its address',
  );
});
