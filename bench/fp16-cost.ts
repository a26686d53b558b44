// What fp16 gradient transport (an optional `--grad-dtype f16`) would cost before it saves
// anything: converting ResNet-50's 25,557,032 gradient floats to IEEE half precision (round to nearest
// even) and adding halves back into a float32 sum, in JavaScript, on this machine. A ring all-reduce with
// fp16 on the wire converts about the whole buffer once each way per rank; it wins only where the link
// is slower than these conversions. Compare with `wolfpack bench allreduce --workers 2 --elements 25557032`.
//   node --import tsx bench/fp16-cost.ts [--elements 25557032] [--reps 5]
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { halfTable, toHalf } from '../shared/allreduce/wire.js';
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
    `${JSON.stringify({ bench: 'fp16_conversion', elements: n, reps, to_half_ms: median(enc), add_half_ms: median(add), to_half_runs: enc.map(Math.round), add_half_runs: add.map(Math.round) })}\n`,
  );
}

if (['fp16-cost.ts', 'fp16-cost.js'].includes(basename(process.argv[1] ?? ''))) main();
