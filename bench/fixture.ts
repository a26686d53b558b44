// The data set and starting checkpoint the training benchmarks use, made the demo's deterministic way
// (shared/demo/assets.ts) -- 120+30 images per class of the synthetic dogs-vs-wolves set, a random
// ResNet-50 (MindSpore flavour, 10-class head) whose BatchNorm statistics are calibrated on every other
// training image at 64x64 -- but of the set's 'mixed' look (some of each class borrow the other's colours
// and scenery), on which every figure in BENCHMARKS.md was measured. Kept in runs/bench-data.
import { BENCH_DATA_DIR, demoAssets } from '../shared/demo/assets.js';
import { workPath } from '../shared/paths.js';

export interface Fixture {
  data: string;
  weights: string;
}

/** The benchmarks' data set and calibrated checkpoint, generated where missing. */
export async function demoFixture(progress?: (line: string) => void): Promise<Fixture> {
  return demoAssets(workPath(BENCH_DATA_DIR), progress, 'mixed');
}
