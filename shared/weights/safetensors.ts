// The safetensors format: read it into a TensorMap and write a TensorMap back.
// Layout: an unsigned 64-bit little-endian header length N, N bytes of UTF-8 JSON
//   { "<name>": { "dtype": "F32", "shape": [..], "data_offsets": [begin, end] }, ...,
//     "__metadata__"?: { "<key>": "<string>" } }
// then the data, offsets relative to its start. Like the reference implementation (huggingface/
// safetensors) we require the tensors to tile the data exactly: no overlap, no gap, nothing after.
import { WolfpackError } from '../errors.js';
import { readFileBytes } from '../fs/read-file.js';
import { writeFileAtomic } from '../fs/atomic-write.js';
import { dtypeSize, numElements, type DType, type HostTensor, type TensorMap } from './host-tensor.js';

export interface SafetensorsContent {
  tensors: TensorMap;
  metadata: Record<string, string>;
}

const DTYPE_TO_CODE: Record<DType, string> = {
  float32: 'F32',
  float16: 'F16',
  bfloat16: 'BF16',
  float64: 'F64',
  int8: 'I8',
  int16: 'I16',
  int32: 'I32',
  int64: 'I64',
  uint8: 'U8',
  bool: 'BOOL',
};

const CODE_TO_DTYPE: Record<string, DType> = Object.fromEntries(
  Object.entries(DTYPE_TO_CODE).map(([d, c]) => [c, d as DType]),
);

const METADATA_KEY = '__metadata__';
const LENGTH_PREFIX_BYTES = 8;
/** The reference reader's limit; a larger "header" means a corrupt length field, not a real header. */
const MAX_HEADER_BYTES = 100_000_000;

interface Entry {
  name: string;
  dtype: DType;
  shape: number[];
  begin: number;
  end: number;
}

/** Parse a whole safetensors file held in memory. `file` names it in errors. Tensor bytes are views into `buf`. */
export function parseSafetensors(buf: Uint8Array, file: string): SafetensorsContent {
  const corrupt = (what: string, tensor?: string): WolfpackError =>
    new WolfpackError('E_CORRUPT', `file ${file}: corrupt safetensors file (${what})`, {
      file,
      ...(tensor === undefined ? {} : { tensor }),
    });

  if (buf.byteLength < LENGTH_PREFIX_BYTES) {
    throw corrupt(`${buf.byteLength} bytes, too short for the 8-byte header length`);
  }
  const headerLength = new DataView(buf.buffer, buf.byteOffset, buf.byteLength).getBigUint64(0, true);
  const room = BigInt(buf.byteLength - LENGTH_PREFIX_BYTES);
  if (headerLength > room) {
    throw corrupt(`header length ${headerLength} runs past the end of the file, which has ${room} bytes after it`);
  }
  if (headerLength > BigInt(MAX_HEADER_BYTES)) {
    throw corrupt(`header length ${headerLength} is over the ${MAX_HEADER_BYTES}-byte limit`);
  }
  const dataStart = LENGTH_PREFIX_BYTES + Number(headerLength);
  const header = parseHeaderJson(buf.subarray(LENGTH_PREFIX_BYTES, dataStart), corrupt);
  const data = buf.subarray(dataStart);

  const metadata = readMetadata(header[METADATA_KEY], corrupt);
  const entries: Entry[] = [];
  for (const [name, raw] of Object.entries(header)) {
    if (name !== METADATA_KEY) entries.push(readEntry(name, raw, data.byteLength, file, corrupt));
  }

  // File order is data order. Sorting also lets one pass find overlaps and gaps.
  // (Zero-sized tensors sort before a tensor starting at the same offset.)
  entries.sort((a, b) => a.begin - b.begin || a.end - b.end);
  let covered = 0;
  let previous: Entry | undefined;
  for (const e of entries) {
    if (e.begin < covered) {
      throw corrupt(
        `tensors '${previous?.name}' [${previous?.begin},${previous?.end}] ` +
          `and '${e.name}' [${e.begin},${e.end}] overlap`,
        e.name,
      );
    }
    if (e.begin > covered) {
      throw corrupt(`data bytes [${covered},${e.begin}) before tensor '${e.name}' belong to no tensor`, e.name);
    }
    covered = e.end;
    previous = e;
  }
  if (covered !== data.byteLength) {
    throw corrupt(`data bytes [${covered},${data.byteLength}) at the end belong to no tensor`);
  }

  const tensors: TensorMap = new Map();
  for (const e of entries) {
    tensors.set(e.name, { dtype: e.dtype, shape: e.shape, bytes: data.subarray(e.begin, e.end) });
  }
  return { tensors, metadata };
}

/** Encode a map (in map order) and optional string metadata as a safetensors file. */
export function serializeSafetensors(map: TensorMap, metadata?: Record<string, string>): Uint8Array {
  return Buffer.concat(encodeSafetensorsChunks(map, metadata));
}

export async function readSafetensors(path: string): Promise<SafetensorsContent> {
  return parseSafetensors(await readFileBytes(path, 'safetensors file'), path);
}

/** Write atomically: a crash mid-save leaves any previous file at `path` intact. */
export async function writeSafetensors(path: string, map: TensorMap, metadata?: Record<string, string>): Promise<void> {
  await writeFileAtomic(path, encodeSafetensorsChunks(map, metadata));
}

