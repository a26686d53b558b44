// Rewrites the flag tables in README.md and docs/CONFIG.md from the commands' specs (cli/flag-docs.ts).
//   npm run docs
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { renderFlagDocs } from '../cli/flag-docs.js';
import { packageRoot } from '../shared/paths.js';

for (const file of ['README.md', 'docs/CONFIG.md']) {
  const path = join(packageRoot, file);
  const before = readFileSync(path, 'utf8');
  const { text, blocks } = await renderFlagDocs(before);
  if (text !== before) writeFileSync(path, text);
  console.log(
    `${file}: ${blocks.length ? blocks.join(', ') : 'no flags blocks'}` +
      `${text !== before ? ' (rewritten)' : ' (current)'}`,
  );
}
