// Without a shared token nothing listens beyond loopback: `wolfpack coordinator --host 0.0.0.0`,
// `wolfpack train --host 0.0.0.0` and `wolfpack worker --ring-bind 0.0.0.0` are refused with a usage error
// that says how to set a token; with a token the coordinator does listen on 0.0.0.0; on loopback without a
// token it says it is loopback-only.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { CoordinatorServer } from '../../coordinator/server.js';
import { checkBind, isLoopbackHost } from '../../shared/auth/bind-policy.js';
import { SharedSecret } from '../../shared/auth/secret.js';
import { isWolfpackError } from '../../shared/errors.js';
import { silentLogger } from '../../shared/log.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs, type TinyJob } from '../helpers/tiny-job.js';
import { startCoordinator } from '../helpers/secure-cluster.js';

const HOW = /refusing to listen beyond loopback without a shared token.*WOLFPACK_TOKEN.*--token-file/;

let job: TinyJob;
t.before(async () => {
  job = await makeTinyJob({ trainPerClass: 6, valPerClass: 2 });
});
t.teardown(() => job?.cleanup());

t.test('what counts as loopback', async (t) => {
  for (const h of ['127.0.0.1', '127.1.2.3', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1', 'LOCALHOST'])
    t.ok(isLoopbackHost(h), `${h} is loopback`);
  for (const h of ['0.0.0.0', '::', '10.0.0.1', '192.168.1.2', 'example.com', '128.0.0.1', '::ffff:10.0.0.1', ''])
    t.notOk(isLoopbackHost(h), `${JSON.stringify(h)} is not`);
  t.doesNotThrow(
    () => checkBind('0.0.0.0', new SharedSecret('x'.repeat(32), 'test'), 'coordinator --host'),
    'any host with a token',
  );
});

t.test('the server itself refuses 0.0.0.0 without a token', async (t) => {
  const err = await CoordinatorServer.listen('0.0.0.0', 0, silentLogger(), { security: {} }).then(
    async (s) => {
      await s.close();
      return null;
    },
    (e: unknown) => e,
  );
  t.ok(isWolfpackError(err, 'E_USAGE'), 'E_USAGE');
  t.match((err as Error).message, HOW);
});

t.test('CLI refusals without a token', async (t) => {
  const coord = await runCli(
    ['coordinator', '--workers', '1', '--host', '0.0.0.0', ...tinyTrainArgs(job, join(job.dir, 'o1'))],
    20_000,
  );
  t.equal(coord.code, 2, 'coordinator --host 0.0.0.0: exit 2');
  t.match(coord.stderr, /wolfpack coordinator: coordinator --host 0\.0\.0\.0: /);
  t.match(coord.stderr, HOW, 'says how to set a token');
  const train = await runCli(
    ['train', '--workers', '1', '--host', '0.0.0.0', ...tinyTrainArgs(job, join(job.dir, 'o2'))],
    30_000,
  );
  t.equal(train.code, 2, 'train --host 0.0.0.0: exit 2');
  t.match(train.stderr, HOW);
  const worker = await runCli(
    ['worker', '--connect', 'ws://127.0.0.1:9', '--ring-bind', '0.0.0.0', '--backend', 'cpu'],
    20_000,
  );
  t.equal(worker.code, 2, 'worker --ring-bind 0.0.0.0: exit 2');
  t.match(worker.stderr, /worker --ring-bind 0\.0\.0\.0: refusing to listen beyond loopback/);
});

t.test('with a token the coordinator listens on 0.0.0.0; without one, on loopback, and says so', async (t) => {
  const tokenFile = join(job.dir, 'token');
  writeFileSync(tokenFile, 'bind-test-token-0123456789abcdef\n', { mode: 0o600 });
  const { p, port } = await startCoordinator([
    '--workers',
    '1',
    '--host',
    '0.0.0.0',
    '--token-file',
    tokenFile,
    ...tinyTrainArgs(job, join(job.dir, 'o3')),
  ]);
  t.teardown(() => p.kill());
  t.ok(port > 0, `listening on 0.0.0.0:${port}`);
  t.match(p.stderr(), /workers must prove the shared token/);
  p.kill();
  const { p: q } = await startCoordinator(['--workers', '1', ...tinyTrainArgs(job, join(job.dir, 'o4'))], {
    WOLFPACK_TOKEN: '',
    WOLFPACK_TOKEN_FILE: '',
  });
  t.teardown(() => q.kill());
  t.match(q.stderr(), /no shared token .*listening on loopback only/, 'the loopback-only log line');
  q.kill();
});
