// `wolfpack worker`: one worker process; it gets its rank, ring neighbours and data from the coordinator.
// The shared token (--token-file, WOLFPACK_TOKEN_FILE or WOLFPACK_TOKEN) authenticates it to the coordinator
// and to its ring neighbours; --tls-ca (or WOLFPACK_TLS_CA) is the CA a wss:// coordinator must chain to.
import { runWorker } from '../../worker/main.js';
import { checkBind } from '../../shared/auth/bind-policy.js';
import { workerSecurity } from '../../shared/auth/config.js';
import { BACKENDS } from '../../shared/backend/select.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../../shared/config/args.js';
import { loggerFrom, securityFlagsFrom, WORKER_SECURITY_FLAGS, WORKER_SECURITY_USAGE } from './train-flags.js';
import { HEALTH_FLAGS, HEALTH_USAGE, healthFileFrom } from './health-flags.js';
import { stopOnSignals } from '../stop-signals.js';

export const worker: Command = {
  summary: 'Join a coordinator as a worker.',
  usage: 'wolfpack worker --connect ws://HOST:PORT|wss://HOST:PORT [--backend auto|...] [--gpu INDEX] [--webgpu-optimizer gpu|host] [--ring-bind 127.0.0.1] [--advertise HOST] ' +
    `[--timeout SECONDS] ${WORKER_SECURITY_USAGE} ${HEALTH_USAGE}`,
  async run(argv) {
    const { values } = parse(argv, {
      connect: { type: 'string' }, backend: { type: 'string' }, gpu: { type: 'string' }, 'webgpu-optimizer': { type: 'string' }, 'ring-bind': { type: 'string' }, advertise: { type: 'string' },
      timeout: { type: 'string' }, 'log-format': { type: 'string' }, 'log-level': { type: 'string' }, ...WORKER_SECURITY_FLAGS, ...HEALTH_FLAGS,
    });
    const securityFlags = securityFlagsFrom(values);
    const security = workerSecurity(securityFlags);
    const ringBind = optStr(values, 'ring-bind');
    if (ringBind !== undefined) checkBind(ringBind, security.secret, 'worker --ring-bind');
    const logger = loggerFrom(values, {});
    if (!security.secret) logger.info('no shared token (WOLFPACK_TOKEN or --token-file): unauthenticated, ring listener on loopback only');
    const health = healthFileFrom(values, 'worker', logger);
    const stop = stopOnSignals((line) => logger.warn(line));
    // A worker told to stop exits at once, whatever it was doing: a step's compute or a connection being
    // retried is not waited for (the coordinator counts it lost, or has not admitted it yet).
    stop.signal.addEventListener('abort', () => { setTimeout(() => process.exit(0), STOP_EXIT_MS).unref(); }, { once: true });
    await runWorker({
      connect: str(values, 'connect'), backend: oneOf(values, 'backend', BACKENDS, 'auto'),
      ringBind, advertise: optStr(values, 'advertise'),
      gpuIndex: values.gpu === undefined ? undefined : num(values, 'gpu', 0, { int: true, min: 0 }),
      webgpuOptimizer: oneOf(values, 'webgpu-optimizer', ['gpu', 'host'] as const, 'gpu'),
      timeoutMs: num(values, 'timeout', 600, { min: 1 }) * 1000, security, securityFlags, logger,
      onState: health && ((state, detail) => health.set(state, detail)), stop: stop.signal,
    }).catch((e: unknown) => {
      if (health?.state !== 'lost') health?.set('failed', (e as Error).message);
      throw e;
    }).finally(() => { health?.close(); stop.dispose(); });
    return 0;
  },
};

/** A stopped worker that has not wound down by itself within this long exits anyway (ms). */
const STOP_EXIT_MS = 1000;
