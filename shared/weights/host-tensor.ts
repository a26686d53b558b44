// A tensor as it lies in a weights file: dtype, shape and raw little-endian bytes, held in host memory.
// The file readers produce these and the writers consume them; toFloat32 is the one place where the
// other dtypes (f16, bf16, f64, integers, bool) become the float32 the model computes in.
import { WolfpackError } from '../errors.js';

export type DType =
  'float32' | 'float16' | 'bfloat16' | 'float64' | 'int8' | 'int16' | 'int32' | 'int64' | 'uint8' | 'bool';

/**
 * One tensor. `bytes` is raw little-endian data, row-major, exactly numElements(shape) * dtypeSize(dtype)
 * long. Readers may return `bytes` as a view into the file's buffer, at any byte offset: treat it as
 * read-only and never build a wider typed-array view on it (use toFloat32).
 */
export interface HostTensor {
  dtype: DType;
  shape: number[];
  bytes: Uint8Array;
}

/** Tensors by name; insertion order is the order they have in the file. */
export type TensorMap = Map<string, HostTensor>;

const DTYPE_SIZES: Record<DType, number> = {
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float64: 8,
  int8: 1,
  int16: 2,
  int32: 4,
  int64: 8,
  uint8: 1,
  bool: 1,
};

/** Bytes per element. */
export function dtypeSize(d: DType): number {
  return DTYPE_SIZES[d];
}

/** Product of the dimensions; 1 for a scalar (shape []). */
export function numElements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

// Typed arrays use the host's byte order, the files use little-endian: the fast copy paths below are
// only valid on little-endian hosts (all the ones we run on), the DataView paths work everywhere.
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** float32 bit pattern for every float16 bit pattern, built on first use (256 KiB). */
let f16ToF32Bits: Uint32Array | undefined;

function buildF16Table(): Uint32Array {
  const table = new Uint32Array(65536);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    let mant = h & 0x3ff;
    let bits: number;
    if (exp === 0x1f) {
      // Inf and NaN: keep the payload bit-for-bit, as numpy and torch do.
      bits = sign | 0x7f800000 | (mant << 13);
    } else if (exp !== 0) {
      bits = sign | ((exp - 15 + 127) << 23) | (mant << 13);
    } else if (mant === 0) {
      bits = sign; // +0 / -0
    } else {
      // Subnormal half (mant * 2^-24): normalise it, every one is a normal float32.
      let e = -14;
      while ((mant & 0x400) === 0) {
        mant <<= 1;
        e--;
      }
      bits = sign | ((e + 127) << 23) | ((mant & 0x3ff) << 13);
    }
    table[h] = bits >>> 0;
  }
  return table;
}

/** A float32 copy of any tensor, in a fresh, aligned buffer. f16 and bf16 are exact; f64 and int64 round. */
export function toFloat32(t: HostTensor): Float32Array {
  const n = numElements(t.shape);
  const size = dtypeSize(t.dtype);
  if (t.bytes.byteLength !== n * size) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `toFloat32: a ${t.dtype} tensor of shape [${t.shape.join(',')}] needs ${n * size} bytes, ` +
        `found ${t.bytes.byteLength}`,
    );
  }
  const out = new Float32Array(n);
  const b = t.bytes;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  switch (t.dtype) {
    case 'float32':
      if (hostIsLittleEndian) {
        // Copy bytes into the fresh (aligned) output; never view b itself, its offset may be odd.
        new Uint8Array(out.buffer).set(b);
      } else {
        for (let i = 0; i < n; i++) out[i] = view.getFloat32(i * 4, true);
      }
      break;
    case 'float16': {
      f16ToF32Bits ??= buildF16Table();
      const table = f16ToF32Bits;
      // Write bit patterns through an integer view so NaN payloads are not canonicalised.
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = table[b[2 * i]! | (b[2 * i + 1]! << 8)]!;
      break;
    }
    case 'bfloat16': {
      // bfloat16 is the top half of a float32.
      const bits = new Uint32Array(out.buffer);
      for (let i = 0; i < n; i++) bits[i] = ((b[2 * i]! << 16) | (b[2 * i + 1]! << 24)) >>> 0;
      break;
    }
    case 'float64':
      for (let i = 0; i < n; i++) out[i] = view.getFloat64(i * 8, true);
      break;
    case 'int8':
      for (let i = 0; i < n; i++) out[i] = view.getInt8(i);
      break;
    case 'int16':
      for (let i = 0; i < n; i++) out[i] = view.getInt16(i * 2, true);
      break;
    case 'int32':
      for (let i = 0; i < n; i++) out[i] = view.getInt32(i * 4, true);
      break;
    case 'int64':
      for (let i = 0; i < n; i++) out[i] = Number(view.getBigInt64(i * 8, true));
      break;
    case 'uint8':
      for (let i = 0; i < n; i++) out[i] = b[i]!;
      break;
    case 'bool':
      for (let i = 0; i < n; i++) out[i] = b[i] !== 0 ? 1 : 0;
      break;
  }
  return out;
}

/** A float32 tensor holding a copy of `data` (so later changes to `data` do not reach it). */
export function fromFloat32(shape: number[], data: Float32Array): HostTensor {
  const n = numElements(shape);
  if (data.length !== n) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `fromFloat32: shape [${shape.join(',')}] has ${n} elements, data has ${data.length}`,
    );
  }
  let bytes: Uint8Array;
  if (hostIsLittleEndian) {
    bytes = new Uint8Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.byteLength));
  } else {
    bytes = new Uint8Array(n * 4);
    const view = new DataView(bytes.buffer);
    for (let i = 0; i < n; i++) view.setFloat32(i * 4, data[i]!, true);
  }
  return { dtype: 'float32', shape: [...shape], bytes };
}
