// `wolfpack worker`: one worker process; it gets its rank, ring neighbours and data from the coordinator.
// The shared token (--token-file, WOLFPACK_TOKEN_FILE or WOLFPACK_TOKEN) authenticates it to the coordinator
// and to its ring neighbours; --tls-ca (or WOLFPACK_TLS_CA) is the CA a wss:// coordinator must chain to.
import { runWorker } from '../../worker/main.js';
import { checkBind } from '../../shared/auth/bind-policy.js';
import { workerSecurity } from '../../shared/auth/config.js';
import { BACKENDS } from '../../shared/backend/select.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../../shared/config/args.js';
import { CONFIG_SPEC, LOG_FLAGS, loggerFrom, securityFlagsFrom, WORKER_SECURITY_SPECS } from './train-flags.js';
import { HEALTH_SPEC, healthFileFrom } from './health-flags.js';
import { flagValue, parserOptions, type FlagSpec } from '../../shared/config/flags.js';
import { stopOnSignals } from '../stop-signals.js';

const WORKER_SPECS: readonly FlagSpec[] = [
  {
    name: 'connect',
    kind: 'string',
    value: 'URL',
    defaultText: 'required',
    describe: 'the coordinator: ws://HOST:PORT, or wss://HOST:PORT when it serves TLS',
  },
  {
    name: 'backend',
    kind: 'choice',
    choices: BACKENDS,
    default: 'auto',
    describe: 'TF.js backend; auto takes the first that works of tensorflow-gpu, webgpu, tensorflow, wasm, cpu',
  },
  {
    name: 'gpu',
    kind: 'int',
    value: 'INDEX',
    min: 0,
    describe:
      'which GPU this worker uses, on a host with several: the webgpu adapter, ' +
      'or for tensorflow-gpu the CUDA device (CUDA_VISIBLE_DEVICES)',
  },
  {
    name: 'webgpu-optimizer',
    kind: 'choice',
    choices: ['gpu', 'host'],
    default: 'gpu',
    describe:
      'where a webgpu worker runs Momentum: one GPU kernel (fastest), ' +
      'or the same JS loop as every other backend (for rings that mix backends)',
  },
  {
    name: 'ring-bind',
    kind: 'string',
    value: 'ADDR',
    default: '127.0.0.1',
    describe: 'address the ring listener binds to; beyond loopback needs a token',
  },
  {
    name: 'advertise',
    kind: 'string',
    value: 'HOST',
    defaultText: '--ring-bind',
    describe: "the address other workers reach this one's ring port at",
  },
  {
    name: 'timeout',
    kind: 'seconds',
    min: 1,
    default: 600,
    describe: 'give up on any single wait (the coordinator, a ring neighbour) after this long',
  },
  ...WORKER_SECURITY_SPECS,
  HEALTH_SPEC,
  ...LOG_FLAGS,
  CONFIG_SPEC,
];

export const worker: Command = {
  summary: 'Join a coordinator as a worker.',
  usage: 'wolfpack worker --connect ws://HOST:PORT|wss://HOST:PORT [flags below]',
  flags: WORKER_SPECS,
  examples: [
    "wolfpack worker --connect ws://127.0.0.1:7070                     # a worker on the coordinator's machine",
    'wolfpack worker --connect ws://10.0.0.1:7070 --token-file token --ring-bind 0.0.0.0 --advertise 10.0.0.2 ' +
      '--backend tensorflow-gpu',
  ],
  async run(argv) {
    const { values } = parse(argv, parserOptions(WORKER_SPECS.filter((s) => s !== CONFIG_SPEC)));
    const securityFlags = securityFlagsFrom(values);
    const security = workerSecurity(securityFlags);
    const ringBind = optStr(values, 'ring-bind');
    if (ringBind !== undefined) checkBind(ringBind, security.secret, 'worker --ring-bind');
    const logger = loggerFrom(values, {});
    if (!security.secret)
      logger.info('no shared token (WOLFPACK_TOKEN or --token-file): unauthenticated, ring listener on loopback only');
    const health = healthFileFrom(values, 'worker', logger);
    const stop = stopOnSignals((line) => logger.warn(line));
    // A worker told to stop exits at once, whatever it was doing: a step's compute or a connection being
    // retried is not waited for (the coordinator counts it lost, or has not admitted it yet).
    stop.signal.addEventListener(
      'abort',
      () => {
        setTimeout(() => process.exit(0), STOP_EXIT_MS).unref();
      },
      { once: true },
    );
    await runWorker({
      connect: str(values, 'connect'),
      backend: oneOf(values, 'backend', BACKENDS, 'auto'),
      ringBind,
      advertise: optStr(values, 'advertise'),
      gpuIndex: values.gpu === undefined ? undefined : num(values, 'gpu', 0, { int: true, min: 0 }),
      webgpuOptimizer: oneOf(values, 'webgpu-optimizer', ['gpu', 'host'] as const, 'gpu'),
      timeoutMs: flagValue(
        values,
        WORKER_SPECS.find((s) => s.name === 'timeout')!,
      ) as number,
      security,
      securityFlags,
      logger,
      onState: health && ((state, detail) => health.set(state, detail)),
      stop: stop.signal,
    })
      .catch((e: unknown) => {
        if (health?.state !== 'lost') health?.set('failed', (e as Error).message);
        throw e;
      })
      .finally(() => {
        health?.close();
        stop.dispose();
      });
    return 0;
  },
};

/** A stopped worker that has not wound down by itself within this long exits anyway (ms). */
const STOP_EXIT_MS = 1000;
