// What a run leaves in --out: best.ckpt (weights, MindSpore format, saved when validation accuracy
// ties or beats the best so far, as the lab does), last.ckpt (weights plus Momentum accumulators as
// moments.*) with train-state.json (epoch, step, seed, best so far) to resume from, and
// metrics.jsonl (one line per epoch). Every file is written atomically: a crash mid-save leaves the
// previous file intact.
import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../shared/fs/atomic-write.js';
import type { ModelState } from '../shared/model/state.js';
import { tensorsFromModel } from '../shared/model/weights.js';
import { writeCkpt } from '../shared/weights/ckpt.js';
import type { JobConfig } from '../shared/protocol/messages.js';

export interface TrainState {
  /** Epochs completed. */
  epoch: number;
  /** Global steps completed. */
  step: number;
  seed: number;
  bestAccuracy: number;
  bestEpoch: number;
  config: Omit<JobConfig, 'jobId'>;
}

export interface EpochMetrics {
  epoch: number;
  train_loss: number;
  last_loss: number;
  val_accuracy: number;
  images_per_s: number;
  step_time_s: number;
  allreduce_share: number;
  skipped_steps: number;
  epoch_time_s: number;
  workers: number;
}

export class RunOutput {
  readonly dir: string;

  constructor(dir: string) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  async saveBest(state: ModelState): Promise<void> {
    await writeCkpt(join(this.dir, 'best.ckpt'), tensorsFromModel(state));
  }

  async saveLast(state: ModelState, accum: Float32Array, train: TrainState): Promise<void> {
    await writeCkpt(join(this.dir, 'last.ckpt'), tensorsFromModel(state, accum));
    await writeFileAtomic(join(this.dir, 'train-state.json'), Buffer.from(JSON.stringify(train, null, 2) + '\n'));
  }

  async appendMetrics(m: EpochMetrics): Promise<void> {
    await appendFile(join(this.dir, 'metrics.jsonl'), JSON.stringify(m) + '\n');
  }
}
