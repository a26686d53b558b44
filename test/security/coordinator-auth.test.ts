// The coordinator connection is authenticated both ways before any hello (shared/auth/handshake.ts over
// a real CoordinatorServer on 127.0.0.1): the right token joins; a wrong token, a missing token, a token on
// the worker only (downgrade), a coordinator that cannot prove the token and a silent client are refused
// with E_AUTH naming the peer and never the token; a bad frame closes only its own connection; and the
// server keeps admitting good workers after every refusal. One real `wolfpack worker` process checks the
// CLI's message and exit status.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import t, { type Test } from 'tap';
import WebSocket, { WebSocketServer } from 'ws';
import { CoordinatorServer } from '../../coordinator/server.js';
import { authenticateToCoordinator, CLOSE_AUTH, newNonce } from '../../shared/auth/handshake.js';
import { SharedSecret } from '../../shared/auth/secret.js';
import { isWolfpackError, WolfpackError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { Channel, CLOSE_PROTOCOL } from '../../shared/protocol/channel.js';
import { runCli } from '../helpers/processes.js';
import { secretForms } from '../helpers/capture-proxy.js';

const TOKEN = 'coord-test-token-' + 'k3'.repeat(12);
const WRONG = 'coord-test-wrong-' + 'p8'.repeat(12);
const secret = new SharedSecret(TOKEN, 'test');
const wrong = new SharedSecret(WRONG, 'test');
const FORMS = [...secretForms(TOKEN), ...secretForms(WRONG)];

function capturingLogger(): { logger: Logger; text: () => string } {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink) as unknown as Logger, text: () => lines.join('') };
}

async function server(
  t: Test,
  sec: SharedSecret | undefined,
  logger: Logger,
  handshakeTimeoutMs = 2000,
): Promise<CoordinatorServer> {
  const s = await CoordinatorServer.listen('127.0.0.1', 0, logger, {
    security: sec ? { secret: sec } : {},
    handshakeTimeoutMs,
  });
  t.teardown(() => s.close());
  return s;
}

function open(port: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, handshakeTimeout: 5000 });
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
  });
}

/** A Channel made in the 'open' handler, so the coordinator's first frame (sent at once) is not missed. */
function openChannel(port: number): Promise<Channel> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, handshakeTimeout: 5000 });
    ws.once('open', () => resolve(new Channel(ws, 'coordinator')));
    ws.once('error', reject);
  });
}

/** A worker's start-up up to its hello; resolves with its channel or the error it got. */
async function joinAs(port: number, sec: SharedSecret | undefined, pid = 1): Promise<Channel | WolfpackError> {
  const ch = await openChannel(port);
  try {
    await authenticateToCoordinator(ch, sec, `ws://127.0.0.1:${port}`, 5000);
    await ch.send({
      type: 'hello',
      host: 'test',
      ringHost: '127.0.0.1',
      ringPort: 9,
      backend: 'cpu',
      pid,
      memberId: 'f'.repeat(32),
    });
    return ch;
  } catch (e) {
    ch.close();
    if (e instanceof WolfpackError) return e;
    throw e;
  }
}

function noToken(t: Test, text: string, what: string): void {
  t.ok(
    FORMS.every((f) => !text.includes(f.toString())),
    `${what}: no form of either token`,
  );
}

function refused(t: Test, r: Channel | WolfpackError, re: RegExp, what: string): void {
  t.ok(
    isWolfpackError(r, 'E_AUTH'),
    `${what}: E_AUTH (${r instanceof WolfpackError ? `${r.code} ${r.message}` : 'admitted'})`,
  );
  const msg = r instanceof Error ? r.message : '';
  t.match(
    msg,
    /^E_AUTH: coordinator at ws:\/\/127\.0\.0\.1:\d+: /,
    `${what}: the message says E_AUTH and names the coordinator`,
  );
  t.match(msg, re, `${what}: and why`);
  noToken(t, msg, what);
}

