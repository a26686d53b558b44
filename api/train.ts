// `train()`, the programmatic form of `wolfpack train`: single-node mode (the coordinator in this process,
// N worker processes on this machine, ring all-reduce over loopback) with typed options, a result value
// and live events instead of flags, stdout and an exit code. It writes nothing to stdout unless `print`
// asks for the lab's lines, logs only through the given logger (default: none), never exits the process
// and stops its workers however the run ends. Options are checked up front: a bad one is an E_USAGE
// WolfpackError naming it. Like cli/, this module sits above coordinator/ and shared/ (the package's
// front door, re-exported by index.ts).
import { join } from 'node:path';
import { coordinatorSecurity, localCoordinatorUrl, securityEnv, type SecurityFlags } from '../shared/auth/config.js';
import type { BackendChoice } from '../shared/backend/select.js';
import { apiValue, badOption } from '../shared/config/flags.js';
import { TRAINING_FLAGS } from '../coordinator/job-options.js';
import { WolfpackError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import { runJob, type JobOptions, type JobResult } from '../coordinator/job.js';
import { LocalWorkers, parseGpuList } from '../coordinator/local-workers.js';
import { fanOut, guardEvents, type JobEvents } from '../coordinator/dashboard/events.js';
import { DashboardServer, runWithDashboard } from '../coordinator/dashboard/server.js';
import { jobSummary } from '../coordinator/dashboard/state.js';
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
  /**
   * Output directory: best.ckpt, last.ckpt, train-state.json, metrics.jsonl, steps.jsonl, curves.png (default
   * 'runs/latest').
   */
  out?: string;
  /** The workers' TF.js backend (default 'auto'). */
  backend?: BackendChoice;
  /** GPU indices the local workers take in turn, as the CLI's --gpus: '0,1,2,3' (worker k: entry k mod n). */
  gpus?: string;
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
  /**
   * Write a TensorBoard event file (per-step and per-epoch scalars) in this folder, as the CLI's --tensorboard.
   * Default: none.
   */
  tensorboard?: string;
  /** The lab's per-epoch lines ("Epoch: 1/20, train Loss: ..."); default: not printed. */
  print?: (line: string) => void;
  /** The coordinator's logs (pino). Default: none. */
  logger?: Logger;
  /** Training augmentation ('train', default) or the evaluation transform ('none'). */
  augment?: 'train' | 'none';
  /**
   * With augment 'train': K fixed augmentation draws per sample, reused every K epochs (default 0: a new draw every
   * epoch).
   */
  views?: number;
  /** With freeze 'backbone' and bn 'frozen': compute backbone features once per view and train the head on them. */
  cacheFeatures?: boolean;
  /** Memory bound of each worker's feature cache, MB (default 1024). */
  featureCacheMb?: number;
  /**
   * What the gradient all-reduce sends between workers: 'fp32' (default), or 16-bit 'bf16' / 'fp16' (half the bytes).
   */
  wire?: 'fp32' | 'bf16' | 'fp16';
  /**
   * The most KiB of float32 values in one all-reduce message (default 4096; half the bytes on a 16-bit wire).
   * Smaller messages (1024) finish sooner on links slower than about 1 Gbit/s: each hop forwards whole ones.
   */
  chunkKib?: number;
  /**
   * All-reduce the gradients in buckets of about this many MiB, last layers first, each as soon as it is
   * computed (default 0: the whole buffer in one all-reduce). The sums are the same bits either way.
   */
  bucketMb?: number;
  /** Longest wait for replacements once fewer than minWorkers are left, ms (default joinTimeoutMs). */
  rejoinTimeoutMs?: number;
  /**
   * Aborting it stops the run cleanly: the step in flight is aborted, the state after the last completed step
   * is saved in last.ckpt, and train() resolves with `stopped` set (resume with `resume: out`).
   */
  stop?: AbortSignal;
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

const bad = (name: string, want: string, got: unknown): WolfpackError => badOption('train()', name, want, got);

// The options that are flags of `wolfpack train` are checked against the same table (coordinator/job-options.ts).
const SPECS = new Map(TRAINING_FLAGS.filter((s) => s.api !== undefined).map((s) => [s.api!, s]));

function option(o: Record<string, unknown>, name: string): string | number | boolean | undefined {
  const spec = SPECS.get(name);
  if (!spec) throw new Error(`options.${name} is not in the job's option table`);
  return apiValue(o, spec, 'train()');
}

/** The job's options from `options`, with the CLI's defaults; E_USAGE naming the first bad one. */
export function checkTrainOptions(options: TrainOptions): Checked {
  if (typeof options !== 'object' || options === null)
    throw new WolfpackError('E_USAGE', 'train(): options must be an object');
  const o = options as unknown as Record<string, unknown>;
  const data = option(o, 'data') as string | undefined;
  if (data === undefined) throw bad('data', 'the data directory (train/<class>/, val/<class>/)', undefined);
  const weights = option(o, 'weights') as string | undefined;
  const resume = option(o, 'resume') as string | undefined;
  if (weights === undefined && resume === undefined)
    throw new WolfpackError('E_USAGE', 'train(): options.weights is required (or options.resume)', {
      option: 'weights',
    });
  const workers = option(o, 'workers') as number;
  const batchSize = option(o, 'batchSize') as number;
  if (batchSize < workers)
    throw bad('batchSize', `at least options.workers (${workers}): every worker needs a sample`, batchSize);
  for (const f of ['print', 'onDashboard'] as const) {
    if (options[f] !== undefined && typeof options[f] !== 'function') throw bad(f, 'a function', options[f]);
  }
  if (options.stop !== undefined && !(options.stop instanceof AbortSignal))
    throw bad('stop', 'an AbortSignal', options.stop);
  const joinTimeoutMs = o.joinTimeoutMs ?? 10 * 60_000;
  if (typeof joinTimeoutMs !== 'number' || !(joinTimeoutMs >= 1))
    throw bad('joinTimeoutMs', 'a number >= 1', joinTimeoutMs);
  const freeze = option(o, 'freeze') as Checked['freeze'];
  const bn = option(o, 'bn') as Checked['bn'];
  // Only the feature-cache options that were given, so that a job without them keeps its JobConfig as it was.
  const given = <K extends keyof Checked>(name: K): Partial<Checked> =>
    o[name] === undefined ? {} : ({ [name]: option(o, name) } as Partial<Checked>);
  const features = { ...given('augment'), ...given('views'), ...given('cacheFeatures'), ...given('featureCacheMb') };
  if (features.cacheFeatures === true && (freeze !== 'backbone' || bn !== 'frozen')) {
    throw bad(
      'cacheFeatures',
      "freeze 'backbone' and bn 'frozen' with it (otherwise the backbone's output changes every step)",
      true,
    );
  }
  // The rest are read as they are, each checked against its spec.
  const plain = [
    'epochs',
    'lr',
    'momentum',
    'imageSize',
    'seed',
    'out',
    'backend',
    'timeoutMs',
    'minWorkers',
    'maxBadSteps',
    'holdTimeoutMs',
    'host',
    'port',
    'wire',
    'chunkKib',
    'bucketMb',
  ] as const;
  const rest = Object.fromEntries(plain.map((name) => [name, option(o, name)])) as Pick<
    Checked,
    (typeof plain)[number]
  >;
  return {
    data,
    weights,
    resume,
    workers,
    batchSize,
    freeze,
    bn,
    joinTimeoutMs,
    ...features,
    ...given('rejoinTimeoutMs'),
    ...rest,
  };
}

/**
 * Trains on this machine: a coordinator in this process and `workers` local worker processes. Resolves
 * with the best accuracy, its epoch, every epoch's metrics and the output files; rejects with a
 * WolfpackError (E_USAGE, E_DATA, E_WEIGHTS, E_WORKER, E_DIVERGED, ...) when the run cannot go on.
 */
export async function train(options: TrainOptions): Promise<TrainResult> {
  const o = checkTrainOptions(options);
  const gpus = parseGpuList(
    option(options as unknown as Record<string, unknown>, 'gpus') as string | undefined,
    'train(): options.gpus',
  );
  const dashboardPort = option(options as unknown as Record<string, unknown>, 'dashboardPort') as number | undefined;
  const logger = options.logger ?? silentLogger();
  const flags = options.security ?? {};
  const security = coordinatorSecurity(flags, process.env);
  const events = options.events ? guardEvents(options.events, logger) : undefined;
  const reports = reportEvents({
    out: o.out,
    tensorboard: option(options as unknown as Record<string, unknown>, 'tensorboard') as string | undefined,
    logger,
  });
  const dashboard =
    dashboardPort === undefined
      ? undefined
      : await DashboardServer.start({
          host: o.host,
          port: dashboardPort,
          security,
          logger,
          job: jobSummary(o),
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
    const result = await runWithDashboard(dashboard, (dashboardEvents) =>
      runJob({
        ...o,
        security,
        logger,
        print: options.print ?? (() => undefined),
        ...(options.stop ? { stop: options.stop } : {}),
        events: fanOut(dashboardEvents, events, reports),
        onListening: (port) =>
          workers.start(o.workers, localCoordinatorUrl(port, security), o.backend, workerEnv, gpus),
      }),
    );
    await workers.stop();
    return {
      ...result,
      out: o.out,
      best: join(o.out, 'best.ckpt'),
      last: join(o.out, 'last.ckpt'),
      metrics: join(o.out, 'metrics.jsonl'),
      steps: join(o.out, STEPS_FILE),
      ...(dashboard ? { dashboardUrl: dashboard.url } : {}),
    };
  } finally {
    await workers.stop(0);
  }
}
