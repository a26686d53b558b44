// How far apart two checkpoints are: every tensor read as float32 by name, and each tensor's largest
// difference relative to its own scale. The tests compare runs with it (a resumed run against an
// uninterrupted one) and so does `wolfpack bench chaos` (a run with faults against one without).
import { readCkpt } from './ckpt.js';
import { toFloat32 } from './host-tensor.js';

/** Every tensor of a MindSpore checkpoint as float32, by name. */
export async function readCkptFloats(file: string): Promise<Map<string, Float32Array>> {
  const m = await readCkpt(file);
  return new Map([...m].map(([k, v]) => [k, toFloat32(v)]));
}

/** ||a - b|| / max(||b||, tiny), in float64: the relative L2 error of `a` against `b`. */
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

/** max |a-b| / max |b| (error relative to the tensor's scale; a scale below `floor` counts as `floor`). */
export function maxRelToScale(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-30): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} != ${b.length}`);
  let m = 0;
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    m = Math.max(m, Math.abs(a[i]! - b[i]!));
    s = Math.max(s, Math.abs(b[i]!));
  }
  return m / Math.max(s, floor);
}

/**
 * The tensor of `want` farthest from `got`'s tensor of the same name, by maxRelToScale against its own
 * scale (below 1e-12 counts as 1e-12), and that distance; a tensor missing from `got` is an error.
 */
export function worstTensor(
  got: ReadonlyMap<string, ArrayLike<number>>,
  want: ReadonlyMap<string, ArrayLike<number>>,
): { name: string; rel: number } {
  let worst = { name: '', rel: 0 };
  for (const [name, w] of want) {
    const g = got.get(name);
    if (g === undefined) throw new Error(`tensor ${name} is missing`);
    const rel = maxRelToScale(g, w, 1e-12);
    // A NaN (non-finite weights) is the worst there is, as Math.max would have it.
    if (worst.name === '' || (!Number.isNaN(worst.rel) && !(rel <= worst.rel))) worst = { name, rel };
  }
  return worst;
}

/** worstTensor's distance alone: how far two checkpoints are apart. */
export function worstTensorRelDiff(
  got: ReadonlyMap<string, ArrayLike<number>>,
  want: ReadonlyMap<string, ArrayLike<number>>,
): number {
  return worstTensor(got, want).rel;
}
