// Connecting a rank to its left neighbour (with retries while the port is still closed) and the Link
// made of a rank's two halves.
import type { Link } from '../../allreduce/link.js';
import { WolfpackError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { FINGERPRINT_PATTERN } from './certificate.js';
import { checkHost, defaultLogger, DEFAULT_MAX_CHUNK_BYTES, DEFAULT_MAX_EARLY_BYTES, positiveInt } from './frame.js';
import { helloText, type RingHello } from './hello.js';
import { RingIncoming } from './incoming.js';
import type { RingOutgoing } from './outgoing.js';

export interface RingConnectOptions {
  /** Give up (including retries while the port is closed) after this long (default 30 s). */
  timeoutMs?: number;
  /** Pause between connection attempts while the peer's port is closed (default 100 ms). */
  retryMs?: number;
  /** Largest data payload accepted, bytes (default DEFAULT_MAX_CHUNK_BYTES). */
  maxChunkBytes?: number;
  /** Require messages to arrive in the order they are received (default true): fail fast on desync. */
  ordered?: boolean;
  /** Bytes of early messages held before the socket is no longer read (default DEFAULT_MAX_EARLY_BYTES). */
  maxEarlyBytes?: number;
  /** For a wss:// URL (required there): the SHA-256 fingerprint of the listener's certificate (certificate.ts). */
  pin?: string;
  logger?: Logger;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Connect to the left neighbour's ring port (`url`, e.g. ws://127.0.0.1:PORT, or wss:// with `opts.pin`),
 * send the hello and wait for the welcome: the receiving half of this rank's link. Retries while the port
 * refuses connections.
 */
export async function connectRing(url: string, hello: RingHello, opts: RingConnectOptions = {}): Promise<RingIncoming> {
  checkHost();
  const timeoutMs = positiveInt('timeoutMs', opts.timeoutMs ?? 30_000);
  const retryMs = positiveInt('retryMs', opts.retryMs ?? 100);
  const maxChunkBytes = positiveInt('maxChunkBytes', opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES);
  const maxEarlyBytes = positiveInt('maxEarlyBytes', opts.maxEarlyBytes ?? DEFAULT_MAX_EARLY_BYTES);
  const log = (opts.logger ?? defaultLogger()).child({ component: 'ring-link' });
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new WolfpackError('E_USAGE', `bad ring URL ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    throw new WolfpackError('E_USAGE', `ring URL must be ws://host:port or wss://host:port, got ${url}`);
  if (u.protocol === 'wss:' && (opts.pin === undefined || !FINGERPRINT_PATTERN.test(opts.pin))) {
    throw new WolfpackError(
      'E_USAGE',
      `ring URL ${url} is wss:// but no certificate fingerprint (64 hex digits) to pin was given: ` +
        `got ${JSON.stringify(opts.pin)}`,
    );
  }
  if (u.protocol === 'ws:' && opts.pin !== undefined)
    throw new WolfpackError(
      'E_USAGE',
      `a certificate fingerprint was given for the plain ring URL ${url} (expected wss://)`,
    );
  if (!Number.isSafeInteger(hello.rank) || hello.rank < 0)
    throw new WolfpackError('E_USAGE', `hello.rank must be a non-negative integer, got ${hello.rank}`);
  helloText(hello); // E_USAGE now rather than a refusal later when it is too large
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new WolfpackError('E_WORKER', `cannot connect the ring to ${url} within ${timeoutMs} ms`);
    const inc = new RingIncoming(u, hello, {
      maxChunkBytes,
      ordered: opts.ordered ?? true,
      maxEarlyBytes,
      ...(opts.pin !== undefined ? { pin: opts.pin } : {}),
      logger: log,
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        inc.open(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(
            () => reject(new WolfpackError('E_WORKER', `no welcome from ${url} within ${timeoutMs} ms`)),
            left,
          );
        }),
      ]);
      return inc;
    } catch (err) {
      const refused = err instanceof WolfpackError && err.details.sysCode === 'ECONNREFUSED';
      inc.close();
      if (!refused) throw err;
      log.debug({ url }, 'ring peer not listening yet; retrying');
      await sleep(Math.min(retryMs, Math.max(1, deadline - Date.now())));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A Link from the two halves: send to the right neighbour, receive from the left one. */
export function wsLink(outgoing: RingOutgoing, incoming: RingIncoming): Link {
  return {
    send: (tag, data) => outgoing.send(tag, data),
    recv: (tag, count, into) => incoming.recv(tag, count, into),
    close: () => {
      outgoing.close();
      incoming.close();
    },
  };
}
