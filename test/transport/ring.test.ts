// The WebSocket Link in one process: payloads of every size in both receive modes, messages that arrive
// early or while their receive is being posted, a ring of three ranks with jittered receives against a
// float64 sum, the handshake rules, and bad frames from a fake neighbour rejected with E_PROTOCOL.
import t, { type Test } from 'tap';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { WebSocket, WebSocketServer } from 'ws';
import {
  connectRing,
  listenRing,
  wsLink,
  RING_CLOSE_AUTH,
  type RingIncoming,
  type RingListener,
  type RingOutgoing,
} from '../../shared/transport/ring/index.js';
import { createRingBuffer, ringAllReduce } from '../../shared/allreduce/ring.js';
import type { Link } from '../../shared/allreduce/link.js';
import { xorshiftRng as rng } from '../helpers/numerics.js';
import { WolfpackError, isWolfpackError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';

function randomArray(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** One sender (server side) and one receiver (client side) on loopback. */
async function pair(
  opts: { maxChunkBytes?: number } = {},
): Promise<{ out: RingOutgoing; inc: RingIncoming; listener: RingListener }> {
  const listener = await listenRing({ host: '127.0.0.1', port: 0, ...opts });
  const [out, inc] = await Promise.all([
    listener.accept({ rank: 1, jobId: 'j' }, 5000),
    connectRing(`ws://127.0.0.1:${listener.port}`, { rank: 1, size: 2, jobId: 'j' }, { timeoutMs: 5000, ...opts }),
  ]);
  await listener.close();
  return { out, inc, listener };
}

t.test('payloads of all sizes, both receive modes, early and late receives', async (tt) => {
  const { out, inc } = await pair();
  const r = rng(7);
  let tag = 0;
  for (const n of [0, 1, 3, 1023, 1024, 1025, 4099, 65_537, 1_000_003]) {
    for (const mode of ['sink', 'array'] as const) {
      for (const when of ['before', 'after', 'late'] as const) {
        const data = randomArray(n, r);
        const got = new Float32Array(n);
        const recv = (): Promise<void> =>
          mode === 'array'
            ? inc.recv(tag, n, got)
            : inc.recv(tag, n, (v) => {
                got.set(v);
              });
        let done: Promise<void>;
        if (when === 'before') {
          done = recv();
          await out.send(tag, data);
        } else {
          const sent = out.send(tag, data);
          // 'after': posted at once, the header is not in yet; 'late': parts of the message (or all) are
          if (when === 'late') await sleep(Math.floor(r() * 3));
          done = recv();
          await sent;
        }
        await done;
        if (!sameBits(got, data)) tt.fail(`n=${n} ${mode} ${when}: payload differs`);
        tag++;
      }
    }
  }
  tt.pass(`${tag} messages intact`);
  out.close();
  inc.close();
});

t.test('a receive posted while its message is being read, many times', async (tt) => {
  const { out, inc } = await pair();
  const r = rng(11);
  const n = 2_000_000; // 8 MB: several socket reads
  const data = randomArray(n, r);
  for (let i = 0; i < 12; i++) {
    const got = new Float32Array(n);
    const sent = out.send(i, data);
    await new Promise<void>((resolve) => setImmediate(resolve));
    await sleep(i % 3);
    await Promise.all([sent, i % 2 === 0 ? inc.recv(i, n, got) : inc.recv(i, n, (v) => got.set(v))]);
    if (!sameBits(got, data)) tt.fail(`round ${i}: payload differs`);
  }
  tt.pass('intact');
  out.close();
  inc.close();
});

t.test('early messages: the receiver stops reading past maxEarlyBytes, then catches up', async (tt) => {
  const listener = await listenRing({ host: '127.0.0.1', port: 0 });
  const [out, inc] = await Promise.all([
    listener.accept({}, 5000),
    connectRing(
      `ws://127.0.0.1:${listener.port}`,
      { rank: 0, jobId: 'j' },
      { timeoutMs: 5000, maxEarlyBytes: 100_000 },
    ),
  ]);
  await listener.close();
  const r = rng(5);
  const msgs = Array.from({ length: 40 }, () => randomArray(50_000, r)); // 8 MB, far past the limit
  const sent = msgs.map((m, i) => out.send(i, m));
  await sleep(30);
  for (let i = 0; i < msgs.length; i++) {
    const got = new Float32Array(50_000);
    await inc.recv(i, 50_000, i % 2 ? got : (v) => got.set(v));
    if (!sameBits(got, msgs[i]!)) tt.fail(`message ${i} differs`);
  }
  await Promise.all(sent);
  tt.pass('all 40 messages intact');
  out.close();
  inc.close();
});

t.test('unordered mode matches tags whatever the order of receives', async (tt) => {
  const listener = await listenRing({ host: '127.0.0.1', port: 0, maxChunkBytes: 1 << 20 });
  const [out, inc] = await Promise.all([
    listener.accept({}, 5000),
    connectRing(`ws://127.0.0.1:${listener.port}`, { rank: 0, jobId: 'j' }, { timeoutMs: 5000, ordered: false }),
  ]);
  await listener.close();
  const r = rng(9);
  const msgs = Array.from({ length: 10 }, (_, i) => randomArray(1000 + i, r));
  const got = msgs.map((m) => new Float32Array(m.length));
  const recvs = msgs.map((m, i) => 9 - i).map((i) => inc.recv(i, msgs[i]!.length, got[i]!));
  await Promise.all(msgs.map((m, i) => out.send(i, m)));
  await Promise.all(recvs);
  tt.ok(
    msgs.every((m, i) => sameBits(m, got[i]!)),
    'all intact',
  );
  await tt.rejects(
    out.send(99, new Float32Array((1 << 18) + 1)),
    { code: 'E_USAGE' },
    'send above maxChunkBytes refused',
  );
  out.close();
  inc.close();
});

/**
 * A Link whose receives are posted after random delays (in order, as the ring posts them), so that
 * messages arrive before their receives and receives are posted while their message is being read.
 */
function jittered(link: Link, r: () => number): Link {
  let last: Promise<unknown> = Promise.resolve();
  return {
    send: (tag, data) => link.send(tag, data),
    recv: (tag, count, into) => {
      const x = r();
      const posted = last.then(async () => {
        if (x < 0.3) await sleep(Math.floor(x * 10));
        else if (x < 0.6) await new Promise<void>((resolve) => setImmediate(resolve));
        return link.recv(tag, count, into);
      });
      last = posted.catch(() => undefined);
      return posted;
    },
    close: () => link.close(),
  };
}

t.test('ring of three over WebSockets, jittered receives, against a float64 sum', async (tt) => {
  const n = 3;
  const listeners = await Promise.all([0, 1, 2].map(() => listenRing({ host: '127.0.0.1', port: 0 })));
  const halves = await Promise.all(
    [0, 1, 2].map((rank) =>
      Promise.all([
        listeners[rank]!.accept({ rank: (rank + 1) % n, jobId: 'ring' }, 5000),
        connectRing(
          `ws://127.0.0.1:${listeners[(rank + n - 1) % n]!.port}`,
          { rank, size: n, jobId: 'ring' },
          { timeoutMs: 5000 },
        ),
      ]),
    ),
  );
  await Promise.all(listeners.map((l) => l.close()));
  const r = rng(3);
  const links = halves.map(([o, i]) => jittered(wsLink(o, i), r));
  let step = 0;
  for (const len of [1, 2, 5, 1000, 100_003]) {
    for (const kind of ['ring', 'plain'] as const) {
      for (const chunkElems of [7, 4096, 1 << 20]) {
        if (len > 1000 && chunkElems === 7) continue;
        const inputs = [0, 1, 2].map(() => randomArray(len, r));
        const bufs = inputs.map((a) => {
          const b = kind === 'ring' ? createRingBuffer(len, { maxChunkElems: 4096 }) : new Float32Array(len);
          b.set(a);
          return b;
        });
        const s = step++;
        await Promise.all(bufs.map((b, rank) => ringAllReduce(b, rank, n, links[rank]!, { step: s, chunkElems })));
        let bad = -1;
        for (let i = 0; i < len && bad < 0; i++) {
          const sum = inputs[0]![i]! + inputs[1]![i]! + inputs[2]![i]!;
          const mag = Math.abs(inputs[0]![i]!) + Math.abs(inputs[1]![i]!) + Math.abs(inputs[2]![i]!);
          if (Math.abs(bufs[0]![i]! - sum) > 2 * 2 ** -24 * mag) bad = i;
        }
        tt.equal(bad, -1, `len=${len} ${kind} chunk=${chunkElems}: matches the float64 sum`);
        tt.ok(sameBits(bufs[0]!, bufs[1]!) && sameBits(bufs[0]!, bufs[2]!), 'bitwise identical on every rank');
      }
    }
  }
  for (const l of links) l.close();
});

t.test('handshake: job, rank and auth are checked before the welcome', async (tt) => {
  const listener = await listenRing({
    host: '127.0.0.1',
    port: 0,
    verifyHello: (hello) => {
      if (hello.auth !== 'secret') throw new WolfpackError('E_AUTH', 'bad token');
    },
  });
  const url = `ws://127.0.0.1:${listener.port}`;
  const accepted = listener.accept({ rank: 2, jobId: 'job' }, 5000);
  await tt.rejects(
    connectRing(url, { rank: 2, jobId: 'job', auth: 'wrong' }, { timeoutMs: 5000 }),
    { code: 'E_AUTH' },
    'auth hook refuses',
  );
  await tt.rejects(
    connectRing(url, { rank: 3, jobId: 'job', auth: 'secret' }, { timeoutMs: 5000 }),
    { code: 'E_PROTOCOL' },
    'unexpected rank refused',
  );
  const ok = await connectRing(url, { rank: 2, jobId: 'job', auth: 'secret' }, { timeoutMs: 5000 });
  const out = await accepted;
  tt.equal(out.hello.rank, 2, 'accepted the expected neighbour');
  tt.equal(out.hello.auth, 'secret', 'auth field reaches the server');
  // a raw client whose first frame is not a hello
  const raw = new WebSocket(url);
  await once(raw, 'open');
  raw.send(Buffer.from([1, 2, 3]));
  const [code] = (await once(raw, 'close')) as [number, Buffer];
  tt.equal(code, 4400, 'binary first frame refused with 4400');
  await tt.rejects(connectRing('http://x', { rank: 0, jobId: 'j' }), { code: 'E_USAGE' });
  await tt.rejects(
    connectRing(`ws://127.0.0.1:1`, { rank: 0, jobId: 'j' }, { timeoutMs: 300, retryMs: 50 }),
    { code: 'E_WORKER' },
    'gives up on a closed port',
  );
  ok.close();
  out.close();
  await listener.close();
});

t.test('a neighbour that goes away fails the link with E_WORKER', async (tt) => {
  const { out, inc } = await pair();
  const p = inc.recv(1, 10, () => undefined);
  out.close();
  await tt.rejects(p, { code: 'E_WORKER' }, 'pending receive rejects');
  await tt.rejects(
    inc.recv(2, 10, () => undefined),
    { code: 'E_WORKER' },
    'later receives reject',
  );
  await tt.rejects(out.send(3, new Float32Array(2)), { code: 'E_WORKER' }, 'sends after close reject');
});

// ---- bad frames from a fake left neighbour (a plain ws server) -------------------------------------

function header(
  tagLo: number,
  count: number,
  patch: Partial<{ magic: number; version: number; kind: number; hi: number }> = {},
): Buffer {
  const h = Buffer.alloc(16);
  h[0] = patch.magic ?? 0x57;
  h[1] = patch.version ?? 1;
  h[2] = patch.kind ?? 1;
  h.writeUInt32LE(patch.hi ?? 0, 4);
  h.writeUInt32LE(tagLo, 8);
  h.writeUInt32LE(count, 12);
  return h;
}

interface Captured {
  lines: string[];
}

function capturingLogger(): { logger: Logger; cap: Captured } {
  const cap: Captured = { lines: [] };
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      cap.lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'warn' }, stream) as unknown as Logger, cap };
}

