// The admission guard (shared/transport/admission.ts) on real sockets on 127.0.0.1, from several loopback
// source addresses: an idle connection is destroyed at its deadline while an admitted one stays (also under
// TLS, where the admitted socket is the TLS socket over the accepted one); the per-address and total caps
// refuse at accept, the total one by evicting from the busiest address; an oversized or unfinished request
// head and an oversized first WebSocket message are refused, and the byte limit no longer applies once a
// peer is admitted; refusals are logged once per address, then as counted summaries.
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import tls from 'node:tls';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import { WebSocket, WebSocketServer } from 'ws';
import {
  AdmissionGuard,
  addressGroup,
  MAX_HEADER_BYTES,
  type AdmissionLimits,
} from '../../shared/transport/admission.js';
import type { Logger } from '../../shared/log.js';
import { openFlood } from '../helpers/flood.js';

/** Every wait in this file gives up after this long (a loaded machine is slow, but not this slow). */
const BOUND_MS = 15_000;

interface LogRec {
  msg: string;
  address?: string;
  kind?: string;
  count?: number;
  reasons?: Record<string, number>;
  reason?: string;
}

/** A pino logger whose lines a test can read and wait for. */
function capturingLogger(): {
  logger: Logger;
  lines: LogRec[];
  waitFor: (pred: (r: LogRec[]) => boolean, what: string) => Promise<void>;
} {
  const lines: LogRec[] = [];
  const waiters: (() => void)[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.startsWith('{')) lines.push(JSON.parse(l) as LogRec);
      for (const w of [...waiters]) w();
      cb();
    },
  });
  const waitFor = (pred: (r: LogRec[]) => boolean, what: string) =>
    new Promise<void>((resolve, reject) => {
      if (pred(lines)) return resolve();
      const timer = setTimeout(
        () => reject(new Error(`no log ${what} within ${BOUND_MS} ms: ${JSON.stringify(lines)}`)),
        BOUND_MS,
      );
      const w = () => {
        if (pred(lines)) {
          clearTimeout(timer);
          waiters.splice(waiters.indexOf(w), 1);
          resolve();
        }
      };
      waiters.push(w);
    });
  return { logger: pino({ level: 'info' }, sink) as unknown as Logger, lines, waitFor };
}

