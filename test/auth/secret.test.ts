// The shared secret: where it is read from (flag, then WOLFPACK_TOKEN_FILE, then WOLFPACK_TOKEN), what is
// refused (short, empty, unreadable), and that it never prints itself (logs, JSON, util.inspect, errors).
// The proofs: fresh nonces, constant-time comparison that tolerates bad input, distinct client and server
// proofs (no reflection).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import t from 'tap';
import { clientProof, newNonce, proofsEqual, serverProof } from '../../shared/auth/handshake.js';
import { ringHelloAuth } from '../../shared/auth/ring-auth.js';
import { loadSecret, SharedSecret } from '../../shared/auth/secret.js';
import { isWolfpackError } from '../../shared/errors.js';

const TOKEN = 'secret-test-token-' + 'h2'.repeat(10);

function usage(fn: () => unknown): string {
  try {
    fn();
  } catch (e) {
    return isWolfpackError(e, 'E_USAGE') ? e.message : `not E_USAGE: ${String(e)}`;
  }
  return 'no error';
}

t.test('sources and their order', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-secret-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const a = join(dir, 'a');
  const b = join(dir, 'b');
  writeFileSync(a, `  ${TOKEN}-a  \r\nsecond line ignored\n`);
  writeFileSync(b, `${TOKEN}-b\n`);
  const env = { WOLFPACK_TOKEN: `${TOKEN}-env`, WOLFPACK_TOKEN_FILE: b };
  const probe = (s: SharedSecret | undefined) => s?.hmac('probe').toString('hex');
  const want = (tok: string) => new SharedSecret(tok, 'x').hmac('probe').toString('hex');
  t.equal(probe(loadSecret({ tokenFile: a, env })), want(`${TOKEN}-a`), '--token-file wins, first line, trimmed');
  t.equal(probe(loadSecret({ env })), want(`${TOKEN}-b`), 'then WOLFPACK_TOKEN_FILE');
  t.equal(probe(loadSecret({ env: { WOLFPACK_TOKEN: `${TOKEN}-env` } })), want(`${TOKEN}-env`), 'then WOLFPACK_TOKEN');
  t.equal(loadSecret({ env: {} }), undefined, 'none');
  t.equal(
    loadSecret({ env: { WOLFPACK_TOKEN: '', WOLFPACK_TOKEN_FILE: '' } }),
    undefined,
    'empty variables count as unset',
  );
  t.match(loadSecret({ env })?.source, /WOLFPACK_TOKEN_FILE/);

  writeFileSync(join(dir, 'empty'), '\n');
  t.match(
    usage(() => loadSecret({ tokenFile: join(dir, 'empty'), env: {} })),
    /is empty/,
  );
  t.match(
    usage(() => loadSecret({ tokenFile: join(dir, 'nope'), env: {} })),
    /cannot read the token file .*ENOENT/,
  );
  t.match(
    usage(() => loadSecret({ env: { WOLFPACK_TOKEN: 'short' } })),
    /5 bytes; at least 16 are required/,
  );
});

t.test('the secret never prints itself', async (t) => {
  const s = new SharedSecret(TOKEN, 'WOLFPACK_TOKEN');
  for (const text of [
    JSON.stringify({ s }),
    inspect(s),
    inspect({ s }, { depth: 5, showHidden: true }),
    String(s),
    `${s}`,
  ]) {
    t.notOk(text.includes(TOKEN), `not in ${text.slice(0, 60)}`);
  }
  t.notOk(JSON.stringify(ringHelloAuth(s, { jobId: 'j', rank: 0, size: 2 })).includes(TOKEN), 'not in a ring hello');
  t.ok(s.occursIn(Buffer.from(`xx${TOKEN}yy`)) && !s.occursIn(Buffer.from('xx')), 'occursIn finds it in bytes');
});

t.test('proofs', async (t) => {
  const s = new SharedSecret(TOKEN, 'test');
  const n1 = newNonce();
  const n2 = newNonce();
  t.match(n1, /^[0-9a-f]{64}$/);
  t.not(n1, n2, 'fresh nonces');
  t.not(clientProof(s, n1, n2), serverProof(s, n1, n2), 'client and server proofs differ (no reflection)');
  t.not(clientProof(s, n1, n2), clientProof(s, n2, n1), 'bound to who chose which nonce');
  t.not(clientProof(s, n1, n2), clientProof(new SharedSecret(TOKEN + 'x', 't'), n1, n2), 'bound to the token');
  const p = clientProof(s, n1, n2);
  t.ok(proofsEqual(p, p));
  for (const bad of ['', p.slice(2), p + '00', 'zz' + p.slice(2), p.toUpperCase().replace(/[0-9]/g, 'G')])
    t.notOk(proofsEqual(bad, p), `rejects ${JSON.stringify(bad.slice(0, 12))}...`);
});