function parseHeaderJson(bytes: Uint8Array, corrupt: (what: string) => WolfpackError): Record<string, unknown> {
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw corrupt('header is not valid UTF-8');
  }
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    throw corrupt(`header is not valid JSON: ${e instanceof Error ? e.message : String(e)}`);
  }
  if (!isPlainObject(header)) throw corrupt('header is not a JSON object');
  return header;
}

function readMetadata(raw: unknown, corrupt: (what: string) => WolfpackError): Record<string, string> {
  if (raw === undefined) return {};
  if (!isPlainObject(raw)) throw corrupt(`${METADATA_KEY} is not an object`);
  const metadata: Record<string, string> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (typeof v !== 'string') throw corrupt(`${METADATA_KEY}.${k} is not a string`);
    metadata[k] = v;
  }
  return metadata;
}

function readEntry(
  name: string,
  raw: unknown,
  dataLength: number,
  file: string,
  corrupt: (what: string, tensor?: string) => WolfpackError,
): Entry {
  if (!isPlainObject(raw)) throw corrupt(`tensor '${name}': entry is not an object`, name);
  const { dtype: code, shape, data_offsets: offsets } = raw;
  if (typeof code !== 'string') throw corrupt(`tensor '${name}': dtype is missing or not a string`, name);
  const dtype = CODE_TO_DTYPE[code];
  if (!dtype) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `file ${file}: tensor '${name}' has dtype '${code}', which wolfpack does not support ` +
        `(supported: ${Object.keys(CODE_TO_DTYPE).join(', ')})`,
      { file, tensor: name, dtype: code },
    );
  }
  if (!Array.isArray(shape) || !shape.every(isCount)) {
    throw corrupt(`tensor '${name}': shape ${JSON.stringify(shape)} is not a list of non-negative integers`, name);
  }
  if (!Array.isArray(offsets) || offsets.length !== 2 || !offsets.every(isCount) || offsets[0]! > offsets[1]!) {
    throw corrupt(
      `tensor '${name}': data_offsets ${JSON.stringify(offsets)} is not [begin, end] with begin <= end`,
      name,
    );
  }
  const [begin, end] = offsets as [number, number];
  if (end > dataLength) {
    throw corrupt(
      `tensor '${name}': data_offsets [${begin},${end}] run past the end of the data, which has ${dataLength} bytes`,
      name,
    );
  }
  const expected = numElements(shape) * dtypeSize(dtype);
  if (end - begin !== expected) {
    throw corrupt(
      `tensor '${name}': ${code} shape [${shape.join(',')}] needs ${expected} bytes, ` +
        `data_offsets [${begin},${end}] hold ${end - begin}`,
      name,
    );
  }
  return { name, dtype, shape: [...shape], begin, end };
}

/** Length prefix + header, then each tensor's bytes as its own chunk (no copy of the data). */
function encodeSafetensorsChunks(map: TensorMap, metadata?: Record<string, string>): Uint8Array[] {
  // Built by hand, not JSON.stringify(object): an object would move integer-like names ("0") first.
  const fields: string[] = [];
  if (metadata && Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') {
        throw new WolfpackError('E_WEIGHTS', `cannot write safetensors metadata '${k}': value is not a string`);
      }
    }
    fields.push(`${JSON.stringify(METADATA_KEY)}:${JSON.stringify(metadata)}`);
  }
  let offset = 0;
  for (const [name, t] of map) {
    checkWritable(name, t);
    const end = offset + t.bytes.byteLength;
    const entry = { dtype: DTYPE_TO_CODE[t.dtype], shape: t.shape, data_offsets: [offset, end] };
    fields.push(`${JSON.stringify(name)}:${JSON.stringify(entry)}`);
    offset = end;
  }
  let header = Buffer.from(`{${fields.join(',')}}`, 'utf8');
  // Pad with spaces to a multiple of 8, as the reference writer does, so the data starts 8-aligned.
  const padding = (8 - (header.byteLength % 8)) % 8;
  if (padding > 0) header = Buffer.concat([header, Buffer.alloc(padding, 0x20)]);
  const prefix = Buffer.alloc(LENGTH_PREFIX_BYTES);
  prefix.writeBigUInt64LE(BigInt(header.byteLength));
  return [prefix, header, ...[...map.values()].map((t) => t.bytes)];
}

function checkWritable(name: string, t: HostTensor): void {
  if (name === METADATA_KEY || name === '') {
    throw new WolfpackError('E_WEIGHTS', `cannot write a tensor named '${name}' to safetensors (reserved name)`, {
      tensor: name,
    });
  }
  if (!DTYPE_TO_CODE[t.dtype]) {
    throw new WolfpackError('E_WEIGHTS', `cannot write tensor '${name}': unknown dtype ${t.dtype}`, { tensor: name });
  }
  const expected = numElements(t.shape) * dtypeSize(t.dtype);
  if (!t.shape.every(isCount) || t.bytes.byteLength !== expected) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `cannot write tensor '${name}': ${t.dtype} shape [${t.shape.join(',')}] needs ${expected} bytes, ` +
        `it holds ${t.bytes.byteLength}`,
      { tensor: name },
    );
  }
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
