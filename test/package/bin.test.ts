// bin/wolfpack.js in a package folder whose dist/ was never built (a git checkout without `npm install`)
// says what to run, instead of a stack trace about a module that is not found.
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { packageRoot } from '../../shared/paths.js';

t.test('no dist/: one line saying how to build it, exit 1', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-nodist-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  cpSync(join(packageRoot, 'bin'), join(dir, 'bin'), { recursive: true });
  cpSync(join(packageRoot, 'package.json'), join(dir, 'package.json'));
  const r = spawnSync(process.execPath, [join(dir, 'bin', 'wolfpack.js'), '--version'], { encoding: 'utf8' });
  t.equal(r.status, 1);
  t.equal(
    r.stderr,
    'wolfpack: the compiled JavaScript (dist/) is missing: ' +
      'run `npm install` (which builds it) or `npm run build` in the package folder\n',
  );
  t.end();
});
