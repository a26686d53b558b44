// `wolfpack` command-line entry: dispatches to one module per command under cli/commands/.
import { isWolfpackError } from '../shared/errors.js';
import { errorLine, jsonRequested } from '../shared/log.js';

export interface Command {
  summary: string;
  usage: string;
  run(argv: string[]): Promise<number>;
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

function help(): string {
  return 'usage: wolfpack <command> [options]\n\ncommands:\n' +
    Object.keys(COMMANDS).map((c) => `  ${c}`).join('\n') + '\n\nRun `wolfpack <command> --help` for its options.\n';
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    process.stderr.write(`wolfpack: unknown command '${name}'\n${help()}`);
    return 2;
  }
  const cmd = await load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.summary}\n\nusage: ${cmd.usage}\n`);
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
