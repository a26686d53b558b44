// Mutual HMAC challenge-response on the coordinator <-> worker connection, run before the worker's hello.
//
//   coordinator                                   worker
//   authChallenge {scheme, nonce: Ns}     ---->   (Ns: 32 fresh random bytes, hex)
//                                         <----   authProof {nonce: Nc,
//                                                            proof: HMAC(K, 'wolfpack-v1|client|Ns|Nc|coordinator')}
//   check proof (timingSafeEqual)
//   authOk {proof: HMAC(K, 'wolfpack-v1|server|Ns|Nc|coordinator')} ---->  check proof
//                                         <----   hello ...
//
// K is the shared secret (secret.ts); it never crosses the wire, and each side proves it holds K over a
// nonce the other side chose, so a recorded exchange cannot be replayed. The 'client' and 'server' labels
// differ, so one side's proof can never be reflected back as the other's. A coordinator without a token
// sends scheme 'none' (it listens on loopback only, see bind-policy.ts); a worker that has a token refuses
// such a coordinator rather than be downgraded. Every wait is bounded (HANDSHAKE_TIMEOUT_MS). A refusal
// closes the connection with CLOSE_AUTH and a reason that names the peer and never the token.
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { WolfpackError } from '../errors.js';
import type { Channel } from '../protocol/channel.js';
import { TOKEN_HELP, type SharedSecret } from './secret.js';

/** Version label of every transcript: change it when the construction changes. */
export const AUTH_LABEL = 'wolfpack-v1';
/** Random bytes per nonce. */
export const NONCE_BYTES = 32;
/** Bound on the whole handshake (challenge, proof, confirmation, hello), ms. */
export const HANDSHAKE_TIMEOUT_MS = 10_000;
/** WebSocket close code for an authentication failure (the ring links use the same, shared/transport/ring/). */
export const CLOSE_AUTH = 4401;
/** The role this exchange binds (the coordinator link; ring links bind job and rank, ring-auth.ts). */
const COORDINATOR_ROLE = 'coordinator';

/** A fresh random nonce, hex. */
export function newNonce(): string {
  return randomBytes(NONCE_BYTES).toString('hex');
}

/** The worker's proof: HMAC(K, 'wolfpack-v1|client|Ns|Nc|role'), hex. */
export function clientProof(
  secret: SharedSecret,
  serverNonce: string,
  clientNonce: string,
  role = COORDINATOR_ROLE,
): string {
  return secret.hmac(AUTH_LABEL, 'client', serverNonce, clientNonce, role).toString('hex');
}

/** The coordinator's proof: HMAC(K, 'wolfpack-v1|server|Ns|Nc|role'), hex. */
export function serverProof(
  secret: SharedSecret,
  serverNonce: string,
  clientNonce: string,
  role = COORDINATOR_ROLE,
): string {
  return secret.hmac(AUTH_LABEL, 'server', serverNonce, clientNonce, role).toString('hex');
}

/** Constant-time comparison of two hex proofs (false when the lengths differ or either is not hex). */
export function proofsEqual(got: string, want: string): boolean {
  const a = Buffer.from(got, 'hex');
  const b = Buffer.from(want, 'hex');
  if (a.length !== b.length || a.length === 0 || a.length * 2 !== got.length) return false;
  return timingSafeEqual(a, b);
}

/** An E_AUTH error whose message names the peer and the reason (and says E_AUTH, for users grepping logs). */
export function authError(peer: string, reason: string, details: Record<string, unknown> = {}): WolfpackError {
  return new WolfpackError('E_AUTH', `E_AUTH: ${peer}: ${reason}`, { peer, ...details });
}

function closeCode(e: unknown): number | undefined {
  if (e instanceof WolfpackError && typeof e.details.code === 'number') return e.details.code;
  return undefined;
}

function remaining(deadline: number): number {
  return Math.max(1, deadline - Date.now());
}

