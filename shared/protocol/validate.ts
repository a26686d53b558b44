// Per-message checks beyond the field kinds of SCHEMAS (messages.ts): ranges, relations between fields,
// the shape of every element of arrays and nested objects (sample lists, blob items, JobConfig, timings),
// string formats (content hashes, nonces, proofs, URLs) and sizes. codec.ts calls validateMessage on every
// decoded frame, after checkFields, so no code ever sees a message that fails these. Every failure is an
// E_PROTOCOL naming the message, the field (with its index for array elements) and the reason.
//
// Unknown extra fields are allowed (a newer peer may add some); missing or malformed known ones are not.
import { WolfpackError } from '../errors.js';
import type { Message } from './messages.js';

/** Content hash of an image (coordinator/blob-store.ts): truncated or full SHA-256, lower-case hex. */
const HASH_RE = /^[0-9a-f]{32,64}$/;
/** Nonces and proofs of the auth handshake (shared/auth/handshake.ts): 32 bytes, hex. */
const HEX32_RE = /^[0-9a-f]{64}$/;
/** Host names and addresses (no scheme, path, user info or white space). */
const HOST_RE = /^[A-Za-z0-9._:%[\]-]{1,255}$/;
/** Largest world size a message may announce. */
export const MAX_WORLD = 4096;
/** Longest free-text field (failure messages, shutdown reasons), characters. */
export const MAX_TEXT = 64 * 1024;
/** Most samples in one step or eval message. */
export const MAX_SAMPLES = 1 << 20;
/** Most items in one blobs message. */
export const MAX_BLOB_ITEMS = 1 << 20;

function bad(type: string, field: string, why: string): WolfpackError {
  return new WolfpackError('E_PROTOCOL', `message ${type}: field '${field}' ${why}`);
}

function show(v: unknown): string {
  try {
    return (JSON.stringify(v) ?? String(v)).slice(0, 60);
  } catch {
    return typeof v;
  }
}

function isObj(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function nonNegInt(v: unknown): v is number {
  return Number.isSafeInteger(v) && (v as number) >= 0;
}

function int(type: string, field: string, v: unknown, min: number, max = Number.MAX_SAFE_INTEGER): number {
  if (!Number.isSafeInteger(v) || (v as number) < min || (v as number) > max) {
    throw bad(type, field, `must be an integer in [${min}, ${max}], got ${show(v)}`);
  }
  return v as number;
}

function finite(type: string, field: string, v: unknown, min = -Infinity, max = Infinity): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) {
    throw bad(
      type,
      field,
      `must be a finite number${min > -Infinity ? ` >= ${min}` : ''}${max < Infinity ? ` <= ${max}` : ''}, ` +
        `got ${show(v)}`,
    );
  }
  return v;
}

/** A certificate fingerprint (shared/transport/ring/certificate.ts): SHA-256, lowercase hex. */
const SHA256_HEX = /^[0-9a-f]{64}$/;

function text(type: string, field: string, v: unknown, max: number, re?: RegExp, what?: string): string {
  if (typeof v !== 'string' || v.length > max) throw bad(type, field, `must be a string of at most ${max} characters`);
  if (re !== undefined && !re.test(v)) throw bad(type, field, `must be ${what ?? re.source}, got ${show(v)}`);
  return v;
}

function oneOf(type: string, field: string, v: unknown, allowed: readonly string[]): void {
  if (!allowed.includes(v as string)) throw bad(type, field, `must be one of ${allowed.join(', ')}, got ${show(v)}`);
}

function samples(type: string, v: unknown): void {
  const arr = v as unknown[];
  if (arr.length > MAX_SAMPLES) throw bad(type, 'samples', `has ${arr.length} entries, more than ${MAX_SAMPLES}`);
  for (let k = 0; k < arr.length; k++) {
    const s = arr[k];
    if (!isObj(s)) throw bad(type, `samples[${k}]`, `must be an object {h, l, i}, got ${show(s)}`);
    if (typeof s.h !== 'string' || !HASH_RE.test(s.h))
      throw bad(type, `samples[${k}].h`, `must be a content hash (32-64 lower-case hex digits), got ${show(s.h)}`);
    if (!nonNegInt(s.l)) throw bad(type, `samples[${k}].l`, `must be a non-negative integer label, got ${show(s.l)}`);
    if (!nonNegInt(s.i)) throw bad(type, `samples[${k}].i`, `must be a non-negative integer index, got ${show(s.i)}`);
  }
}