t.test('right token joins; wrong or missing token is refused and the server keeps serving', async (t) => {
  const log = capturingLogger();
  const s = await server(t, secret, log.logger);
  refused(t, await joinAs(s.port, wrong), /refused this worker \(authentication failed: wrong token\)/, 'wrong token');
  refused(t, await joinAs(s.port, undefined), /requires a shared token and this worker has none/, 'no token');
  const good = await joinAs(s.port, secret, 77);
  t.ok(good instanceof Channel, 'the right token joins after the refusals');
  const members = await s.members(1, 5000);
  t.equal(members.length, 1);
  t.equal(members[0]!.hello.pid, 77, 'the member is the authenticated worker');
  t.match(log.text(), /authentication failed/, 'the coordinator logs the refusal');
  t.match(log.text(), /wrong token: the worker's proof does not match/, 'with its reason');
  t.match(log.text(), /workers must prove the shared token/, 'and says it requires the token');
  noToken(t, log.text(), 'coordinator log');
  (good as Channel).close();
});

t.test('a worker with a token refuses a coordinator without one (no downgrade)', async (t) => {
  const log = capturingLogger();
  const s = await server(t, undefined, log.logger);
  refused(t, await joinAs(s.port, secret), /has no token, but this worker has one/, 'token on the worker only');
  t.ok(
    (await joinAs(s.port, undefined)) instanceof Channel,
    'a worker without a token joins a loopback coordinator without one',
  );
  t.match(log.text(), /no shared token .*listening on loopback only/, 'the coordinator says it is loopback-only');
});

t.test('a coordinator that cannot prove the token is refused by the worker', async (t) => {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 });
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const c of wss.clients) c.terminate();
        wss.close(() => resolve());
      }),
  );
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const port = (wss.address() as { port: number }).port;
  wss.on('connection', (ws) => {
    const ch = new Channel(ws, 'fake');
    void (async () => {
      await ch.send({ type: 'authChallenge', scheme: 'hmac-sha256', nonce: newNonce() });
      await ch.expect('authProof', 5000);
      await ch.send({ type: 'authOk', proof: newNonce() }); // an impostor cannot compute the real proof
    })().catch(() => undefined);
  });
  refused(t, await joinAs(port, secret), /its proof does not match this worker's token/, 'an impostor coordinator');
});

t.test('a silent client is cut off at the handshake deadline (from TCP accept)', async (t) => {
  const log = capturingLogger();
  const s = await server(t, secret, log.logger, 300);
  const ws = await open(s.port);
  const t0 = Date.now();
  const code = await new Promise<number>((resolve) => ws.once('close', (c: number) => resolve(c)));
  t.equal(code, CLOSE_AUTH, 'closed with the auth close code');
  t.ok(Date.now() - t0 < 3000, `within the bound (${Date.now() - t0} ms)`);
  t.match(log.text(), /"msg":"connection refused"/);
  t.match(log.text(), /no authentication within 300 ms of connecting/);
});

t.test('a bad frame closes only that connection; the coordinator keeps serving', async (t) => {
  const log = capturingLogger();
  const s = await server(t, secret, log.logger);
  const closedWith = (ws: WebSocket) => new Promise<number>((resolve) => ws.once('close', (c: number) => resolve(c)));
  const a = await open(s.port);
  const aClosed = closedWith(a);
  a.send(Buffer.from('not a wolfpack frame at all'), { binary: true });
  t.equal(await aClosed, CLOSE_PROTOCOL, 'garbage: closed with the protocol close code');
  const b = await open(s.port);
  const bClosed = closedWith(b);
  b.send('{"type":"hello"}');
  t.equal(await bClosed, CLOSE_PROTOCOL, 'a text frame: closed');
  const c = await open(s.port);
  const cClosed = closedWith(c);
  c.send(Buffer.from([0x57, 1, 0, 0, 0xff, 0xff, 0xff, 0x7f]), { binary: true });
  t.equal(await cClosed, CLOSE_PROTOCOL, 'a header length past the frame: closed');
  const good = await joinAs(s.port, secret, 5);
  t.ok(good instanceof Channel, 'a good worker still joins');
  const members = await s.members(1, 5000);
  t.same(
    members.map((m) => m.hello.pid),
    [5],
    'only the good worker is a member',
  );
  // Once per address (then counted), not once per connection: a flood of bad frames must not flood the log.
  const refusals = log
    .text()
    .split('\n')
    .filter((l) => /"msg":"connection refused"/.test(l));
  t.match(refusals[0], /no valid handshake: bad frame magic/, 'the first bad frame is logged with its reason');
  t.equal(refusals.length, 1, 'the other two are counted, not logged one by one');
  (good as Channel).close();
});

t.test('`wolfpack worker` with a wrong token exits 1 with E_AUTH and no token in its output', async (t) => {
  const log = capturingLogger();
  const s = await server(t, secret, log.logger);
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-sec-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'wrong'), WRONG + '\n', { mode: 0o600 });
  const r = await runCli(
    [
      'worker',
      '--connect',
      `ws://127.0.0.1:${s.port}`,
      '--token-file',
      join(dir, 'wrong'),
      '--backend',
      'cpu',
      '--timeout',
      '10',
    ],
    30_000,
  );
  t.equal(r.code, 1, 'exit status 1');
  t.match(
    r.stderr,
    /wolfpack worker: E_AUTH: coordinator at ws:\/\/127\.0\.0\.1:\d+: refused this worker/,
    'says E_AUTH and who refused',
  );
  noToken(t, r.stdout + r.stderr, 'worker output');
  const short = await runCli(
    ['worker', '--connect', `ws://127.0.0.1:${s.port}`, '--backend', 'cpu', '--timeout', '10'],
    30_000,
    { WOLFPACK_TOKEN: 'short' },
  );
  t.equal(short.code, 2, 'a token shorter than 16 bytes is a usage error');
  t.match(short.stderr, /at least 16 are required/);
});