/**
 * Coordinator side: challenge the worker on `ch` and check its proof; resolves once the worker has proved
 * it holds `secret` (or at once after a 'none' challenge when there is no secret). On failure the
 * connection is closed (CLOSE_AUTH, or the channel's protocol close) and the returned promise rejects
 * with E_AUTH / E_PROTOCOL / E_WORKER naming `peer`.
 */
export async function authenticateWorker(
  ch: Channel,
  secret: SharedSecret | undefined,
  peer: string,
  deadline: number,
): Promise<void> {
  const serverNonce = newNonce();
  if (secret === undefined) {
    await ch.send({ type: 'authChallenge', scheme: 'none', nonce: serverNonce });
    return;
  }
  await ch.send({ type: 'authChallenge', scheme: 'hmac-sha256', nonce: serverNonce });
  let msg;
  try {
    ({ msg } = await ch.expect('authProof', remaining(deadline)));
  } catch (e) {
    if (e instanceof WolfpackError && e.code === 'E_WORKER' && /no message within/.test(e.message)) {
      const err = authError(peer, `no authentication proof within ${HANDSHAKE_TIMEOUT_MS} ms`);
      ch.close(CLOSE_AUTH, 'authentication timed out');
      throw err;
    }
    throw e;
  }
  if (msg.nonce === serverNonce) {
    ch.close(CLOSE_AUTH, 'authentication failed: nonce reflected');
    throw authError(peer, "the worker echoed the coordinator's nonce (reflection attempt?)");
  }
  if (!proofsEqual(msg.proof, clientProof(secret, serverNonce, msg.nonce))) {
    ch.close(CLOSE_AUTH, 'authentication failed: wrong token');
    throw authError(peer, `wrong token: the worker's proof does not match this coordinator's token (${secret.source})`);
  }
  await ch.send({ type: 'authOk', proof: serverProof(secret, serverNonce, msg.nonce) });
}

/**
 * Worker side: answer the coordinator's challenge on `ch` (the first message) and check its proof; resolves
 * once both sides have proved they hold `secret`, or at once after a 'none' challenge when this worker has
 * no secret. Rejects with E_AUTH naming `url` (wrong token, a coordinator that cannot prove the token, a
 * token on one side only) or with the channel's error.
 */
export async function authenticateToCoordinator(
  ch: Channel,
  secret: SharedSecret | undefined,
  url: string,
  timeoutMs: number,
): Promise<void> {
  const peer = `coordinator at ${url}`;
  const deadline = Date.now() + Math.min(timeoutMs, HANDSHAKE_TIMEOUT_MS * 3);
  const refused = (e: unknown): never => {
    if (closeCode(e) === CLOSE_AUTH) {
      const reason = e instanceof Error ? e.message.replace(/^.*\(4401 ?/, '').replace(/\)$/, '') : '';
      throw authError(peer, `refused this worker (${reason || 'authentication failed'}); ${TOKEN_HELP}`);
    }
    throw e;
  };
  const challenge = await ch.expect('authChallenge', remaining(deadline)).catch(refused);
  if (challenge.msg.scheme === 'none') {
    if (secret !== undefined) {
      ch.close(CLOSE_AUTH, 'this worker requires authentication');
      throw authError(
        peer,
        `has no token, but this worker has one (${secret.source}): ` +
          `refusing to join a coordinator that cannot prove it holds the token; ${TOKEN_HELP}`,
      );
    }
    return;
  }
  if (secret === undefined) {
    ch.close(CLOSE_AUTH, 'no token');
    throw authError(peer, `requires a shared token and this worker has none; ${TOKEN_HELP}`);
  }
  const clientNonce = newNonce();
  await ch.send({
    type: 'authProof',
    nonce: clientNonce,
    proof: clientProof(secret, challenge.msg.nonce, clientNonce),
  });
  const ok = await ch.expect('authOk', remaining(deadline)).catch(refused);
  if (!proofsEqual(ok.msg.proof, serverProof(secret, challenge.msg.nonce, clientNonce))) {
    ch.close(CLOSE_AUTH, 'coordinator failed to authenticate');
    throw authError(
      peer,
      "its proof does not match this worker's token: a different token, or not the wolfpack coordinator",
    );
  }
}
