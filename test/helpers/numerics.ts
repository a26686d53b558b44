// Comparison helpers for numeric tests: whole-tensor relative L2 error and max relative error.

/** ||a - b|| / max(||b||, tiny), in float64. */
export function relL2(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    const d = a[i] - b[i];
    num += d * d;
    den += b[i] * b[i];
  }
  return Math.sqrt(num) / Math.max(Math.sqrt(den), 1e-30);
}

/** max |a-b| / max |b| (error relative to the tensor's scale; a scale below `floor` counts as `floor`). */
export function maxRelToScale(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i] - b[i]));
    s = Math.max(s, Math.abs(b[i]));
  }
  return m / Math.max(s, floor);
}

/**
 * The largest maxRelToScale over the tensors of `want`, each against its own scale (below 1e-12
 * counts as 1e-12), with `got`'s tensor of the same name: how far two checkpoints are apart.
 */
export function worstTensorRelDiff(got: ReadonlyMap<string, ArrayLike<number>>, want: ReadonlyMap<string, ArrayLike<number>>): number {
  let worst = 0;
  for (const [name, w] of want) {
    const g = got.get(name);
    if (g === undefined) throw new Error(`tensor ${name} is missing`);
    worst = Math.max(worst, maxRelToScale(g, w, 1e-12));
  }
  return worst;
}

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