/** Resolves with `p`'s value, or rejects naming `what` after BOUND_MS. */
async function bounded<T>(p: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within ${BOUND_MS} ms`)), BOUND_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * A plain TCP server under a guard: it greets every connection it keeps with 'hi', and admits a
 * connection that sends 'let me in' (answering 'in').
 */
async function tcpServer(
  t: Test,
  limits: AdmissionLimits,
  logger: Logger,
): Promise<{ port: number; guard: AdmissionGuard }> {
  const guard = new AdmissionGuard({ name: 'test', proof: 'password', logger, ...limits });
  const server = net.createServer();
  guard.watch(server);
  server.on('connection', (s: net.Socket) => {
    s.on('error', () => undefined);
    if (s.destroyed) return;
    s.write('hi');
    s.on('data', (d: Buffer) => {
      if (d.toString().includes('let me in') && guard.admit(s)) s.write('in');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    guard.close();
    server.close();
    for (const c of clients) c.destroy();
  });
  return { port: (server.address() as net.AddressInfo).port, guard };
}

const clients = new Set<net.Socket>();

interface Client {
  socket: net.Socket;
  closed: Promise<number>;
  isClosed: () => boolean;
  said: () => string;
}

/** Connects from `from`; resolves once the server greeted it ('kept') or closed it ('refused'). */
async function client(port: number, from: string): Promise<{ c: Client; fate: 'kept' | 'refused' }> {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
  clients.add(socket);
  socket.on('error', () => undefined);
  let text = '';
  let closed = false;
  const t0 = Date.now();
  const c: Client = {
    socket,
    closed: new Promise<number>((resolve) =>
      socket.once('close', () => {
        closed = true;
        resolve(Date.now() - t0);
      }),
    ),
    isClosed: () => closed,
    said: () => text,
  };
  const fate = await bounded(
    new Promise<'kept' | 'refused'>((resolve) => {
      socket.on('data', (d: Buffer) => {
        text += d.toString();
        if (text.startsWith('hi')) resolve('kept');
      });
      socket.once('close', () => resolve('refused'));
    }),
    `connection from ${from}`,
  );
  return { c, fate };
}

async function admitted(c: Client): Promise<void> {
  c.socket.write('let me in');
  await bounded(
    new Promise<void>((resolve) => {
      const on = () => {
        if (c.said().includes('in')) {
          c.socket.off('data', on);
          resolve();
        }
      };
      c.socket.on('data', on);
      on();
    }),
    'admission',
  );
}

t.test('addresses count per address, IPv6 per /64', async (t) => {
  t.equal(addressGroup('127.0.0.2'), '127.0.0.2');
  t.equal(addressGroup('::ffff:10.1.2.3'), '10.1.2.3', 'IPv4-mapped IPv6 is the IPv4 address');
  t.equal(addressGroup('2001:db8:0:1:aaaa::1'), '2001:db8:0:1::/64');
  t.equal(addressGroup('2001:0db8:0000:0001:ffff:1:2:3'), '2001:db8:0:1::/64', 'another address of the same /64');
  t.equal(addressGroup('::1'), '0:0:0:0::/64');
});

t.test('an idle connection is destroyed at its deadline; an admitted one stays open', async (t) => {
  const log = capturingLogger();
  const { port, guard } = await tcpServer(t, { deadlineMs: 400 }, log.logger);
  const good = await client(port, '127.0.0.2');
  t.equal(good.fate, 'kept');
  await admitted(good.c);
  const idle = await client(port, '127.0.0.3');
  t.equal(idle.fate, 'kept', 'the idle connection is accepted');
  t.equal(guard.pending, 1, 'one connection pending');
  const ms = await bounded(idle.c.closed, 'the idle connection closing');
  t.ok(ms >= 350, `closed at its deadline, not before (${ms} ms after connecting; deadline 400 ms)`);
  t.notOk(good.c.isClosed(), 'the admitted connection (opened first, so past its deadline too) is still open');
  t.equal(guard.pending, 0, 'nothing pending');
  t.ok(
    log.lines.some(
      (l) =>
        l.msg === 'connection refused' &&
        l.address === '127.0.0.3' &&
        l.kind === 'deadline' &&
        /no password within 400 ms/.test(l.reason ?? ''),
    ),
    'the refusal is logged with its reason',
  );
});

t.test("a listener's polite close at the deadline, and a destroy when the peer ignores it", async (t) => {
  const log = capturingLogger();
  const guard = new AdmissionGuard({ name: 'test', proof: 'hello', logger: log.logger, deadlineMs: 300 });
  const http = createHttpServer();
  const wss = new WebSocketServer({ server: http });
  guard.watch(http);
  wss.on('connection', (ws: WebSocket, req: IncomingMessage) =>
    guard.onExpire(req.socket, () => ws.close(4000, 'too slow')),
  );
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  t.teardown(() => {
    guard.close();
    wss.close();
    http.close();
    http.closeAllConnections();
  });
  const port = (http.address() as net.AddressInfo).port;
  const ws = new WebSocket(`ws://127.0.0.1:${port}`);
  const code = await bounded(
    new Promise<number>((resolve) => ws.once('close', (c: number) => resolve(c))),
    'the polite close',
  );
  t.equal(code, 4000, "closed with the listener's code");
  // A peer that never answers the close frame is destroyed after the grace.
  const raw = openFlood(port, '127.0.0.4', 'big-frame');
  raw.socket.removeAllListeners('data'); // upgrade, then stay silent: never answer the close
  raw.socket.on('data', (d: Buffer) => {
    raw.received += d.toString('latin1');
  });
  await bounded(raw.closed, 'the silent peer being destroyed');
  t.match(raw.received, /^HTTP\/1\.1 101/, 'it had upgraded');
  t.ok(
    raw.closedAt! - raw.openedAt < 300 + 1000 + 3000,
    `destroyed after deadline and grace (${raw.closedAt! - raw.openedAt} ms)`,
  );
});

t.test('the per-address cap refuses at accept; other addresses still get in', async (t) => {
  const log = capturingLogger();
  const { port, guard } = await tcpServer(t, { deadlineMs: 60_000, maxPendingPerAddress: 3 }, log.logger);
  const fates: string[] = [];
  const mine: Client[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await client(port, '127.0.0.2');
    fates.push(r.fate);
    mine.push(r.c);
  }
  t.same(
    fates,
    ['kept', 'kept', 'kept', 'refused', 'refused'],
    'the 4th and 5th connection from one address are refused at accept',
  );
  const other = await client(port, '127.0.0.3');
  t.equal(other.fate, 'kept', 'another address is accepted');
  await admitted(other.c);
  t.equal(guard.pending, 3, 'three pending (the admitted one does not count)');
  t.same(
    mine.map((c) => c.isClosed()),
    [false, false, false, true, true],
    'the first three are still open',
  );
  const first = log.lines.filter((l) => l.msg === 'connection refused' && l.address === '127.0.0.2');
  t.equal(first.length, 1, 'one log line for two refusals from the address');
  t.equal(first[0]?.kind, 'address cap');
});

