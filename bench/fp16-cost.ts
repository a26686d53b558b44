// What fp16 gradient transport (an optional `--grad-dtype f16`) would cost before it saves
// anything: converting ResNet-50's 25,557,032 gradient floats to IEEE half precision (round to nearest
// even) and adding halves back into a float32 sum, in JavaScript, on this machine. A ring all-reduce with
// fp16 on the wire converts about the whole buffer once each way per rank; it wins only where the link
// is slower than these conversions. Compare with `wolfpack bench allreduce --workers 2 --elements 25557032`.
//   node --import tsx bench/fp16-cost.ts [--elements 25557032] [--reps 5]
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { median } from './machine.js';

/** float32 -> float16 bits as IEEE 754 rounds (nearest, ties to even): subnormals, overflow to infinity, NaN kept. */
export function toHalf(src: Float32Array, dst: Uint16Array): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < u.length; i++) {
    const x = u[i];
    const sign = (x >>> 16) & 0x8000;
    const exp = ((x >>> 23) & 0xff) - 112;
    const man = x & 0x7fffff;
    if (((x >>> 23) & 0xff) === 0xff) { dst[i] = sign | 0x7c00 | (man ? 0x200 : 0); continue; }
    if (exp <= 0) { // a float16 subnormal (units of 2^-24), or zero below half the smallest one
      if (exp < -10) { dst[i] = sign; continue; }
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

function main(): void {
  const { values } = parseArgs({ options: { elements: { type: 'string' }, reps: { type: 'string' } } });
  const n = Number(values.elements ?? 25_557_032);
  const reps = Number(values.reps ?? 5);
  const grads = new Float32Array(n);
  for (let i = 0; i < n; i++) grads[i] = Math.sin(i) * 1e-3;
  const half = new Uint16Array(n);
  const sum = new Float32Array(n);
  const table = halfTable();
  const enc: number[] = [];
  const add: number[] = [];
  for (let r = 0; r < reps + 1; r++) {
    const t0 = performance.now();
    toHalf(grads, half);
    const t1 = performance.now();
    for (let i = 0; i < n; i++) sum[i] += table[half[i]];
    const t2 = performance.now();
    if (r > 0) { enc.push(t1 - t0); add.push(t2 - t1); } // the first run warms the JIT
  }
  process.stdout.write(`${JSON.stringify({ bench: 'fp16_conversion', elements: n, reps, to_half_ms: median(enc), add_half_ms: median(add), to_half_runs: enc.map(Math.round), add_half_runs: add.map(Math.round) })}\n`);
}

if (['fp16-cost.ts', 'fp16-cost.js'].includes(basename(process.argv[1] ?? ''))) main();
