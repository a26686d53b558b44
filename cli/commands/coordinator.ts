// `wolfpack coordinator`: the coordinator alone, for workers on other hosts.
import { runJob } from '../../coordinator/job.js';
import { WolfpackError } from '../../shared/errors.js';
import type { Command } from '../wolfpack.js';
import { parse } from '../args.js';
import { jobOptionsFrom, loggerFrom, TRAIN_FLAGS, TRAIN_USAGE } from './train-flags.js';

export const coordinator: Command = {
  summary: 'Run the coordinator; workers join with `wolfpack worker --connect ws://HOST:PORT`.',
  usage: `wolfpack coordinator --workers N [--host 127.0.0.1] [--port 7070] ${TRAIN_USAGE}`,
  async run(argv) {
    const { values } = parse(argv, TRAIN_FLAGS);
    if (values.workers === undefined) throw new WolfpackError('E_USAGE', '--workers is required');
    const o = jobOptionsFrom(values, { port: 7070 });
    const logger = loggerFrom(values, {});
    await runJob({ ...o, logger, print: (line) => process.stdout.write(line + '\n') });
    return 0;
  },
};
