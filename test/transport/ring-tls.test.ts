// Ring links over TLS: the listener's self-signed certificate read back by Node's X.509 parser and by
// `openssl x509`; payloads of every size and a ring of three over wss:// against a float64 sum; the bytes on
// the wire (through a capturing proxy) carry neither the hello nor the data, while the same exchange over
// ws:// carries both; a listener whose certificate is not the pinned one gets nothing (no hello) and the
// connecting rank fails with E_AUTH; mismatched schemes and missing pins are refused.
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createRingBuffer, ringAllReduce } from '../../shared/allreduce/ring.js';
import { isWolfpackError } from '../../shared/errors.js';
import {
  connectRing,
  generateRingCertificate,
  listenRing,
  wsLink,
  type RingCertificate,
  type RingHello,
  type RingIncoming,
  type RingListener,
  type RingOutgoing,
} from '../../shared/transport/ring/index.js';
import { xorshiftRng as rng } from '../helpers/numerics.js';
import { captureProxy } from '../helpers/capture-proxy.js';

function randomArray(n: number, r: () => number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = r() * 2 - 1;
  return a;
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/** One sender and one receiver on loopback; with `cert`, over wss:// pinned to it (or to `pinOf`). */
async function pair(
  cert: RingCertificate | undefined,
  via?: number,
): Promise<{ out: RingOutgoing; inc: RingIncoming; listener: RingListener }> {
  const listener = await listenRing({ host: '127.0.0.1', port: 0, ...(cert ? { tls: cert } : {}) });
  const port = via ?? listener.port;
  const [out, inc] = await Promise.all([
    listener.accept({ rank: 1, jobId: 'job-marker-7f3a' }, 10_000),
    connectRing(
      `${cert ? 'wss' : 'ws'}://127.0.0.1:${port}`,
      { rank: 1, size: 2, jobId: 'job-marker-7f3a' },
      { timeoutMs: 10_000, ...(cert ? { pin: cert.fingerprint } : {}) },
    ),
  ]);
  await listener.close();
  return { out, inc, listener };
}

t.test(
  'the certificate: a self-signed Ed25519 v3 certificate whose fingerprint is the SHA-256 of its DER',
  async (t) => {
    const now = new Date();
    const cert = generateRingCertificate('wolfpack ring test', now);
    const x = new X509Certificate(cert.certPem);
    t.equal(x.subject, 'CN=wolfpack ring test', 'subject');
    t.equal(x.issuer, 'CN=wolfpack ring test', 'issuer (self-signed)');
    t.equal(x.publicKey.asymmetricKeyType, 'ed25519', 'an Ed25519 key');
    t.ok(x.verify(x.publicKey), 'the signature verifies under its own key');
    t.ok(new Date(x.validFrom) < now && new Date(x.validTo) > now, `valid now (${x.validFrom} .. ${x.validTo})`);
    t.equal(
      cert.fingerprint,
      x.fingerprint256.replace(/:/g, '').toLowerCase(),
      "the fingerprint is Node's fingerprint256",
    );
    t.match(cert.fingerprint, /^[0-9a-f]{64}$/);
    t.not(generateRingCertificate().fingerprint, cert.fingerprint, 'each certificate is new');

    const dir = mkdtempSync(join(tmpdir(), 'wolfpack-ring-cert-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    writeFileSync(join(dir, 'c.pem'), cert.certPem);
    const text = execFileSync(
      'openssl',
      ['x509', '-in', join(dir, 'c.pem'), '-noout', '-text', '-fingerprint', '-sha256'],
      { encoding: 'utf8', timeout: 20_000 },
    );
    t.match(text, /Version: 3 \(0x2\)/, 'openssl reads a v3 certificate');
    t.match(text, /Signature Algorithm: ED25519/);
    const fp = /sha256 Fingerprint=([0-9A-F:]+)/i.exec(text)?.[1] ?? '';
    t.equal(fp.replace(/:/g, '').toLowerCase(), cert.fingerprint, "openssl's SHA-256 fingerprint is the same");
    const verify = execFileSync('openssl', ['verify', '-CAfile', join(dir, 'c.pem'), join(dir, 'c.pem')], {
      encoding: 'utf8',
      timeout: 20_000,
    });
    t.match(verify, /: OK/, 'openssl verifies the self-signature');
  },
);

t.test('payloads of all sizes over wss://, both receive modes', async (t) => {
  const { out, inc } = await pair(generateRingCertificate());
  const r = rng(11);
  let tag = 0;
  for (const n of [0, 1, 1023, 4099, 65_537, 1_000_003]) {
    for (const mode of ['sink', 'array'] as const) {
      const data = randomArray(n, r);
      const got = new Float32Array(n);
      const done = mode === 'array' ? inc.recv(tag, n, got) : inc.recv(tag, n, (v) => void got.set(v));
      await out.send(tag, data);
      await done;
      t.ok(sameBits(got, data), `n=${n} ${mode}: same bits`);
      tag++;
    }
  }
  out.close();
  inc.close();
});

t.test('a ring of three over wss:// sums like the float64 reference, bitwise identical on every rank', async (t) => {
  const n = 3;
  const certs = [0, 1, 2].map(() => generateRingCertificate());
  const listeners = await Promise.all(certs.map((tls) => listenRing({ host: '127.0.0.1', port: 0, tls })));
  const halves = await Promise.all(
    [0, 1, 2].map((rank) => {
      const left = (rank + n - 1) % n;
      return Promise.all([
        listeners[rank]!.accept({ rank: (rank + 1) % n, jobId: 'ring' }, 10_000),
        connectRing(
          `wss://127.0.0.1:${listeners[left]!.port}`,
          { rank, size: n, jobId: 'ring' },
          { timeoutMs: 10_000, pin: certs[left]!.fingerprint },
        ),
      ]);
    }),
  );
  await Promise.all(listeners.map((l) => l.close()));
  const links = halves.map(([o, i]) => wsLink(o, i));
  const r = rng(5);
  const len = 300_007;
  const inputs = [0, 1, 2].map(() => randomArray(len, r));
  const bufs = inputs.map((a) => {
    const b = createRingBuffer(len, { maxChunkElems: 1 << 16 });
    b.set(a);
    return b;
  });
  await Promise.all(bufs.map((b, rank) => ringAllReduce(b, rank, n, links[rank]!, { step: 0, chunkElems: 1 << 16 })));
  let bad = -1;
  for (let i = 0; i < len && bad < 0; i++) {
    const sum = inputs[0]![i]! + inputs[1]![i]! + inputs[2]![i]!;
    const mag = Math.abs(inputs[0]![i]!) + Math.abs(inputs[1]![i]!) + Math.abs(inputs[2]![i]!);
    if (Math.abs(bufs[0]![i]! - sum) > 2 * 2 ** -24 * mag) bad = i;
  }
  t.equal(bad, -1, 'matches the float64 sum');
  t.ok(sameBits(bufs[0]!, bufs[1]!) && sameBits(bufs[0]!, bufs[2]!), 'bitwise identical on every rank');
  for (const l of links) l.close();
});

t.test('on the wire: wss:// carries neither the hello nor the data; ws:// carries both', async (t) => {
  // A payload whose bytes spell a marker, so that it can be searched for in the captured stream.
  const marker = Buffer.from('RINGDATA-PLAINTEXT-MARKER-0123456789abcdef');
  const bytes = Buffer.alloc(64 * 1024);
  for (let o = 0; o + marker.length <= bytes.length; o += marker.length) marker.copy(bytes, o);
  const data = new Float32Array(bytes.buffer.slice(0, bytes.length));
  for (const scheme of ['ws', 'wss'] as const) {
    const cert = scheme === 'wss' ? generateRingCertificate() : undefined;
    const listener = await listenRing({ host: '127.0.0.1', port: 0, ...(cert ? { tls: cert } : {}) });
    const proxy = await captureProxy(listener.port);
    t.teardown(() => proxy.close());
    const [out, inc] = await Promise.all([
      listener.accept({ rank: 1, jobId: 'job-marker-7f3a' }, 10_000),
      connectRing(
        `${scheme}://127.0.0.1:${proxy.port}`,
        { rank: 1, size: 2, jobId: 'job-marker-7f3a' },
        { timeoutMs: 10_000, ...(cert ? { pin: cert.fingerprint } : {}) },
      ),
    ]);
    const got = new Float32Array(data.length);
    const done = inc.recv(0, data.length, got);
    await out.send(0, data);
    await done;
    t.ok(sameBits(got, data), `${scheme}: the data arrived`);
    const wire = proxy.bytes();
    const sawHello = wire.includes(Buffer.from('job-marker-7f3a'));
    const sawData = wire.includes(marker);
    if (scheme === 'ws') {
      t.ok(sawHello && sawData, 'ws://: the hello and the data are readable on the wire (the check can see plaintext)');
    } else {
      t.ok(wire.length > bytes.length, `wss://: the proxy carried the exchange (${wire.length} bytes)`);
      t.notOk(sawHello, 'wss://: no hello in the clear');
      t.notOk(sawData, 'wss://: no data in the clear');
    }
    out.close();
    inc.close();
    await listener.close();
  }
});

t.test(
  'a listener whose certificate is not the pinned one gets no hello; the connecting rank fails with E_AUTH',
  async (t) => {
    const served = generateRingCertificate();
    const announced = generateRingCertificate();
    const hellos: RingHello[] = [];
    const listener = await listenRing({
      host: '127.0.0.1',
      port: 0,
      tls: served,
      verifyHello: (h) => void hellos.push(h),
    });
    t.teardown(() => listener.close());
    const err = await connectRing(
      `wss://127.0.0.1:${listener.port}`,
      { rank: 1, size: 2, jobId: 'j' },
      { timeoutMs: 10_000, pin: announced.fingerprint },
    ).then(
      () => null,
      (e: unknown) => e,
    );
    t.ok(isWolfpackError(err, 'E_AUTH'), `E_AUTH (${String(err)})`);
    t.match(
      String((err as Error).message),
      /is not the one the coordinator announced/,
      'saying the certificate is not the announced one',
    );
    t.match(
      String((err as Error).message),
      new RegExp(served.fingerprint.slice(0, 16)),
      "naming the presented certificate's fingerprint",
    );
    // The right pin on the same listener works, so the refusal was the pin's doing.
    const [out, inc] = await Promise.all([
      listener.accept({ rank: 1, jobId: 'j' }, 10_000),
      connectRing(
        `wss://127.0.0.1:${listener.port}`,
        { rank: 1, size: 2, jobId: 'j' },
        { timeoutMs: 10_000, pin: served.fingerprint },
      ),
    ]);
    t.equal(hellos.length, 1, 'the listener saw one hello: the pinned connection, none from the refused one');
    out.close();
    inc.close();
  },
);

t.test('schemes and pins that do not fit are refused', async (t) => {
  const cert = generateRingCertificate();
  const hello = { rank: 1, size: 2, jobId: 'j' };
  await t.rejects(
    connectRing('wss://127.0.0.1:9', hello, { timeoutMs: 1000 }),
    { code: 'E_USAGE', message: /no certificate fingerprint/ },
    'wss:// without a pin',
  );
  await t.rejects(
    connectRing('wss://127.0.0.1:9', hello, { timeoutMs: 1000, pin: 'abc' }),
    { code: 'E_USAGE' },
    'a pin that is not 64 hex digits',
  );
  await t.rejects(
    connectRing('ws://127.0.0.1:9', hello, { timeoutMs: 1000, pin: cert.fingerprint }),
    { code: 'E_USAGE', message: /expected wss/ },
    'a pin with ws://',
  );

  const tlsListener = await listenRing({ host: '127.0.0.1', port: 0, tls: cert });
  t.teardown(() => tlsListener.close());
  const plainOnTls = await connectRing(`ws://127.0.0.1:${tlsListener.port}`, hello, { timeoutMs: 10_000 }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(
    plainOnTls instanceof Error && /E_(WORKER|PROTOCOL)/.test(String((plainOnTls as { code?: string }).code)),
    `ws:// to a TLS listener fails (${String(plainOnTls)})`,
  );
  const plainListener = await listenRing({ host: '127.0.0.1', port: 0 });
  t.teardown(() => plainListener.close());
  const tlsOnPlain = await connectRing(`wss://127.0.0.1:${plainListener.port}`, hello, {
    timeoutMs: 10_000,
    pin: cert.fingerprint,
  }).then(
    () => null,
    (e: unknown) => e,
  );
  t.ok(
    tlsOnPlain instanceof Error && /E_(WORKER|PROTOCOL)/.test(String((tlsOnPlain as { code?: string }).code)),
    `wss:// to a plain listener fails (${String(tlsOnPlain)})`,
  );
});
