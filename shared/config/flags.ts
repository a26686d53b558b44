// A command's flags written once, as data: name, kind, default, range and what it means. The parser's
// options, the typed values, `--help`, the library API's checks and the tables in docs/CONFIG.md and the
// README are all derived from these specs (cli/commands/job-flags.ts holds the training commands' table;
// scripts/docs-flags.ts writes the docs, and a test checks they are current).
import { WolfpackError } from '../errors.js';
import { envName } from './config-file.js';
import { num, oneOf, type Options } from './args.js';

export type FlagKind = 'string' | 'int' | 'number' | 'seconds' | 'choice' | 'boolean';

export interface FlagSpec {
  /** The flag without its dashes: `batch-size`. */
  name: string;
  kind: FlagKind;
  /** How the value reads in help and usage: N, DIR, FILE, S (kind seconds: always S). */
  value?: string;
  /** The default, as the parser would read it (seconds for kind seconds); none: unset. */
  default?: string | number | boolean;
  /** Shown in place of the default where it depends on something else. */
  defaultText?: string;
  choices?: readonly string[];
  min?: number;
  max?: number;
  /** One sentence (or two) on what the flag does. */
  describe: string;
  /**
   * The option's name in the library API (`train({ batchSize })`), where it has one; kind seconds maps to milliseconds
   * there.
   */
  api?: string;
}

/** node:util parseArgs options for `specs`. */
export function parserOptions(specs: readonly FlagSpec[]): Options {
  return Object.fromEntries(
    specs.map((s) => [s.name, { type: s.kind === 'boolean' ? ('boolean' as const) : ('string' as const) }]),
  );
}

/** The specs by name; a name given twice is a programming error. */
export function specIndex(specs: readonly FlagSpec[]): Map<string, FlagSpec> {
  const m = new Map<string, FlagSpec>();
  for (const s of specs) {
    if (m.has(s.name)) throw new Error(`flag --${s.name} is specified twice`);
    m.set(s.name, s);
  }
  return m;
}

/**
 * The typed value of flag `spec` from parsed `values` (a string from the command line, the environment or a
 * config file), or `fallback` (default: the spec's default) when it is not given; E_USAGE naming the flag.
 * Kind seconds is returned in milliseconds.
 */
export function flagValue(
  values: Record<string, unknown>,
  spec: FlagSpec,
  fallback = spec.default,
): string | number | boolean | undefined {
  const given = values[spec.name] !== undefined;
  switch (spec.kind) {
    case 'boolean':
      return given ? values[spec.name] === true : (fallback as boolean | undefined);
    case 'int':
    case 'number':
      if (!given && fallback === undefined) return undefined;
      return num(values, spec.name, fallback as number, { int: spec.kind === 'int', ...range(spec) });
    case 'seconds':
      if (!given && fallback === undefined) return undefined;
      return num(values, spec.name, fallback as number, range(spec)) * 1000;
    case 'choice':
      if (!given && fallback === undefined) return undefined;
      return oneOf(values, spec.name, spec.choices ?? [], fallback as string);
    case 'string': {
      if (!given) return fallback as string | undefined;
      const v = String(values[spec.name]);
      if (v === '')
        throw new WolfpackError('E_USAGE', `--${spec.name}: expected ${spec.value ?? 'a value'}, got an empty string`);
      return v;
    }
  }
}

function range(spec: FlagSpec): { min?: number; max?: number } {
  return { ...(spec.min !== undefined ? { min: spec.min } : {}), ...(spec.max !== undefined ? { max: spec.max } : {}) };
}

/** E_USAGE for option `name` of an API call (`where`, e.g. 'train()'): what it expects and what it got. */
export function badOption(where: string, name: string, want: string, got: unknown): WolfpackError {
  return new WolfpackError(
    'E_USAGE',
    `${where}: options.${name}: expected ${want}, got ${typeof got === 'string' ? `'${got}'` : String(got)}`,
    { option: name },
  );
}

