// TensorBoard event files, written without TensorFlow: a file of TFRecords, each holding one `Event`
// protobuf (TensorBoard's tensorboard/compat/proto/event.proto and summary.proto). Only scalars are
// written, as `Summary.Value.simple_value`, so the few protobuf fields involved are encoded here by hand:
//   Event   { double wall_time = 1; int64 step = 2; string file_version = 3; Summary summary = 5; }
//   Summary { repeated Value value = 1; }
//   Value   { string tag = 1; float simple_value = 2; }
// A TFRecord is: uint64 length (little-endian), masked CRC-32C of those 8 bytes, the data, masked
// CRC-32C of the data. The first event of a file carries file_version "brain.Event:2". Checked against
// TensorBoard's own .proto files and an independent reader in test/report/tensorboard.test.ts.
import { appendFileSync, closeSync, mkdirSync, openSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';

/** CRC-32C (Castagnoli), reflected polynomial 0x82F63B78, one byte a step from a 256-entry table. */
const CRC32C_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ 0x82f63b78 : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32c(bytes: Uint8Array): number {
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = CRC32C_TABLE[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** TFRecord's masked CRC: rotated right by 15 bits plus a constant, mod 2^32. */
export function maskedCrc32c(bytes: Uint8Array): number {
  const c = crc32c(bytes);
  return ((((c >>> 15) | (c << 17)) >>> 0) + 0xa282ead8) >>> 0;
}

/** One TFRecord holding `data`. */
export function tfRecord(data: Uint8Array): Buffer {
  const record = Buffer.alloc(8 + 4 + data.length + 4);
  record.writeBigUInt64LE(BigInt(data.length), 0);
  record.writeUInt32LE(maskedCrc32c(record.subarray(0, 8)), 8);
  record.set(data, 12);
  record.writeUInt32LE(maskedCrc32c(data), 12 + data.length);
  return record;
}

/** A scalar: its tag (TensorBoard groups tags by the part before '/') and value. */
export interface Scalar {
  tag: string;
  value: number;
}

export interface EventFields {
  /** Seconds since the Unix epoch. */
  wallTime: number;
  /** The x of every scalar in the event; a non-negative integer. */
  step: number;
  fileVersion?: string;
  scalars?: Scalar[];
}

// --- protobuf wire format: varint, length-delimited, 64-bit and 32-bit fields ---
const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;

function varint(n: number): number[] {
  const out: number[] = [];
  // up to 2^53: split by division, as bit operators would cut at 32 bits
  while (n >= 0x80) {
    out.push((n % 0x80) | 0x80);
    n = Math.floor(n / 0x80);
  }
  out.push(n);
  return out;
}

const key = (field: number, wire: number): number[] => varint(field * 8 + wire);

function lengthDelimited(field: number, bytes: Uint8Array): Buffer {
  return Buffer.concat([Buffer.from([...key(field, WIRE_LEN), ...varint(bytes.length)]), bytes]);
}

function scalarValue(s: Scalar): Buffer {
  const value = Buffer.alloc(4);
  value.writeFloatLE(s.value, 0);
  return Buffer.concat([lengthDelimited(1, Buffer.from(s.tag, 'utf8')), Buffer.from(key(2, WIRE_I32)), value]);
}

/** The `Event` protobuf with these fields. */
export function encodeEvent(e: EventFields): Buffer {
  if (!Number.isSafeInteger(e.step) || e.step < 0)
    throw new RangeError(`event step must be a non-negative integer, got ${e.step}`);
  const wallTime = Buffer.alloc(8);
  wallTime.writeDoubleLE(e.wallTime, 0);
  const parts: Uint8Array[] = [Buffer.from(key(1, WIRE_I64)), wallTime];
  // proto3 leaves a zero step out, as TensorFlow's writers do; either form parses
  if (e.step > 0) parts.push(Buffer.from([...key(2, WIRE_VARINT), ...varint(e.step)]));
  if (e.fileVersion !== undefined) parts.push(lengthDelimited(3, Buffer.from(e.fileVersion, 'utf8')));
  if (e.scalars !== undefined)
    parts.push(lengthDelimited(5, Buffer.concat(e.scalars.map((s) => lengthDelimited(1, scalarValue(s))))));
  return Buffer.concat(parts);
}

export const FILE_VERSION = 'brain.Event:2';

/**
 * An event file in `dir` (made if missing), named as TensorFlow's writers name theirs:
 * events.out.tfevents.<unix seconds>.<hostname>.<pid>.wolfpack. Each `scalars` call appends one record
 * with a synchronous write, so a record is on disk (whole) when the call returns and a crashed run
 * leaves a readable file. A file of that name is never reused: a second writer in the same second
 * takes the next second's name.
 */
export class EventFileWriter {
  readonly path: string;
  private readonly now: () => number;

  constructor(dir: string, now: () => number = Date.now) {
    mkdirSync(dir, { recursive: true });
    let seconds = Math.floor(now() / 1000);
    for (;;) {
      const path = join(dir, `events.out.tfevents.${seconds}.${hostname()}.${process.pid}.wolfpack`);
      try {
        closeSync(openSync(path, 'wx'));
        this.path = path;
        break;
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        seconds++;
      }
    }
    this.now = now;
    this.write({ wallTime: now() / 1000, step: 0, fileVersion: FILE_VERSION });
  }

  /** One event at `step` with these scalars (none written when empty). */
  scalars(step: number, scalars: Scalar[], wallTime: number = this.now() / 1000): void {
    if (scalars.length > 0) this.write({ wallTime, step, scalars });
  }

  private write(e: EventFields): void {
    appendFileSync(this.path, tfRecord(encodeEvent(e)));
  }
}
