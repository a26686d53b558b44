// TLS end to end: a throw-away CA and a server certificate for 127.0.0.1 are made with `openssl`; a
// `wolfpack coordinator --tls-cert/--tls-key` and two `wolfpack worker --connect wss://... --tls-ca`
// processes run a whole job, through a capturing proxy that sees no plaintext, with TLS ring links between
// the workers (test/transport/ring-tls.test.ts checks those bytes on the wire). A worker that does not
// trust the CA, and a ws:// client on the TLS port, are refused; a key that does not fit its certificate,
// or a certificate without a key, is a usage error at start-up.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { coordinatorSecurity } from '../../shared/auth/config.js';
import { isWolfpackError } from '../../shared/errors.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs, type TinyJob } from '../helpers/tiny-job.js';
import { captureProxy, secretForms } from '../helpers/capture-proxy.js';
import { start, startCoordinator } from '../helpers/secure-cluster.js';

const TOKEN = 'tls-test-token-' + 'r4'.repeat(16);

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
}

/** ca.pem/ca.key (a CA), server.pem/server.key (for IP 127.0.0.1 and localhost, signed by the CA). */
function makeCerts(dir: string): void {
  openssl(dir, [
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '2',
    '-subj',
    '/CN=wolfpack test CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  openssl(dir, [
    'req',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'server.key',
    '-out',
    'server.csr',
    '-subj',
    '/CN=127.0.0.1',
  ]);
  writeFileSync(
    join(dir, 'server.ext'),
    'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n',
  );
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    'server.csr',
    '-CA',
    'ca.pem',
    '-CAkey',
    'ca.key',
    '-CAcreateserial',
    '-out',
    'server.pem',
    '-days',
    '2',
    '-extfile',
    'server.ext',
  ]);
}

let job: TinyJob;
t.before(async () => {
  job = await makeTinyJob();
  makeCerts(job.dir);
  writeFileSync(join(job.dir, 'token'), TOKEN + '\n', { mode: 0o600 });
});
t.teardown(() => job?.cleanup());

t.test('a job over wss:// with a verified certificate and a token', async (t) => {
  const f = (n: string) => join(job.dir, n);
  const { p: coord, port } = await startCoordinator([
    '--workers',
    '2',
    '--token-file',
    f('token'),
    '--tls-cert',
    f('server.pem'),
    '--tls-key',
    f('server.key'),
    ...tinyTrainArgs(job, f('out-tls')),
  ]);
  t.teardown(() => coord.kill());

  // Refusals first: they must not count as members.
  const untrusted = await runCli(
    [
      'worker',
      '--connect',
      `wss://127.0.0.1:${port}`,
      '--token-file',
      f('token'),
      '--backend',
      'cpu',
      '--timeout',
      '10',
    ],
    20_000,
  );
  t.equal(untrusted.code, 1, 'a worker that does not trust the CA exits 1');
  t.match(
    untrusted.stderr,
    /cannot reach the coordinator at wss:.*(certificate|self.signed)/i,
    'saying the certificate is not trusted',
  );
  const plain = await runCli(
    [
      'worker',
      '--connect',
      `ws://127.0.0.1:${port}`,
      '--token-file',
      f('token'),
      '--backend',
      'cpu',
      '--timeout',
      '10',
    ],
    20_000,
  );
  t.equal(plain.code, 1, 'a ws:// worker on the TLS port exits 1');
  const mixed = await runCli(
    ['worker', '--connect', `ws://127.0.0.1:${port}`, '--tls-ca', f('ca.pem'), '--backend', 'cpu'],
    20_000,
  );
  t.equal(mixed.code, 2, '--tls-ca with a ws:// URL is a usage error');

  const proxy = await captureProxy(port);
  t.teardown(() => proxy.close());
  const workers = [0, 1].map(() =>
    start([
      'worker',
      '--connect',
      `wss://127.0.0.1:${proxy.port}`,
      '--tls-ca',
      f('ca.pem'),
      '--token-file',
      f('token'),
      '--backend',
      'wasm',
      '--timeout',
      '60',
    ]),
  );
  for (const w of workers) t.teardown(() => w.kill());
  const code = await coord.exit(45_000);
  t.equal(code, 0, `the coordinator finishes the job over TLS${code === 0 ? '' : `: ${coord.stderr().slice(-3000)}`}`);
  t.match(coord.stdout(), /End training, the best Accuracy is/);
  for (const [i, w] of workers.entries())
    t.equal(await w.exit(10_000), 0, `worker ${i} exits 0${w.proc.exitCode ? `: ${w.stderr().slice(-1500)}` : ''}`);
  t.match(coord.stderr(), /TLS: workers connect with wss:\/\//, 'the coordinator says it serves TLS');
  // The ring links are TLS too: each worker's listener announced a certificate, and every ring URL is wss://.
  const connected = coord
    .stderr()
    .split('\n')
    .filter((l) => l.includes('"worker connected"'));
  t.equal(connected.length, 2, 'two workers connected');
  for (const l of connected) t.match(l, /"ring":"wss:\/\/127\.0\.0\.1:\d+"/, 'a worker whose ring listener serves TLS');
  for (const [i, w] of workers.entries())
    t.match(w.stderr(), /"ring":"wss \(TLS, pinned certificate\)"/, `worker ${i} says its ring links are TLS`);
  const wire = proxy.bytes();
  t.ok(wire.length > 100_000, `the proxy carried the job (${wire.length} bytes)`);
  for (const plainText of ['authProof', 'weightsPart', 'welcome', 'mindspore'])
    t.notOk(wire.includes(Buffer.from(plainText)), `no plaintext '${plainText}' on the wire`);
  for (const form of secretForms(TOKEN)) t.notOk(wire.includes(form), 'no token on the wire');
});

t.test('unusable certificate settings are usage errors at start-up', async (t) => {
  const f = (n: string) => join(job.dir, n);
  const mismatch = await runCli(
    [
      'coordinator',
      '--workers',
      '1',
      '--tls-cert',
      f('server.pem'),
      '--tls-key',
      f('ca.key'),
      ...tinyTrainArgs(job, f('o1')),
    ],
    20_000,
  );
  t.equal(mismatch.code, 2, 'a key that does not fit the certificate: exit 2');
  t.match(mismatch.stderr, /are unusable together/);
  const half = await runCli(
    ['coordinator', '--workers', '1', '--tls-cert', f('server.pem'), ...tinyTrainArgs(job, f('o2'))],
    20_000,
  );
  t.equal(half.code, 2, 'a certificate without a key: exit 2');
  t.match(half.stderr, /TLS needs both a certificate and its key/);
  const usage = (fn: () => unknown): string => {
    try {
      fn();
    } catch (e) {
      return isWolfpackError(e, 'E_USAGE') ? e.message : `not E_USAGE: ${String(e)}`;
    }
    return 'no error';
  };
  t.match(
    usage(() => coordinatorSecurity({ tlsCert: f('token'), tlsKey: f('server.key') }, {})),
    /is not PEM/,
    'a certificate file that is not PEM',
  );
  t.match(
    usage(() => coordinatorSecurity({ tlsCert: f('missing.pem'), tlsKey: f('server.key') }, {})),
    /cannot read .*missing\.pem.*ENOENT/,
    'a missing certificate file',
  );
});