/**
 * The value of API option `spec.api` in `options` (a typed value, not a string), or its default; E_USAGE
 * naming `where`.options.NAME when it has the wrong type or is out of range. Kind seconds is milliseconds here.
 */
export function apiValue(
  options: Record<string, unknown>,
  spec: FlagSpec,
  where: string,
): string | number | boolean | undefined {
  const name = spec.api ?? spec.name;
  const v = options[name];
  const bad = (want: string) => badOption(where, name, want, v);
  const scale = spec.kind === 'seconds' ? 1000 : 1;
  if (v === undefined) return typeof spec.default === 'number' ? spec.default * scale : spec.default;
  switch (spec.kind) {
    case 'boolean':
      if (typeof v !== 'boolean') throw bad('true or false');
      return v;
    case 'int':
    case 'number':
    case 'seconds': {
      const min = spec.min === undefined ? undefined : spec.min * scale;
      const max = spec.max === undefined ? undefined : spec.max * scale;
      if (
        typeof v !== 'number' ||
        !Number.isFinite(v) ||
        (spec.kind === 'int' && !Number.isInteger(v)) ||
        (min !== undefined && v < min) ||
        (max !== undefined && v > max)
      ) {
        throw bad(
          [
            spec.kind === 'int' ? 'an integer' : 'a number',
            min !== undefined ? `>= ${min}` : '',
            max !== undefined ? `<= ${max}` : '',
          ]
            .filter(Boolean)
            .join(' '),
        );
      }
      return v;
    }
    case 'choice':
      if (!(spec.choices ?? []).includes(v as string)) throw bad(`one of ${(spec.choices ?? []).join(', ')}`);
      return v as string;
    case 'string':
      if (typeof v !== 'string' || v.length === 0) throw bad('a non-empty string');
      return v;
  }
}

/** `--name VALUE` as usage and help show it. */
export function flagSyntax(s: FlagSpec): string {
  if (s.kind === 'boolean') return `--${s.name}`;
  const value =
    s.kind === 'seconds'
      ? 'S'
      : s.kind === 'choice'
        ? (s.choices ?? []).join('|')
        : (s.value ?? (s.kind === 'int' ? 'N' : s.kind === 'number' ? 'X' : 'VALUE'));
  return `--${s.name} ${value}`;
}

/** The default as help shows it ('' when none). */
export function defaultText(s: FlagSpec): string {
  if (s.defaultText !== undefined) return s.defaultText;
  if (s.default === undefined || s.default === false) return '';
  return String(s.default);
}

/** ' (default X)', ' (required)', or '' after a flag's description. */
function suffix(s: FlagSpec): string {
  const d = defaultText(s);
  if (!d) return '';
  return d.startsWith('required') ? ` (${d})` : ` (default ${d})`;
}

function wrap(text: string, width: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines;
}

/** `--help`'s flag list: the syntax, then what it does and its default, wrapped to `width` columns. */
export function flagHelp(specs: readonly FlagSpec[], width = 100): string {
  const left = Math.min(34, Math.max(...specs.map((s) => flagSyntax(s).length)) + 4);
  const out: string[] = [];
  for (const s of specs) {
    const text = `${s.describe}${suffix(s)}`;
    const syntax = `  ${flagSyntax(s)}`;
    const body = wrap(text, Math.max(30, width - left));
    const first =
      syntax.length + 2 <= left ? syntax.padEnd(left) + body[0] : `${syntax}\n${' '.repeat(left)}${body[0]}`;
    out.push(first, ...body.slice(1).map((l) => ' '.repeat(left) + l));
  }
  return out.join('\n');
}

/** A Markdown table of `specs` (flag, environment variable, default, meaning), for the docs. */
export function flagTable(specs: readonly FlagSpec[]): string {
  const cell = (t: string) => t.replace(/\|/g, '\\|');
  const rows = specs.map(
    (s) => `| \`${cell(flagSyntax(s))}\` | \`${envName(s.name)}\` | ${cell(defaultText(s))} | ${cell(s.describe)} |`,
  );
  return ['| flag | environment | default | meaning |', '|---|---|---|---|', ...rows].join('\n');
}
