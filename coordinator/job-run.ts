// A running job's shared state: what it was started with (options, the prepared state, the server and
// the cluster, the run folder, the timeouts) and how far it is (epoch, steps done, where the next ring's
// state comes from, the epoch's figures). The step loop (./steps.ts), the epoch end (./epoch-end.ts) and
// recovery and stopping (./recovery.ts) each take it; ./job.ts creates it and drives the epochs.
import { resolve } from 'node:path';
import type { Logger } from '../shared/log.js';
import type { ModelState, MutableRanges } from '../shared/model/state.js';
import type { JobConfig, MessageOf } from '../shared/protocol/messages.js';
import type { BlobStore } from './blob-store.js';
import type { RunOutput, TrainState } from './checkpoints.js';
import type { Cluster } from './cluster.js';
import { stepsPerEpoch } from './data-plan.js';
import { EpochAccumulator } from './epoch-figures.js';
import { DEFAULT_HOLD_TIMEOUT_MS } from './hold.js';
import type { JobOptions, JobResult } from './job.js';
import type { Prepared } from './prepare.js';
import type { CoordinatorServer, Member } from './server.js';
import { DEFAULT_STOP_TIMEOUT_MS, type PartialEpoch } from './stop.js';

/** Images sent to a worker in one `blobs` frame, at most (one image alone may be larger). */
const BLOBS_MAX_BYTES = 32 * 1024 * 1024;

export class JobRun {
  readonly state: ModelState;
  readonly accum: Float32Array;
  readonly config: JobConfig;
  readonly store: BlobStore;
  /** Steps in an epoch. */
  readonly S: number;
  readonly stepTimeout: number;
  readonly joinTimeout: number;
  readonly minWorkers: number;
  readonly maxBadSteps: number;
  readonly holdTimeout: number;
  readonly stopTimeout: number;
  readonly result: JobResult;
  /** Epochs completed. */
  epoch: number;
  /** Global steps completed (a stop may have saved one within the epoch). */
  done: number;
  /** Where the next ring's rank 0 gets the state: the coordinator's copy (the start, or nobody survived), or a peer. */
  source: 'coordinator' | 'peer' = 'coordinator';
  needRing = true;
  badInARow = 0;
  acc: EpochAccumulator;
  /** For the progress line's pace: when and at which step this process started training. */
  readonly clock: { t0: number; done0: number };
  /**
   * Replies to the step not counted yet: a loss can cut it short after some members replied, and one of
   * them may be the survivor that holds it (recover() counts the new rank 0's).
   */
  readonly uncounted = new Map<Member, MessageOf<'stepDone'>>();

  constructor(
    readonly opts: JobOptions,
    readonly log: Logger,
    readonly server: CoordinatorServer,
    readonly cluster: Cluster,
    readonly p: Prepared,
    readonly ranges: MutableRanges,
    readonly output: RunOutput,
    readonly untilStop: <T>(w: Promise<T>) => Promise<T>,
  ) {
    ({ state: this.state, accum: this.accum, config: this.config, store: this.store } = p);
    this.S = stepsPerEpoch(p.trainRefs.length, opts.batchSize);
    this.stepTimeout = opts.stepTimeoutMs ?? opts.timeoutMs * 10;
    this.joinTimeout = opts.joinTimeoutMs ?? 10 * 60_000;
    this.minWorkers = opts.minWorkers ?? 1;
    this.maxBadSteps = opts.maxBadSteps ?? 5;
    this.holdTimeout = opts.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS;
    this.stopTimeout = opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    this.result = { bestAccuracy: p.start.bestAccuracy, bestEpoch: p.start.bestEpoch, epochs: [] };
    this.epoch = p.start.epoch;
    this.done = p.start.step;
    this.acc = EpochAccumulator.from(p.start.partial);
    this.clock = { t0: performance.now(), done0: this.done };
  }

  /** Sends `m` the images among `hashes` it has not got yet, in frames of at most BLOBS_MAX_BYTES. */
  async sendBlobs(m: Member, hashes: string[]): Promise<void> {
    const { store, cluster } = this;
    const missing = store.missing(m.hello.memberId, hashes);
    for (let i = 0; i < missing.length;) {
      const items: { h: string; n: number }[] = [];
      const parts: Uint8Array[] = [];
      let bytes = 0;
      while (i < missing.length && (items.length === 0 || bytes + store.bytes(missing[i]!).length <= BLOBS_MAX_BYTES)) {
        const h = missing[i]!;
        const b = store.bytes(h);
        items.push({ h, n: b.length });
        parts.push(b);
        bytes += b.length;
        i++;
      }
      await cluster.send(m, { type: 'blobs', items }, Buffer.concat(parts));
    }
  }

  /**
   * train-state.json beside last.ckpt: `completed` epochs, the steps done, and (stopped within an epoch) its figures so
   * far.
   */
  trainState(completed: number, partial?: PartialEpoch): TrainState {
    const { jobId: _jobId, ...persisted } = this.config;
    const { opts, result } = this;
    return {
      epoch: completed,
      step: this.done,
      stepsPerEpoch: this.S,
      ...(partial ? { partial } : {}),
      seed: opts.seed,
      bestAccuracy: result.bestAccuracy,
      bestEpoch: result.bestEpoch,
      config: persisted,
      job: { data: resolve(opts.data), epochs: opts.epochs, workers: opts.workers },
    };
  }
}