async function badFrame(
  tt: Test,
  name: string,
  frames: (ws: WebSocket) => void,
  expect: { tag: number; count: number },
  wantClose: number,
  maxChunkBytes?: number,
): Promise<void> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  await once(wss, 'listening');
  const port = (wss.address() as { port: number }).port;
  const closed = new Promise<number>((resolve) => {
    wss.on('connection', (ws) => {
      ws.once('message', () => {
        ws.send(JSON.stringify({ t: 'welcome', v: 1 }));
        frames(ws);
      });
      ws.on('close', (code) => resolve(code));
    });
  });
  const { logger, cap } = capturingLogger();
  const inc = await connectRing(
    `ws://127.0.0.1:${port}`,
    { rank: 1, size: 2, jobId: 'j' },
    { timeoutMs: 5000, logger, maxChunkBytes },
  );
  let err: unknown;
  try {
    await inc.recv(expect.tag, expect.count, () => undefined);
  } catch (e) {
    err = e;
  }
  tt.ok(
    isWolfpackError(err, 'E_PROTOCOL'),
    `${name}: E_PROTOCOL (${err instanceof Error ? err.message : String(err)})`,
  );
  tt.equal(await closed, wantClose, `${name}: connection closed with ${wantClose}`);
  tt.ok(
    cap.lines.some((l) => l.includes('protocol error')),
    `${name}: reason logged`,
  );
  await tt.rejects(
    inc.recv(99, 1, () => undefined),
    { code: 'E_PROTOCOL' },
    `${name}: later receives fail too`,
  );
  wss.close();
}

