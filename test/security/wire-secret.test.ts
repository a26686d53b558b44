// The shared token never crosses the wire: a whole training job (a `wolfpack coordinator` and two
// `wolfpack worker` processes, authenticated with --token-file) runs with every byte between the workers
// and the coordinator going through a capturing TCP proxy; neither the raw stream nor the unmasked
// WebSocket payloads hold the token in any encoding. (Ring links: test/security/ring-auth.test.ts.)
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { decodeFrame } from '../../shared/protocol/codec.js';
import { validateMessage } from '../../shared/protocol/validate.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';
import { captureProxy, secretForms } from '../helpers/capture-proxy.js';
import { start, startCoordinator } from '../helpers/secure-cluster.js';

const TOKEN = 'wire-test-token-' + 'm5'.repeat(16);

t.test('an authenticated job end to end; the token is never on the wire', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const tokenFile = join(job.dir, 'token');
  writeFileSync(tokenFile, TOKEN + '\n', { mode: 0o600 });
  const out = join(job.dir, 'out');
  const { p: coord, port } = await startCoordinator([
    '--workers',
    '2',
    '--token-file',
    tokenFile,
    ...tinyTrainArgs(job, out),
  ]);
  t.teardown(() => coord.kill());
  const proxy = await captureProxy(port);
  t.teardown(() => proxy.close());
  const workers = [0, 1].map(() =>
    start([
      'worker',
      '--connect',
      `ws://127.0.0.1:${proxy.port}`,
      '--token-file',
      tokenFile,
      '--backend',
      'wasm',
      '--timeout',
      '60',
    ]),
  );
  for (const w of workers) t.teardown(() => w.kill());

  const code = await coord.exit(50_000);
  t.equal(code, 0, `the coordinator finishes the job${code === 0 ? '' : `: ${coord.stderr().slice(-3000)}`}`);
  t.match(coord.stdout(), /End training, the best Accuracy is/);
  for (const [i, w] of workers.entries()) t.equal(await w.exit(10_000), 0, `worker ${i} exits 0`);
  t.equal(proxy.connections(), 4, 'both workers went through the proxy (a control and a heartbeat connection each)');

  const wire = proxy.bytes();
  const payloads = Buffer.concat(proxy.payloads());
  t.ok(
    payloads.includes(Buffer.from('authProof')) && payloads.includes(Buffer.from('weightsPart')),
    `the capture holds the job's frames, unmasked (${wire.length} bytes)`,
  );
  for (const f of secretForms(TOKEN))
    t.notOk(wire.includes(f), `the token is not on the wire as ${f.subarray(0, 10).toString()}...`);
  t.notOk(
    (coord.stdout() + coord.stderr() + workers.map((w) => w.stderr()).join('')).includes(TOKEN),
    'nor in any log',
  );

  // Every frame of a real job passes the per-message checks (shared/protocol/validate.ts).
  const types = new Map<string, number>();
  const failures: string[] = [];
  for (const frame of proxy.binaryPayloads()) {
    try {
      const d = decodeFrame(frame);
      validateMessage(d.msg, d.payload.length);
      types.set(d.msg.type, (types.get(d.msg.type) ?? 0) + 1);
    } catch (e) {
      failures.push((e as Error).message);
    }
  }
  t.same(failures, [], `every captured frame validates (${[...types].map(([k, n]) => `${k} ${n}`).join(', ')})`);
  for (const type of [
    'authChallenge',
    'authProof',
    'authOk',
    'hello',
    'welcome',
    'weightsPart',
    'blobs',
    'step',
    'stepDone',
    'eval',
    'evalResult',
    'statePart',
  ]) {
    t.ok(types.has(type), `saw ${type}`);
  }
});
