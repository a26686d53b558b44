// `train()`, the programmatic form of `wolfpack train`: single-node mode (the coordinator in this process,
// N worker processes on this machine, ring all-reduce over loopback) with typed options, a result value
// and live events instead of flags, stdout and an exit code. It writes nothing to stdout unless `print`
// asks for the lab's lines, logs only through the given logger (default: none), never exits the process
// and stops its workers however the run ends. Options are checked up front: a bad one is an E_USAGE
// WolfpackError naming it. Like cli/, this module sits above coordinator/ and shared/ (the package's
// front door, re-exported by index.ts).
import { join } from 'node:path';
import { coordinatorSecurity, localCoordinatorUrl, securityEnv, type SecurityFlags } from '../shared/auth/config.js';
import { BACKENDS, type BackendChoice } from '../shared/backend/select.js';
import { WolfpackError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { runJob, type JobOptions, type JobResult } from '../coordinator/job.js';
import { LocalWorkers } from '../coordinator/local-workers.js';
import { fanOut, guardEvents, type JobEvents } from '../coordinator/dashboard/events.js';
import { DashboardServer, runWithDashboard } from '../coordinator/dashboard/server.js';
import { DEFAULT_HOLD_TIMEOUT_MS } from '../coordinator/hold.js';
import { reportEvents, STEPS_FILE } from '../coordinator/reports.js';

export interface TrainOptions {
  /** ImageFolder root: train/<class>/* and val/<class>/* (JPEG, PNG or WebP). */
  data: string;
  /** Pretrained weights (MindSpore .ckpt or safetensors); their head is dropped. Required unless `resume`. */
  weights?: string;
  /** Continue the run saved in this directory (last.ckpt + train-state.json). */
  resume?: string;
  /** Local worker processes (default 2). */
  workers?: number;
  /** Default 20. */
  epochs?: number;
  /** The global batch, split over the workers (default 18; at least `workers`). */
  batchSize?: number;
  /** Momentum: accum = momentum*accum + grad; w -= lr*accum (defaults 0.001, 0.9). */
  lr?: number;
  momentum?: number;
  /** 'backbone' trains only the head (default 'none'). */
  freeze?: 'none' | 'backbone';
  /** BatchNorm with batch statistics ('train', default) or moving statistics ('frozen'). */
  bn?: 'train' | 'frozen';
  /** Default 224. */
  imageSize?: number;
  /** Data order, augmentation and the new head's initialisation (default 0). */
  seed?: number;
  /** Output directory: best.ckpt, last.ckpt, train-state.json, metrics.jsonl, steps.jsonl, curves.png (default 'runs/latest'). */
  out?: string;
  /** The workers' TF.js backend (default 'auto'). */
  backend?: BackendChoice;
  /** A worker silent this long is lost, ms (default 30 000). */
  timeoutMs?: number;
  /** Longest wait for workers to join, ms (default 10 minutes). */
  joinTimeoutMs?: number;
  /** Below this many workers, wait for replacements (default 1). */
  minWorkers?: number;
  /** Stop after this many non-finite steps in a row (default 5). */
  maxBadSteps?: number;
  /** Interface for the coordinator (and the dashboard), default '127.0.0.1'; port default 0 (ephemeral). */
  host?: string;
  port?: number;
  /** Token and TLS files, as the CLI's --token-file, --tls-cert, --tls-key, --tls-ca. Default: the environment. */
  security?: SecurityFlags;
  /** Serve the live dashboard on this port (0: ephemeral). Default: no dashboard. */
  dashboardPort?: number;
  /** Called with the dashboard's URL once it listens. */
  onDashboard?: (url: string) => void;
  /**
   * Live progress: step, epoch, members, event, listening (all optional; a callback that throws is logged).
   * A `step` or `epoch` callback that returns a promise holds the run at that boundary until it settles.
   */
  events?: JobEvents;
  /** Longest one such promise holds the run, ms (default 10 minutes); then a warning is logged and the run goes on. */
  holdTimeoutMs?: number;
  /** Write a TensorBoard event file (per-step and per-epoch scalars) in this folder, as the CLI's --tensorboard. Default: none. */
  tensorboard?: string;
  /** The lab's per-epoch lines ("Epoch: 1/20, train Loss: ..."); default: not printed. */
  print?: (line: string) => void;
  /** The coordinator's logs (pino). Default: none. */
  logger?: Logger;
  /** The worker processes' log level (their logs go to this process's stderr); default 'warn'. */
  workerLogLevel?: 'silent' | 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace';
}

export interface TrainResult extends JobResult {
  /** The output directory and the files in it. */
  out: string;
  best: string;
  last: string;
  metrics: string;
  /** One line per completed step (coordinator/reports.ts). */
  steps: string;
  /** The dashboard's URL, when one was served. */
  dashboardUrl?: string;
}

type Checked = Omit<JobOptions, 'logger' | 'print'> & { backend: BackendChoice };

function bad(name: string, want: string, got: unknown): WolfpackError {
  return new WolfpackError('E_USAGE', `train(): options.${name}: expected ${want}, got ${typeof got === 'string' ? `'${got}'` : String(got)}`, { option: name });
}

function number(o: Record<string, unknown>, name: string, fallback: number, opts: { int?: boolean; min?: number; max?: number } = {}): number {
  const v = o[name];
  if (v === undefined) return fallback;
  if (typeof v !== 'number' || !Number.isFinite(v) || (opts.int && !Number.isInteger(v)) ||
    (opts.min !== undefined && v < opts.min) || (opts.max !== undefined && v > opts.max)) {
    const range = [opts.int ? 'an integer' : 'a number', opts.min !== undefined ? `>= ${opts.min}` : '', opts.max !== undefined ? `<= ${opts.max}` : ''].filter(Boolean).join(' ');
    throw bad(name, range, v);
  }
  return v;
}

function choice<T extends string>(o: Record<string, unknown>, name: string, allowed: readonly T[], fallback: T): T {
  const v = o[name];
  if (v === undefined) return fallback;
  if (!allowed.includes(v as T)) throw bad(name, `one of ${allowed.join(', ')}`, v);
  return v as T;
}

function text(o: Record<string, unknown>, name: string): string | undefined {
  const v = o[name];
  if (v === undefined) return undefined;
  if (typeof v !== 'string' || v.length === 0) throw bad(name, 'a non-empty string', v);
  return v;
}

/** The job's options from `options`, with the CLI's defaults; E_USAGE naming the first bad one. */
export function checkTrainOptions(options: TrainOptions): Checked {
  if (typeof options !== 'object' || options === null) throw new WolfpackError('E_USAGE', 'train(): options must be an object');
  const o = options as unknown as Record<string, unknown>;
  const data = text(o, 'data');
  if (data === undefined) throw bad('data', 'the data directory (train/<class>/, val/<class>/)', undefined);
  const weights = text(o, 'weights');
  const resume = text(o, 'resume');
  if (weights === undefined && resume === undefined) throw new WolfpackError('E_USAGE', 'train(): options.weights is required (or options.resume)', { option: 'weights' });
  const workers = number(o, 'workers', 2, { int: true, min: 1, max: 256 });
  const batchSize = number(o, 'batchSize', 18, { int: true, min: 1 });
  if (batchSize < workers) throw bad('batchSize', `at least options.workers (${workers}): every worker needs a sample`, batchSize);
  for (const f of ['print', 'onDashboard'] as const) {
    if (options[f] !== undefined && typeof options[f] !== 'function') throw bad(f, 'a function', options[f]);
  }
  return {
    data, weights, resume, workers, batchSize,
    epochs: number(o, 'epochs', 20, { int: true, min: 1 }),
    lr: number(o, 'lr', 0.001, { min: 0 }),
    momentum: number(o, 'momentum', 0.9, { min: 0, max: 1 }),
    freeze: choice(o, 'freeze', ['none', 'backbone'] as const, 'none'),
    bn: choice(o, 'bn', ['train', 'frozen'] as const, 'train'),
    imageSize: number(o, 'imageSize', 224, { int: true, min: 16, max: 1024 }),
    seed: number(o, 'seed', 0, { int: true, min: 0 }),
    out: text(o, 'out') ?? 'runs/latest',
    backend: choice(o, 'backend', BACKENDS, 'auto'),
    timeoutMs: number(o, 'timeoutMs', 30_000, { min: 1 }),
    joinTimeoutMs: number(o, 'joinTimeoutMs', 10 * 60_000, { min: 1 }),
    minWorkers: number(o, 'minWorkers', 1, { int: true, min: 1 }),
    maxBadSteps: number(o, 'maxBadSteps', 5, { int: true, min: 1 }),
    holdTimeoutMs: number(o, 'holdTimeoutMs', DEFAULT_HOLD_TIMEOUT_MS, { min: 1 }),
    host: text(o, 'host') ?? '127.0.0.1',
    port: number(o, 'port', 0, { int: true, min: 0, max: 65535 }),
  };
}

/**
 * Trains on this machine: a coordinator in this process and `workers` local worker processes. Resolves
 * with the best accuracy, its epoch, every epoch's metrics and the output files; rejects with a
 * WolfpackError (E_USAGE, E_DATA, E_WEIGHTS, E_WORKER, E_DIVERGED, ...) when the run cannot go on.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const o = checkTrainOptions(options);
  const dashboardPort = options.dashboardPort === undefined ? undefined
    : number(options as unknown as Record<string, unknown>, 'dashboardPort', 0, { int: true, min: 0, max: 65535 });
  const logger = options.logger ?? silentLogger();
  const flags = options.security ?? {};
  const security = coordinatorSecurity(flags, process.env);
  const events = options.events ? guardEvents(options.events, logger) : undefined;
  const reports = reportEvents({ out: o.out, tensorboard: text(options as unknown as Record<string, unknown>, 'tensorboard'), logger });
  const dashboard = dashboardPort === undefined ? undefined : await DashboardServer.start({
    host: o.host, port: dashboardPort, security, logger,
    job: { epochs: o.epochs, batchSize: o.batchSize, workers: o.workers, lr: o.lr, momentum: o.momentum, imageSize: o.imageSize, freeze: o.freeze, bn: o.bn, out: o.out, data: o.data },
  });
  if (dashboard) {
    try {
      options.onDashboard?.(dashboard.url);
    } catch (e) {
      logger.warn({ err: (e as Error).message }, 'onDashboard threw; the job goes on');
    }
  }
  // The workers get the token / TLS trust through their environment, as the CLI's local workers do.
  const workerEnv = { ...securityEnv(flags), WOLFPACK_LOG_LEVEL: options.workerLogLevel ?? 'warn' };
  const workers = new LocalWorkers(logger);
  try {
    const result = await runWithDashboard(dashboard, (dashboardEvents) => runJob({
      ...o, security, logger, print: options.print ?? (() => undefined),
      events: fanOut(dashboardEvents, events, reports),
      onListening: (port) => workers.start(o.workers, localCoordinatorUrl(port, security), o.backend, workerEnv),
    }));
    await workers.stop();
    return {
      ...result, out: o.out, best: join(o.out, 'best.ckpt'), last: join(o.out, 'last.ckpt'), metrics: join(o.out, 'metrics.jsonl'), steps: join(o.out, STEPS_FILE),
      ...(dashboard ? { dashboardUrl: dashboard.url } : {}),
    };
  } finally {
    await workers.stop(0);
  }
}
