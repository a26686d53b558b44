#!/usr/bin/env node
// Entry point: the TypeScript sources are compiled to dist/ by `npm install` (prepare) or `npm run build`.
import { main } from '../dist/cli/wolfpack.js';

main(process.argv.slice(2)).then(
  (code) => { process.exitCode = code; },
  (err) => {
    process.stderr.write(`wolfpack: ${err && err.message ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
