// The training flags `train`, `coordinator` and `demo` share, and their defaults (the lab's).
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import type { BackendChoice } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger, createPrinter, jsonRequested, type LogFormat } from '../../shared/log.js';
import type { JobOptions } from '../../coordinator/job.js';
import { num, oneOf, optStr, type Options } from '../../shared/config/args.js';
import { flagValue, parserOptions, specIndex, type FlagSpec } from '../../shared/config/flags.js';
import { TRAINING_FLAGS } from '../../coordinator/job-options.js';
import type { SecurityFlags } from '../../shared/auth/config.js';
import type { CoordinatorSecurity } from '../../shared/auth/config.js';
import type { Logger } from '../../shared/log.js';
import { DashboardServer } from '../../coordinator/dashboard/server.js';
import { jobSummary } from '../../coordinator/dashboard/state.js';
import type { JobEvents } from '../../coordinator/dashboard/events.js';
import { DEFAULT_HOLD_TIMEOUT_MS, holdFileEvents, parseHoldPoints } from '../../coordinator/hold.js';
import { reportEvents } from '../../coordinator/reports.js';

// security flags (shared/auth/config.ts; each has an environment form, e.g. WOLFPACK_TOKEN_FILE)
const TOKEN_FILE: FlagSpec = {
  name: 'token-file',
  kind: 'string',
  value: 'FILE',
  describe:
    'the shared secret (or WOLFPACK_TOKEN) that authenticates workers and ring links; ' +
    'required to listen beyond loopback',
};
const HANDSHAKE_TIMEOUT: FlagSpec = {
  name: 'handshake-timeout',
  kind: 'seconds',
  min: 0.001,
  default: 10,
  describe: 'a connection must prove the token within this long of TCP accept (coordinator, ring ports, dashboard)',
};
/** Flags of a process that serves workers: the coordinator, and `train` when it passes them on. */
export const COORDINATOR_SECURITY_SPECS: readonly FlagSpec[] = [
  TOKEN_FILE,
  {
    name: 'tls-cert',
    kind: 'string',
    value: 'PEM',
    describe: 'serve wss:// with this certificate (and --tls-key); ring links between workers are then TLS too',
  },
  { name: 'tls-key', kind: 'string', value: 'PEM', describe: 'the private key of --tls-cert' },
  HANDSHAKE_TIMEOUT,
];
export const TLS_CA: FlagSpec = {
  name: 'tls-ca',
  kind: 'string',
  value: 'PEM',
  describe: "the CA a wss:// coordinator's certificate must chain to (workers)",
};
/** Flags of a worker. */
export const WORKER_SECURITY_SPECS: readonly FlagSpec[] = [TOKEN_FILE, TLS_CA, HANDSHAKE_TIMEOUT];
export const COORDINATOR_SECURITY_FLAGS: Options = parserOptions(COORDINATOR_SECURITY_SPECS);
export const WORKER_SECURITY_FLAGS: Options = parserOptions(WORKER_SECURITY_SPECS);
export const COORDINATOR_SECURITY_USAGE =
  '[--token-file FILE] [--tls-cert PEM --tls-key PEM] [--handshake-timeout SECONDS]';
export const WORKER_SECURITY_USAGE = '[--token-file FILE] [--tls-ca PEM] [--handshake-timeout SECONDS]';

/** Logging, and the config file (consumed by shared/config/config-file.ts before parsing; listed for help). */
export const LOG_FLAGS: readonly FlagSpec[] = [
  {
    name: 'log-format',
    kind: 'choice',
    choices: ['pretty', 'json'],
    defaultText: 'pretty on a terminal, else json',
    describe: 'how log lines are written (also WOLFPACK_LOG_FORMAT)',
  },
  {
    name: 'log-level',
    kind: 'choice',
    choices: ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'],
    default: 'info',
    describe: 'the least severe level logged',
  },
];
export const CONFIG_SPEC: FlagSpec = {
  name: 'config',
  kind: 'string',
  value: 'FILE',
  describe:
    'JSON or YAML file of flags; precedence: flags, then WOLFPACK_* variables, then the file, ' +
    'then defaults (docs/CONFIG.md)',
};

/** The parser options of `train`, `demo` and `coordinator`: the job's table plus logging. */
export const TRAIN_FLAGS: Options = parserOptions([...TRAINING_FLAGS, ...LOG_FLAGS]);

