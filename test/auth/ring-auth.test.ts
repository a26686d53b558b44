// Ring links are authenticated and bound to the job, the rank and the ring generation: real listeners
// and connections on 127.0.0.1 (shared/transport/ring/ with shared/auth/ring-auth.ts's verifyHello).
// A wrong token, no proof, another job's worker, a stale generation, a relabelled rank, a replayed hello
// and a hello far off the clock are all refused with E_AUTH, the message never holds the token, and the
// listener keeps serving the right neighbour afterwards; a hello of a job or ring generation the listener has
// not learned yet waits for it, bounded. The token never appears in the bytes on the wire.
import t, { type Test } from 'tap';
import { RingHelloVerifier, ringHelloAuth, RING_AUTH_WINDOW_MS } from '../../shared/auth/ring-auth.js';
import { SharedSecret } from '../../shared/auth/secret.js';
import { isWolfpackError, WolfpackError } from '../../shared/errors.js';
import {
  connectRing,
  listenRing,
  wsLink,
  type RingHello,
  type RingListener,
} from '../../shared/transport/ring/index.js';
import { captureProxy, secretForms } from '../helpers/capture-proxy.js';

const TOKEN = 'ring-test-token-' + 'q7'.repeat(12);
const WRONG = 'ring-test-wrong-' + 'z9'.repeat(12);
const secret = new SharedSecret(TOKEN, 'test');
const wrong = new SharedSecret(WRONG, 'test');
const JOB = 'job-a1b2c3';

async function ring(t: Test, verifier: RingHelloVerifier): Promise<RingListener> {
  const listener = await listenRing({ host: '127.0.0.1', port: 0, helloTimeoutMs: 5000, verifyHello: verifier.verify });
  t.teardown(() => listener.close());
  return listener;
}

function url(l: RingListener, port = l.port): string {
  return `ws://127.0.0.1:${port}`;
}

/** Connects with `hello`; resolves with the error (or null when admitted; the link is then closed). */
async function tryConnect(u: string, hello: RingHello): Promise<WolfpackError | null> {
  try {
    const inc = await connectRing(u, hello, { timeoutMs: 5000 });
    inc.close();
    return null;
  } catch (e) {
    if (e instanceof WolfpackError) return e;
    throw e;
  }
}

function refusedWith(t: Test, err: WolfpackError | null, re: RegExp, what: string): void {
  t.ok(isWolfpackError(err, 'E_AUTH'), `${what}: E_AUTH (${err?.code} ${err?.message})`);
  t.match(err?.message ?? '', /E_AUTH/, `${what}: the message says E_AUTH`);
  t.match(err?.message ?? '', re, `${what}: the message says why`);
  for (const f of [...secretForms(TOKEN), ...secretForms(WRONG)])
    t.notOk((err?.message ?? '').includes(f.toString()), `${what}: no token in the message`);
}

t.test('the right neighbour with the token is admitted and the link carries data', async (t) => {
  const v = new RingHelloVerifier(secret);
  v.expect(JOB, 0);
  const l = await ring(t, v);
  const hello = { rank: 1, size: 2, jobId: JOB };
  const [inc, out] = await Promise.all([
    connectRing(url(l), { ...hello, auth: ringHelloAuth(secret, hello) }, { timeoutMs: 5000 }),
    l.accept({ rank: 1, jobId: JOB }, 5000),
  ]);
  const link = wsLink(out, inc);
  const got = new Float32Array(3);
  await Promise.all([out.send(7, Float32Array.of(1, 2, 3)), inc.recv(7, 3, got)]);
  t.same([...got], [1, 2, 3]);
  link.close();
});

t.test('refusals: wrong token, no proof, another job, stale generation, relabelled rank, replay, clock', async (t) => {
  const v = new RingHelloVerifier(secret);
  v.expect(JOB, 3);
  const l = await ring(t, v);
  const h = { rank: 1, size: 4, jobId: JOB };

  refusedWith(t, await tryConnect(url(l), { ...h, auth: ringHelloAuth(wrong, h, 3) }), /wrong token/, 'wrong token');
  refusedWith(t, await tryConnect(url(l), h), /carries no proof/, 'no proof');
  refusedWith(
    t,
    await tryConnect(url(l), { ...h, auth: { v: 1, gen: 3, ts: Date.now(), nonce: 'x', proof: 'y' } }),
    /nonce/,
    'malformed proof',
  );
  const other = { ...h, jobId: 'job-other' };
  refusedWith(
    t,
    await tryConnect(url(l), { ...other, auth: ringHelloAuth(secret, other, 3) }),
    /another job/,
    'a worker of another job',
  );
  refusedWith(
    t,
    await tryConnect(url(l), { ...h, auth: ringHelloAuth(secret, h, 2) }),
    /generation 2.*generation 3|stale/,
    'a stale worker (old ring generation)',
  );
  refusedWith(
    t,
    await tryConnect(url(l), { ...h, rank: 2, auth: ringHelloAuth(secret, h, 3) }),
    /does not match/,
    'a hello relabelled with another rank',
  );
  refusedWith(
    t,
    await tryConnect(url(l), { ...h, auth: ringHelloAuth(secret, h, 3, Date.now() - RING_AUTH_WINDOW_MS - 60_000) }),
    /off this host's clock/,
    'a hello from long ago',
  );

  // A valid hello is admitted once; the same bytes again are a replay.
  const auth = ringHelloAuth(secret, h, 3);
  const accepted = l.accept({ rank: 1, jobId: JOB }, 5000);
  t.equal(
    await tryConnect(url(l), { ...h, auth }),
    null,
    'the right neighbour is still admitted after all the refusals',
  );
  (await accepted).close();
  refusedWith(t, await tryConnect(url(l), { ...h, auth }), /replayed/, 'a replayed hello');
});

