#!/usr/bin/env node
// Container health checks for compose and Kubernetes, with no dependency beyond Node itself. Exits 0
// when healthy, 1 with the reason on stderr when not.
//   node deploy/healthcheck.mjs listening PORT      something (the coordinator) accepts TCP connections on 127.0.0.1:PORT
//   node deploy/healthcheck.mjs connected URL|PORT  this container holds an established TCP connection to that
//                                                   port (a worker has joined its coordinator); reads /proc/net/tcp{,6}
import { readFileSync } from 'node:fs';
import { connect } from 'node:net';

const [mode, target] = process.argv.slice(2);

function fail(reason) {
  process.stderr.write(`unhealthy: ${reason}\n`);
  process.exit(1);
}

function portOf(value) {
  if (/^\d+$/.test(value ?? '')) return Number(value);
  try {
    const url = new URL(value);
    return Number(url.port || (url.protocol === 'wss:' || url.protocol === 'https:' ? 443 : 80));
  } catch {
    return fail(`expected a port or a ws:// URL, got '${value}'`);
  }
}

if (mode === 'listening') {
  const port = portOf(target);
  const socket = connect({ host: '127.0.0.1', port, timeout: 3000 });
  socket.once('connect', () => { socket.destroy(); process.exit(0); });
  socket.once('timeout', () => fail(`no answer on 127.0.0.1:${port}`));
  socket.once('error', (e) => fail(`nothing listens on 127.0.0.1:${port} (${e.message})`));
} else if (mode === 'connected') {
  const port = portOf(target);
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  let established = 0;
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try { text = readFileSync(table, 'utf8'); } catch { continue; }
    for (const line of text.split('\n').slice(1)) {
      const cols = line.trim().split(/\s+/);
      // cols: sl local_address rem_address st ...; state 01 is ESTABLISHED
      if (cols.length > 3 && cols[2].endsWith(`:${hexPort}`) && cols[3] === '01') established++;
    }
  }
  if (established === 0) fail(`no established connection to port ${port} (not joined to the coordinator yet, or lost it)`);
  process.exit(0);
} else {
  fail(`usage: healthcheck.mjs listening PORT | connected URL|PORT (got '${mode ?? ''}')`);
}