t.test('bad frames are rejected with E_PROTOCOL and close the connection', async (tt) => {
  const payload = (n: number): Buffer => Buffer.alloc(4 * n);
  await badFrame(
    tt,
    'wrong magic',
    (ws) => ws.send(Buffer.concat([header(0, 4, { magic: 0x42 }), payload(4)])),
    { tag: 0, count: 4 },
    1002,
  );
  await badFrame(
    tt,
    'wrong version',
    (ws) => ws.send(Buffer.concat([header(0, 4, { version: 9 }), payload(4)])),
    { tag: 0, count: 4 },
    1002,
  );
  await badFrame(
    tt,
    'wrong count',
    (ws) => ws.send(Buffer.concat([header(0, 10), payload(10)])),
    { tag: 0, count: 12 },
    1002,
  );
  await badFrame(
    tt,
    'payload shorter than the count',
    (ws) => ws.send(Buffer.concat([header(0, 10), payload(9)])),
    { tag: 0, count: 10 },
    1002,
  );
  await badFrame(
    tt,
    'payload longer than the count',
    (ws) => ws.send(Buffer.concat([header(0, 10), payload(11)])),
    { tag: 0, count: 10 },
    1002,
  );
  await badFrame(
    tt,
    'fragment longer than the count',
    (ws) => {
      ws.send(header(0, 10), { fin: false });
      ws.send(payload(11), { fin: true });
    },
    { tag: 0, count: 10 },
    1009,
  );
  await badFrame(
    tt,
    'count over the limit',
    (ws) => ws.send(header(0, 1_000_000)),
    { tag: 0, count: 1_000_000 },
    1009,
    1024,
  );
  await badFrame(tt, 'oversized frame', (ws) => ws.send(Buffer.alloc(4096)), { tag: 0, count: 10 }, 1009, 1024);
  await badFrame(
    tt,
    'unexpected tag',
    (ws) => ws.send(Buffer.concat([header(5, 4), payload(4)])),
    { tag: 4, count: 4 },
    1002,
  );
  await badFrame(tt, 'text frame on the data channel', (ws) => ws.send('hello'), { tag: 0, count: 1 }, 1002);
  await badFrame(tt, 'short message', (ws) => ws.send(Buffer.alloc(8)), { tag: 0, count: 1 }, 1002);
  await badFrame(
    tt,
    'tag out of range',
    (ws) => ws.send(Buffer.concat([header(0, 1, { hi: 2 ** 22 }), payload(1)])),
    { tag: 0, count: 1 },
    1002,
  );
});

t.test('a data frame from the receiving side is a protocol error for the sender', async (tt) => {
  const listener = await listenRing({ host: '127.0.0.1', port: 0 });
  const accepted = listener.accept({}, 5000);
  const raw = new WebSocket(`ws://127.0.0.1:${listener.port}`);
  await once(raw, 'open');
  raw.send(JSON.stringify({ t: 'hello', v: 1, rank: 0, job: 'j' }));
  await once(raw, 'message'); // welcome
  const out = await accepted;
  raw.send(Buffer.alloc(20));
  await once(raw, 'close');
  let err: unknown;
  try {
    await out.send(0, new Float32Array(1));
  } catch (e) {
    err = e;
  }
  tt.ok(isWolfpackError(err, 'E_PROTOCOL'), `send fails with E_PROTOCOL (${String(err)})`);
  await listener.close();
  tt.equal(RING_CLOSE_AUTH, 4401);
});
