// `wolfpack demo` (what `npm start` runs): the embedded default. Generates, deterministically, a
// small two-class ImageFolder data set and a starting ResNet-50 checkpoint in MindSpore format (with
// a 10-class head, like the lab's CIFAR-10 resnet50.ckpt, which training drops), then trains with
// two local workers at a reduced image size and prints the lab's lines. No pretrained weights can be
// downloaded where the demo must run, so the starting network is a random ResNet-50 whose BatchNorm
// statistics are calibrated on training images (well-scaled features, as a pretrained network has),
// and the demo trains the lab's "fixed features" variant: a new head on the frozen backbone.
import { join } from 'node:path';
import { DEMO_DEFAULTS, DEMO_DIR, demoAssets } from '../../shared/demo/assets.js';
import { createPrinter, jsonRequested } from '../../shared/log.js';
import type { Command } from '../wolfpack.js';
import { LOCAL_TRAIN_SPECS, trainLocally } from './train.js';

export const demo: Command = {
  summary: 'Generate a small dogs-vs-wolves-like data set and a starting checkpoint, then train on 2 local workers.',
  usage: 'wolfpack demo [any `wolfpack train` flag to override the demo defaults]',
  flags: LOCAL_TRAIN_SPECS,
  examples: [
    "wolfpack demo                       # what `npm start` runs: 2 workers, the demo's defaults",
    'wolfpack demo --epochs 3 --workers 3',
    'wolfpack demo --resume runs/demo/out   # continue a demo run stopped with Ctrl-C',
  ],
  async run(argv) {
    const { data, weights } = await demoAssets(DEMO_DIR, createPrinter(jsonRequested(argv)));
    // The demo's folder is its own: each run starts afresh there (--resume continues one instead).
    return trainLocally(
      argv,
      { data, weights, out: join(DEMO_DIR, 'out'), ...DEMO_DEFAULTS },
      { command: 'demo', overwrite: true },
    );
  },
};
