// Where the package lives on disk, so that code run from sources (tests) and from dist/ (the CLI)
// can both start child processes from the compiled JavaScript in dist/.
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'shared'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`wolfpack: cannot find the package root above ${start}`);
    dir = up;
  }
}

/** The repository / package root (the folder holding package.json). */
export const packageRoot: string = findRoot(dirname(fileURLToPath(import.meta.url)));

/** Path of a compiled module under dist/, e.g. distPath('worker/main.js'). */
export function distPath(rel: string): string {
  return resolve(packageRoot, 'dist', rel);
}

/** The CLI entry point, for spawning worker and coordinator processes. */
export const cliPath: string = resolve(packageRoot, 'bin', 'wolfpack.js');
