// `wolfpack coordinator`: the coordinator alone, for workers on other hosts. With a shared token
// (--token-file or WOLFPACK_TOKEN) it may listen beyond loopback (--host 0.0.0.0); with --tls-cert and
// --tls-key workers connect with wss://.
import { runJob } from '../../coordinator/job.js';
import { checkBind } from '../../shared/auth/bind-policy.js';
import { coordinatorSecurity } from '../../shared/auth/config.js';
import { WolfpackError } from '../../shared/errors.js';
import type { Command } from '../wolfpack.js';
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
  holdFrom,
  jobOptionsFrom,
  loggerFrom,
  reportsFrom,
  securityFlagsFrom,
  terminalProgress,
  TRAIN_FLAGS,
  printerFrom,
} from './train-flags.js';
import { DEFAULT_OUT } from '../../coordinator/checkpoints.js';
import { HEALTH_FLAGS, HEALTH_SPEC, healthEvents, healthFileFrom, withHealth } from './health-flags.js';
import { describeStop } from '../../coordinator/stop.js';
import { stopOnSignals } from '../stop-signals.js';

export const coordinator: Command = {
  summary: 'Run the coordinator; workers join with `wolfpack worker --connect ws://HOST:PORT` (wss:// with TLS).',
  usage: 'wolfpack coordinator --workers N --data DIR --weights FILE [--host ADDR] [--port 7070] [flags below]',
  flags: [...TRAINING_FLAGS, ...COORDINATOR_SECURITY_SPECS, HEALTH_SPEC, ...LOG_FLAGS, CONFIG_SPEC],
  examples: [
    'wolfpack coordinator --workers 4 --host 0.0.0.0 --token-file token ' +
      '--data data/Canidae --weights data/resnet50.ckpt',
    '  # then on each GPU host: wolfpack worker --connect ws://COORDINATOR:7070 --token-file token ' +
      '--ring-bind 0.0.0.0 --advertise HOST_IP',
    'wolfpack coordinator --resume runs/latest --host 0.0.0.0 --token-file token   # continue a stopped run',
  ],
  async run(argv) {
    const { values } = parse(argv, { ...TRAIN_FLAGS, ...COORDINATOR_SECURITY_FLAGS, ...HEALTH_FLAGS });
    const resume = resumeDirFrom(values, DEFAULT_OUT);
    const saved = savedJobDefaults(resume);
    if (values.workers === undefined && saved.workers === undefined)
      throw new WolfpackError('E_USAGE', '--workers is required');
    const o = jobOptionsFrom({ ...values, resume }, { port: 7070, ...saved });
    checkJobFiles(o, values.overwrite === true);
    // Check token, certificate and bind address before the (slow) data scan and weights load.
    const flags = securityFlagsFrom(values);
    const security = coordinatorSecurity(flags);
    checkBind(o.host, security.secret, 'coordinator --host');
    const logger = loggerFrom(values, {});
    const hold = holdFrom(values, o, logger);
    const reports = reportsFrom(values, o, logger);
    const health = healthFileFrom(values, 'coordinator', logger);
    const print = printerFrom(values);
    const dashboard = await dashboardFrom(values, o, security, logger);
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
          }),
        ),
      );
      if (result.stopped)
        print(
          describeStop(
            result.stopped,
            (dir) => `wolfpack coordinator --resume ${dir} (with the same --host, --port and security flags)`,
          ),
        );
    } finally {
      stop.dispose();
    }
    return 0;
  },
};
