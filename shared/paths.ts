// Where the package lives on disk, so that code run from sources (tests) and from dist/ (the CLI)
// can both start child processes from the compiled JavaScript in dist/; and where wolfpack writes by
// default: under the working directory (workPath), never under the package, which an installed copy
// (a container image, a global npm install) may not let its user write to.
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Whether `dir` holds wolfpack's package.json: the repository, or an installed (packed) copy without the sources. */
function isRoot(dir: string): boolean {
  try {
    return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown }).name === 'wolfpack';
  } catch {
    return false;
  }
}

function findRoot(start: string): string {
  let dir = start;
  for (;;) {
    if (isRoot(dir)) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error(`wolfpack: cannot find the package root above ${start}`);
    dir = up;
  }
}

/** The repository / package root (the folder holding package.json). Commands read from it and write under workPath. */
export const packageRoot: string = findRoot(dirname(fileURLToPath(import.meta.url)));

/** Path of a compiled module under dist/, e.g. distPath('worker/main.js'). */
export function distPath(rel: string): string {
  return resolve(packageRoot, 'dist', rel);
}

/** The CLI entry point, for spawning worker and coordinator processes. */
export const cliPath: string = resolve(packageRoot, 'bin', 'wolfpack.js');

/** A default output path, under the working directory: workPath('runs', 'bench') is ./runs/bench. */
export function workPath(...parts: string[]): string {
  return resolve(process.cwd(), ...parts);
}
