// Comparison helpers for numeric tests: whole-tensor relative L2 error and max relative error.

// The per-tensor comparisons live with the checkpoint reader, for the benchmarks too.
export { maxRelToScale, relL2, worstTensorRelDiff } from '../../shared/weights/compare.js';

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
