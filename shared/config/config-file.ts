// Where a command's flag values come from, in order: the command line, then environment variables
// (WOLFPACK_<FLAG_NAME>, e.g. WOLFPACK_BATCH_SIZE for --batch-size), then a config file (--config FILE
// or WOLFPACK_CONFIG, JSON or YAML, keys = flag names), then the command's own defaults. resolveArgv
// turns the environment and the file into ordinary flags appended to argv, so each command parses and
// validates one argv as before. See docs/CONFIG.md.
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { extname } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import { WolfpackError } from '../errors.js';

export type FlagOptions = NonNullable<ParseArgsConfig['options']>;
type FlagOption = FlagOptions[string];

/** The flag that names the config file; consumed here, never passed on to the command. */
export const CONFIG_FLAG = 'config';
/** Environment variable naming the config file when --config is not given. */
export const CONFIG_ENV = 'WOLFPACK_CONFIG';

/** The environment variable for a flag: `batch-size` -> `WOLFPACK_BATCH_SIZE`. */
export function envName(flag: string): string {
  return 'WOLFPACK_' + flag.toUpperCase().replace(/-/g, '_');
}

/** A value in a config file, as JSON or YAML gives it. */
type ConfigValue = unknown;

/**
 * `argv` with the values of flags it does not give taken from `env` and then from the config file,
 * inserted as `--flag value` before a `--` terminator (or at the end). `--config FILE` is removed.
 * Unknown config keys and values of the wrong type are E_USAGE errors naming the file and the key;
 * environment variables that are not flags of this command are ignored (they may be another's).
 */
export function resolveArgv(argv: string[], options: FlagOptions, env: NodeJS.ProcessEnv = process.env): string[] {
  const { given, configPath, rest } = scanArgv(argv, options);
  const file = configPath ?? nonEmpty(env[CONFIG_ENV]);
  const config = file === undefined ? {} : readConfigFile(file, options);
  const inserted: string[] = [];
  for (const [name, opt] of Object.entries(options)) {
    if (name === CONFIG_FLAG || given.has(name)) continue;
    const fromEnv = nonEmpty(env[envName(name)]);
    if (fromEnv !== undefined) {
      inserted.push(...envFlag(name, opt, fromEnv));
    } else if (Object.hasOwn(config, name)) {
      inserted.push(...configFlag(name, opt, config[name], file as string));
    }
  }
  if (inserted.length === 0) return rest;
  const end = rest.indexOf('--');
  return end < 0 ? [...rest, ...inserted] : [...rest.slice(0, end), ...inserted, ...rest.slice(end)];
}

function nonEmpty(v: string | undefined): string | undefined {
  return v === undefined || v === '' ? undefined : v;
}