t.test('a hello that arrives before the listener learns its job waits for it (bounded)', async (t) => {
  const v = new RingHelloVerifier(secret, { jobWaitMs: 3000 });
  const l = await ring(t, v);
  const h = { rank: 0, size: 2, jobId: JOB };
  setTimeout(() => v.expect(JOB, 0), 200);
  const [inc, out] = await Promise.all([
    connectRing(url(l), { ...h, auth: ringHelloAuth(secret, h) }, { timeoutMs: 5000 }),
    l.accept({ rank: 0, jobId: JOB }, 5000),
  ]);
  t.ok(out, 'admitted once the job is known');
  wsLink(out, inc).close();

  const v2 = new RingHelloVerifier(secret, { jobWaitMs: 200 });
  const l2 = await ring(t, v2);
  refusedWith(
    t,
    await tryConnect(url(l2), { ...h, auth: ringHelloAuth(secret, h) }),
    /did not learn its job/,
    'a listener that never learns its job',
  );
});

t.test(
  'a hello of a re-formed ring that arrives before the listener reads its own order waits for it (bounded)',
  async (t) => {
    // Workers bind each ring to `${jobId}/g${generation}`; a neighbour may connect before this worker has read
    // its 'ring'.
    const v = new RingHelloVerifier(secret, { jobWaitMs: 3000 });
    v.expect(`${JOB}/g17`, 17);
    const l = await ring(t, v);
    const h = { rank: 0, size: 2, jobId: `${JOB}/g19` };
    setTimeout(() => v.expect(`${JOB}/g19`, 19), 200);
    const [inc, out] = await Promise.all([
      connectRing(url(l), { ...h, auth: ringHelloAuth(secret, h, 19) }, { timeoutMs: 5000 }),
      l.accept({ rank: 0, jobId: h.jobId }, 5000),
    ]);
    t.ok(out, 'admitted once the listener is at generation 19');
    wsLink(out, inc).close();

    const v2 = new RingHelloVerifier(secret, { jobWaitMs: 200 });
    v2.expect(`${JOB}/g17`, 17);
    const l2 = await ring(t, v2);
    refusedWith(
      t,
      await tryConnect(url(l2), { ...h, auth: ringHelloAuth(secret, h, 19) }),
      /ring generation 19 is not known here \(this worker is at generation 17/,
      'a ring the listener never learns of',
    );
  },
);

t.test('the token never crosses the wire on a ring link', async (t) => {
  const v = new RingHelloVerifier(secret);
  v.expect(JOB, 0);
  const l = await ring(t, v);
  const proxy = await captureProxy(l.port);
  t.teardown(() => proxy.close());
  const h = { rank: 1, size: 2, jobId: JOB };
  const [inc, out] = await Promise.all([
    connectRing(url(l, proxy.port), { ...h, auth: ringHelloAuth(secret, h) }, { timeoutMs: 5000 }),
    l.accept({ rank: 1, jobId: JOB }, 5000),
  ]);
  const got = new Float32Array(4);
  await Promise.all([out.send(1, Float32Array.of(4, 3, 2, 1)), inc.recv(1, 4, got)]);
  await tryConnect(url(l, proxy.port), { ...h, auth: ringHelloAuth(wrong, h) }); // a refused one too
  wsLink(out, inc).close();
  const wire = proxy.bytes();
  t.ok(wire.includes(Buffer.from(`"job":"${JOB}"`)), `the capture holds the unmasked hello (${wire.length} bytes)`);
  t.ok(wire.includes(Buffer.from(Float32Array.of(4, 3, 2, 1).buffer)), 'and the data');
  for (const f of [...secretForms(TOKEN), ...secretForms(WRONG)])
    t.notOk(wire.includes(f), `no form of a token on the wire (${f.subarray(0, 8).toString()}...)`);
  t.notOk(secret.occursIn(wire), 'SharedSecret.occursIn agrees');
});
