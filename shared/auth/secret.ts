// The shared secret that authenticates every connection of a job (coordinator <-> worker and the ring
// links): where it comes from, how strong it must be, and a holder that computes HMACs with it but never
// prints it. The secret itself never crosses the wire; handshake.ts and ring-auth.ts send only proofs.
//
// Sources, first found wins: `--token-file FILE`, then $WOLFPACK_TOKEN_FILE, then $WOLFPACK_TOKEN.
// A token file holds the token on its first line (surrounding white space and the newline are ignored).
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { inspect } from 'node:util';
import { WolfpackError } from '../errors.js';

/** Shortest token accepted, bytes (UTF-8). `openssl rand -hex 32` makes a good one. */
export const MIN_TOKEN_BYTES = 16;
/** Longest token accepted, bytes: a token file is read whole, so bound it. */
export const MAX_TOKEN_BYTES = 4096;

/** The advice every "no token" or "bad token" message ends with. */
export const TOKEN_HELP =
  'set the same token on the coordinator and every worker: WOLFPACK_TOKEN=... in the environment, ' +
  'or --token-file FILE (make one with `openssl rand -hex 32 > FILE; chmod 600 FILE`)';

/** A shared secret. HMAC-SHA256 only; the bytes are kept in a private field and never logged. */
export class SharedSecret {
  readonly #key: Buffer;
  /** Where the secret came from ('--token-file /path', 'WOLFPACK_TOKEN', ...), for log lines. */
  readonly source: string;

  constructor(token: string | Uint8Array, source: string) {
    const key = typeof token === 'string' ? Buffer.from(token, 'utf8') : Buffer.from(token);
    if (key.length < MIN_TOKEN_BYTES) {
      throw new WolfpackError(
        'E_USAGE',
        `the token from ${source} is ${key.length} bytes; at least ${MIN_TOKEN_BYTES} are required: ${TOKEN_HELP}`,
      );
    }
    if (key.length > MAX_TOKEN_BYTES)
      throw new WolfpackError('E_USAGE', `the token from ${source} is longer than ${MAX_TOKEN_BYTES} bytes`);
    this.#key = key;
    this.source = source;
  }

  /** HMAC-SHA256(secret, parts joined by '|'). */
  hmac(...parts: string[]): Buffer {
    return createHmac('sha256', this.#key).update(parts.join('|'), 'utf8').digest();
  }

  /** A secret derived for one purpose: HMAC(secret, parts). Used as the ring key of one job. */
  derive(source: string, ...parts: string[]): SharedSecret {
    return new SharedSecret(this.hmac(...parts), source);
  }

  /** True when `bytes` contains the secret (tests search captured traffic with this). */
  occursIn(bytes: Uint8Array): boolean {
    return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).includes(this.#key);
  }

  toJSON(): string {
    return `[secret from ${this.source}]`;
  }

  toString(): string {
    return `[secret from ${this.source}]`;
  }

  [inspect.custom](): string {
    return `SharedSecret(${this.source})`;
  }
}

function readTokenFile(path: string, source: string): SharedSecret {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new WolfpackError(
      'E_USAGE',
      `cannot read the token file ${path} (${source}): ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (Buffer.byteLength(text) > MAX_TOKEN_BYTES + 2)
    throw new WolfpackError('E_USAGE', `the token file ${path} is larger than ${MAX_TOKEN_BYTES} bytes`);
  const line = text.split(/\r?\n/)[0]!.trim();
  if (line.length === 0) throw new WolfpackError('E_USAGE', `the token file ${path} is empty: ${TOKEN_HELP}`);
  return new SharedSecret(line, `${source} ${path}`);
}

/** The shared secret from `--token-file`, $WOLFPACK_TOKEN_FILE or $WOLFPACK_TOKEN; undefined when none is set. */
export function loadSecret(opts: { tokenFile?: string; env?: NodeJS.ProcessEnv } = {}): SharedSecret | undefined {
  const env = opts.env ?? process.env;
  if (opts.tokenFile !== undefined) return readTokenFile(resolve(opts.tokenFile), '--token-file');
  const file = env.WOLFPACK_TOKEN_FILE;
  if (file !== undefined && file !== '') return readTokenFile(resolve(file), 'WOLFPACK_TOKEN_FILE');
  const token = env.WOLFPACK_TOKEN;
  if (token !== undefined && token !== '') return new SharedSecret(token.trim(), 'WOLFPACK_TOKEN');
  return undefined;
}
