// The training flags `train`, `coordinator` and `demo` share, and their defaults (the lab's).
import { existsSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { BACKENDS, type BackendChoice } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger, type LogFormat } from '../../shared/log.js';
import type { JobOptions } from '../../coordinator/job.js';
import { num, oneOf, optStr, str, type Options } from '../../shared/config/args.js';
import type { SecurityFlags } from '../../shared/auth/config.js';
import type { CoordinatorSecurity } from '../../shared/auth/config.js';
import type { Logger } from '../../shared/log.js';
import { DashboardServer } from '../../coordinator/dashboard/server.js';
import type { JobEvents } from '../../coordinator/dashboard/events.js';
import { DEFAULT_HOLD_TIMEOUT_MS, holdFileEvents, parseHoldPoints } from '../../coordinator/hold.js';
import { reportEvents } from '../../coordinator/reports.js';

/** Where a run writes when no --out is given. */
export const DEFAULT_OUT = 'runs/latest';

export const TRAIN_FLAGS: Options = {
  data: { type: 'string' },
  weights: { type: 'string' },
  workers: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  momentum: { type: 'string' },
  freeze: { type: 'string' },
  bn: { type: 'string' },
  'image-size': { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  timeout: { type: 'string' },
  'min-workers': { type: 'string' },
  'rejoin-timeout': { type: 'string' },
  'max-bad-steps': { type: 'string' },
  resume: { type: 'string' },
  overwrite: { type: 'boolean' },
  'auto-resume': { type: 'boolean' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
  'dashboard-port': { type: 'string' },
  'hold-file': { type: 'string' },
  'hold-at': { type: 'string' },
  'hold-timeout': { type: 'string' },
  tensorboard: { type: 'string' },
  // feature cache (worker/feature-cache.ts)
  augment: { type: 'string' },
  views: { type: 'string' },
  'cache-features': { type: 'boolean' },
  'feature-cache-mb': { type: 'string' },
};

// security flags (shared/auth/config.ts; each has an environment form, e.g. WOLFPACK_TOKEN_FILE)
/** Flags of a process that serves workers: the coordinator, and `train` when it passes them on. */
export const COORDINATOR_SECURITY_FLAGS: Options = {
  'token-file': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
  'handshake-timeout': { type: 'string' },
};
/** Flags of a worker. */
export const WORKER_SECURITY_FLAGS: Options = {
  'token-file': { type: 'string' },
  'tls-ca': { type: 'string' },
  'handshake-timeout': { type: 'string' },
};
export const COORDINATOR_SECURITY_USAGE = '[--token-file FILE] [--tls-cert PEM --tls-key PEM] [--handshake-timeout SECONDS]';
export const WORKER_SECURITY_USAGE = '[--token-file FILE] [--tls-ca PEM] [--handshake-timeout SECONDS]';

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

export const TRAIN_USAGE = '--data DIR --weights FILE [--workers N] [--epochs 20] [--batch-size 18] [--lr 0.001] ' +
  '[--momentum 0.9] [--freeze none|backbone] [--bn train|frozen] [--image-size 224] [--seed 0] [--out DIR] ' +
  '[--backend auto|tensorflow-gpu|webgpu|tensorflow|wasm|cpu] [--timeout SECONDS] [--min-workers M] [--rejoin-timeout SECONDS] [--max-bad-steps 5] ' +
  '[--resume OUT] [--auto-resume] [--overwrite] [--config FILE] [--log-format pretty|json] [--augment train|none] [--views K] [--cache-features] [--feature-cache-mb 1024] ' +
  '[--hold-file FILE [--hold-at E[:S],...] [--hold-timeout 600]] [--tensorboard DIR]';

export function loggerFrom(values: Record<string, unknown>, base: Record<string, unknown>) {
  const format = values['log-format'] === undefined ? undefined : oneOf<LogFormat>(values, 'log-format', ['pretty', 'json'], 'json');
  return createLogger({ format, level: values['log-level'] as string | undefined, base });
}

export function jobOptionsFrom(values: Record<string, unknown>, defaults: Partial<JobOptions> = {}): Omit<JobOptions, 'logger' | 'print'> & { backend: BackendChoice } {
  const workers = num(values, 'workers', defaults.workers ?? 2, { int: true, min: 1, max: 256 });
  const batchSize = num(values, 'batch-size', defaults.batchSize ?? 18, { int: true, min: 1 });
  if (batchSize < workers) throw new WolfpackError('E_USAGE', `--batch-size ${batchSize} is smaller than --workers ${workers}: every worker needs a sample`);
  const features = featureCacheFrom(values, defaults);
  return {
    ...features,
    data: str(values, 'data', defaults.data),
    weights: values.weights === undefined ? defaults.weights : String(values.weights),
    resume: optStr(values, 'resume'),
    minWorkers: num(values, 'min-workers', 1, { int: true, min: 1 }),
    // unset: the coordinator waits as long as for the first workers (10 min), `train` waits --timeout
    rejoinTimeoutMs: values['rejoin-timeout'] === undefined ? undefined : num(values, 'rejoin-timeout', 0, { min: 1 }) * 1000,
    maxBadSteps: num(values, 'max-bad-steps', 5, { int: true, min: 1 }),
    workers,
    epochs: num(values, 'epochs', defaults.epochs ?? 20, { int: true, min: 1 }),
    batchSize,
    lr: num(values, 'lr', defaults.lr ?? 0.001, { min: 0 }),
    momentum: num(values, 'momentum', defaults.momentum ?? 0.9, { min: 0, max: 1 }),
    freeze: oneOf(values, 'freeze', ['none', 'backbone'] as const, defaults.freeze ?? 'none'),
    bn: oneOf(values, 'bn', ['train', 'frozen'] as const, defaults.bn ?? 'train'),
    imageSize: num(values, 'image-size', defaults.imageSize ?? 224, { int: true, min: 16, max: 1024 }),
    seed: num(values, 'seed', defaults.seed ?? 0, { int: true, min: 0 }),
    out: str(values, 'out', defaults.out ?? DEFAULT_OUT),
    host: str(values, 'host', defaults.host ?? '127.0.0.1'),
    port: num(values, 'port', defaults.port ?? 0, { int: true, min: 0, max: 65535 }),
    timeoutMs: num(values, 'timeout', 30, { min: 1 }) * 1000,
    holdTimeoutMs: num(values, 'hold-timeout', DEFAULT_HOLD_TIMEOUT_MS / 1000, { min: 0.001 }) * 1000,
    backend: oneOf(values, 'backend', BACKENDS, 'auto'),
  };
}

// feature cache: --augment, --views, --cache-features, --feature-cache-mb (worker/feature-cache.ts)
export function featureCacheFrom(values: Record<string, unknown>, defaults: Partial<JobOptions> = {}): Pick<JobOptions, 'augment' | 'views' | 'cacheFeatures' | 'featureCacheMb'> {
  const augment = oneOf(values, 'augment', ['train', 'none'] as const, defaults.augment ?? 'train');
  const views = num(values, 'views', defaults.views ?? 0, { int: true, min: 0, max: 1 << 20 });
  const cacheFeatures = values['cache-features'] === undefined ? defaults.cacheFeatures ?? false : values['cache-features'] === true;
  const featureCacheMb = num(values, 'feature-cache-mb', defaults.featureCacheMb ?? 1024, { min: 1, max: 1 << 24 });
  if (augment === 'none' && views > 0) throw new WolfpackError('E_USAGE', '--views K applies to --augment train (K augmentation draws per sample); with --augment none every epoch sees the same view');
  if (cacheFeatures) {
    const freeze = oneOf(values, 'freeze', ['none', 'backbone'] as const, defaults.freeze ?? 'none');
    const bn = oneOf(values, 'bn', ['train', 'frozen'] as const, defaults.bn ?? 'train');
    if (freeze !== 'backbone' || bn !== 'frozen') {
      throw new WolfpackError('E_USAGE', `--cache-features needs --freeze backbone and --bn frozen (got --freeze ${freeze} --bn ${bn}): otherwise the backbone's output changes every step`);
    }
    if (augment === 'train' && views === 0) {
      throw new WolfpackError('E_USAGE', '--cache-features with --augment train needs --views K (K augmentation draws per sample, reused every K epochs) or --augment none: otherwise no feature is ever seen twice');
    }
  }
  // only what was asked for (flag or caller default), so a job without these flags keeps its JobConfig as it was
  const given = (flag: string, key: keyof JobOptions) => values[flag] !== undefined || defaults[key] !== undefined;
  return {
    ...(given('augment', 'augment') ? { augment } : {}), ...(given('views', 'views') ? { views } : {}),
    ...(given('cache-features', 'cacheFeatures') ? { cacheFeatures } : {}), ...(given('feature-cache-mb', 'featureCacheMb') ? { featureCacheMb } : {}),
  };
}

// dashboard: --dashboard-port P serves coordinator/dashboard/ on the coordinator's --host
export const DASHBOARD_USAGE = '[--dashboard-port P]';

/** Starts the live dashboard when --dashboard-port is given (0: an ephemeral port); logs its URL. */
export async function dashboardFrom(values: Record<string, unknown>, o: Omit<JobOptions, 'logger' | 'print'>,
  security: CoordinatorSecurity, logger: Logger): Promise<DashboardServer | undefined> {
  if (values['dashboard-port'] === undefined) return undefined;
  const port = num(values, 'dashboard-port', 0, { int: true, min: 0, max: 65535 });
  return DashboardServer.start({ host: o.host, port, security, logger, job: {
    epochs: o.epochs, batchSize: o.batchSize, workers: o.workers, lr: o.lr, momentum: o.momentum, imageSize: o.imageSize,
    freeze: o.freeze, bn: o.bn, out: o.out, data: o.data,
  } });
}

/**
 * --hold-file FILE [--hold-at E[:S],...]: the run holds at a step or epoch boundary while FILE exists, and
 * at the --hold-at points the coordinator makes FILE itself (coordinator/hold.ts). Undefined without them.
 */
export function holdFrom(values: Record<string, unknown>, o: Pick<JobOptions, 'epochs' | 'holdTimeoutMs'>, logger: Logger): JobEvents | undefined {
  const file = optStr(values, 'hold-file');
  const at = optStr(values, 'hold-at');
  if (file === undefined) {
    if (at !== undefined) throw new WolfpackError('E_USAGE', '--hold-at needs --hold-file FILE: the run holds there until FILE is removed');
    return undefined;
  }
  if (!existsSync(dirname(resolve(file)))) throw new WolfpackError('E_USAGE', `--hold-file ${file}: the folder ${dirname(resolve(file))} does not exist`);
  const points = at === undefined ? [] : parseHoldPoints(at, o.epochs);
  return holdFileEvents({ file, points, timeoutMs: o.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS, log: logger.child({ component: 'hold' }) });
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
  return (line: string) => { process.stdout.write(`\r\x1b[K${line}`); };
}