/** Which flags argv gives, the --config value, and argv without --config. Unknown flags are left to the command. */
function scanArgv(argv: string[], options: FlagOptions): { given: Set<string>; configPath?: string; rest: string[] } {
  const { tokens } = parseArgs({
    args: argv,
    options: { ...options, [CONFIG_FLAG]: { type: 'string' } },
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  const given = new Set<string>();
  const drop = new Set<number>();
  let configPath: string | undefined;
  for (const tok of tokens) {
    if (tok.kind !== 'option') continue;
    given.add(tok.name);
    if (tok.name !== CONFIG_FLAG) continue;
    if (tok.value === undefined || tok.value === '')
      throw new WolfpackError('E_USAGE', '--config: expected a file name (JSON or YAML)');
    configPath = tok.value;
    drop.add(tok.index);
    if (tok.inlineValue === false) drop.add(tok.index + 1);
  }
  return { given, configPath, rest: argv.filter((_, i) => !drop.has(i)) };
}

function envFlag(name: string, opt: FlagOption, value: string): string[] {
  if (opt.type === 'boolean') {
    const v = value.toLowerCase();
    if (['1', 'true', 'yes', 'on'].includes(v)) return [`--${name}`];
    if (['0', 'false', 'no', 'off'].includes(v)) return [];
    throw new WolfpackError(
      'E_USAGE',
      `environment variable ${envName(name)}: expected true or false for --${name}, got '${value}'`,
      { env: envName(name), flag: name },
    );
  }
  return [`--${name}`, value];
}

function configFlag(name: string, opt: FlagOption, value: ConfigValue, file: string): string[] {
  const where = `config file ${file}: key '${name}'`;
  if (opt.type === 'boolean') {
    if (typeof value !== 'boolean')
      throw new WolfpackError('E_USAGE', `${where}: expected true or false, got ${describe(value)}`, {
        file,
        key: name,
      });
    return value ? [`--${name}`] : [];
  }
  const scalar = (v: ConfigValue): string => {
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    throw new WolfpackError('E_USAGE', `${where}: expected a string or a number, got ${describe(v)}`, {
      file,
      key: name,
    });
  };
  if (Array.isArray(value)) {
    if (!opt.multiple)
      throw new WolfpackError('E_USAGE', `${where}: expected one value, got a list (--${name} takes one)`, {
        file,
        key: name,
      });
    return value.flatMap((v) => [`--${name}`, scalar(v)]);
  }
  return [`--${name}`, scalar(value)];
}

function describe(v: ConfigValue): string {
  if (v === null) return 'null (no value)';
  if (Array.isArray(v)) return 'a list';
  if (typeof v === 'object') return 'a mapping';
  if (typeof v === 'string') return `the string '${v}'`;
  return `${typeof v} ${String(v)}`;
}

/** Reads and checks a config file: a mapping whose keys are flags of this command. */
export function readConfigFile(file: string, options: FlagOptions): Record<string, ConfigValue> {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new WolfpackError('E_USAGE', `config file ${file}: cannot read it (${(e as Error).message})`, { file });
  }
  const ext = extname(file).toLowerCase();
  let data: unknown;
  if (ext === '.json') {
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new WolfpackError('E_USAGE', `config file ${file}: not valid JSON (${(e as Error).message})`, { file });
    }
  } else if (ext === '.yaml' || ext === '.yml') {
    data = parseYaml(text, file);
  } else {
    throw new WolfpackError(
      'E_USAGE',
      `config file ${file}: unknown format '${ext || '(no extension)'}', expected .json, .yaml or .yml`,
      { file },
    );
  }
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new WolfpackError(
      'E_USAGE',
      `config file ${file}: expected a mapping of flag names to values at the top level, got ${describe(data)}`,
      { file },
    );
  }
  const config = data as Record<string, ConfigValue>;
  for (const key of Object.keys(config)) {
    if (key !== CONFIG_FLAG && Object.hasOwn(options, key)) continue;
    const hint = suggest(key, options);
    const reason =
      key === CONFIG_FLAG ? 'a config file cannot name another config file' : `no such flag for this command${hint}`;
    throw new WolfpackError('E_USAGE', `config file ${file}: unknown key '${key}' (${reason})`, { file, key });
  }
  return config;
}

/** `batch_size` or `batchSize` -> ", did you mean 'batch-size'?"; else the list of valid keys. */
function suggest(key: string, options: FlagOptions): string {
  const kebab = key
    .replace(/_/g, '-')
    .replace(/([a-z0-9])([A-Z])/g, '$1-$2')
    .toLowerCase();
  if (kebab !== CONFIG_FLAG && Object.hasOwn(options, kebab)) return `; did you mean '${kebab}'?`;
  const names = Object.keys(options).filter((n) => n !== CONFIG_FLAG);
  return `; valid keys: ${names.join(', ')}`;
}

type YamlModule = typeof import('yaml');

// YAML support comes from the `yaml` package, loaded only when a YAML config file is read, so JSON
// configs and every other code path work without it.
function parseYaml(text: string, file: string): unknown {
  let yaml: YamlModule;
  try {
    yaml = createRequire(import.meta.url)('yaml') as YamlModule;
  } catch {
    throw new WolfpackError(
      'E_USAGE',
      `config file ${file}: reading YAML needs the 'yaml' package (npm install yaml), or write the config as JSON`,
      { file },
    );
  }
  const doc = yaml.parseDocument(text, { prettyErrors: true, uniqueKeys: true });
  if (doc.errors.length > 0) {
    throw new WolfpackError(
      'E_USAGE',
      `config file ${file}: not valid YAML (${doc.errors[0]!.message.split('\n')[0]})`,
      { file },
    );
  }
  return doc.toJS();
}
