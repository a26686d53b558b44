// Flag parsing shared by the commands and by the benchmarks' own entry points: node:util parseArgs with
// errors turned into E_USAGE, and typed readers that name the flag in their error.
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { resolveArgv } from './config-file.js';
import { WolfpackError } from '../errors.js';

export type Options = NonNullable<ParseArgsConfig['options']>;

export function parse(argv: string[], options: Options, allowPositionals = false): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  try {
    const r = parseArgs({ args: resolveArgv(argv, options, process.env), options, allowPositionals, strict: true });
    return { values: r.values as Record<string, string | boolean | string[] | undefined>, positionals: r.positionals };
  } catch (e) {
    throw new WolfpackError('E_USAGE', (e as Error).message);
  }
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

export function num(values: Record<string, unknown>, name: string, fallback: number, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const v = Number(raw);
  if (!Number.isFinite(v) || (opts.int && !Number.isInteger(v)) || (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    const range = [opts.int ? 'an integer' : 'a number', opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' ');
    throw new WolfpackError('E_USAGE', `--${name}: expected ${range}, got '${String(raw)}'`);
  }
  return v;
}

export function oneOf<T extends string>(values: Record<string, unknown>, name: string, allowed: readonly T[], fallback: T): T {
  const raw = values[name];
  if (raw === undefined) return fallback;
  if (!allowed.includes(raw as T)) throw new WolfpackError('E_USAGE', `--${name}: expected one of ${allowed.join(', ')}, got '${String(raw)}'`);
  return raw as T;
}
