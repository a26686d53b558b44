// The demo's assets: a deterministic two-class ImageFolder data set and a calibrated starting ResNet-50
// checkpoint in MindSpore format, and the demo's training defaults. `wolfpack demo` trains on them and the
// training benchmarks measure on them.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { selectBackend } from '../backend/select.js';
import { scanSplit } from '../data/imagefolder.js';
import { generateSyntheticCanidae } from '../data/synthetic.js';
import { evalTransform } from '../data/transforms.js';
import { calibrateBatchNorm } from '../model/calibrate.js';
import { initModel, tensorsFromModel } from '../model/weights.js';
import { writeCkpt } from '../weights/ckpt.js';

export const DEMO_DIR = 'runs/demo';

// lr: a random network's pooled features are large (|f|^2 ~ 3000 at 64x64), so the lab's 0.001 with
// momentum 0.9 overshoots; 0.0002 lowers the loss steadily (measured with `wolfpack demo --lr X`).
export const DEMO_DEFAULTS = {
  workers: 2, epochs: 20, batchSize: 18, imageSize: 64, freeze: 'backbone', bn: 'frozen', lr: 0.0002,
} as const;

/**
 * The demo's data set and calibrated starting checkpoint under `dir`, generated where missing (the
 * benchmarks use the same assets). `say` reports what is being written.
 */
export async function demoAssets(dir: string, say: (line: string) => void = () => undefined): Promise<{ data: string; weights: string }> {
  const data = join(dir, 'data');
  const weights = join(dir, 'resnet50.ckpt');
  if (!existsSync(join(data, 'train'))) {
    say(`generating the demo data set in ${data}`);
    await generateSyntheticCanidae(data, { trainPerClass: 120, valPerClass: 30, seed: 0 });
  }
  if (!existsSync(weights)) {
    say(`writing a starting checkpoint (ResNet-50, MindSpore format, 10-class head) to ${weights}`);
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
