// A worker's connection to its coordinator: ws:// or wss:// (verified against a CA when given), retried
// while the coordinator cannot be reached yet, as torchrun's agents retry their rendezvous; and the
// starting weights the coordinator sends to rank 0 over it.
import WebSocket from 'ws';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { Channel } from '../shared/protocol/channel.js';
import { receiveState, wholeRanges, type StateBuffers } from '../shared/protocol/state-transfer.js';

/** Largest frame a worker accepts from the coordinator. */
export const WORKER_MAX_PAYLOAD = 256 * 1024 * 1024;

// Auth: the connection to the coordinator (ws:// or wss://, verified against `ca` when given). The
// Channel is made in the 'open' handler: the coordinator speaks first (authChallenge), and its first frame
// may arrive with the upgrade response, before a promise continuation could attach a listener.
function openSocket(url: string, timeoutMs: number, log: Logger, ca?: Buffer): Promise<Channel> {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return Promise.reject(
      new WolfpackError(
        'E_USAGE',
        `--connect: bad URL ${JSON.stringify(url)} (expected ws://HOST:PORT or wss://HOST:PORT)`,
      ),
    );
  }
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:')
    return Promise.reject(new WolfpackError('E_USAGE', `--connect: ${url} is not a ws:// or wss:// URL`));
  if (ca !== undefined && u.protocol !== 'wss:')
    return Promise.reject(new WolfpackError('E_USAGE', `--tls-ca is set but --connect ${url} is not wss://`));
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, {
      maxPayload: WORKER_MAX_PAYLOAD,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
      ...(ca ? { ca } : {}),
    });
    ws.once('open', () => resolve(new Channel(ws, 'coordinator', log, WORKER_MAX_PAYLOAD)));
    ws.once('error', (e: NodeJS.ErrnoException) =>
      reject(new WolfpackError('E_WORKER', `cannot reach the coordinator at ${url}: ${e.message}`, { errno: e.code })),
    );
  });
}

/** Receives weights parts from the coordinator until params, stats and accum are complete. */
export async function receiveWeights(ch: Channel, bufs: StateBuffers, timeoutMs: number): Promise<void> {
  await receiveState(
    bufs,
    wholeRanges(bufs),
    async () => {
      const { msg, payload } = await ch.expect('weightsPart', timeoutMs);
      return { part: msg, payload };
    },
    'the coordinator',
  );
}

/**
 * Connects to the coordinator, retrying while it cannot be reached (not started yet, or a network
 * path that is coming back) for up to `timeoutMs`, as torchrun's agents retry their rendezvous.
 */
const RETRYABLE = new Set(['ECONNREFUSED', 'EHOSTUNREACH', 'ENETUNREACH', 'ETIMEDOUT', 'ECONNRESET', 'EAI_AGAIN']);

export async function connectWithRetry(url: string, timeoutMs: number, log: Logger, ca?: Buffer): Promise<Channel> {
  const deadline = Date.now() + timeoutMs;
  for (let attempt = 1; ; attempt++) {
    try {
      return await openSocket(url, Math.max(1000, deadline - Date.now()), log, ca);
    } catch (e) {
      const err = e as WolfpackError;
      // Only an unreachable address is worth another try; a refused certificate or handshake is not.
      const transient = err.code === 'E_WORKER' && RETRYABLE.has(String(err.details?.errno));
      if (!transient || Date.now() + 500 > deadline) throw e;
      if (attempt === 1) log.info({ url, reason: err.message }, 'coordinator not reachable yet; retrying');
      await new Promise((r) => setTimeout(r, 500));
    }
  }
}
