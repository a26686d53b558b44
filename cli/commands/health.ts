// `wolfpack health --file PATH [--max-age S]`: a container health check that asks the process itself.
// A worker or coordinator started with --health-file PATH keeps PATH up to date with its state
// (shared/health/state-file.ts); this exits 0 only when that state is a healthy one and the file was
// rewritten within the last S seconds, else 1, with one line saying why. It loads nothing else, so it
// is cheap enough to run every few seconds.
import { checkHealth, DEFAULT_MAX_AGE_S } from '../../shared/health/state-file.js';
import type { Command } from '../wolfpack.js';
import { num, parse, str } from '../../shared/config/args.js';

export const health: Command = {
  summary: 'Exit 0 if the process writing --file (its --health-file) is healthy and the file is fresh, else 1.',
  usage: `wolfpack health --file PATH [--max-age ${DEFAULT_MAX_AGE_S}]`,
  async run(argv) {
    const { values } = parse(argv, { file: { type: 'string' }, 'max-age': { type: 'string' } });
    const file = str(values, 'file');
    const maxAge = num(values, 'max-age', DEFAULT_MAX_AGE_S, { min: 0 });
    const verdict = checkHealth(file, maxAge);
    (verdict.ok ? process.stdout : process.stderr).write(`${verdict.reason}\n`);
    return verdict.ok ? 0 : 1;
  },
};
