// MindSpore `.ckpt` files: read them into a TensorMap and write a TensorMap back in the same format.
// A .ckpt is one protobuf `Checkpoint` message (schema below, as in MindSpore's checkpoint.proto).
// MindSpore writes each parameter as its own Value, splits large ones into several consecutive Values
// with the same tag (each repeating dims and type), writes a scalar's dims as [0], and may append a
// "crc_num" trailer. Every input is validated; a reader returns the whole map or throws.
import * as zlib from 'node:zlib';
import protobuf from 'protobufjs';
import { WolfpackError } from '../errors.js';
import { readFileBytes } from '../fs/read-file.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import { dtypeSize, numElements, type DType, type HostTensor, type TensorMap } from './host-tensor.js';

// proto2, as MindSpore declares it, so `dims` is written unpacked like MindSpore does (readers accept
// both). Fields are optional here rather than required so that a missing one gets our own error.
const CHECKPOINT_PROTO = `
syntax = "proto2";
message Checkpoint {
  message Value {
    optional string tag = 1;
    optional TensorProto tensor = 2;
  }
  repeated Value value = 1;
}
message TensorProto {
  repeated int64 dims = 1;
  optional string tensor_type = 2;
  optional bytes tensor_content = 3;
}
`;

const CheckpointType = protobuf.parse(CHECKPOINT_PROTO, { keepCase: true }).root.lookupType('Checkpoint');

/** int64 fields decode to a Long when the `long` package is present, to a number otherwise. */
type Int64 = number | { toNumber(): number };

interface TensorProtoMessage {
  dims: Int64[];
  tensor_type?: string | null;
  tensor_content?: Uint8Array | null;
}

interface ValueMessage {
  tag?: string | null;
  tensor?: TensorProtoMessage | null;
}

interface CheckpointMessage {
  value: ValueMessage[];
}

/** tensor_type strings as MindSpore writes them. */
const DTYPE_TO_CKPT_TYPE: Record<DType, string> = {
  float32: 'Float32',
  float16: 'Float16',
  bfloat16: 'BFloat16',
  float64: 'Float64',
  int8: 'Int8',
  int16: 'Int16',
  int32: 'Int32',
  int64: 'Int64',
  uint8: 'UInt8',
  bool: 'Bool',
};

const CKPT_TYPE_TO_DTYPE: Record<string, DType> = {
  ...Object.fromEntries(Object.entries(DTYPE_TO_CKPT_TYPE).map(([d, s]) => [s, d as DType])),
  Uint8: 'uint8', // MindSpore 1.x spelling
};

/** Values of this type are strings MindSpore stores beside the parameters (append_dict), not tensors. */
const STRING_TYPE = 'str';

// zlib.crc32 arrived in Node 20.15; on older 20.x fall back to a table-driven CRC-32 (same polynomial).
const nativeCrc32 = (zlib as { crc32?: (data: Uint8Array) => number }).crc32;
let crcTable: Uint32Array | undefined;

