#!/usr/bin/env node
// Entry point: the TypeScript sources are compiled to dist/ by `npm install` (prepare) or `npm run build`;
// the published package ships dist/. A checkout whose dist/ is missing gets a line that says so.
let cli;
let log;
try {
  cli = await import('../dist/cli/wolfpack.js');
  log = await import('../dist/shared/log.js');
} catch (e) {
  if (e && e.code === 'ERR_MODULE_NOT_FOUND' && String(e.message).includes('/dist/')) {
    process.stderr.write(
      'wolfpack: the compiled JavaScript (dist/) is missing: ' +
        'run `npm install` (which builds it) or `npm run build` in the package folder\n',
    );
    process.exit(1);
  }
  throw e;
}

cli.main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err) => {
    process.stderr.write(
      log.errorLine(
        `wolfpack: ${err && err.message ? err.message : String(err)}`,
        log.jsonRequested(process.argv.slice(2)),
      ),
    );
    process.exitCode = 1;
  },
);
