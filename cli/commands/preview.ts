// `wolfpack preview`: the lab's look at one training batch. Takes the first batch of epoch 0's
// permutation (the samples step 0 trains on), applies the training augmentation each sample gets for
// (seed, epoch 0, its index), and writes the grid, labelled with class names, as a PNG.
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import { scanImageFolder } from '../../shared/data/imagefolder.js';
import { renderPreview, type PreviewSample } from '../../shared/data/preview.js';
import { epochPermutation } from '../../shared/data/rng.js';
import { readFileBytes } from '../../shared/fs/read-file.js';
import { createLogger } from '../../shared/log.js';
import type { Command } from '../wolfpack.js';
import { num, parse, str } from '../../shared/config/args.js';

const USAGE =
  'wolfpack preview --data DIR --out batch.png [--batch-size 18] [--seed 0] [--image-size 224] [--columns 6]';

export const preview: Command = {
  summary: 'Write one augmented training batch (the first of epoch 0) as a labelled PNG grid.',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const { values } = parse(argv, {
      data: { type: 'string' },
      out: { type: 'string' },
      'batch-size': { type: 'string' },
      seed: { type: 'string' },
      'image-size': { type: 'string' },
      columns: { type: 'string' },
    });
    const data = str(values, 'data');
    const out = str(values, 'out');
    const batchSize = num(values, 'batch-size', 18, { int: true, min: 1, max: 1024 });
    const seed = num(values, 'seed', 0, { int: true, min: 0, max: Number.MAX_SAFE_INTEGER });
    const size = num(values, 'image-size', 224, { int: true, min: 8, max: 1024 });
    const columns = num(values, 'columns', 6, { int: true, min: 1, max: 64 });
    const logger = createLogger({ base: { component: 'preview' } });

    // DIR/train when the folder is a train/val split (what `wolfpack train --data` takes), else DIR itself.
    const trainDir = join(data, 'train');
    const isSplit = (await stat(trainDir).catch(() => undefined))?.isDirectory() === true;
    const set = await scanImageFolder(isSplit ? trainDir : data, { logger });
    const order = epochPermutation(seed, 0, set.samples.length);
    const picked = Array.from(order.subarray(0, Math.min(batchSize, order.length)));
    if (picked.length < batchSize) {
      logger.warn(
        { samples: set.samples.length, batchSize },
        'fewer training images than --batch-size: showing them all',
      );
    }
    const samples: PreviewSample[] = [];
    for (const index of picked) {
      const s = set.samples[index]!;
      samples.push({ bytes: await readFileBytes(s.path, 'image'), label: set.classes[s.label]!, index });
    }
    await renderPreview(samples, out, { size, columns, seed, epoch: 0, logger });

    const counts = set.classes.map((c) => `${c} ${samples.filter((s) => s.label === c).length}`).join(', ');
    process.stdout.write(
      `wrote ${out}: ${samples.length} of ${set.samples.length} training images from ${set.root} ` +
        `(${counts}), seed ${seed}, epoch 0, ${size}x${size}\n`,
    );
    return 0;
  },
};
