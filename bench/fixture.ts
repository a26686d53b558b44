// The data set and starting checkpoint the training benchmarks use: the demo's (cli/commands/demo.ts),
// made the same deterministic way -- 120+30 images per class of the synthetic dogs-vs-wolves set, a
// random ResNet-50 (MindSpore flavour, 10-class head) whose BatchNorm statistics are calibrated on
// every other training image at 64x64 -- so the figures describe what `npm start` runs. Reused from
// runs/demo when `wolfpack demo` already wrote it there.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DEMO_DEFAULTS, DEMO_DIR } from '../cli/commands/demo.js';
import { selectBackend } from '../shared/backend/select.js';
import { scanSplit } from '../shared/data/imagefolder.js';
import { generateSyntheticCanidae } from '../shared/data/synthetic.js';
import { evalTransform } from '../shared/data/transforms.js';
import { calibrateBatchNorm } from '../shared/model/calibrate.js';
import { initModel, tensorsFromModel } from '../shared/model/weights.js';
import { packageRoot } from '../shared/paths.js';
import { writeCkpt } from '../shared/weights/ckpt.js';

export interface Fixture {
  data: string;
  weights: string;
}

/** The demo's data set and calibrated checkpoint, generated (as the demo does) where missing. */
export async function demoFixture(progress?: (line: string) => void): Promise<Fixture> {
  const dir = join(packageRoot, DEMO_DIR);
  const data = join(dir, 'data');
  const weights = join(dir, 'resnet50.ckpt');
  if (!existsSync(join(data, 'train'))) {
    progress?.(`generating the demo data set in ${data}`);
    await generateSyntheticCanidae(data, { trainPerClass: 120, valPerClass: 30, seed: 0 });
  }
  if (!existsSync(weights)) {
    progress?.(`writing the demo's calibrated starting checkpoint to ${weights}`);
    await mkdir(dir, { recursive: true });
    const state = initModel({ flavour: 'mindspore', width: 64, numClasses: 10 }, 0);
    await selectBackend('auto');
    const { train } = await scanSplit(data);
    const picks = train.samples.filter((_, i) => i % 2 === 0);
    const size = DEMO_DEFAULTS.imageSize;
    const images = new Float32Array(picks.length * size * size * 3);
    for (const [k, s] of picks.entries()) images.set(await evalTransform(await readFile(s.path), size, s.path), k * size * size * 3);
    await calibrateBatchNorm(state, images, picks.length, size);
    await writeCkpt(weights, tensorsFromModel(state));
  }
  return { data, weights };
}