t.test(
  "the total cap: a newcomer from a quieter address evicts the busiest address's oldest; otherwise it is refused",
  async (t) => {
    const log = capturingLogger();
    const { port, guard } = await tcpServer(
      t,
      { deadlineMs: 60_000, maxPending: 4, maxPendingPerAddress: 3 },
      log.logger,
    );
    const busy = [];
    for (let i = 0; i < 3; i++) busy.push((await client(port, '127.0.0.2')).c);
    const quiet = await client(port, '127.0.0.3');
    t.equal(quiet.fate, 'kept');
    t.equal(guard.pending, 4, 'full');
    const newcomer = await client(port, '127.0.0.4');
    t.equal(newcomer.fate, 'kept', 'a newcomer from an address with none pending gets in');
    await bounded(busy[0]!.closed, "the busiest address's oldest connection closing");
    t.same(
      busy.map((c) => c.isClosed()),
      [true, false, false],
      "it took the place of the busiest address's oldest connection",
    );
    const again = await client(port, '127.0.0.3');
    t.equal(again.fate, 'refused', 'an address holding about as many as the busiest is refused when the total is full');
    t.equal(guard.pending, 4, 'still at the cap');
    await admitted(newcomer.c);
    t.equal((await client(port, '127.0.0.3')).fate, 'kept', 'a freed place is taken');
    t.ok(
      log.lines.some((l) => l.msg === 'connection refused' && l.kind === 'evicted' && l.address === '127.0.0.2'),
      'the eviction is logged',
    );
    t.ok(
      log.lines.some((l) => l.msg === 'connection refused' && l.kind === 'total cap' && l.address === '127.0.0.3'),
      'the refusal is logged',
    );
  },
);

t.test('an oversized request head is answered 431 at once; an unfinished one is cut at the deadline', async (t) => {
  const log = capturingLogger();
  const guard = new AdmissionGuard({ name: 'test', proof: 'request', logger: log.logger, deadlineMs: 500 });
  const http = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => {
    guard.admit(req.socket);
    res.end('ok');
  });
  guard.watch(http, { upgrades: false });
  http.listen(0, '127.0.0.1');
  await once(http, 'listening');
  t.teardown(() => {
    guard.close();
    http.close();
    http.closeAllConnections();
  });
  const port = (http.address() as net.AddressInfo).port;
  const big = openFlood(port, '127.0.0.2', 'big-head');
  const slow = openFlood(port, '127.0.0.3', 'partial-head');
  const key = openFlood(port, '127.0.0.4', 'long-key');
  await bounded(big.closed, 'the oversized head being refused');
  t.match(big.received, /^HTTP\/1\.1 431 /, 'answered 431');
  t.ok(big.closedAt! - big.openedAt < 500, `before the deadline (${big.closedAt! - big.openedAt} ms)`);
  for (const s of [slow, key]) {
    await bounded(s.closed, `the ${s.kind} connection being cut`);
    t.ok(s.closedAt! - s.openedAt >= 450, `${s.kind}: cut at the deadline (${s.closedAt! - s.openedAt} ms)`);
  }
  const kinds = Object.fromEntries(
    log.lines.filter((l) => l.msg === 'connection refused').map((l) => [l.address, l.kind]),
  );
  t.same(kinds, { '127.0.0.2': 'oversized', '127.0.0.3': 'deadline', '127.0.0.4': 'deadline' });
});

t.test(
  'before admission a WebSocket peer may send only a little; after it, as much as the server allows',
  async (t) => {
    const log = capturingLogger();
    const guard = new AdmissionGuard({
      name: 'test',
      proof: 'hello',
      logger: log.logger,
      deadlineMs: 30_000,
      maxUnprovenBytes: 1024,
    });
    const http = createHttpServer();
    const wss = new WebSocketServer({ server: http, maxPayload: 8 << 20 });
    guard.watch(http);
    wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
      ws.on('message', (data: Buffer) => {
        if (data.toString() === 'let me in') ws.send(guard.admit(req.socket) ? 'in' : 'no');
        else ws.send(String(data.length));
      });
    });
    http.listen(0, '127.0.0.1');
    await once(http, 'listening');
    t.teardown(() => {
      guard.close();
      for (const c of wss.clients) c.terminate();
      wss.close();
      http.close();
      http.closeAllConnections();
    });
    const port = (http.address() as net.AddressInfo).port;
    const open = async (): Promise<WebSocket> => {
      const ws = new WebSocket(`ws://127.0.0.1:${port}`);
      ws.on('error', () => undefined);
      await bounded(once(ws, 'open'), 'upgrade');
      return ws;
    };
    const reply = (ws: WebSocket) =>
      bounded(
        new Promise<string>((resolve, reject) => {
          ws.once('message', (d: Buffer) => resolve(d.toString()));
          ws.once('close', (c: number) => reject(new Error(`closed (${c})`)));
        }),
        'a reply',
      );

    const small = await open();
    small.send(Buffer.alloc(500));
    t.equal(await reply(small), '500', 'a small first message is read');
    const early = await open();
    const closed = bounded(
      new Promise<number>((resolve) => early.once('close', (c: number) => resolve(c))),
      'the oversized first message being refused',
    );
    early.send(Buffer.alloc(4096));
    t.equal(await closed, 1006, 'a 4 KiB first message: the connection is destroyed');
    const member = await open();
    member.send('let me in');
    t.equal(await reply(member), 'in');
    member.send(Buffer.alloc(4 << 20));
    t.equal(await reply(member), String(4 << 20), 'an admitted peer sends 4 MiB');
    t.ok(
      log.lines.some(
        (l) => l.msg === 'connection refused' && l.kind === 'oversized' && /more than 1024 bytes/.test(l.reason ?? ''),
      ),
      'the refusal is logged',
    );
    small.close();
    member.close();
  },
);

