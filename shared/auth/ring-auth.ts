// Authentication of ring links (shared/transport/ring/): the `auth` field of the ring hello and the
// listener's `verifyHello` hook.
//
// The ring hello is the first frame the connecting rank sends, before the listener says anything, so the
// listener cannot hand out a nonce to sign. Instead the hello carries a proof bound to everything that
// identifies the link, under a key of this job only:
//
//   K_job = HMAC(K, 'wolfpack-v1|ring-key|' + jobId)                     (K: the shared secret, secret.ts)
//   auth  = {v: 1, gen, ts, nonce, proof}
//   proof = HMAC(K_job, 'wolfpack-v1|ring|jobId|rank|size|gen|ts|nonce')
//
// The listener recomputes the proof for the hello's jobId, rank and size and its own generation, compares in
// constant time, requires |now - ts| <= RING_AUTH_WINDOW_MS, and remembers each accepted nonce until it
// falls out of that window (a replay cache), so a captured hello cannot be replayed to it. A worker of
// another job fails (other key), a stale worker from before a re-formed ring fails (other generation), a
// hello re-labelled with another rank fails (the proof covers the rank), and the ring listener's accept() then admits
// only the expected neighbour's rank. On plain ws:// rings the listener does not prove itself to the
// connecting rank (the ring welcome has no field for it) and frames are not encrypted; a job that uses TLS
// gets wss:// ring links whose listener certificate the connecting rank pins (shared/transport/ring/certificate.ts).
import { randomBytes } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { RingHello } from '../transport/ring/index.js';
import { authError, AUTH_LABEL, proofsEqual } from './handshake.js';
import { TOKEN_HELP, type SharedSecret } from './secret.js';

/** How far a ring hello's timestamp may be from the listener's clock, ms (clock skew between hosts). */
export const RING_AUTH_WINDOW_MS = 5 * 60_000;
/** Most nonces a listener remembers; past it, hellos are refused until old ones expire (fail closed). */
export const RING_REPLAY_CACHE_MAX = 10_000;
/** How long a hello may wait for its listener to learn the job (its welcome), ms. */
export const RING_JOB_WAIT_MS = 10_000;

/** The `auth` field of a ring hello. */
export interface RingAuth {
  v: 1;
  /** Generation of the ring (re-formed rings count up). */
  gen: number;
  /** Sender's clock, ms since the epoch. */
  ts: number;
  /** 16 random bytes, hex. */
  nonce: string;
  /** HMAC-SHA256 under the job's ring key, hex. */
  proof: string;
}

/** The key of one job's ring links: HMAC(K, 'wolfpack-v1|ring-key|jobId'). */
export function ringKey(secret: SharedSecret, jobId: string): SharedSecret {
  return secret.derive(`ring key of job ${jobId}`, AUTH_LABEL, 'ring-key', jobId);
}

function ringProof(
  key: SharedSecret,
  hello: Pick<RingHello, 'jobId' | 'rank' | 'size'>,
  gen: number,
  ts: number,
  nonce: string,
): string {
  return key
    .hmac(AUTH_LABEL, 'ring', hello.jobId, String(hello.rank), String(hello.size ?? ''), String(gen), String(ts), nonce)
    .toString('hex');
}

/** The `auth` field for a ring hello of `hello.rank` in job `hello.jobId`, ring generation `generation`. */
export function ringHelloAuth(
  secret: SharedSecret,
  hello: Pick<RingHello, 'jobId' | 'rank' | 'size'>,
  generation = 0,
  now = Date.now(),
): RingAuth {
  const nonce = randomBytes(16).toString('hex');
  return {
    v: 1,
    gen: generation,
    ts: now,
    nonce,
    proof: ringProof(ringKey(secret, hello.jobId), hello, generation, now, nonce),
  };
}

function parseAuth(v: unknown): RingAuth | string {
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'carries no proof';
  const a = v as Record<string, unknown>;
  if (a.v !== 1) return `auth version ${JSON.stringify(a.v)?.slice(0, 20)} is not supported`;
  if (!Number.isSafeInteger(a.gen) || (a.gen as number) < 0) return 'auth.gen must be a non-negative integer';
  if (!Number.isSafeInteger(a.ts) || (a.ts as number) < 0) return 'auth.ts must be a non-negative integer';
  if (typeof a.nonce !== 'string' || !/^[0-9a-f]{32}$/.test(a.nonce)) return 'auth.nonce must be 32 hex digits';
  if (typeof a.proof !== 'string' || !/^[0-9a-f]{64}$/.test(a.proof)) return 'auth.proof must be 64 hex digits';
  return a as unknown as RingAuth;
}

export interface RingVerifierOptions {
  windowMs?: number;
  /** How long a hello may wait for expect() (the listener's own welcome), ms. */
  jobWaitMs?: number;
  /** Clock (tests). */
  now?: () => number;
}

