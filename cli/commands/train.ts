// `wolfpack train`: single-node mode, a coordinator plus N local worker processes.
import { runJob, type JobOptions } from '../../coordinator/job.js';
import { LocalWorkers, parseGpuList } from '../../coordinator/local-workers.js';
import type { Command } from '../wolfpack.js';
import { coordinatorSecurity, localCoordinatorUrl, securityEnv } from '../../shared/auth/config.js';
import { parse } from '../../shared/config/args.js';
import { checkJobFiles, resumeDirFrom, savedJobDefaults } from './preflight.js';
import { runWithDashboard } from '../../coordinator/dashboard/server.js';
import { fanOut } from '../../coordinator/dashboard/events.js';
import { TRAINING_FLAGS } from '../../coordinator/job-options.js';
import {
  CONFIG_SPEC,
  COORDINATOR_SECURITY_FLAGS,
  COORDINATOR_SECURITY_SPECS,
  dashboardFrom,
  LOG_FLAGS,
  TLS_CA,
  holdFrom,
  jobOptionsFrom,
  loggerFrom,
  reportsFrom,
  securityFlagsFrom,
  terminalProgress,
  TRAIN_FLAGS,
  TRAIN_USAGE,
  printerFrom,
} from './train-flags.js';
import { DEFAULT_OUT } from '../../coordinator/checkpoints.js';
import { HEALTH_FLAGS, HEALTH_SPEC, healthEvents, healthFileFrom, withHealth } from './health-flags.js';
import { describeStop } from '../../coordinator/stop.js';
import { stopOnSignals } from '../stop-signals.js';

export interface LocalRun {
  /** The command's name, for the line that says how to resume. */
  command: string;
  /** A new run replaces an earlier run's files in --out without --overwrite (the demo's own folder). */
  overwrite?: boolean;
}

/** Runs a job with its workers as local processes; used by `train` and `demo`. */
export async function trainLocally(
  argv: string[],
  defaults: Partial<JobOptions> = {},
  run: LocalRun = { command: 'train' },
): Promise<number> {
  const { values } = parse(argv, {
    ...TRAIN_FLAGS,
    ...COORDINATOR_SECURITY_FLAGS,
    ...HEALTH_FLAGS,
    'tls-ca': { type: 'string' },
  });
  const resume = resumeDirFrom(values, defaults.out ?? DEFAULT_OUT);
  const o = jobOptionsFrom({ ...values, resume }, { ...defaults, ...savedJobDefaults(resume) });
  const gpus = parseGpuList(values.gpus === undefined ? undefined : String(values.gpus));
  // Before any worker is spawned: a missing folder is reported as such, not as workers that were started and killed.
  checkJobFiles(o, values.overwrite === true || run.overwrite === true);
  const flags = securityFlagsFrom(values);
  const security = coordinatorSecurity(flags);
  // The local workers read the same token / CA from the environment they inherit.
  Object.assign(process.env, securityEnv(flags));
  const logger = loggerFrom(values, {});
  const hold = holdFrom(values, o, logger);
  const reports = reportsFrom(values, o, logger);
  const health = healthFileFrom(values, 'coordinator', logger);
  const print = printerFrom(values);
  const dashboard = await dashboardFrom(values, o, security, logger);
  const workers = new LocalWorkers(logger);
  // The local workers run in their own process group: Ctrl-C reaches this process alone, which stops them in order.
  const stop = stopOnSignals((line) => logger.warn(line));
  try {
    const result = await withHealth(health, () =>
      runWithDashboard(dashboard, (events) =>
        runJob({
          ...o,
          security,
          logger,
          print,
          progress: terminalProgress(),
          events: fanOut(events, hold, healthEvents(health), reports),
          stop: stop.signal,
          // Local workers are not restarted: once too few are left, wait only --timeout (or --rejoin-timeout) for one
          // started by hand.
          rejoinTimeoutMs: o.rejoinTimeoutMs ?? o.timeoutMs,
          onListening: (port) =>
            workers.start(
              o.workers,
              localCoordinatorUrl(port, security),
              o.backend,
              values['log-format'] ? { WOLFPACK_LOG_FORMAT: String(values['log-format']) } : {},
              gpus,
            ),
        }),
      ),
    );
    // Told to shut down, the workers exit at once; a stop before they joined has told them nothing.
    await workers.stop(result.stopped ? STOPPED_GRACE_MS : undefined);
    if (result.stopped) print(describeStop(result.stopped, (dir) => `wolfpack ${run.command} --resume ${dir}`));
    return 0;
  } finally {
    await workers.stop(0);
    stop.dispose();
  }
}

/** How long stopped local workers get to exit before they are killed (ms). */
const STOPPED_GRACE_MS = 1000;

/** Every flag of `train` and `demo`, as help lists them. */
export const LOCAL_TRAIN_SPECS = [
  ...TRAINING_FLAGS,
  ...COORDINATOR_SECURITY_SPECS,
  TLS_CA,
  HEALTH_SPEC,
  ...LOG_FLAGS,
  CONFIG_SPEC,
];

export const train: Command = {
  summary: 'Train on one machine: a coordinator plus N local worker processes (ring all-reduce over WebSockets).',
  usage: `wolfpack train ${TRAIN_USAGE}`,
  flags: LOCAL_TRAIN_SPECS,
  examples: [
    'wolfpack train --data data/Canidae --weights data/resnet50.ckpt            # the lab: 20 epochs, 2 workers',
    'wolfpack train --data data/Canidae --weights data/resnet50.ckpt --freeze backbone --workers 4   # head only',
    'wolfpack train --resume runs/latest                                         # continue a stopped run',
    'wolfpack train --config runs/canidae.yaml --epochs 5                        # flags from a file, one changed',
  ],
  run: (argv) => trainLocally(argv),
};