t.test('under TLS the admitted socket is the TLS socket; idle and failed handshakes are refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-admission-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'k.pem',
      '-out',
      'c.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
    ],
    { cwd: dir, stdio: 'ignore', timeout: 20_000 },
  );
  const log = capturingLogger();
  const guard = new AdmissionGuard({ name: 'test', proof: 'request', logger: log.logger, deadlineMs: 600 });
  const https = createHttpsServer(
    { cert: readFileSync(join(dir, 'c.pem')), key: readFileSync(join(dir, 'k.pem')) },
    (req, res) => {
      res.end(guard.admit(req.socket) ? 'in' : 'no');
    },
  );
  https.keepAliveTimeout = 60_000;
  guard.watch(https, { upgrades: false });
  https.listen(0, '127.0.0.1');
  await once(https, 'listening');
  t.teardown(() => {
    guard.close();
    https.close();
    https.closeAllConnections();
  });
  const port = (https.address() as net.AddressInfo).port;
  const good = tls.connect({ port, host: '127.0.0.1', rejectUnauthorized: false });
  good.on('error', () => undefined);
  t.teardown(() => good.destroy());
  let answer = '';
  await bounded(
    new Promise<void>((resolve) => {
      good.once('secureConnect', () => good.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n'));
      good.on('data', (d: Buffer) => {
        answer += d.toString();
        if (answer.endsWith('in')) resolve();
      });
    }),
    'the TLS request',
  );
  const idle = openFlood(port, '127.0.0.3', 'idle');
  const plain = openFlood(port, '127.0.0.4', 'partial-head'); // not TLS: the handshake fails
  await bounded(idle.closed, 'the idle connection being cut');
  await bounded(plain.closed, 'the failed handshake being refused');
  t.ok(idle.closedAt! - idle.openedAt >= 550, `idle: cut at the deadline (${idle.closedAt! - idle.openedAt} ms)`);
  t.equal(good.destroyed, false, 'the admitted TLS connection (opened first) is still open');
  t.equal(guard.pending, 0);
  t.ok(
    log.lines.some((l) => l.msg === 'connection refused' && l.address === '127.0.0.4' && l.kind === 'tls'),
    'the failed TLS handshake is logged',
  );
});

t.test('refusals are logged once per address, then summarised with a count', async (t) => {
  const log = capturingLogger();
  const { port } = await tcpServer(t, { deadlineMs: 60_000, maxPendingPerAddress: 1, logIntervalMs: 1000 }, log.logger);
  t.equal((await client(port, '127.0.0.5')).fate, 'kept');
  const N = 40;
  const fates = await Promise.all(Array.from({ length: N }, () => client(port, '127.0.0.5').then((r) => r.fate)));
  t.equal(fates.filter((f) => f === 'refused').length, N, `${N} connections refused`);
  t.equal((await client(port, '127.0.0.6')).fate, 'kept', 'meanwhile another address gets in');
  const from5 = (ls: LogRec[], msg: string) => ls.filter((l) => l.msg === msg && l.address === '127.0.0.5');
  const counted = (ls: LogRec[]) =>
    from5(ls, 'connection refused').length + from5(ls, 'connections refused').reduce((n, l) => n + (l.count ?? 0), 0);
  await log.waitFor((ls) => counted(ls) === N, `lines accounting for all ${N} refusals`);
  const first = from5(log.lines, 'connection refused');
  const summaries = from5(log.lines, 'connections refused');
  t.equal(first.length, 1, 'one line for the first refusal');
  t.ok(summaries.length >= 1 && summaries.length <= 3, `the other ${N - 1} in ${summaries.length} summary line(s)`);
  t.equal(
    summaries.reduce((m, l) => m + (l.reasons?.['address cap'] ?? 0), 0),
    N - 1,
    'with their reasons counted',
  );
  t.equal(log.lines.length, first.length + summaries.length, `${log.lines.length} log lines in all for ${N} refusals`);
});
