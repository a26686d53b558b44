#!/usr/bin/env node
// Entry point: the TypeScript sources are compiled to dist/ by `npm install` (prepare) or `npm run build`.
import { main } from '../dist/cli/wolfpack.js';
import { errorLine, jsonRequested } from '../dist/shared/log.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(errorLine(`wolfpack: ${err && err.message ? err.message : String(err)}`, jsonRequested(process.argv.slice(2))));
    process.exitCode = 1;
  },
);
