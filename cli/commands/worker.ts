// `wolfpack worker`: one worker process; it gets its rank, ring neighbours and data from the coordinator.
import { runWorker } from '../../worker/main.js';
import { BACKENDS } from '../../shared/backend/select.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../args.js';
import { loggerFrom } from './train-flags.js';

export const worker: Command = {
  summary: 'Join a coordinator as a worker.',
  usage: 'wolfpack worker --connect ws://HOST:PORT [--backend auto|...] [--ring-bind 127.0.0.1] [--advertise HOST] [--timeout SECONDS]',
  async run(argv) {
    const { values } = parse(argv, {
      connect: { type: 'string' }, backend: { type: 'string' }, 'ring-bind': { type: 'string' }, advertise: { type: 'string' },
      timeout: { type: 'string' }, 'log-format': { type: 'string' }, 'log-level': { type: 'string' },
    });
    const logger = loggerFrom(values, {});
    await runWorker({
      connect: str(values, 'connect'), backend: oneOf(values, 'backend', BACKENDS, 'auto'),
      ringBind: optStr(values, 'ring-bind'), advertise: optStr(values, 'advertise'),
      timeoutMs: num(values, 'timeout', 600, { min: 1 }) * 1000, logger,
    });
    return 0;
  },
};
