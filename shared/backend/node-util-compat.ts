// tfjs-node(-gpu) 4.22, the last release, calls node:util's legacy type checks (util.isNullOrUndefined and
// kin), which Node 23 removed: on Node 23 and later its kernels fail with "util_1.isNullOrUndefined is not
// a function" (tensorflow/tfjs#8609; the fix, tensorflow/tfjs#8425, was merged but never released). Before
// it loads, the missing ones are put back with the semantics Node documented for them. Nothing changes on a
// Node that still has them.
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

/** The removed checks, as Node 22's documentation defines each. */
export const LEGACY_UTIL_CHECKS: Record<string, (v: unknown) => boolean> = {
  isArray: (v) => Array.isArray(v),
  isBoolean: (v) => typeof v === 'boolean',
  isBuffer: (v) => Buffer.isBuffer(v),
  isDate: (v) => v instanceof Date,
  isError: (v) => v instanceof Error,
  isFunction: (v) => typeof v === 'function',
  isNull: (v) => v === null,
  isNullOrUndefined: (v) => v === null || v === undefined,
  isNumber: (v) => typeof v === 'number',
  isObject: (v) => v !== null && typeof v === 'object',
  isPrimitive: (v) => v === null || (typeof v !== 'object' && typeof v !== 'function'),
  isRegExp: (v) => v instanceof RegExp,
  isString: (v) => typeof v === 'string',
  isSymbol: (v) => typeof v === 'symbol',
  isUndefined: (v) => v === undefined,
};

/**
 * Adds to `util` (default: node:util, the object CommonJS modules get) each legacy check it lacks; returns the names
 * added.
 */
export function restoreLegacyUtilChecks(
  util: Record<string, unknown> = require('node:util') as Record<string, unknown>,
): string[] {
  const added: string[] = [];
  for (const [name, fn] of Object.entries(LEGACY_UTIL_CHECKS)) {
    if (typeof util[name] === 'function') continue;
    util[name] = fn;
    added.push(name);
  }
  return added;
}