/**
 * The listener's side: `verify` is the ring listener's `verifyHello` hook. The listener is opened before its worker
 * knows the job, so hellos wait (bounded) until expect() names the job and ring generation; and when a ring
 * is re-formed, a neighbour may connect before this worker has read its own order for the new generation,
 * so a hello that claims a later generation than expected waits (bounded alike) for expect() to name it.
 * (The claim is checked once it is named; before, it only makes an unproven hello wait, as an unknown job
 * does, under the listener's admission limits.)
 */
export class RingHelloVerifier {
  private readonly secret: SharedSecret;
  private readonly windowMs: number;
  private readonly jobWaitMs: number;
  private readonly now: () => number;
  private expected: { jobId: string; generation: number; key: SharedSecret } | undefined;
  /** Hellos waiting for expect() to name their job or generation. */
  private waiting: (() => void)[] = [];
  /** nonce -> time it may be forgotten (ms). */
  private readonly seen = new Map<string, number>();

  constructor(secret: SharedSecret, opts: RingVerifierOptions = {}) {
    this.secret = secret;
    this.windowMs = opts.windowMs ?? RING_AUTH_WINDOW_MS;
    this.jobWaitMs = opts.jobWaitMs ?? RING_JOB_WAIT_MS;
    this.now = opts.now ?? Date.now;
  }

  /** From now on accept only hellos of `jobId`, ring generation `generation`. */
  expect(jobId: string, generation = 0): void {
    this.expected = { jobId, generation, key: ringKey(this.secret, jobId) };
    this.seen.clear();
    for (const wake of this.waiting.splice(0)) wake();
  }

  /** Waits at most jobWaitMs until expect() has named generation `gen` or a later one; false if it did not. */
  private async learn(gen: number): Promise<boolean> {
    const deadline = Date.now() + this.jobWaitMs;
    while (this.expected === undefined || this.expected.generation < gen) {
      const left = deadline - Date.now();
      if (left <= 0) return false;
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          this.waiting = this.waiting.filter((w) => w !== wake);
          resolve();
        }, left);
        this.waiting.push(wake);
      });
    }
    return true;
  }

  /** the ring listener's verifyHello: throws E_AUTH naming the peer and the reason. */
  readonly verify = async (hello: RingHello, req?: IncomingMessage): Promise<void> => {
    const peer =
      `ring hello from rank ${hello.rank}` + (req?.socket.remoteAddress ? ` at ${req.socket.remoteAddress}` : '');
    const auth = parseAuth(hello.auth);
    if (typeof auth === 'string') throw authError(peer, `${auth}; ${TOKEN_HELP}`);
    if (this.expected === undefined || auth.gen > this.expected.generation) {
      const before = this.expected;
      if (!(await this.learn(auth.gen))) {
        if (before === undefined && this.expected === undefined)
          throw authError(peer, `this worker did not learn its job within ${this.jobWaitMs} ms`);
        throw authError(
          peer,
          `ring generation ${auth.gen} is not known here ` +
            `(this worker is at generation ${this.expected?.generation ?? before?.generation}; ` +
            `waited ${this.jobWaitMs} ms)`,
        );
      }
    }
    const exp = this.expected!;
    const now = this.now();
    if (Math.abs(now - auth.ts) > this.windowMs) {
      throw authError(
        peer,
        `its timestamp is ${Math.round((now - auth.ts) / 1000)} s off this host's clock ` +
          `(limit ${this.windowMs / 1000} s): stale, replayed, or clocks out of sync`,
      );
    }
    // Constant-time check of the proof before anything that depends on the claimed job or generation.
    if (!proofsEqual(auth.proof, ringProof(exp.key, hello, auth.gen, auth.ts, auth.nonce))) {
      if (hello.jobId !== exp.jobId)
        throw authError(peer, `it belongs to another job (${JSON.stringify(hello.jobId.slice(0, 40))})`);
      throw authError(
        peer,
        "wrong token: its proof does not match this worker's token for this job and rank (or the hello was altered)",
      );
    }
    if (auth.gen !== exp.generation) {
      throw authError(
        peer,
        `it is from ring generation ${auth.gen}, this ring is generation ${exp.generation} (a stale worker)`,
      );
    }
    this.expire(now);
    if (this.seen.has(auth.nonce)) throw authError(peer, 'replayed hello (its nonce was used before)');
    if (this.seen.size >= RING_REPLAY_CACHE_MAX) throw authError(peer, 'too many ring hellos in the replay window');
    this.seen.set(auth.nonce, auth.ts + this.windowMs);
  };

  private expire(now: number): void {
    for (const [nonce, until] of this.seen) if (until < now) this.seen.delete(nonce);
  }
}
