// Frames on the coordinator <-> worker WebSocket: a fixed 8-byte prefix, a msgpack header, padding
// to 8 bytes, then the raw payload (so a Float32Array can view it without a copy):
//   byte 0: 0x57 ('W')   byte 1: protocol version   bytes 2-3: 0   bytes 4-7: header length (u32 LE)
// decodeFrame validates the prefix, the header's size, its type and every field against SCHEMAS,
// and throws E_PROTOCOL naming what is wrong; callers close that connection and log the reason.
import { Packr } from 'msgpackr';
import { WolfpackError } from '../errors.js';
import { PROTOCOL_VERSION, SCHEMAS, WITH_PAYLOAD, type Message } from './messages.js';
import { validateMessage } from './validate.js';

export const FRAME_MAGIC = 0x57;
export const PREFIX_BYTES = 8;
/** Largest msgpack header accepted (a step's sample list for a large batch fits easily). */
export const MAX_HEADER_BYTES = 4 * 1024 * 1024;

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function protocolError(message: string): WolfpackError {
  return new WolfpackError('E_PROTOCOL', message);
}

function pad8(n: number): number {
  return (n + 7) & ~7;
}

/** One frame (a list of buffers, for ws.send of each without concatenating a large payload). */
export function encodeFrame(msg: Message, payload?: Uint8Array): Buffer {
  const header = packr.pack(msg);
  const start = pad8(PREFIX_BYTES + header.length);
  const out = Buffer.allocUnsafe(start + (payload?.length ?? 0));
  out[0] = FRAME_MAGIC;
  out[1] = PROTOCOL_VERSION;
  out[2] = 0;
  out[3] = 0;
  out.writeUInt32LE(header.length, 4);
  header.copy(out, PREFIX_BYTES);
  out.fill(0, PREFIX_BYTES + header.length, start);
  if (payload) out.set(payload, start);
  return out;
}

export interface DecodedFrame {
  msg: Message;
  /** The payload bytes; aligned to 8 within `frame` when the frame itself is aligned. */
  payload: Uint8Array;
}

function checkFields(msg: Record<string, unknown>): void {
  const type = msg.type;
  if (typeof type !== 'string' || !Object.hasOwn(SCHEMAS, type)) {
    throw protocolError(`unknown message type ${JSON.stringify(type)}`);
  }
  const schema = SCHEMAS[type as keyof typeof SCHEMAS];
  for (const [field, kind] of Object.entries(schema)) {
    const v = msg[field];
    const bad = (want: string) =>
      protocolError(
        `message ${type}: field '${field}' must be ${want}, ` +
          `got ${v === undefined ? 'nothing' : JSON.stringify(v)?.slice(0, 60)}`,
      );
    if (Array.isArray(kind)) {
      if (!kind.includes(v as string)) throw bad(`one of ${kind.join(', ')}`);
      continue;
    }
    switch (kind) {
      case 'string':
        if (typeof v !== 'string') throw bad('a string');
        break;
      case 'int':
        if (!Number.isSafeInteger(v) || (v as number) < 0) throw bad('a non-negative integer');
        break;
      case 'number':
        if (typeof v !== 'number') throw bad('a number');
        break;
      case 'boolean':
        if (typeof v !== 'boolean') throw bad('a boolean');
        break;
      case 'object':
        if (typeof v !== 'object' || v === null || Array.isArray(v)) throw bad('an object');
        break;
      case 'array':
        if (!Array.isArray(v)) throw bad('an array');
        break;
    }
  }
}

/** Decodes and validates one frame. */
export function decodeFrame(frame: Uint8Array, maxPayload = Number.MAX_SAFE_INTEGER): DecodedFrame {
  if (frame.length < PREFIX_BYTES)
    throw protocolError(`frame of ${frame.length} bytes is shorter than its ${PREFIX_BYTES}-byte prefix`);
  if (frame[0] !== FRAME_MAGIC) throw protocolError(`bad frame magic 0x${frame[0]!.toString(16)}`);
  if (frame[1] !== PROTOCOL_VERSION)
    throw protocolError(`protocol version ${frame[1]} is not supported (this build speaks ${PROTOCOL_VERSION})`);
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const headerLength = view.getUint32(4, true);
  if (headerLength > MAX_HEADER_BYTES || PREFIX_BYTES + headerLength > frame.length) {
    throw protocolError(`frame header length ${headerLength} exceeds the frame (${frame.length} bytes) or the limit`);
  }
  let msg: unknown;
  try {
    msg = packr.unpack(frame.subarray(PREFIX_BYTES, PREFIX_BYTES + headerLength));
  } catch (e) {
    throw protocolError(`frame header is not valid msgpack: ${(e as Error).message}`);
  }
  if (typeof msg !== 'object' || msg === null || Array.isArray(msg))
    throw protocolError('frame header is not a message object');
  checkFields(msg as Record<string, unknown>);
  const start = pad8(PREFIX_BYTES + headerLength);
  const payload = frame.subarray(Math.min(start, frame.length));
  const type = (msg as Message).type;
  if (payload.length > 0 && !WITH_PAYLOAD.has(type))
    throw protocolError(`message ${type} must not carry a payload (${payload.length} bytes)`);
  if (payload.length > maxPayload)
    throw protocolError(`message ${type}: payload of ${payload.length} bytes exceeds ${maxPayload}`);
  return { msg: validateMessage(msg as Message, payload.length), payload };
}

/** A Float32Array over a payload, copying only when it is not 4-byte aligned. */
export function payloadFloats(payload: Uint8Array): Float32Array {
  if (payload.length % 4 !== 0) throw protocolError(`float payload of ${payload.length} bytes is not a multiple of 4`);
  if (payload.byteOffset % 4 === 0) return new Float32Array(payload.buffer, payload.byteOffset, payload.length / 4);
  return new Float32Array(Uint8Array.prototype.slice.call(payload).buffer);
}
