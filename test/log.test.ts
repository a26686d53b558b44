// In JSON mode every line a command writes is JSON, stdout included: the lab's lines become records, and a
// failing command's last line too. Only when JSON was asked for (--log-format json, WOLFPACK_LOG_FORMAT=json);
// JSON logs chosen because stderr is not a terminal leave stdout and the final error as text.
import t from 'tap';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { errorLine, jsonRequested } from '../shared/log.js';
import { cliPath, packageRoot } from '../shared/paths.js';
import { ensureBuilt } from './helpers/build.js';

const lines = (text: string) => text.split('\n').filter((l) => l.trim() !== '');

t.test('jsonRequested: the flag, else WOLFPACK_LOG_FORMAT', async (t) => {
  const saved = process.env.WOLFPACK_LOG_FORMAT;
  t.teardown(() => {
    if (saved === undefined) delete process.env.WOLFPACK_LOG_FORMAT;
    else process.env.WOLFPACK_LOG_FORMAT = saved;
  });
  delete process.env.WOLFPACK_LOG_FORMAT;
  t.equal(jsonRequested([]), false, 'not asked for');
  t.equal(jsonRequested(['--log-format', 'json']), true);
  t.equal(jsonRequested(['--epochs', '2', '--log-format=json']), true);
  t.equal(jsonRequested(['--', '--log-format', 'json']), false, 'not after --');
  process.env.WOLFPACK_LOG_FORMAT = 'json';
  t.equal(jsonRequested([]), true, 'WOLFPACK_LOG_FORMAT=json');
  t.equal(jsonRequested(['--log-format', 'pretty']), false, 'the flag wins');
});

t.test('errorLine: JSON with the code, or the text', async (t) => {
  t.equal(errorLine('wolfpack x: bad', false), 'wolfpack x: bad\n');
  const rec = JSON.parse(errorLine('wolfpack x: "bad"', true, { code: 'E_USAGE' })) as Record<string, unknown>;
  t.match(rec, { level: 50, code: 'E_USAGE', msg: 'wolfpack x: "bad"', pid: process.pid });
});

t.test('the CLI in JSON mode: printed lines and the final error are JSON records', async (t) => {
  ensureBuilt(join(packageRoot, 'dist', 'shared', 'log.js'));
  const env = { ...process.env, WOLFPACK_LOG_FORMAT: 'json' };
  const bad = spawnSync(process.execPath, [cliPath, 'worker', '--connect', 'ws://127.0.0.1:9', '--backend', 'bogus'], {
    encoding: 'utf8',
    env,
    timeout: 60_000,
  });
  t.equal(bad.status, 2);
  const err = lines(bad.stderr).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.match(err.at(-1), {
    level: 50,
    code: 'E_USAGE',
    msg: /^wolfpack worker: --backend: expected one of auto, .*got 'bogus'/,
  });
  const plain = spawnSync(
    process.execPath,
    [cliPath, 'worker', '--connect', 'ws://127.0.0.1:9', '--backend', 'bogus'],
    {
      encoding: 'utf8',
      env: { ...process.env, WOLFPACK_LOG_FORMAT: '' },
      timeout: 60_000,
    },
  );
  t.match(plain.stderr, /^wolfpack worker: --backend: expected one of/m, 'not asked for: the text');

  const logUrl = pathToFileURL(join(packageRoot, 'dist', 'shared', 'log.js')).href;
  const print = (json: boolean) =>
    spawnSync(
      process.execPath,
      [
        '--input-type=module',
        '-e',
        `const { createPrinter } = await import(${JSON.stringify(logUrl)}); ` +
          `const p = createPrinter(${json}); p('Epoch: 1/2, train Loss: 0.5'); p('a\\nb');`,
      ],
      { encoding: 'utf8', timeout: 30_000 },
    );
  const json = lines(print(true).stdout).map((l) => JSON.parse(l) as Record<string, unknown>);
  t.same(
    json.map((r) => r.msg),
    ['Epoch: 1/2, train Loss: 0.5', 'a', 'b'],
    'one record a line',
  );
  t.ok(
    json.every((r) => r.level === 30 && typeof r.time === 'number'),
    'pino-shaped records at info',
  );
  t.equal(print(false).stdout, 'Epoch: 1/2, train Loss: 0.5\na\nb\n', 'text when JSON was not asked for');

  // chunked text (fetch's report and progress): one record per complete, non-empty line
  const chunks = spawnSync(
    process.execPath,
    [
      '--input-type=module',
      '-e',
      `const { jsonLineStream } = await import(${JSON.stringify(logUrl)}); ` +
        "const s = jsonLineStream(2); s.write('f.zip: 10'); s.write('%\\n\\nnext'); s.write(' line\\n');",
    ],
    { encoding: 'utf8', timeout: 30_000 },
  );
  t.same(
    lines(chunks.stderr).map((l) => (JSON.parse(l) as { msg: string }).msg),
    ['f.zip: 10%', 'next line'],
  );
  t.equal(chunks.stdout, '');
});
