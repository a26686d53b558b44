// Which samples each rank trains on in each step. One global permutation per epoch from the seed
// (pure function of seed and epoch), cut into global batches (the last, partial batch is dropped as
// the lab's dataset.batch(drop_remainder=True) does), and each global batch cut into contiguous
// rank shares whose sizes differ by at most one. Gradients are weighted by sample count, so the sum
// over ranks is the global-batch mean whatever the split.
import { epochPermutation } from '../shared/data/rng.js';

/** Sizes of `world` contiguous shares of `total` items (the first `total % world` get one more). */
export function shareSizes(total: number, world: number): number[] {
  return Array.from({ length: world }, (_, r) => Math.floor(total / world) + (r < total % world ? 1 : 0));
}

/** The global batches of an epoch: arrays of sample indices. */
export function epochBatches(samples: number, globalBatch: number, seed: number, epoch: number): Uint32Array[] {
  const perm = epochPermutation(seed, epoch, samples);
  const steps = Math.floor(samples / globalBatch);
  return Array.from({ length: steps }, (_, s) => perm.subarray(s * globalBatch, (s + 1) * globalBatch));
}

/** Rank `rank`'s share of a batch (or of any index list, e.g. the validation set). */
export function rankShare<T extends ArrayLike<number>>(batch: T, world: number, rank: number): number[] {
  const sizes = shareSizes(batch.length, world);
  const begin = sizes.slice(0, rank).reduce((a, b) => a + b, 0);
  return Array.from({ length: sizes[rank]! }, (_, i) => batch[begin + i]!);
}

/** Number of steps in an epoch. */
export function stepsPerEpoch(samples: number, globalBatch: number): number {
  return Math.floor(samples / globalBatch);
}
