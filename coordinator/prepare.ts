// What a job starts from: the data set scanned (and its images put in the blob store the workers are
// served from), the pretrained weights with their head dropped, or a saved run to resume (checked to be
// this job's: model, classes, batch, seed, image size, freeze/BN, and the step a stop saved), and the
// JobConfig every worker is given.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { scanSplit } from '../shared/data/imagefolder.js';
import { readWeightsFile } from '../shared/weights/read.js';
import { readCkpt } from '../shared/weights/ckpt.js';
import { modelFromTensors } from '../shared/model/weights.js';
import type { ModelState } from '../shared/model/state.js';
import { chunkElemsOfKib, DEFAULT_CHUNK_ELEMS } from '../shared/allreduce/ring.js';
import { bucketElemsOfMb } from '../shared/allreduce/buckets.js';
import type { JobConfig, SampleRef } from '../shared/protocol/messages.js';
import { BlobStore } from './blob-store.js';
import type { TrainState } from './checkpoints.js';
import { stepsPerEpoch } from './data-plan.js';
import type { JobOptions } from './job.js';
import type { PartialEpoch } from './stop.js';

export interface Prepared {
  state: ModelState;
  accum: Float32Array;
  config: JobConfig;
  trainRefs: SampleRef[];
  valRefs: SampleRef[];
  store: BlobStore;
  /** Where training starts: epochs and global steps completed (a stop may have saved a step within an epoch). */
  start: { epoch: number; step: number; partial?: PartialEpoch; bestAccuracy: number; bestEpoch: number };
}

export async function prepare(opts: JobOptions, log: Logger): Promise<Prepared> {
  const split = await scanSplit(opts.data, { logger: log });
  if (split.train.samples.length < opts.batchSize) {
    throw new WolfpackError(
      'E_DATA',
      `${opts.data}/train has ${split.train.samples.length} images, fewer than one batch of ${opts.batchSize}`,
    );
  }
  let state: ModelState;
  let accum: Float32Array;
  let flavour: JobConfig['flavour'];
  let width: number;
  const start: Prepared['start'] = { epoch: 0, step: 0, bestAccuracy: -1, bestEpoch: -1 };
  if (opts.resume) {
    const r = await readResume(
      opts.resume,
      opts,
      split.classes,
      stepsPerEpoch(split.train.samples.length, opts.batchSize),
    );
    ({ state, accum } = r);
    flavour = r.flavour;
    width = r.width;
    Object.assign(start, r.start);
    log.info({ from: opts.resume, epoch: start.epoch, step: start.step, best: start.bestAccuracy }, 'resuming');
  } else {
    if (!opts.weights) throw new WolfpackError('E_USAGE', '--weights is required (or --resume DIR)');
    const { tensors } = await readWeightsFile(opts.weights);
    const model = modelFromTensors(tensors, opts.weights, {
      dropHead: true,
      numClasses: split.classes.length,
      seed: opts.seed,
    });
    state = model.state;
    accum = new Float32Array(state.layout.paramCount);
    ({ flavour, width } = model.config);
  }
  log.info(
    { flavour, width, classes: split.classes, train: split.train.samples.length, val: split.val.samples.length },
    'job prepared',
  );

  const store = new BlobStore();
  const trainHashes = await store.add(split.train.samples.map((s) => s.path));
  const valHashes = await store.add(split.val.samples.map((s) => s.path));
  const config: JobConfig = {
    jobId: randomBytes(8).toString('hex'),
    flavour,
    width,
    numClasses: split.classes.length,
    classes: split.classes,
    imageSize: opts.imageSize,
    freeze: opts.freeze,
    bn: opts.bn,
    lr: opts.lr,
    momentum: opts.momentum,
    seed: opts.seed,
    globalBatch: opts.batchSize,
    chunkElems: opts.chunkKib !== undefined ? chunkElemsOfKib(opts.chunkKib) : DEFAULT_CHUNK_ELEMS,
    // only the fields that were set, so a default job's config is unchanged
    ...(opts.augment !== undefined ? { augment: opts.augment } : {}),
    ...(opts.views !== undefined ? { views: opts.views } : {}),
    ...(opts.cacheFeatures !== undefined ? { cacheFeatures: opts.cacheFeatures } : {}),
    ...(opts.featureCacheMb !== undefined ? { featureCacheMb: opts.featureCacheMb } : {}),
    ...(opts.wire !== undefined && opts.wire !== 'fp32' ? { wire: opts.wire } : {}),
    ...(opts.bucketMb ? { bucketElems: bucketElemsOfMb(opts.bucketMb) } : {}),
  };
  return {
    state,
    accum,
    config,
    store,
    start,
    trainRefs: split.train.samples.map((s, i) => ({ h: trainHashes[i]!, l: s.label, i })),
    valRefs: split.val.samples.map((s, i) => ({ h: valHashes[i]!, l: s.label, i })),
  };
}

