// bench/wire-error.ts on a small step: real ResNet-50 gradients of two replicas, summed over the ring in
// float32, bf16 and fp16. Every tensor's error against the float32 sum is non-zero (the rounding happened),
// fp16's 11-bit mantissa is closer than bfloat16's 8 bits, and both stay within a few units in the last
// place of their format per hop (bf16: 2^-8, fp16: 2^-11, the rounding of one reduce-scatter hop and one
// owner's rounding at N=2).
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { packageRoot } from '../../shared/paths.js';

interface Stat {
  min: number;
  median: number;
  max: number;
  worst: string;
}
interface WireErr {
  l2_rel: Stat;
  max_abs_rel: Stat;
  whole: { l2: number };
}

t.test('bf16 and fp16 sums of a real step, tensor by tensor, against float32', async (t) => {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', 'bench/wire-error.ts', '--workers', '2', '--batch-per-worker', '2', '--image-size', '64'],
    { cwd: packageRoot, timeout: 300_000, maxBuffer: 1 << 24 },
  );
  const line = stdout.trim().split('\n').at(-1)!;
  const r = JSON.parse(line) as { tensors: number; elements: number; bf16: WireErr; fp16: WireErr };
  t.equal(r.tensors, 161, "every one of ResNet-50's parameter tensors");
  for (const [wire, ulp] of [
    ['bf16', 2 ** -8],
    ['fp16', 2 ** -11],
  ] as const) {
    const e = r[wire];
    t.ok(e.l2_rel.min > 0, `${wire}: every tensor rounded (smallest relative error ${e.l2_rel.min.toExponential(2)})`);
    t.ok(
      e.max_abs_rel.max < 2 * ulp,
      `${wire}: worst element within two units of ${ulp.toExponential(2)} (${e.max_abs_rel.max.toExponential(2)} ` +
        `in ${e.max_abs_rel.worst})`,
    );
  }
  t.ok(r.fp16.whole.l2 < r.bf16.whole.l2, 'fp16 is closer than bf16 over the whole buffer');
});
