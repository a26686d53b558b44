// The flag tables in README.md and docs/CONFIG.md, rendered from the commands' own specs (the ones they
// parse with and print in --help), between `<!-- flags:NAME -->` and `<!-- /flags:NAME -->` markers.
// `npm run docs` rewrites them (scripts/docs-flags.ts); test/cli/flag-docs.test.ts fails when one is stale.
import { flagTable, type FlagSpec } from '../shared/config/flags.js';
import type { Command } from './wolfpack.js';

/** Each generated block: its marker name and the flags it lists. */
export async function flagBlocks(): Promise<Map<string, readonly FlagSpec[]>> {
  const flagsOf = async (load: () => Promise<Command>) => (await load()).flags ?? [];
  return new Map<string, readonly FlagSpec[]>([
    ['train', await flagsOf(async () => (await import('./commands/train.js')).train)],
    ['coordinator', await flagsOf(async () => (await import('./commands/coordinator.js')).coordinator)],
    ['worker', await flagsOf(async () => (await import('./commands/worker.js')).worker)],
    ['predict', await flagsOf(async () => (await import('./commands/predict.js')).predict)],
    ['health', await flagsOf(async () => (await import('./commands/health.js')).health)],
  ]);
}

const block = (name: string) => new RegExp(`(<!-- flags:${name} -->)[\\s\\S]*?(<!-- /flags:${name} -->)`);

/** `text` with every flags block it holds replaced by the current table; the names of the blocks it holds. */
export async function renderFlagDocs(text: string): Promise<{ text: string; blocks: string[] }> {
  const blocks: string[] = [];
  let out = text;
  for (const [name, specs] of await flagBlocks()) {
    const re = block(name);
    if (!re.test(out)) continue;
    blocks.push(name);
    out = out.replace(re, (_m, open: string, close: string) => `${open}\n${flagTable(specs)}\n${close}`);
  }
  return { text: out, blocks };
}
