// `wolfpack demo` (what `npm start` runs): the embedded default. Generates, deterministically, a
// small two-class ImageFolder data set and a starting ResNet-50 checkpoint in MindSpore format (with
// a 10-class head, like the lab's CIFAR-10 resnet50.ckpt, which training drops), then trains with
// two local workers at a reduced image size and prints the lab's lines.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { generateSyntheticCanidae } from '../../shared/data/synthetic.js';
import { initModel, tensorsFromModel } from '../../shared/model/weights.js';
import { writeCkpt } from '../../shared/weights/ckpt.js';
import type { Command } from '../wolfpack.js';
import { trainLocally } from './train.js';

export const DEMO_DIR = 'runs/demo';

export const DEMO_DEFAULTS = {
  workers: 2, epochs: 20, batchSize: 18, imageSize: 64, freeze: 'backbone', bn: 'train', lr: 0.01,
} as const;

export const demo: Command = {
  summary: 'Generate a small dogs-vs-wolves-like data set and a starting checkpoint, then train on 2 local workers.',
  usage: 'wolfpack demo [any `wolfpack train` flag to override the demo defaults]',
  async run(argv) {
    const data = join(DEMO_DIR, 'data');
    const weights = join(DEMO_DIR, 'resnet50.ckpt');
    if (!existsSync(join(data, 'train'))) {
      process.stdout.write(`generating the demo data set in ${data}\n`);
      await generateSyntheticCanidae(data, { trainPerClass: 60, valPerClass: 20, seed: 0 });
    }
    if (!existsSync(weights)) {
      process.stdout.write(`writing a starting checkpoint (ResNet-50, MindSpore format, 10-class head) to ${weights}\n`);
      await mkdir(DEMO_DIR, { recursive: true });
      await writeCkpt(weights, tensorsFromModel(initModel({ flavour: 'mindspore', width: 64, numClasses: 10 }, 0)));
    }
    return trainLocally(argv, { data, weights, out: join(DEMO_DIR, 'out'), ...DEMO_DEFAULTS });
  },
};
