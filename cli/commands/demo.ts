// `wolfpack demo` (what `npm start` runs): the embedded default. Generates, deterministically, a
// small two-class ImageFolder data set and a starting ResNet-50 checkpoint in MindSpore format (with
// a 10-class head, like the lab's CIFAR-10 resnet50.ckpt, which training drops), then trains with
// two local workers at a reduced image size and prints the lab's lines. No pretrained weights can be
// downloaded where the demo must run, so the starting network is a random ResNet-50 whose BatchNorm
// statistics are calibrated on training images (well-scaled features, as a pretrained network has),
// and the demo trains the lab's "fixed features" variant: a new head on the frozen backbone.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { readFile } from 'node:fs/promises';
import { selectBackend } from '../../shared/backend/select.js';
import { createPrinter, jsonRequested } from '../../shared/log.js';
import { scanSplit } from '../../shared/data/imagefolder.js';
import { generateSyntheticCanidae } from '../../shared/data/synthetic.js';
import { evalTransform } from '../../shared/data/transforms.js';
import { calibrateBatchNorm } from '../../shared/model/calibrate.js';
import { initModel, tensorsFromModel } from '../../shared/model/weights.js';
import { writeCkpt } from '../../shared/weights/ckpt.js';
import type { Command } from '../wolfpack.js';
import { trainLocally } from './train.js';

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

export const demo: Command = {
  summary: 'Generate a small dogs-vs-wolves-like data set and a starting checkpoint, then train on 2 local workers.',
  usage: 'wolfpack demo [any `wolfpack train` flag to override the demo defaults]',
  async run(argv) {
    const { data, weights } = await demoAssets(DEMO_DIR, createPrinter(jsonRequested(argv)));
    return trainLocally(argv, { data, weights, out: join(DEMO_DIR, 'out'), ...DEMO_DEFAULTS });
  },
};
