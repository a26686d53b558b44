// Tests that load the compiled package (dist/) build it first when it is stale: `npm test` builds before
// running, but a test file run alone (npx tap FILE) must not test yesterday's JavaScript.
import { execFileSync } from 'node:child_process';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { packageRoot } from '../../shared/paths.js';

function newestTs(dir: string): number {
  let newest = 0;
  for (const e of readdirSync(dir, { withFileTypes: true })) {
    const p = join(dir, e.name);
    if (e.isDirectory()) newest = Math.max(newest, newestTs(p));
    else if (e.name.endsWith('.ts') && !e.name.endsWith('.d.ts')) newest = Math.max(newest, statSync(p).mtimeMs);
  }
  return newest;
}

/** Compiles to dist/ when `built` (a file there) is missing or older than any TypeScript source of the package. */
export function ensureBuilt(built: string): void {
  const sources = Math.max(
    statSync(join(packageRoot, 'index.ts')).mtimeMs,
    ...['cli', 'shared', 'coordinator', 'worker', 'bench'].map((d) => newestTs(join(packageRoot, d))),
  );
  if (existsSync(built) && statSync(built).mtimeMs >= sources) return;
  try {
    execFileSync('npx', ['tsc', '-p', 'tsconfig.build.json'], { cwd: packageRoot, stdio: 'pipe' });
  } catch {
    // tsc emits even when another file has a type error; what matters is that `built` was produced.
  }
  if (!existsSync(built)) throw new Error(`build failed: ${relative(packageRoot, built)} was not produced`);
}
