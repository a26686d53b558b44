// The ring hello: the first frame on a ring connection, a text frame from the connecting rank,
//   {"t":"hello","v":1,"rank":R,"size":N,"job":"<job id>","auth":<opaque, optional>}
// answered by the listener with {"t":"welcome","v":1} once it has passed verifyHello (the auth layer,
// shared/auth/ring-auth.ts) and the accept() expectation. Built and parsed here only.
import { WolfpackError } from '../../errors.js';

/** Largest hello (and welcome) accepted, bytes. */
export const RING_HELLO_MAX_BYTES = 4096;

/** The first frame on a ring connection: who is connecting, for which job. */
export interface RingHello {
  /** Rank of the connecting rank (the server's right neighbour). */
  rank: number;
  /** Ring size as the connecting rank knows it (optional). */
  size?: number;
  /** Job id; a rank never joins another job's ring. */
  jobId: string;
  /** Opaque credentials for the auth layer (verifyHello). Never logged. */
  auth?: unknown;
}

/** The hello's text as it goes on the wire (E_USAGE when it is too large, e.g. a big auth field). */
export function helloText(hello: RingHello): string {
  const text = JSON.stringify({
    t: 'hello',
    v: 1,
    rank: hello.rank,
    size: hello.size,
    job: hello.jobId,
    auth: hello.auth,
  });
  if (Buffer.byteLength(text) > RING_HELLO_MAX_BYTES)
    throw new WolfpackError(
      'E_USAGE',
      `ring hello of ${Buffer.byteLength(text)} bytes exceeds ${RING_HELLO_MAX_BYTES} (auth field?)`,
    );
  return text;
}

/** The listener's answer to a hello it admits. */
export const WELCOME_TEXT = JSON.stringify({ t: 'welcome', v: 1 });

/** True when `text` is a welcome. */
export function isWelcome(text: string): boolean {
  try {
    const w = JSON.parse(text) as unknown;
    return (
      typeof w === 'object' &&
      w !== null &&
      (w as Record<string, unknown>).t === 'welcome' &&
      (w as Record<string, unknown>).v === 1
    );
  } catch {
    return false;
  }
}

/** A hello read off the wire, or what is wrong with it. */
export function parseHello(text: string): RingHello | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'hello is not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'hello is not an object';
  const o = v as Record<string, unknown>;
  if (o.t !== 'hello') return `first frame must be a hello, got t=${JSON.stringify(o.t)}`;
  if (o.v !== 1) return `unsupported hello version ${JSON.stringify(o.v)}`;
  if (!Number.isSafeInteger(o.rank) || (o.rank as number) < 0) return 'hello.rank must be a non-negative integer';
  if (o.size !== undefined && (!Number.isSafeInteger(o.size) || (o.size as number) < 1))
    return 'hello.size must be a positive integer';
  if (typeof o.job !== 'string' || o.job.length > 256) return 'hello.job must be a string of at most 256 characters';
  const hello: RingHello = { rank: o.rank as number, jobId: o.job };
  if (o.size !== undefined) hello.size = o.size as number;
  if (o.auth !== undefined) hello.auth = o.auth;
  return hello;
}
