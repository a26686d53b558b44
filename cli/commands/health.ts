// `wolfpack health --file PATH [--max-age S]`: a container health check that asks the process itself.
// A worker or coordinator started with --health-file PATH keeps PATH up to date with its state
// (shared/health/state-file.ts); this exits 0 only when that state is a healthy one and the file was
// rewritten within the last S seconds, else 1, with one line saying why. It loads nothing else, so it
// is cheap enough to run every few seconds.
import { checkHealth, DEFAULT_MAX_AGE_S } from '../../shared/health/state-file.js';
import type { Command } from '../wolfpack.js';
import { num, parse, str } from '../../shared/config/args.js';
import { parserOptions, type FlagSpec } from '../../shared/config/flags.js';

const HEALTH_CHECK_SPECS: readonly FlagSpec[] = [
  {
    name: 'file',
    kind: 'string',
    value: 'PATH',
    defaultText: 'required',
    describe: 'the --health-file of the worker or coordinator to judge',
  },
  {
    name: 'max-age',
    kind: 'number',
    value: 'S',
    min: 0,
    default: DEFAULT_MAX_AGE_S,
    describe: 'a file not rewritten within S seconds means a process that is hung or gone',
  },
];

export const health: Command = {
  summary: 'Exit 0 if the process writing --file (its --health-file) is healthy and the file is fresh, else 1.',
  usage: `wolfpack health --file PATH [--max-age ${DEFAULT_MAX_AGE_S}]`,
  flags: HEALTH_CHECK_SPECS,
  examples: ['wolfpack health --file /tmp/wolfpack-health.json   # in a HEALTHCHECK or an exec probe'],
  async run(argv) {
    const { values } = parse(argv, parserOptions(HEALTH_CHECK_SPECS));
    const file = str(values, 'file');
    const maxAge = num(values, 'max-age', DEFAULT_MAX_AGE_S, { min: 0 });
    const verdict = checkHealth(file, maxAge);
    (verdict.ok ? process.stdout : process.stderr).write(`${verdict.reason}\n`);
    return verdict.ok ? 0 : 1;
  },
};
