#!/usr/bin/env node
// Run by the Dockerfiles after installing: starts the TF.js backend the image is built for, with the same
// selection code a worker uses (dist/shared/backend/select.js), and exits 1 with the reason when it cannot,
// so that a build whose backend failed to install fails there instead of producing an image that quietly
// trains on a slower fallback.
//   node deploy/check-backend.mjs tensorflow|tensorflow-gpu|wasm|cpu
const name = process.argv[2];
const { selectBackend } = await import(new URL('../dist/shared/backend/select.js', import.meta.url).href);
try {
  const sel = await selectBackend(name);
  process.stdout.write(`backend check: ${sel.backend} starts (tf backend '${sel.tfName}')\n`);
} catch (e) {
  process.stderr.write(`backend check: ${e.message}\n`);
  process.exit(1);
}
