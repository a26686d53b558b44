// What fp16 gradient transport (an optional `--grad-dtype f16`) would cost before it saves
// anything: converting ResNet-50's 25,557,032 gradient floats to IEEE half precision (round to nearest
// even) and adding halves back into a float32 sum, in JavaScript, on this machine. A ring all-reduce with
// fp16 on the wire converts about the whole buffer once each way per rank; it wins only where the link
// is slower than these conversions. Compare with `wolfpack bench allreduce --workers 2 --elements 25557032`.
// `wire` adds the ring's own conversions (wire.ts in JS, wire-simd.ts in WebAssembly SIMD), bf16 and fp16.
//   node --import tsx bench/fp16-cost.ts [--elements 25557032] [--reps 5]
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { createRingBuffer } from '../shared/allreduce/ring.js';
import { simdBufferOf } from '../shared/allreduce/simd-add.js';
import { simdWireFor } from '../shared/allreduce/wire-simd.js';
import { halfTable, toHalf, wireCodec } from '../shared/allreduce/wire.js';
import { median } from './machine.js';

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
    for (let i = 0; i < n; i++) sum[i] = sum[i]! + table[half[i]!]!;
    const t2 = performance.now();
    if (r > 0) {
      enc.push(t1 - t0);
      add.push(t2 - t1);
    } // the first run warms the JIT
  }
  process.stdout.write(
    JSON.stringify({
      bench: 'fp16_conversion',
      elements: n,
      reps,
      to_half_ms: median(enc),
      add_half_ms: median(add),
      to_half_runs: enc.map(Math.round),
      add_half_runs: add.map(Math.round),
      wire: wireConversionCost(n, reps),
    }) + '\n',
  );
}

/**
 * The 16-bit wire's conversions as the ring does them, chunk by chunk (1 Mi values, the ring's default chunk):
 * packing a region and adding a received message into the buffer, with wire.ts's JS code (a plain buffer)
 * and with WebAssembly SIMD (a ring buffer, wire-simd.ts), for bf16 and fp16. Milliseconds for the whole
 * buffer, median of `reps` after one warm-up.
 */
export function wireConversionCost(n: number, reps: number): Record<string, number> {
  const chunk = 1 << 20;
  const out: Record<string, number> = {};
  const ring = createRingBuffer(n, { maxChunkElems: chunk });
  const plain = new Float32Array(n);
  for (let i = 0; i < n; i++) ring[i] = plain[i] = Math.sin(i) * 1e-3;
  for (const format of ['bf16', 'fp16'] as const) {
    const js = wireCodec(format);
    const simd = simdWireFor(format, ring, simdBufferOf(ring), chunk);
    const time = (f: () => void): number => {
      const runs: number[] = [];
      for (let r = 0; r < reps + 1; r++) {
        const t0 = performance.now();
        f();
        if (r > 0) runs.push(performance.now() - t0);
      }
      return Math.round(median(runs) * 10) / 10;
    };
    const packed = js.pack(plain, 0, chunk);
    out[`${format}_js_pack_ms`] = time(() => {
      for (let off = 0; off < n; off += chunk) js.pack(plain, off, Math.min(chunk, n - off));
    });
    out[`${format}_js_add_ms`] = time(() => {
      for (let off = 0; off < n; off += chunk) js.addInto(plain, off, packed, Math.min(chunk, n - off));
    });
    if (simd === null) continue;
    simd.slot(0, chunk).set(packed);
    out[`${format}_simd_pack_ms`] = time(() => {
      for (let off = 0; off < n; off += chunk) simd.pack(ring, off, Math.min(chunk, n - off));
    });
    out[`${format}_simd_add_ms`] = time(() => {
      for (let off = 0; off < n; off += chunk) simd.unpack(ring, off, 0, Math.min(chunk, n - off), true);
    });
  }
  return out;
}

if (['fp16-cost.ts', 'fp16-cost.js'].includes(basename(process.argv[1] ?? ''))) main();