function crc32(data: Uint8Array): number {
  if (nativeCrc32) return nativeCrc32(data);
  crcTable ??= Uint32Array.from({ length: 256 }, (_, n) => {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    return c >>> 0;
  });
  let crc = 0xffffffff;
  for (const byte of data) crc = crcTable[(crc ^ byte) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** MindSpore's optional integrity trailer: "crc_num" then the CRC-32 of everything before, 10 bytes big-endian. */
const CRC_MARK = Buffer.from('crc_num', 'latin1');
const CRC_TRAILER_LENGTH = CRC_MARK.length + 10;

/** Parse a whole .ckpt held in memory. `file` names it in errors. Tensor bytes may be views into `buf`. */
export function parseCkpt(buf: Uint8Array, file: string): TensorMap {
  if (buf.byteLength === 0) {
    throw new WolfpackError('E_CORRUPT', `file ${file}: empty file (0 bytes), not a MindSpore checkpoint`, { file });
  }
  const body = stripCrcTrailer(buf, file);
  let message: CheckpointMessage;
  try {
    message = CheckpointType.decode(body) as unknown as CheckpointMessage;
  } catch (e) {
    // protobufjs reports reading past the end as a RangeError: the file stops in the middle of a field.
    const detail = e instanceof Error ? e.message : String(e);
    const reason = e instanceof RangeError ? `it ends in the middle of a field: ${detail}` : detail;
    throw new WolfpackError('E_CORRUPT', `file ${file}: corrupt or truncated MindSpore checkpoint (${reason})`, {
      file,
    });
  }
  return assembleTensors(message.value, file);
}

/** Encode a map as a .ckpt, in map order, one Value per tensor as MindSpore writes them. */
export function serializeCkpt(map: TensorMap): Uint8Array {
  return Buffer.concat(encodeCkptChunks(map));
}

export async function readCkpt(path: string): Promise<TensorMap> {
  return parseCkpt(await readFileBytes(path, 'MindSpore checkpoint'), path);
}

/** Write atomically: a crash mid-save leaves any previous file at `path` intact. */
export async function writeCkpt(path: string, map: TensorMap): Promise<void> {
  await writeFileAtomic(path, encodeCkptChunks(map));
}

function stripCrcTrailer(buf: Uint8Array, file: string): Uint8Array {
  if (buf.byteLength < CRC_TRAILER_LENGTH) return buf;
  const markAt = buf.byteLength - CRC_TRAILER_LENGTH;
  if (!CRC_MARK.equals(buf.subarray(markAt, markAt + CRC_MARK.length))) return buf;
  const body = buf.subarray(0, markAt);
  let stored = 0n;
  for (const byte of buf.subarray(markAt + CRC_MARK.length)) stored = (stored << 8n) | BigInt(byte);
  const actual = BigInt(crc32(body));
  if (stored !== actual) {
    throw new WolfpackError(
      'E_CORRUPT',
      `file ${file}: corrupt MindSpore checkpoint (crc_num trailer says ${stored}, the content's CRC-32 is ${actual})`,
      { file },
    );
  }
  return body;
}

/** Join consecutive Values with the same tag into one tensor each, validating every piece. */
function assembleTensors(values: ValueMessage[], file: string): TensorMap {
  const tensors: TensorMap = new Map();
  let i = 0;
  while (i < values.length) {
    const tag = values[i]!.tag;
    if (!tag) {
      throw new WolfpackError('E_CORRUPT', `file ${file}: corrupt MindSpore checkpoint (value #${i} has no tag)`, {
        file,
      });
    }
    let end = i + 1;
    while (end < values.length && values[end]!.tag === tag) end++;
    const pieces = values.slice(i, end);
    if (tensors.has(tag)) {
      throw new WolfpackError(
        'E_CORRUPT',
        `file ${file}: tensor '${tag}' appears twice, separated by other tensors (again at value #${i})`,
        { file, tensor: tag },
      );
    }
    const tensor = assembleOne(tag, pieces, file);
    if (tensor) tensors.set(tag, tensor);
    i = end;
  }
  if (tensors.size === 0) {
    throw new WolfpackError('E_CORRUPT', `file ${file}: MindSpore checkpoint holds no tensors`, { file });
  }
  return tensors;
}

/** One tensor from its pieces, or undefined for a string entry (metadata, not a weight). */
function assembleOne(tag: string, pieces: ValueMessage[], file: string): HostTensor | undefined {
  const first = pieces[0]!.tensor;
  if (!first) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `file ${file}: tensor '${tag}' has no TensorProto (a MindSpore map parameter?), which wolfpack cannot load`,
      { file, tensor: tag },
    );
  }
  const typeName = first.tensor_type ?? '';
  if (typeName === STRING_TYPE) return undefined;
  const dtype = CKPT_TYPE_TO_DTYPE[typeName];
  if (!dtype) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `file ${file}: tensor '${tag}' has tensor_type '${typeName}', which wolfpack does not support ` +
        `(supported: ${Object.keys(CKPT_TYPE_TO_DTYPE).join(', ')})`,
      { file, tensor: tag, tensorType: typeName },
    );
  }
  const dims = first.dims.map((d) => readDim(d, tag, file));
  const contents: Uint8Array[] = [];
  for (const [k, piece] of pieces.entries()) {
    const proto = piece.tensor;
    if (!proto || (proto.tensor_type ?? '') !== typeName || !sameDims(proto.dims, dims, tag, file)) {
      throw new WolfpackError(
        'E_CORRUPT',
        `file ${file}: tensor '${tag}' is split over ${pieces.length} values but piece ${k} does not repeat ` +
          `dims [${dims.join(',')}] and type ${typeName}`,
        { file, tensor: tag },
      );
    }
    contents.push(proto.tensor_content ?? new Uint8Array(0));
  }
  const bytes = contents.length === 1 ? contents[0]! : new Uint8Array(Buffer.concat(contents));
  const size = dtypeSize(dtype);
  // MindSpore writes a scalar's dims as [0]; an empty 1-D tensor also has dims [0], but no content.
  const shape = dims.length === 1 && dims[0] === 0 && bytes.byteLength === size ? [] : dims;
  const expected = numElements(shape) * size;
  if (bytes.byteLength !== expected) {
    throw new WolfpackError(
      'E_CORRUPT',
      `file ${file}: tensor '${tag}' (${typeName}, dims [${dims.join(',')}]) should have ${expected} bytes of ` +
        `tensor_content, found ${bytes.byteLength}`,
      { file, tensor: tag, expectedBytes: expected, foundBytes: bytes.byteLength },
    );
  }
  return { dtype, shape, bytes };
}