function jobConfig(type: string, v: unknown): void {
  const c = v as Record<string, unknown>;
  const f = (name: string) => `config.${name}`;
  text(type, f('jobId'), c.jobId, 256, /^[\x21-\x7e]+$/, 'printable ASCII without spaces');
  oneOf(type, f('flavour'), c.flavour, ['mindspore', 'torchvision']);
  int(type, f('width'), c.width, 1, 1 << 16);
  const numClasses = int(type, f('numClasses'), c.numClasses, 1, 1 << 20);
  if (!Array.isArray(c.classes)) throw bad(type, f('classes'), `must be an array, got ${show(c.classes)}`);
  if (c.classes.length !== numClasses)
    throw bad(type, f('classes'), `has ${c.classes.length} names, but numClasses is ${numClasses}`);
  c.classes.forEach((name, k) => text(type, `${f('classes')}[${k}]`, name, 1024));
  int(type, f('imageSize'), c.imageSize, 1, 8192);
  oneOf(type, f('freeze'), c.freeze, ['none', 'backbone']);
  oneOf(type, f('bn'), c.bn, ['train', 'frozen']);
  finite(type, f('lr'), c.lr, 0);
  finite(type, f('momentum'), c.momentum, 0, 1);
  int(type, f('seed'), c.seed, 0);
  int(type, f('globalBatch'), c.globalBatch, 1);
  int(type, f('chunkElems'), c.chunkElems, 1);
  // feature cache: optional fields, checked when present
  if (c.augment !== undefined) oneOf(type, f('augment'), c.augment, ['train', 'none']);
  if (c.views !== undefined) int(type, f('views'), c.views, 0, 1 << 20);
  if (c.cacheFeatures !== undefined && typeof c.cacheFeatures !== 'boolean')
    throw bad(type, f('cacheFeatures'), `must be a boolean, got ${show(c.cacheFeatures)}`);
  if (c.featureCacheMb !== undefined) finite(type, f('featureCacheMb'), c.featureCacheMb, 1, 1 << 24);
  if (c.wire !== undefined) oneOf(type, f('wire'), c.wire, ['fp32', 'bf16', 'fp16']);
  if (c.bucketElems !== undefined) int(type, f('bucketElems'), c.bucketElems, 1);
  if (c.cacheFeatures === true && (c.freeze !== 'backbone' || c.bn !== 'frozen')) {
    throw bad(
      type,
      f('cacheFeatures'),
      "needs freeze 'backbone' and bn 'frozen' " +
        '(features of a trained backbone or batch-statistics BatchNorm change every step), ' +
        `got freeze ${show(c.freeze)}, bn ${show(c.bn)}`,
    );
  }
}

function ringUrl(type: string, v: unknown, field = 'leftUrl'): void {
  const s = text(type, field, v, 2048);
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    throw bad(type, field, `is not a URL: ${show(s)}`);
  }
  if ((u.protocol !== 'ws:' && u.protocol !== 'wss:') || u.port === '' || u.username !== '' || u.password !== '') {
    throw bad(type, field, `must be ws://HOST:PORT or wss://HOST:PORT, got ${show(s)}`);
  }
}

function part(type: string, msg: { offset: number; total: number }, payloadBytes: number | undefined): void {
  if (msg.offset > msg.total) throw bad(type, 'offset', `${msg.offset} is past the total of ${msg.total}`);
  if (payloadBytes !== undefined) {
    if (payloadBytes % 4 !== 0) throw bad(type, 'payload', `of ${payloadBytes} bytes is not whole float32 elements`);
    if (msg.offset + payloadBytes / 4 > msg.total)
      throw bad(
        type,
        'payload',
        `of ${payloadBytes / 4} floats at offset ${msg.offset} runs past the total of ${msg.total}`,
      );
  }
}

/**
 * Checks one message whose field kinds codec.ts has already checked (SCHEMAS). `payloadBytes`, when given,
 * is the length of the frame's raw payload, checked against what the message announces.
 * Throws E_PROTOCOL; returns the message unchanged.
 */
