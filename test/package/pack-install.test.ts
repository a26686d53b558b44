// The package as a user installs it: `npm pack` (what the registry would serve), installed into an empty
// project. The bin runs (--version, --help), `import('wolfpack')` gives train() and predict(), and the
// installed CLI trains the tiny job end to end on wasm. npm resolves the dependencies from its cache where
// it can; a consumer's npm 11 runs no dependency's install script unless that project allows it, so the
// optional native packages install without their bindings and the run must still work.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { packageRoot } from '../../shared/paths.js';
import { ensureBuilt } from '../helpers/build.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

t.setTimeout(600_000);

t.test('npm pack, installed into an empty project, runs', async (t) => {
  ensureBuilt(join(packageRoot, 'dist', 'index.js'));
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-pack-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const version = (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
  execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', dir], { cwd: packageRoot, stdio: 'pipe' });
  const tgz = readdirSync(dir).find((f) => f.endsWith('.tgz'));
  t.equal(tgz, `wolfpack-${version}.tgz`, 'npm pack made the tarball');
  const listing = execFileSync('tar', ['-tzf', join(dir, tgz!)], { encoding: 'utf8' }).split('\n');
  for (const f of [
    'package/bin/wolfpack.js',
    'package/dist/cli/wolfpack.js',
    'package/dist/index.js',
    'package/README.md',
  ])
    t.ok(listing.includes(f), `it holds ${f}`);
  t.notOk(
    listing.some((f) => f.startsWith('package/test/') || (f.endsWith('.ts') && !f.endsWith('.d.ts'))),
    'no tests, no TypeScript sources',
  );

  const app = join(dir, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(
    join(app, 'package.json'),
    JSON.stringify({ name: 'consumer', version: '1.0.0', private: true, type: 'module' }),
  );
  const install = spawnSync('npm', ['install', join(dir, tgz!), '--prefer-offline', '--no-audit', '--no-fund'], {
    cwd: app,
    encoding: 'utf8',
  });
  t.equal(install.status, 0, `npm install of the tarball${install.status ? `: ${install.stderr.slice(-1500)}` : ''}`);

  const bin = join(app, 'node_modules', '.bin', 'wolfpack');
  const v = spawnSync(bin, ['--version'], { cwd: app, encoding: 'utf8' });
  t.equal(v.stdout, `${version}\n`, 'the installed bin prints the version');
  const help = spawnSync(bin, ['train', '--help'], { cwd: app, encoding: 'utf8' });
  t.equal(help.status, 0);
  t.match(help.stdout, /--batch-size N/);
  const api = spawnSync(
    process.execPath,
    ['-e', 'import("wolfpack").then((m) => console.log(typeof m.train, typeof m.predict, typeof m.WolfpackError))'],
    { cwd: app, encoding: 'utf8' },
  );
  t.equal(
    api.stdout.trim(),
    'function function function',
    `import('wolfpack') from the consumer${api.stderr ? `: ${api.stderr.slice(-800)}` : ''}`,
  );

  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out');
  const run = spawnSync(bin, ['train', '--workers', '1', ...tinyTrainArgs(job, out)], {
    cwd: app,
    encoding: 'utf8',
    env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json' },
    timeout: 300_000,
  });
  t.equal(run.status, 0, `the installed CLI trains the tiny job${run.status ? `: ${run.stderr.slice(-1500)}` : ''}`);
  t.match(readFileSync(join(out, 'metrics.jsonl'), 'utf8'), /"epoch":1,/, 'and writes its metrics');
});
