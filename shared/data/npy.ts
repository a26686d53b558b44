// NumPy .npy files (format versions 1.0, 2.0 and 3.0), for exchanging reference tensors with Python:
// torchvision outputs in tests, preprocessed batches, exported features. Little-endian, C order only.
// Format: "\x93NUMPY", major, minor, header length (u16 in 1.0, u32 after), a Python dict literal
// {'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), } padded to 64 bytes, then the raw data.
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WolfpackError } from '../errors.js';

/** What an array was stored as; '<f8' is read into a Float32Array and reported as '<f4'. */
export type NpyDtype = '<f4' | '<i4' | '<i8';
export type NpyData = Float32Array | Int32Array | BigInt64Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY
const ITEM_SIZE: Record<string, number> = { '<f4': 4, '<f8': 8, '<i4': 4, '<i8': 8 };
// One byte per item needs no byte order: numpy writes '|' for those, which we do not read.
const DESCR_ALIASES: Record<string, string> = { '=f4': '<f4', '=f8': '<f8', '=i4': '<i4', '=i8': '<i8' };

// Typed arrays use the host's byte order; .npy here is little-endian, like every host Node ships for
// but s390x.
const HOST_IS_LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function checkHost(): void {
  if (!HOST_IS_LITTLE_ENDIAN) throw new WolfpackError('E_USAGE', '.npy support needs a little-endian host');
}

function corrupt(file: string, problem: string): WolfpackError {
  return new WolfpackError('E_CORRUPT', `${file}: ${problem}`, { path: file });
}

// The header is a Python literal, not JSON; read the three keys numpy always writes.
function parseHeader(text: string, file: string): { descr: string; fortran: boolean; shape: number[] } {
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(text);
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(text);
  const shape = /'shape'\s*:\s*\(([^)]*)\)/.exec(text);
  if (!descr || !fortran || !shape) {
    throw corrupt(file, `not a valid .npy header: ${JSON.stringify(text.trim())}`);
  }
  const dims = shape[1]!
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const parsed = dims.map((s) => {
    // Python 2 era files may write long integers as 3L.
    const m = /^(\d+)L?$/.exec(s);
    if (!m) throw corrupt(file, `bad shape entry ${JSON.stringify(s)} in .npy header`);
    return Number(m[1]);
  });
  return { descr: descr[1]!, fortran: fortran[1] === 'True', shape: parsed };
}

/** Parse the bytes of a .npy file; `file` names it in errors. The data is copied (aligned). */
export function parseNpy(buf: Uint8Array, file: string): NpyArray {
  checkHost();
  if (buf.length < 10 || MAGIC.some((b, i) => buf[i] !== b)) {
    throw corrupt(file, 'not a .npy file (bad magic; expected \\x93NUMPY)');
  }
  const major = buf[6];
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (buf.length < 12) throw corrupt(file, 'truncated .npy header');
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw corrupt(file, `unsupported .npy format version ${major}.${buf[7]}`);
  }
  const dataStart = headerStart + headerLen;
  if (dataStart > buf.length)
    throw corrupt(file, `truncated .npy header (needs ${dataStart} bytes, file has ${buf.length})`);
  // Version 3.0 differs only in allowing utf-8 in the header.
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(buf.subarray(headerStart, dataStart));
  const { descr: rawDescr, fortran, shape } = parseHeader(header, file);
  const descr = DESCR_ALIASES[rawDescr] ?? rawDescr;
  const itemSize = ITEM_SIZE[descr];
  if (itemSize === undefined) {
    throw corrupt(file, `unsupported dtype ${JSON.stringify(rawDescr)} (supported: <f4, <f8, <i4, <i8)`);
  }
  if (fortran) throw corrupt(file, 'fortran_order arrays are not supported (save a C-contiguous array)');
  const count = shape.reduce((a, b) => a * b, 1);
  const need = count * itemSize;
  const have = buf.length - dataStart;
  if (have < need)
    throw corrupt(file, `truncated data: shape (${shape.join(', ')}) ${descr} needs ${need} bytes, file has ${have}`);
  if (have > need)
    throw corrupt(file, `${have - need} unexpected bytes after the data of shape (${shape.join(', ')}) ${descr}`);

  // Copy into a fresh buffer: the data offset need not be aligned for a typed-array view.
  // (Uint8Array.prototype.slice: Buffer#slice would return a view of Node's shared pool.)
  const copy = Uint8Array.prototype.slice.call(buf, dataStart, dataStart + need).buffer;
  switch (descr) {
    case '<f4':
      return { dtype: '<f4', shape, data: new Float32Array(copy, 0, count) };
    case '<f8':
      return { dtype: '<f4', shape, data: Float32Array.from(new Float64Array(copy, 0, count)) };
    case '<i4':
      return { dtype: '<i4', shape, data: new Int32Array(copy, 0, count) };
    default:
      return { dtype: '<i8', shape, data: new BigInt64Array(copy, 0, count) };
  }
}

/** Read a .npy file. '<f8' arrays come back as Float32Array (dtype '<f4'). */
export async function readNpy(path: string): Promise<NpyArray> {
  let buf: Buffer;
  try {
    buf = await readFile(path);
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
  return parseNpy(buf, path);
}

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Float32Array) return '<f4';
  if (data instanceof Int32Array) return '<i4';
  return '<i8';
}

/** The bytes of a .npy file (version 1.0, or 2.0 when the header is too long for a u16 length). */
export function encodeNpy(shape: readonly number[], data: NpyData): Uint8Array {
  checkHost();
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) {
    throw new WolfpackError('E_USAGE', `encodeNpy: shape must be non-negative integers, got (${shape.join(', ')})`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (count !== data.length) {
    throw new WolfpackError(
      'E_USAGE',
      `encodeNpy: shape (${shape.join(', ')}) holds ${count} values but data has ${data.length}`,
    );
  }
  const dims = shape.length === 1 ? `${shape[0]},` : shape.join(', ');
  const dict = `{'descr': '${dtypeOf(data)}', 'fortran_order': False, 'shape': (${dims}), }`;
  let version = 1;
  let prefix = 10;
  // numpy pads the header with spaces and a newline so that the data starts on a 64-byte boundary.
  let total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  if (total - prefix > 0xffff) {
    version = 2;
    prefix = 12;
    total = Math.ceil((prefix + dict.length + 1) / 64) * 64;
  }
  const headerLen = total - prefix;
  const header = dict + ' '.repeat(headerLen - dict.length - 1) + '\n';
  const out = new Uint8Array(total + data.byteLength);
  out.set(MAGIC, 0);
  out[6] = version;
  out[7] = 0;
  const view = new DataView(out.buffer);
  if (version === 1) view.setUint16(8, headerLen, true);
  else view.setUint32(8, headerLen, true);
  for (let i = 0; i < header.length; i++) out[prefix + i] = header.charCodeAt(i);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), total);
  return out;
}

/** Write a .npy file, creating its folder. Int32Array and BigInt64Array are written as '<i4' / '<i8'. */
export async function writeNpy(path: string, shape: readonly number[], data: NpyData): Promise<void> {
  const bytes = encodeNpy(shape, data);
  try {
    await mkdir(dirname(path), { recursive: true });
    await writeFile(path, bytes);
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot write ${path}: ${(e as Error).message}`, { path });
  }
}
