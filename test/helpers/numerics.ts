// Comparison helpers for numeric tests: whole-tensor relative L2 error and max relative error.

/** ||a - b|| / max(||b||, tiny), in float64. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i]! - b[i]!;
    num += d * d;
    den += b[i]! * b[i]!;
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

// The per-tensor comparisons live with the checkpoint reader, for the benchmarks too.
export { maxRelToScale, worstTensorRelDiff } from '../../shared/weights/compare.js';

/** A seeded xorshift32 generator of uniforms in [0, 1): test inputs independent of the code under test. */
export function xorshiftRng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 4294967296;
  };
}