/** Reads a run directory to resume, checking it belongs to this job's model, data and settings. */
async function readResume(dir: string, opts: JobOptions, classes: string[], steps: number) {
  const statePath = join(dir, 'train-state.json');
  let saved: TrainState;
  try {
    saved = JSON.parse(await readFile(statePath, 'utf8')) as TrainState;
  } catch (e) {
    throw new WolfpackError('E_RESUME', `--resume ${dir}: cannot read ${statePath}: ${(e as Error).message}`);
  }
  const c = saved.config;
  const want: [string, unknown, unknown][] = [
    ['classes', JSON.stringify(c?.classes), JSON.stringify(classes)],
    ['batch size', c?.globalBatch, opts.batchSize],
    ['seed', saved.seed, opts.seed],
    ['image size', c?.imageSize, opts.imageSize],
    ['freeze', c?.freeze, opts.freeze],
    ['bn', c?.bn, opts.bn],
  ];
  const diffs = want.filter(([, a, b]) => a !== b).map(([k, a, b]) => `${k}: saved ${String(a)}, now ${String(b)}`);
  if (diffs.length > 0)
    throw new WolfpackError('E_RESUME', `--resume ${dir} is from a different job (${diffs.join('; ')})`);
  // A stop saves the step it reached within an epoch; that step means the same only with the same epoch length.
  const epochStart = saved.epoch * steps;
  const step = typeof saved.step === 'number' && saved.step > epochStart ? saved.step : epochStart;
  if (step > epochStart && (saved.stepsPerEpoch !== steps || step > epochStart + steps)) {
    throw new WolfpackError(
      'E_RESUME',
      `--resume ${dir}: train-state.json saved step ${saved.step} within epoch ${saved.epoch + 1} ` +
        `of ${String(saved.stepsPerEpoch)} steps, ` +
        `but the data now makes ${steps} steps an epoch (${statePath})`,
    );
  }
  const ckptPath = join(dir, 'last.ckpt');
  const model = modelFromTensors(await readCkpt(ckptPath), ckptPath, { withMomentum: true });
  if (
    model.config.flavour !== c.flavour ||
    model.config.width !== c.width ||
    model.config.numClasses !== classes.length
  ) {
    throw new WolfpackError(
      'E_RESUME',
      `--resume ${dir}: last.ckpt is a ${model.config.flavour} ResNet-50 ` +
        `(width ${model.config.width}, ${model.config.numClasses} classes), ` +
        `train-state.json says ${c.flavour} (width ${c.width}, ${classes.length} classes)`,
    );
  }
  return {
    state: model.state,
    accum: model.accum!,
    flavour: model.config.flavour,
    width: model.config.width,
    start: {
      epoch: saved.epoch,
      step,
      ...(step > epochStart && saved.partial ? { partial: saved.partial } : {}),
      bestAccuracy: saved.bestAccuracy,
      bestEpoch: saved.bestEpoch,
    },
  };
}
