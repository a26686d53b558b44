// `wolfpack` command-line entry: dispatches to one module per command under cli/commands/.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { isWolfpackError } from '../shared/errors.js';
import { closest } from '../shared/config/args.js';
import { flagHelp, type FlagSpec } from '../shared/config/flags.js';
import { errorLine, jsonRequested } from '../shared/log.js';
import { packageRoot } from '../shared/paths.js';

export interface Command {
  summary: string;
  usage: string;
  /** The flags `--help` lists with what they do and their defaults (the same specs the command parses with). */
  flags?: readonly FlagSpec[];
  /** Command lines worth copying, each with a comment. */
  examples?: readonly string[];
  run(argv: string[]): Promise<number>;
}

/** The package's version (package.json). */
export function version(): string {
  return (JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string }).version;
}

/** `wolfpack COMMAND --help`: summary, usage, every flag with its meaning and default, examples. */
export function commandHelp(cmd: Command): string {
  const parts = [cmd.summary, `usage: ${cmd.usage}`];
  if (cmd.flags?.length)
    parts.push(
      `flags (each also WOLFPACK_<FLAG> in the environment, or a key of --config FILE):\n${flagHelp(cmd.flags)}`,
    );
  if (cmd.examples?.length) parts.push(`examples:\n${cmd.examples.map((e) => `  ${e}`).join('\n')}`);
  return parts.join('\n\n') + '\n';
}

const COMMANDS: Record<string, () => Promise<Command>> = {
  demo: async () => (await import('./commands/demo.js')).demo,
  train: async () => (await import('./commands/train.js')).train,
  coordinator: async () => (await import('./commands/coordinator.js')).coordinator,
  worker: async () => (await import('./commands/worker.js')).worker,
  predict: async () => (await import('./commands/predict.js')).predict,
  preview: async () => (await import('./commands/preview.js')).preview,
  bench: async () => (await import('./commands/bench.js')).bench,
  fetch: async () => (await import('./commands/fetch.js')).fetch,
  health: async () => (await import('./commands/health.js')).health,
};

/** One line a command, for `wolfpack --help` (kept here so that the overview loads no command). */
const SUMMARIES: Record<keyof typeof COMMANDS, string> = {
  demo: 'generate a small dogs-vs-wolves-like set and a starting checkpoint, train on 2 local workers (npm start)',
  train: 'train on this machine: a coordinator plus N local worker processes',
  coordinator: 'run the coordinator alone, for workers on other hosts',
  worker: 'join a coordinator as a worker',
  predict: 'classify images with a trained checkpoint',
  preview: 'write one augmented training batch as a PNG grid',
  bench: 'benchmarks: all-reduce, scaling, cluster, chaos, peers',
  fetch: "download the lab's data set and starting checkpoint",
  health: 'container health check: is the process writing --file healthy?',
};

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((c) => c.length)) + 2;
  return (
    `wolfpack ${version()}: data-parallel fine-tuning of ResNet-50 over a ring of workers\n\n` +
    'usage: wolfpack <command> [flags]\n\ncommands:\n' +
    Object.keys(COMMANDS)
      .map((c) => `  ${c.padEnd(width)}${SUMMARIES[c as keyof typeof COMMANDS]}`)
      .join('\n') +
    '\n\n`wolfpack <command> --help` lists its flags; `wolfpack --version` prints the version.\n'
  );
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  const load = COMMANDS[name];
  if (!load) {
    const like = closest(name, Object.keys(COMMANDS));
    process.stderr.write(`wolfpack: unknown command '${name}'${like ? `; did you mean '${like}'?` : ''}\n\n${help()}`);
    return 2;
  }
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(commandHelp(cmd));
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    if (isWolfpackError(e)) {
      // The code is shown (E_REPLICA, E_WORKER, ...), except for usage errors, whose message names the flag.
      const shown = e.code === 'E_USAGE' || e.message.startsWith(`${e.code}:`) ? e.message : `${e.code}: ${e.message}`;
      process.stderr.write(errorLine(`wolfpack ${name}: ${shown}`, jsonRequested(rest), { code: e.code }));
      return e.code === 'E_USAGE' ? 2 : 1;
    }
    throw e;
  }
}
