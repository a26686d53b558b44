// 16-bit values on the ring's wire (--wire bf16|fp16): the all-reduce sums in float32 in memory, and what
// travels between ranks is rounded to bfloat16 (float32's exponent, 8 bits of mantissa: never overflows)
// or IEEE half (11 bits of mantissa, but nothing above 65504 and gradual underflow below 6e-5), halving
// the bytes. A message of n values is n 16-bit words, padded to whole float32 words, since a Link carries
// float32 elements (bytes are bytes to it). ring.ts calls these; the conversions round to nearest, ties to
// even, as numpy and PyTorch do.

export type WireFormat = 'fp32' | 'bf16' | 'fp16';
export const WIRE_FORMATS: readonly WireFormat[] = ['fp32', 'bf16', 'fp16'];

/** float32 -> float16 bits as IEEE 754 rounds (nearest, ties to even): subnormals, overflow to infinity, NaN kept. */
export function toHalf(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 112;
    const man = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) {
      dst[i] = sign | 0x7c00 | (man ? 0x200 : 0);
      continue;
    }
    if (exp <= 0) {
      // a float16 subnormal (units of 2^-24), or zero below half the smallest one
      if (exp < -10) {
        dst[i] = sign;
        continue;
      }
      const m = man | 0x800000;
      const shift = 14 - exp;
      let h = m >>> shift;
      const rest = m & ((1 << shift) - 1);
      const halfway = 1 << (shift - 1);
      if (rest > halfway || (rest === halfway && (h & 1) === 1)) h++;
      dst[i] = sign | h;
      continue;
    }
    let h = (exp << 10) | (man >>> 13);
    const rest = man & 0x1fff;
    if (rest > 0x1000 || (rest === 0x1000 && (h & 1) === 1)) h++;
    dst[i] = h >= 0x7c00 ? sign | 0x7c00 : sign | h;
  }
}

/** Every float16 bit pattern's float32 value (normal, subnormal, infinities, NaN). */
export function halfTable(): Float32Array {
  const table = new Float32Array(65536);
  const bits = new Uint32Array(table.buffer);
  for (let h = 0; h < 65536; h++) {
    const sign = (h & 0x8000) << 16;
    const exp = (h >>> 10) & 0x1f;
    const man = h & 0x3ff;
    if (exp === 0) table[h] = (sign ? -1 : 1) * man * 2 ** -24;
    else if (exp === 31) bits[h] = sign | 0x7f800000 | (man << 13);
    else bits[h] = sign | ((exp + 112) << 23) | (man << 13);
  }
  return table;
}

/** float32 -> bfloat16 bits, nearest, ties to even (the top 16 bits of the float32, rounded); NaN stays NaN. */
export function toBfloat16(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i]!;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

let fp16Table: Float32Array | undefined;

/** How one 16-bit format goes to the wire and comes back. */
export interface WireCodec {
  format: Exclude<WireFormat, 'fp32'>;
  /** `n` values of `src` from `off` as 16-bit words, in a float32 view a Link can carry (ceil(n/2) elements). */
  pack(src: Float32Array, off: number, n: number): Float32Array;
  /** dst[off + i] += value i of a packed message, for i < n. */
  addInto(dst: Float32Array, off: number, packed: Float32Array, n: number): void;
  /** dst[off + i] = value i of a packed message, for i < n. */
  copyInto(dst: Float32Array, off: number, packed: Float32Array, n: number): void;
  /** Rounds dst[off, off + n) to the format in place: what the other ranks will receive of it. */
  round(dst: Float32Array, off: number, n: number): void;
}

/** The codec of a 16-bit format. */
export function wireCodec(format: Exclude<WireFormat, 'fp32'>): WireCodec {
  const encode = format === 'bf16' ? toBfloat16 : toHalf;
  // decoding: bf16 -> the word shifted into float32's top half; fp16 -> a 65536-entry table
  const table = format === 'fp16' ? (fp16Table ??= halfTable()) : undefined;
  const bits = new Uint32Array(1);
  const value = new Float32Array(bits.buffer);
  const decode = table
    ? (h: number) => table[h]!
    : (h: number) => {
        bits[0] = h << 16;
        return value[0]!;
      };
  const words = (packed: Float32Array, n: number) => new Uint16Array(packed.buffer, packed.byteOffset, n);
  return {
    format,
    pack(src, off, n) {
      const out = new Uint16Array(2 * Math.ceil(n / 2));
      encode(src.subarray(off, off + n), out);
      return new Float32Array(out.buffer);
    },
    addInto(dst, off, packed, n) {
      const w = words(packed, n);
      for (let i = 0; i < n; i++) dst[off + i] = dst[off + i]! + decode(w[i]!);
    },
    copyInto(dst, off, packed, n) {
      const w = words(packed, n);
      for (let i = 0; i < n; i++) dst[off + i] = decode(w[i]!);
    },
    round(dst, off, n) {
      const w = new Uint16Array(n);
      encode(dst.subarray(off, off + n), w);
      for (let i = 0; i < n; i++) dst[off + i] = decode(w[i]!);
    },
  };
}