/** The security flags among parsed `values`. */
export function securityFlagsFrom(values: Record<string, unknown>): SecurityFlags {
  const flags: SecurityFlags = {};
  const tokenFile = optStr(values, 'token-file');
  const tlsCert = optStr(values, 'tls-cert');
  const tlsKey = optStr(values, 'tls-key');
  const tlsCa = optStr(values, 'tls-ca');
  const handshakeTimeout = optStr(values, 'handshake-timeout');
  if (tokenFile !== undefined) flags.tokenFile = tokenFile;
  if (tlsCert !== undefined) flags.tlsCert = tlsCert;
  if (tlsKey !== undefined) flags.tlsKey = tlsKey;
  if (tlsCa !== undefined) flags.tlsCa = tlsCa;
  if (handshakeTimeout !== undefined) flags.handshakeTimeout = handshakeTimeout;
  return flags;
}

export const TRAIN_USAGE = '--data DIR --weights FILE [--workers N] [--epochs 20] [--batch-size 18] [flags below]';

export function loggerFrom(values: Record<string, unknown>, base: Record<string, unknown>) {
  const format =
    values['log-format'] === undefined ? undefined : oneOf<LogFormat>(values, 'log-format', ['pretty', 'json'], 'json');
  return createLogger({ format, level: values['log-level'] as string | undefined, base });
}

const SPEC = specIndex([...TRAINING_FLAGS, ...LOG_FLAGS]);

/** Flag `name`'s value, or the caller's default for it (JobOptions names; ms for seconds flags), or the table's. */
function flag(
  values: Record<string, unknown>,
  name: string,
  defaults: Partial<JobOptions>,
): string | number | boolean | undefined {
  const spec = SPEC.get(name);
  if (!spec) throw new Error(`--${name} is not in the job's flag table`);
  const d = spec.api === undefined ? undefined : (defaults as Record<string, unknown>)[spec.api];
  return flagValue(
    values,
    spec,
    d === undefined ? spec.default : spec.kind === 'seconds' ? (d as number) / 1000 : (d as string | number | boolean),
  );
}

/** The job's options from parsed flags (coordinator/job-options.ts), `defaults` first where a flag is not given. */
export function jobOptionsFrom(
  values: Record<string, unknown>,
  defaults: Partial<JobOptions> = {},
): Omit<JobOptions, 'logger' | 'print'> & { backend: BackendChoice } {
  const f = (name: string) => flag(values, name, defaults);
  const workers = f('workers') as number;
  const batchSize = f('batch-size') as number;
  if (batchSize < workers)
    throw new WolfpackError(
      'E_USAGE',
      `--batch-size ${batchSize} is smaller than --workers ${workers}: every worker needs a sample`,
    );
  const features = featureCacheFrom(values, defaults);
  const data = f('data') as string | undefined;
  if (data === undefined) throw new WolfpackError('E_USAGE', '--data is required');
  const rejoinTimeoutMs = f('rejoin-timeout') as number | undefined;
  return {
    ...features,
    data,
    weights: f('weights') as string | undefined,
    resume: f('resume') as string | undefined,
    minWorkers: f('min-workers') as number,
    // unset: the coordinator waits as long as for the first workers (10 min), `train` waits --timeout
    ...(rejoinTimeoutMs !== undefined ? { rejoinTimeoutMs } : {}),
    maxBadSteps: f('max-bad-steps') as number,
    workers,
    epochs: f('epochs') as number,
    batchSize,
    lr: f('lr') as number,
    momentum: f('momentum') as number,
    freeze: f('freeze') as JobOptions['freeze'],
    bn: f('bn') as JobOptions['bn'],
    imageSize: f('image-size') as number,
    seed: f('seed') as number,
    out: f('out') as string,
    host: f('host') as string,
    port: f('port') as number,
    timeoutMs: f('timeout') as number,
    holdTimeoutMs: f('hold-timeout') as number,
    backend: f('backend') as BackendChoice,
    wire: f('wire') as JobOptions['wire'],
    chunkKib: f('chunk-kib') as number,
    bucketMb: f('bucket-mb') as number,
  };
}

