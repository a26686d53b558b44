// `wolfpack train`: single-node mode, a coordinator plus N local worker processes.
import { runJob, type JobOptions } from '../../coordinator/job.js';
import { LocalWorkers } from '../../coordinator/local-workers.js';
import type { Command } from '../wolfpack.js';
import { coordinatorSecurity, localCoordinatorUrl, securityEnv } from '../../shared/auth/config.js';
import { parse } from '../../shared/config/args.js';
import { runWithDashboard } from '../../coordinator/dashboard/server.js';
import { fanOut } from '../../coordinator/dashboard/events.js';
import { COORDINATOR_SECURITY_FLAGS, COORDINATOR_SECURITY_USAGE, DASHBOARD_USAGE, dashboardFrom, holdFrom, jobOptionsFrom, loggerFrom, reportsFrom, securityFlagsFrom, terminalProgress, TRAIN_FLAGS, TRAIN_USAGE } from './train-flags.js';
import { HEALTH_FLAGS, HEALTH_USAGE, healthEvents, healthFileFrom, withHealth } from './health-flags.js';
import { createPrinter, jsonRequested } from '../../shared/log.js';

/** Runs a job with its workers as local processes; used by `train` and `demo`. */
export async function trainLocally(argv: string[], defaults: Partial<JobOptions> = {}): Promise<number> {
  const { values } = parse(argv, { ...TRAIN_FLAGS, ...COORDINATOR_SECURITY_FLAGS, ...HEALTH_FLAGS, 'tls-ca': { type: 'string' } });
  const o = jobOptionsFrom(values, defaults);
  const flags = securityFlagsFrom(values);
  const security = coordinatorSecurity(flags);
  // The local workers read the same token / CA from the environment they inherit.
  Object.assign(process.env, securityEnv(flags));
  const logger = loggerFrom(values, {});
  const hold = holdFrom(values, o, logger);
  const reports = reportsFrom(values, o, logger);
  const health = healthFileFrom(values, 'coordinator', logger);
  const print = createPrinter(jsonRequested(values['log-format'] === undefined ? [] : ['--log-format', String(values['log-format'])]));
  const dashboard = await dashboardFrom(values, o, security, logger);
  const workers = new LocalWorkers(logger);
  const stop = () => { void workers.stop(0); };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    await withHealth(health, () => runWithDashboard(dashboard, (events) => runJob({
      ...o, security, logger, print, progress: terminalProgress(), events: fanOut(events, hold, healthEvents(health), reports),
      // Local workers are not restarted: once too few are left, wait only --timeout (or --rejoin-timeout) for one started by hand.
      rejoinTimeoutMs: o.rejoinTimeoutMs ?? o.timeoutMs,
      onListening: (port) => workers.start(o.workers, localCoordinatorUrl(port, security), o.backend,
        values['log-format'] ? { WOLFPACK_LOG_FORMAT: String(values['log-format']) } : {}),
    })));
    await workers.stop();
    return 0;
  } finally {
    await workers.stop(0);
    process.off('SIGINT', stop);
    process.off('SIGTERM', stop);
  }
}

export const train: Command = {
  summary: 'Train on one machine: a coordinator plus N local worker processes (ring all-reduce over WebSockets).',
  usage: `wolfpack train ${TRAIN_USAGE} ${COORDINATOR_SECURITY_USAGE} [--tls-ca PEM] ${DASHBOARD_USAGE} ${HEALTH_USAGE}`,
  run: (argv) => trainLocally(argv),
};
