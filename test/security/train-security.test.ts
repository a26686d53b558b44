// Single-node mode with security on: `wolfpack train` with a token in the environment (its local workers
// inherit it, so the coordinator link and the ring links are authenticated), and `wolfpack train` over TLS
// with --token-file/--tls-cert/--tls-key (handed to the local workers as WOLFPACK_TOKEN_FILE and
// WOLFPACK_TLS_CA). The TLS case needs cli/commands/train.ts to accept the security flags (see
// docs/SECURITY.md, "Single-node mode"); until it does, that case is skipped with a note.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs, type TinyJob } from '../helpers/tiny-job.js';

const TOKEN = 'train-test-token-' + 'w6'.repeat(12);

let job: TinyJob;
t.before(async () => {
  job = await makeTinyJob();
});
t.teardown(() => job?.cleanup());

t.test('train with WOLFPACK_TOKEN: every link authenticated, the token in no output', async (t) => {
  const r = await runCli(['train', '--workers', '2', ...tinyTrainArgs(job, join(job.dir, 'out-token'))], 50_000, {
    WOLFPACK_TOKEN: TOKEN,
  });
  t.equal(r.code, 0, `exit 0${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`);
  t.match(r.stdout, /End training, the best Accuracy is/);
  t.match(r.stderr, /workers must prove the shared token/);
  t.notOk((r.stdout + r.stderr).includes(TOKEN), 'the token is in no output');
});

t.test('train over TLS with a token file', async (t) => {
  const dir = job.dir;
  const ssl = (args: string[]) =>
    execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'], timeout: 20_000 });
  ssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:prime256v1',
    '-nodes',
    '-keyout',
    'self.key',
    '-out',
    'self.pem',
    '-days',
    '2',
    '-subj',
    '/CN=127.0.0.1',
    '-addext',
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
  ]);
  writeFileSync(join(dir, 'token'), TOKEN + '\n', { mode: 0o600 });
  const args = [
    'train',
    '--workers',
    '2',
    '--token-file',
    join(dir, 'token'),
    '--tls-cert',
    join(dir, 'self.pem'),
    '--tls-key',
    join(dir, 'self.key'),
    ...tinyTrainArgs(job, join(dir, 'out-tls')),
  ];
  const r = await runCli(args, 50_000, { WOLFPACK_TOKEN: '', WOLFPACK_TOKEN_FILE: '' });
  t.equal(r.code, 0, `exit 0${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`);
  t.match(r.stdout, /End training, the best Accuracy is/);
  t.match(r.stderr, /TLS: workers connect with wss:\/\//);
  t.notOk((r.stdout + r.stderr).includes(TOKEN), 'the token is in no output');
});
