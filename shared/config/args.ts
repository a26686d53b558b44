// Flag parsing shared by the commands and by the benchmarks' own entry points: node:util parseArgs with
// errors turned into E_USAGE, and typed readers that name the flag in their error.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolveArgv } from './config-file.js';
import { WolfpackError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(
  argv: string[],
  options: Options,
  allowPositionals = false,
): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: resolveArgv(argv, options, process.env), options, allowPositionals, strict: true });
    return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
  } catch (e) {
    const err = e as Error & { code?: string };
    const unknown = err.code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' ? /'(--?[^'\s]+)'/.exec(err.message)?.[1] : undefined;
    const like = unknown?.startsWith('--') ? closest(unknown.slice(2).split('=')[0]!, Object.keys(options)) : undefined;
    // node's message names the flag and suggests '--' for positionals; what a user wants is the flag they meant.
    throw new WolfpackError(
      'E_USAGE',
      unknown !== undefined
        ? `unknown flag ${unknown}${like ? `; did you mean --${like}?` : ''} (--help lists the flags)`
        : err.message,
    );
  }
}

/** The option name nearest to `name` (edit distance at most a third of its length, and 2 or more), if any. */
export function closest(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestD = Math.max(2, Math.floor(name.length / 3)) + 1;
  for (const n of names) {
    const d = editDistance(name, n);
    if (d < bestD) {
      best = n;
      bestD = d;
    }
  }
  return best;
}

/** Levenshtein distance, with a transposition counted as one edit (Damerau's optimal string alignment). */
function editDistance(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) =>
    Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)),
  );
  for (let i = 1; i <= a.length; i++) {
    const row = d[i]!;
    const prev = d[i - 1]!;
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1])
        row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

export function str(values: Record<string, unknown>, name: string, fallback?: string): string {
  const v = values[name];
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new WolfpackError('E_USAGE', `--${name} is required`);
  }
  return String(v);
}

export function optStr(values: Record<string, unknown>, name: string): string | undefined {
  const v = values[name];
  return v === undefined ? undefined : String(v);
}

export function num(
  values: Record<string, unknown>,
  name: string,
  fallback: number,
  opts: { int?: boolean; min?: number; max?: number } = {},
): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (
    !Number.isFinite(v) ||
    (opts.int && !Number.isInteger(v)) ||
    (opts.min !== undefined && v < opts.min) ||
    (opts.max !== undefined && v > opts.max)
  ) {
    const range = [
      opts.int ? 'an integer' : 'a number',
      opts.min !== undefined ? `>= ${opts.min}` : '',
      opts.max !== undefined ? `<= ${opts.max}` : '',
    ]
      .filter(Boolean)
      .join(' ');
    throw new WolfpackError('E_USAGE', `--${name}: expected ${range}, got '${String(raw)}'`);
  }
  return v;
}

export function oneOf<T extends string>(
  values: Record<string, unknown>,
  name: string,
  allowed: readonly T[],
  fallback: T,
): T {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (!allowed.includes(raw as T))
    throw new WolfpackError('E_USAGE', `--${name}: expected one of ${allowed.join(', ')}, got '${String(raw)}'`);
  return raw as T;
}