export function validateMessage<M extends Message>(msg: M, payloadBytes?: number): M {
  const m = msg as Message;
  const type = m.type;
  switch (m.type) {
    case 'hello':
      text(type, 'host', m.host, 255);
      text(type, 'ringHost', m.ringHost, 255, HOST_RE, 'a host name or address');
      int(type, 'ringPort', m.ringPort, 1, 65535);
      text(type, 'backend', m.backend, 64);
      int(type, 'pid', m.pid, 0, 2 ** 32);
      text(type, 'memberId', m.memberId, 64, /^[0-9a-f]{16,64}$/, 'hex digits');
      if (m.ringCert !== undefined)
        text(type, 'ringCert', m.ringCert, 64, SHA256_HEX, '64 lowercase hex digits (a SHA-256 fingerprint)');
      break;
    case 'beat':
      text(type, 'memberId', m.memberId, 64, /^[0-9a-f]{16,64}$/, 'hex digits');
      break;
    case 'aborted':
      int(type, 'rank', m.rank, 0, MAX_WORLD - 1);
      if (!Number.isInteger(m.lastStep) || m.lastStep < -1)
        throw bad(type, 'lastStep', `must be an integer >= -1, got ${show(m.lastStep)}`);
      break;
    case 'abort':
      text(type, 'reason', m.reason, MAX_TEXT);
      break;
    case 'ready':
      int(type, 'rank', m.rank, 0, MAX_WORLD - 1);
      break;
    case 'stepDone': {
      int(type, 'rank', m.rank, 0, MAX_WORLD - 1);
      if (typeof m.loss !== 'number') throw bad(type, 'loss', 'must be a number'); // NaN is allowed: a skipped step
      if (m.correct > m.samples) throw bad(type, 'correct', `${m.correct} exceeds samples ${m.samples}`);
      const t = m.timings as unknown as Record<string, unknown>;
      for (const k of ['data', 'compute', 'allreduce', 'update']) finite(type, `timings.${k}`, t[k], 0);
      break;
    }
    case 'evalResult':
      int(type, 'rank', m.rank, 0, MAX_WORLD - 1);
      if (m.correct > m.total) throw bad(type, 'correct', `${m.correct} exceeds total ${m.total}`);
      text(type, 'checksum', m.checksum, 128, /^[0-9a-f]{16,128}$/, 'hex digits');
      break;
    case 'statePart':
      int(type, 'rank', m.rank, 0, MAX_WORLD - 1);
      part(type, m, payloadBytes);
      break;
    case 'weightsPart':
      part(type, m, payloadBytes);
      break;
    case 'failure':
      text(type, 'message', m.message, MAX_TEXT);
      break;
    case 'welcome':
      jobConfig(type, m.config);
      break;
    case 'ring':
      int(type, 'world', m.world, 1, MAX_WORLD);
      if (m.rank >= m.world) throw bad(type, 'rank', `${m.rank} is not below world ${m.world}`);
      if (m.rightRank >= m.world) throw bad(type, 'rightRank', `${m.rightRank} is not below world ${m.world}`);
      if (!Number.isInteger(m.lastStep) || m.lastStep < -1)
        throw bad(type, 'lastStep', `must be an integer >= -1, got ${show(m.lastStep)}`);
      ringUrl(type, m.leftUrl);
      if (m.leftCert !== undefined)
        text(type, 'leftCert', m.leftCert, 64, SHA256_HEX, '64 lowercase hex digits (a SHA-256 fingerprint)');
      if ((m.leftCert !== undefined) !== m.leftUrl.startsWith('wss:')) {
        throw bad(
          type,
          'leftCert',
          m.leftCert === undefined
            ? `is missing: leftUrl ${show(m.leftUrl)} is wss://, and a TLS ring link needs the fingerprint to pin`
            : `is given, but leftUrl ${show(m.leftUrl)} is not wss://`,
        );
      }
      break;
    case 'blobs': {
      const items = m.items as unknown[];
      if (items.length > MAX_BLOB_ITEMS)
        throw bad(type, 'items', `has ${items.length} entries, more than ${MAX_BLOB_ITEMS}`);
      let sum = 0;
      for (let k = 0; k < items.length; k++) {
        const it = items[k];
        if (!isObj(it)) throw bad(type, `items[${k}]`, `must be an object {h, n}, got ${show(it)}`);
        if (typeof it.h !== 'string' || !HASH_RE.test(it.h))
          throw bad(type, `items[${k}].h`, `must be a content hash (32-64 lower-case hex digits), got ${show(it.h)}`);
        if (!nonNegInt(it.n)) throw bad(type, `items[${k}].n`, `must be a non-negative byte count, got ${show(it.n)}`);
        sum += it.n;
      }
      if (payloadBytes !== undefined && sum !== payloadBytes)
        throw bad(type, 'items', `announce ${sum} bytes, the payload has ${payloadBytes}`);
      break;
    }
    case 'step':
    case 'eval':
      samples(type, m.samples);
      break;
    case 'stateRequest':
      break;
    case 'shutdown':
      text(type, 'reason', m.reason, MAX_TEXT);
      break;
    case 'authChallenge':
      text(type, 'nonce', m.nonce, 64, HEX32_RE, '64 lower-case hex digits');
      break;
    case 'authProof':
      text(type, 'nonce', m.nonce, 64, HEX32_RE, '64 lower-case hex digits');
      text(type, 'proof', m.proof, 64, HEX32_RE, '64 lower-case hex digits');
      break;
    case 'authOk':
      text(type, 'proof', m.proof, 64, HEX32_RE, '64 lower-case hex digits');
      break;
    default:
      // A type added to messages.ts without a case here: its field kinds are still checked by codec.ts.
      break;
  }
  return msg;
}
