// The data set and starting checkpoint the training benchmarks use: the demo's (shared/demo/assets.ts),
// made the same deterministic way -- 120+30 images per class of the synthetic dogs-vs-wolves set, a
// random ResNet-50 (MindSpore flavour, 10-class head) whose BatchNorm statistics are calibrated on
// every other training image at 64x64 -- so the figures describe what `npm start` runs. Reused from
// runs/demo when `wolfpack demo` already wrote it there.
import { DEMO_DIR, demoAssets } from '../shared/demo/assets.js';
import { workPath } from '../shared/paths.js';

export interface Fixture {
  data: string;
  weights: string;
}

/** The demo's data set and calibrated checkpoint, generated (as the demo does) where missing. */
export async function demoFixture(progress?: (line: string) => void): Promise<Fixture> {
  return demoAssets(workPath(DEMO_DIR), progress);
}