function readDim(d: Int64, tag: string, file: string): number {
  const n = typeof d === 'number' ? d : d.toNumber();
  if (!Number.isSafeInteger(n) || n < 0) {
    throw new WolfpackError('E_CORRUPT', `file ${file}: tensor '${tag}' has an invalid dimension ${n}`, {
      file,
      tensor: tag,
    });
  }
  return n;
}

function sameDims(dims: Int64[], expected: number[], tag: string, file: string): boolean {
  return dims.length === expected.length && dims.every((d, i) => readDim(d, tag, file) === expected[i]);
}

/** One encoded Checkpoint message per tensor; concatenated they form a single valid Checkpoint. */
function encodeCkptChunks(map: TensorMap): Uint8Array[] {
  if (map.size === 0) {
    throw new WolfpackError('E_WEIGHTS', 'cannot write a MindSpore checkpoint with no tensors');
  }
  return [...map].map(([tag, t]) => encodeCkptTensor(tag, t));
}

/**
 * One tensor as an encoded Checkpoint message. A checkpoint file is such messages concatenated (in the
 * order its tensors should appear); writeCkptChunks writes them. Lets a writer keep and reuse the bytes
 * of tensors that do not change between saves.
 */
export function encodeCkptTensor(tag: string, t: HostTensor): Uint8Array {
  const typeName = DTYPE_TO_CKPT_TYPE[t.dtype];
  if (!tag || !typeName) {
    throw new WolfpackError('E_WEIGHTS', `cannot write tensor '${tag}' (dtype ${t.dtype}) to a MindSpore checkpoint`, {
      tensor: tag,
    });
  }
  checkTensorBytes(tag, t);
  // MindSpore's own convention for a scalar, which its loader turns back into shape ().
  const dims = t.shape.length === 0 ? [0] : t.shape;
  const value = { tag, tensor: { dims, tensor_type: typeName, tensor_content: t.bytes } };
  return CheckpointType.encode(CheckpointType.fromObject({ value: [value] })).finish();
}

/** Atomically writes a checkpoint made of encodeCkptTensor's messages, in order. */
export async function writeCkptChunks(path: string, chunks: readonly Uint8Array[]): Promise<void> {
  if (chunks.length === 0)
    throw new WolfpackError('E_WEIGHTS', `cannot write a MindSpore checkpoint with no tensors: ${path}`);
  await writeFileAtomic(path, chunks);
}

function checkTensorBytes(tag: string, t: HostTensor): void {
  const expected = numElements(t.shape) * dtypeSize(t.dtype);
  if (t.shape.some((d) => !Number.isSafeInteger(d) || d < 0) || t.bytes.byteLength !== expected) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `cannot write tensor '${tag}': ${t.dtype} shape [${t.shape.join(',')}] needs ${expected} bytes, ` +
        `it holds ${t.bytes.byteLength}`,
      { tensor: tag },
    );
  }
}
