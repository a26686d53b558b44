// What a run leaves in --out: best.ckpt (weights, MindSpore format, saved when validation accuracy
// ties or beats the best so far, as the lab does), last.ckpt (weights plus Momentum accumulators as
// moments.*) with train-state.json (epoch, step, seed, best so far) to resume from, and
// metrics.jsonl (one line per epoch). Every file is written atomically: a crash mid-save leaves the
// previous file intact. Told which parts of the state training can change (mutableRanges), RunOutput
// encodes the other tensors once and reuses their bytes at every save: with a frozen backbone an
// epoch's checkpoints then cost the head's encoding and the disk writes, not 25M floats' layout change.
import { appendFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../shared/fs/atomic-write.js';
import type { ModelState, MutableRanges } from '../shared/model/state.js';
import { modelTensorSources } from '../shared/model/weights.js';
import { encodeCkptTensor, writeCkptChunks } from '../shared/weights/ckpt.js';
import type { JobConfig } from '../shared/protocol/messages.js';
import type { PartialEpoch } from './stop.js';

/** Where a run writes when no --out (or `out`) is given. */
export const DEFAULT_OUT = 'runs/latest';

export interface TrainState {
  /** Epochs completed. */
  epoch: number;
  /** Global steps completed: epoch x stepsPerEpoch at an epoch end, more when a stop saved a step within the epoch. */
  step: number;
  /** Steps in an epoch (the data's training images / batch size); a step within an epoch resumes only with the same. */
  stepsPerEpoch?: number;
  /** The figures of the epoch under way when a stop saved a step within it. */
  partial?: PartialEpoch;
  seed: number;
  bestAccuracy: number;
  bestEpoch: number;
  config: Omit<JobConfig, 'jobId'>;
  /**
   * What `--resume DIR` alone needs besides config: the data folder (absolute), the epochs and the workers asked for.
   */
  job?: { data: string; epochs: number; workers: number };
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
  /**
   * Images trained in the epoch's completed steps (skipped ones included), summed from the workers'
   * all-reduced per-step counts: steps x global batch when no sample was lost or counted twice.
   */
  samples?: number;
  /** Of epoch_time_s: the epoch-end evaluation, and fetching the changed state from rank 0. */
  eval_s?: number;
  state_fetch_s?: number;
  /** Writing best.ckpt (when improved) and last.ckpt after the epoch (not in epoch_time_s). */
  checkpoint_s?: number;
}

export class RunOutput {
  readonly dir: string;
  /** Encoded tensors that lie wholly outside the mutable ranges, by name (shared by best and last). */
  private readonly fixed = new Map<string, Uint8Array>();

  /** `mutable`: the parts of the state that can change during the run; without it every save encodes everything. */
  constructor(
    dir: string,
    private readonly mutable?: MutableRanges,
  ) {
    this.dir = dir;
  }

  async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
  }

  private chunks(state: ModelState, accum?: Float32Array): Uint8Array[] {
    return modelTensorSources(state, accum).map((src) => {
      const range = this.mutable?.[src.kind];
      const fixed = range !== undefined && (src.offset + src.size <= range.begin || src.offset >= range.end);
      const hit = fixed ? this.fixed.get(src.name) : undefined;
      if (hit) return hit;
      const bytes = encodeCkptTensor(src.name, src.tensor());
      if (fixed) this.fixed.set(src.name, bytes);
      return bytes;
    });
  }

  async saveBest(state: ModelState): Promise<void> {
    await writeCkptChunks(join(this.dir, 'best.ckpt'), this.chunks(state));
  }

  async saveLast(state: ModelState, accum: Float32Array, train: TrainState): Promise<void> {
    await writeCkptChunks(join(this.dir, 'last.ckpt'), this.chunks(state, accum));
    await writeFileAtomic(join(this.dir, 'train-state.json'), Buffer.from(JSON.stringify(train, null, 2) + '\n'));
  }

  async appendMetrics(m: EpochMetrics): Promise<void> {
    await appendFile(join(this.dir, 'metrics.jsonl'), JSON.stringify(m) + '\n');
  }
}
