// Where wolfpack finds itself and where it writes: the package root is found by its package.json's name,
// also in an installed (packed) copy that has dist/ but no sources; default outputs are under the working
// directory, never under the package (a container image's /app belongs to root).
import t from 'tap';
import { cpSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { packageRoot, workPath } from '../shared/paths.js';
import { ensureBuilt } from './helpers/build.js';

t.test('packageRoot is the repository here', async (t) => {
  t.equal((JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { name: string }).name, 'wolfpack');
});

t.test('packageRoot in a packed copy: dist/ and package.json, no sources', async (t) => {
  ensureBuilt(join(packageRoot, 'dist', 'shared', 'paths.js'));
  const dir = t.testdir();
  mkdirSync(join(dir, 'pkg', 'dist', 'shared'), { recursive: true });
  cpSync(join(packageRoot, 'dist', 'shared', 'paths.js'), join(dir, 'pkg', 'dist', 'shared', 'paths.js'));
  writeFileSync(join(dir, 'pkg', 'package.json'), JSON.stringify({ name: 'wolfpack', type: 'module' }));
  // a user's project around it, with a package.json of its own
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'my-app', type: 'module' }));
  const m = (await import(
    pathToFileURL(join(dir, 'pkg', 'dist', 'shared', 'paths.js')).href
  )) as typeof import('../shared/paths.js');
  t.equal(m.packageRoot, join(dir, 'pkg'));
  t.equal(m.cliPath, join(dir, 'pkg', 'bin', 'wolfpack.js'));
});

t.test('workPath is under the working directory', async (t) => {
  const dir = t.testdir();
  const cwd = process.cwd();
  process.chdir(dir);
  t.teardown(() => process.chdir(cwd));
  t.equal(workPath('runs', 'bench', 'x'), join(process.cwd(), 'runs', 'bench', 'x'));
});

t.test('no default output path is under the package', async (t) => {
  // outputs (runs/..., bench/results) are made with workPath; packageRoot is only read from
  const offenders: string[] = [];
  const walk = (rel: string) => {
    for (const e of readdirSync(join(packageRoot, rel), { withFileTypes: true })) {
      const p = join(rel, e.name);
      if (e.isDirectory()) walk(p);
      else if (
        e.name.endsWith('.ts') &&
        /(join|resolve)\(packageRoot, '(runs|bench', 'results)'/.test(readFileSync(join(packageRoot, p), 'utf8'))
      )
        offenders.push(p);
    }
  };
  for (const d of ['bench', 'cli', 'coordinator', 'shared', 'worker']) walk(d);
  t.same(offenders, []);
});
