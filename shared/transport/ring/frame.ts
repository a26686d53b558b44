// The ring's wire format below the WebSocket framing: one data message is one WebSocket binary message,
// normally sent in two fragments (neither end copies):
//   fragment 1 (16 bytes, little-endian):
//     u8 magic 0x57 ('W') | u8 version 1 | u8 kind 1 (data) | u8 reserved 0
//     u32 tag high 21 bits | u32 tag low 32 bits | u32 element count
//   fragment 2: count * 4 bytes of raw float32 (host order; little-endian hosts only)
// The receiver accepts any fragmentation of that byte sequence. Tags are shared/allreduce/link.ts's
// (step, seq) encoding; the header carries them as two words because a tag needs 53 bits.
import { endianness } from 'node:os';
import { TAG_SEQS, TAG_STEPS } from '../../allreduce/link.js';
import { WolfpackError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';

export const RING_FRAME_MAGIC = 0x57;
export const RING_FRAME_VERSION = 1;
export const RING_FRAME_KIND_DATA = 1;
export const RING_HEADER_BYTES = 16;
/** Default largest data payload (one chunk of the ring), bytes. */
export const DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Default bytes handed to the socket and not yet written, per outgoing link. */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** Default bytes of early (not yet received) messages held before the receiver stops reading. */
export const DEFAULT_MAX_EARLY_BYTES = 64 * 1024 * 1024;

/** Close codes the server uses to refuse a ring connection. */
export const RING_CLOSE_BAD_HELLO = 4400;
export const RING_CLOSE_AUTH = 4401;
export const RING_CLOSE_UNEXPECTED_PEER = 4409;

/** The 16-byte header of a data message with `tag` and `count` float32 elements. */
export function encodeDataHeader(tag: number, count: number): Buffer {
  const hdr = Buffer.allocUnsafe(RING_HEADER_BYTES);
  hdr[0] = RING_FRAME_MAGIC;
  hdr[1] = RING_FRAME_VERSION;
  hdr[2] = RING_FRAME_KIND_DATA;
  hdr[3] = 0;
  hdr.writeUInt32LE(Math.floor(tag / TAG_SEQS), 4);
  hdr.writeUInt32LE(tag % TAG_SEQS, 8);
  hdr.writeUInt32LE(count, 12);
  return hdr;
}

/** A data header read back: the tag and count, or what is wrong with it (before any limit is applied). */
export function decodeDataHeader(h: Uint8Array): { tag: number; count: number } | string {
  if (h[0] !== RING_FRAME_MAGIC)
    return `bad magic 0x${(h[0] ?? 0).toString(16)} (expected 0x${RING_FRAME_MAGIC.toString(16)})`;
  if (h[1] !== RING_FRAME_VERSION) return `unsupported frame version ${h[1]} (expected ${RING_FRAME_VERSION})`;
  if (h[2] !== RING_FRAME_KIND_DATA || h[3] !== 0) return `unknown frame kind ${h[2]}/${h[3]}`;
  const v = new DataView(h.buffer, h.byteOffset, RING_HEADER_BYTES);
  const hi = v.getUint32(4, true);
  if (hi >= TAG_STEPS) return `tag high word ${hi} out of range`;
  return { tag: hi * TAG_SEQS + v.getUint32(8, true), count: v.getUint32(12, true) };
}

let quiet: Logger | undefined;
/** The logger of a ring endpoint created without one. */
export function defaultLogger(): Logger {
  quiet ??= silentLogger();
  return quiet;
}

/** The ring sends raw float32 in host order: refuse big-endian hosts up front. */
export function checkHost(): void {
  if (endianness() !== 'LE') {
    throw new WolfpackError('E_PROTOCOL', 'the ring transport sends raw float32 and needs a little-endian host');
  }
}

export function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0)
    throw new WolfpackError('E_USAGE', `${name} must be a positive integer, got ${v}`);
  return v;
}

/** A WebSocket close reason cut to fit a control frame. */
export function closeReason(reason: string): string {
  return Buffer.from(reason).subarray(0, 120).toString();
}