// feature cache: --augment, --views, --cache-features, --feature-cache-mb (worker/feature-cache.ts)
export function featureCacheFrom(
  values: Record<string, unknown>,
  defaults: Partial<JobOptions> = {},
): Pick<JobOptions, 'augment' | 'views' | 'cacheFeatures' | 'featureCacheMb'> {
  const f = (name: string) => flag(values, name, defaults);
  const augment = f('augment') as 'train' | 'none';
  const views = f('views') as number;
  const cacheFeatures = f('cache-features') === true;
  const featureCacheMb = f('feature-cache-mb') as number;
  if (augment === 'none' && views > 0)
    throw new WolfpackError(
      'E_USAGE',
      '--views K applies to --augment train (K augmentation draws per sample); ' +
        'with --augment none every epoch sees the same view',
    );
  if (cacheFeatures) {
    const freeze = f('freeze');
    const bn = f('bn');
    if (freeze !== 'backbone' || bn !== 'frozen') {
      throw new WolfpackError(
        'E_USAGE',
        '--cache-features needs --freeze backbone and --bn frozen ' +
          `(got --freeze ${String(freeze)} --bn ${String(bn)}): ` +
          "otherwise the backbone's output changes every step",
      );
    }
    if (augment === 'train' && views === 0) {
      throw new WolfpackError(
        'E_USAGE',
        '--cache-features with --augment train needs --views K ' +
          '(K augmentation draws per sample, reused every K epochs) or --augment none: ' +
          'otherwise no feature is ever seen twice',
      );
    }
  }
  // only what was asked for (flag or caller default), so a job without these flags keeps its JobConfig as it was
  const given = (name: string, key: keyof JobOptions) => values[name] !== undefined || defaults[key] !== undefined;
  return {
    ...(given('augment', 'augment') ? { augment } : {}),
    ...(given('views', 'views') ? { views } : {}),
    ...(given('cache-features', 'cacheFeatures') ? { cacheFeatures } : {}),
    ...(given('feature-cache-mb', 'featureCacheMb') ? { featureCacheMb } : {}),
  };
}

// dashboard: --dashboard-port P serves coordinator/dashboard/ on the coordinator's --host
export const DASHBOARD_USAGE = '[--dashboard-port P]';

/** Starts the live dashboard when --dashboard-port is given (0: an ephemeral port); logs its URL. */
export async function dashboardFrom(
  values: Record<string, unknown>,
  o: Omit<JobOptions, 'logger' | 'print'>,
  security: CoordinatorSecurity,
  logger: Logger,
): Promise<DashboardServer | undefined> {
  if (values['dashboard-port'] === undefined) return undefined;
  const port = num(values, 'dashboard-port', 0, { int: true, min: 0, max: 65535 });
  return DashboardServer.start({
    host: o.host,
    port,
    security,
    logger,
    job: jobSummary(o),
  });
}

/**
 * --hold-file FILE [--hold-at E[:S],...]: the run holds at a step or epoch boundary while FILE exists, and
 * at the --hold-at points the coordinator makes FILE itself (coordinator/hold.ts). Undefined without them.
 */
export function holdFrom(
  values: Record<string, unknown>,
  o: Pick<JobOptions, 'epochs' | 'holdTimeoutMs'>,
  logger: Logger,
): JobEvents | undefined {
  const file = optStr(values, 'hold-file');
  const at = optStr(values, 'hold-at');
  if (file === undefined) {
    if (at !== undefined)
      throw new WolfpackError('E_USAGE', '--hold-at needs --hold-file FILE: the run holds there until FILE is removed');
    return undefined;
  }
  if (!existsSync(dirname(resolve(file))))
    throw new WolfpackError('E_USAGE', `--hold-file ${file}: the folder ${dirname(resolve(file))} does not exist`);
  const points = at === undefined ? [] : parseHoldPoints(at, o.epochs);
  return holdFileEvents({
    file,
    points,
    timeoutMs: o.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS,
    log: logger.child({ component: 'hold' }),
  });
}

/** steps.jsonl in --out, and with --tensorboard DIR a TensorBoard event file there (coordinator/reports.ts). */
export function reportsFrom(values: Record<string, unknown>, o: Pick<JobOptions, 'out'>, logger: Logger): JobEvents {
  const tensorboard = optStr(values, 'tensorboard');
  if (tensorboard === '') throw new WolfpackError('E_USAGE', '--tensorboard needs a folder for the event file');
  return reportEvents({ out: o.out, tensorboard, logger });
}

/** A status line rewritten in place on a terminal; nothing when stdout is not one. */
export function terminalProgress(): ((line: string) => void) | undefined {
  if (!process.stdout.isTTY) return undefined;
  return (line: string) => {
    process.stdout.write(`\r\x1b[K${line}`);
  };
}

/** The printer of the job's lines: JSON when --log-format json asks for it, as the logs are. */
export function printerFrom(values: Record<string, unknown>): (line: string) => void {
  const format = values['log-format'];
  return createPrinter(jsonRequested(format === undefined ? [] : ['--log-format', String(format)]));
}
