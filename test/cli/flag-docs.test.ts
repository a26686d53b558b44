// The flag tables in README.md and docs/CONFIG.md are generated from the specs the commands parse with
// (cli/flag-docs.ts): a spec changed without `npm run docs` fails here, naming the file. And `--help` lists
// every flag a command accepts, each with a description.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { commandHelp, version } from '../../cli/wolfpack.js';
import { flagBlocks, renderFlagDocs } from '../../cli/flag-docs.js';
import { parserOptions } from '../../shared/config/flags.js';
import { TRAIN_FLAGS } from '../../cli/commands/train-flags.js';
import { train } from '../../cli/commands/train.js';
import { packageRoot } from '../../shared/paths.js';
import { runCli } from '../helpers/processes.js';

t.test('README.md and docs/CONFIG.md hold the current flag tables', async (t) => {
  for (const [file, want] of [
    ['README.md', ['train']],
    ['docs/CONFIG.md', ['train', 'coordinator', 'worker', 'predict', 'health']],
  ] as const) {
    const text = readFileSync(join(packageRoot, file), 'utf8');
    const r = await renderFlagDocs(text);
    t.same(r.blocks, want, `${file} has the flags blocks`);
    t.ok(r.text === text, `${file}: its flag tables are current (run \`npm run docs\`)`);
  }
});

t.test('every flag a command parses is in its help, with a description', async (t) => {
  const help = commandHelp(train);
  const parsed = Object.keys({ ...TRAIN_FLAGS, ...parserOptions(train.flags ?? []) });
  const specs = new Map((train.flags ?? []).map((s) => [s.name, s]));
  for (const name of parsed) {
    const spec = specs.get(name);
    t.ok(spec, `--${name} has a spec`);
    t.ok(
      help.includes(`\n  --${name}`) && spec !== undefined && help.replace(/\n +/g, ' ').includes(spec.describe),
      `train --help describes --${name}`,
    );
  }
  for (const [name, specs] of await flagBlocks()) {
    for (const s of specs) t.ok(s.describe.length > 10, `${name} --${s.name} has a description`);
  }
});

t.test('--version, --help, and a mistyped command', async (t) => {
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as { version: string };
  t.equal(version(), pkg.version);
  const v = await runCli(['--version'], 60_000);
  t.equal(v.code, 0);
  t.equal(v.stdout, `${pkg.version}\n`);
  const h = await runCli(['train', '--help'], 60_000);
  t.equal(h.code, 0);
  t.match(
    h.stdout.replace(/\n +/g, ' '),
    /--batch-size N +the global batch, split over the workers \(at least --workers\) \(default 18\)/,
  );
  t.match(h.stdout, /examples:\n {2}wolfpack train --data/);
  const typo = await runCli(['trian'], 60_000);
  t.equal(typo.code, 2);
  t.match(typo.stderr, "wolfpack: unknown command 'trian'; did you mean 'train'?");
});
