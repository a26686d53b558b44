// The coordinator's job: scan the data, load the pretrained weights and drop their head (or resume
// a saved run), admit workers, form the ring (the weights go to rank 0 only, which relays them), then
// drive the epochs: each step's global batch is split over the ranks and the image bytes they lack
// are sent with it; at each epoch end the validation set is split over the workers, the replicas'
// checksums are compared, and best/last checkpoints and metrics are written.
//
// Faults: a worker that dies, freezes or is cut off is lost (coordinator/cluster.ts). The step in
// flight is aborted on the survivors, the ring is re-formed without the lost worker (the survivor
// that got furthest relays its state to the others), the global batch is re-split over the new ring,
// and training goes on from the last completed step: no sample of the epoch is lost. Workers that
// join later are admitted at a step boundary and get the current state from a peer.
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { scanSplit } from '../shared/data/imagefolder.js';
import { readWeightsFile } from '../shared/weights/read.js';
import { readCkpt } from '../shared/weights/ckpt.js';
import { modelFromTensors } from '../shared/model/weights.js';
import { mutableRanges, type ModelState } from '../shared/model/state.js';
import { stateChecksum } from '../shared/train/checksum.js';
import { DEFAULT_CHUNK_ELEMS } from '../shared/allreduce/ring.js';
import type { CoordinatorSecurity } from '../shared/auth/config.js';
import type { JobConfig, MessageOf, SampleRef } from '../shared/protocol/messages.js';
import { receiveState, sendState, wholeRanges } from '../shared/protocol/state-transfer.js';
import { renderCurves } from '../shared/report/curves.js';
import { BlobStore } from './blob-store.js';
import { RunOutput, type EpochMetrics, type TrainState } from './checkpoints.js';
import { Cluster, describe, MemberLost } from './cluster.js';
import { epochBatches, rankShare, stepsPerEpoch } from './data-plan.js';
import { DEFAULT_HOLD_TIMEOUT_MS, settleWithin } from './hold.js';
import { CoordinatorServer, type Member } from './server.js';
import { DEFAULT_STOP_TIMEOUT_MS, StopRequested, stopReason, whenStopped, type PartialEpoch, type StopOutcome } from './stop.js';
import { isPromise, joinedEvent, lostEvent, memberInfos, stepEvent, type JobEvents } from './dashboard/events.js';

export interface JobOptions {
  data: string;
  weights?: string;
  workers: number;
  /** Below this many workers, wait for replacements before going on (default 1). */
  minWorkers?: number;
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  freeze: 'none' | 'backbone';
  bn: 'train' | 'frozen';
  imageSize: number;
  seed: number;
  out: string;
  /** Continue the run saved in this directory (last.ckpt + train-state.json). */
  resume?: string;
  host: string;
  port: number;
  /** A worker silent this long (no heartbeat, no reply) is lost (ms). */
  timeoutMs: number;
  /** Longest wait for a step, an evaluation or a state transfer (ms; default 10 x timeoutMs). */
  stepTimeoutMs?: number;
  /** Longest wait for workers to join (ms; default 10 minutes). */
  joinTimeoutMs?: number;
  /** Longest wait for replacements once fewer than --min-workers are left (ms; default joinTimeoutMs). */
  rejoinTimeoutMs?: number;
  /** Stop after this many non-finite steps in a row (default 5). */
  maxBadSteps?: number;
  /** Steps sent ahead of the one being computed, so workers decode while they compute. */
  lookahead?: number;
  security?: CoordinatorSecurity;
  // feature cache (JobConfig fields, worker/feature-cache.ts); absent: augment train, views 0, no cache
  augment?: 'train' | 'none';
  views?: number;
  cacheFeatures?: boolean;
  featureCacheMb?: number;
  logger: Logger;
  /** The lab's human-readable lines (stdout). */
  print: (line: string) => void;
  /** A transient progress line (a terminal's status line); undefined when not on a terminal. */
  progress?: (line: string) => void;
  /** Called once the server listens (single-node mode starts its workers then). */
  onListening?: (port: number) => void | Promise<void>;
  /** Live progress for a dashboard or a program (coordinator/dashboard/events.ts); must not throw. */
  events?: JobEvents;
  /** Longest a `step` or `epoch` callback's promise holds the run (ms; default 10 minutes), then it goes on. */
  holdTimeoutMs?: number;
  /**
   * Aborting it stops the job at once (./stop.ts): the step in flight is aborted, the state after the last
   * completed step is saved in last.ckpt, the workers are told to stop, and runJob resolves with `stopped`.
   */
  stop?: AbortSignal;
  /** Longest a stop waits for the workers' answers and their state (ms; default 5 s). */
  stopTimeoutMs?: number;
}

export interface JobResult {
  bestAccuracy: number;
  bestEpoch: number;
  epochs: EpochMetrics[];
  /** Set when the job ended on a stop request rather than after its last epoch. */
  stopped?: StopOutcome;
}

const BLOBS_MAX_BYTES = 32 * 1024 * 1024;

/** Per-epoch training figures; survives a re-formed ring within the epoch. */
class EpochAccumulator {
  lossSum = 0;
  lastLoss = NaN;
  steps = 0;
  skipped = 0;
  allreduceMs = 0;
  totalMs = 0;
  /** Time the run was held at step boundaries (not training time). */
  heldMs = 0;
  /** Images in the epoch's completed steps, skipped ones included: the sum of the all-reduced counts they report. */
  samples = 0;
  readonly t0 = performance.now();

  /** An epoch's accumulator that goes on from figures a stop saved (train-state.json `partial`). */
  static from(p: PartialEpoch | undefined): EpochAccumulator {
    const a = new EpochAccumulator();
    if (p) Object.assign(a, { lossSum: p.lossSum, lastLoss: p.lastLoss ?? NaN, steps: p.steps, skipped: p.skipped, samples: p.samples });
    return a;
  }

  /** The figures worth keeping across a stop (timings are not: they restart with the run). */
  partial(): PartialEpoch {
    return { lossSum: this.lossSum, lastLoss: Number.isFinite(this.lastLoss) ? this.lastLoss : null, steps: this.steps, skipped: this.skipped, samples: this.samples };
  }

  /** Counts a completed step from one of its replies (every rank's carries the same all-reduced loss and count). */
  add(d: MessageOf<'stepDone'>): void {
    this.samples += d.samples;
    if (d.skipped) {
      this.skipped++;
    } else {
      this.lossSum += d.loss;
      this.lastLoss = d.loss;
      this.steps++;
    }
  }
}

/** 75 s -> '1:15', 4000 s -> '1:06:40'. */
function clockTime(seconds: number): string {
  const t = Math.max(0, Math.round(seconds));
  const [h, m, sec] = [Math.floor(t / 3600), Math.floor((t % 3600) / 60), t % 60];
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}` : `${m}:${String(sec).padStart(2, '0')}`;
}

/**
 * The terminal's progress line: where the run is, the step's loss, time since this process started training
 * and the time left at the pace of the steps it has run (epoch ends, evaluations and holds included).
 */
export function progressLine(epoch: number, epochs: number, done: number, steps: number, loss: number, clock: { t0: number; done0: number }, now = performance.now()): string {
  const elapsed = (now - clock.t0) / 1000;
  const ran = done - clock.done0;
  const eta = ran > 0 ? clockTime((elapsed / ran) * (epochs * steps - done)) : '?';
  return `epoch ${epoch + 1}/${epochs} step ${done - epoch * steps}/${steps} loss ${loss.toFixed(4)}  elapsed ${clockTime(elapsed)}  ETA ${eta}`;
}

interface Prepared {
  state: ModelState;
  accum: Float32Array;
  config: JobConfig;
  trainRefs: SampleRef[];
  valRefs: SampleRef[];
  store: BlobStore;
  /** Where training starts: epochs and global steps completed (a stop may have saved a step within an epoch). */
  start: { epoch: number; step: number; partial?: PartialEpoch; bestAccuracy: number; bestEpoch: number };
}

async function prepare(opts: JobOptions, log: Logger): Promise<Prepared> {
  const split = await scanSplit(opts.data, { logger: log });
  if (split.train.samples.length < opts.batchSize) {
    throw new WolfpackError('E_DATA', `${opts.data}/train has ${split.train.samples.length} images, fewer than one batch of ${opts.batchSize}`);
  }
  let state: ModelState;
  let accum: Float32Array;
  let flavour: JobConfig['flavour'];
  let width: number;
  const start: Prepared['start'] = { epoch: 0, step: 0, bestAccuracy: -1, bestEpoch: -1 };
  if (opts.resume) {
    const r = await readResume(opts.resume, opts, split.classes, stepsPerEpoch(split.train.samples.length, opts.batchSize));
    ({ state, accum } = r);
    flavour = r.flavour;
    width = r.width;
    Object.assign(start, r.start);
    log.info({ from: opts.resume, epoch: start.epoch, step: start.step, best: start.bestAccuracy }, 'resuming');
  } else {
    if (!opts.weights) throw new WolfpackError('E_USAGE', '--weights is required (or --resume DIR)');
    const { tensors } = await readWeightsFile(opts.weights);
    const model = modelFromTensors(tensors, opts.weights, { dropHead: true, numClasses: split.classes.length, seed: opts.seed });
    state = model.state;
    accum = new Float32Array(state.layout.paramCount);
    ({ flavour, width } = model.config);
  }
  log.info({ flavour, width, classes: split.classes, train: split.train.samples.length, val: split.val.samples.length }, 'job prepared');

  const store = new BlobStore();
  const trainHashes = await store.add(split.train.samples.map((s) => s.path));
  const valHashes = await store.add(split.val.samples.map((s) => s.path));
  const config: JobConfig = {
    jobId: randomBytes(8).toString('hex'), flavour, width,
    numClasses: split.classes.length, classes: split.classes, imageSize: opts.imageSize, freeze: opts.freeze, bn: opts.bn,
    lr: opts.lr, momentum: opts.momentum, seed: opts.seed, globalBatch: opts.batchSize, chunkElems: DEFAULT_CHUNK_ELEMS,
    // only the fields that were set, so a default job's config is unchanged
    ...(opts.augment !== undefined ? { augment: opts.augment } : {}), ...(opts.views !== undefined ? { views: opts.views } : {}),
    ...(opts.cacheFeatures !== undefined ? { cacheFeatures: opts.cacheFeatures } : {}),
    ...(opts.featureCacheMb !== undefined ? { featureCacheMb: opts.featureCacheMb } : {}),
  };
  return {
    state, accum, config, store, start,
    trainRefs: split.train.samples.map((s, i) => ({ h: trainHashes[i], l: s.label, i })),
    valRefs: split.val.samples.map((s, i) => ({ h: valHashes[i], l: s.label, i })),
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
    ['batch size', c?.globalBatch, opts.batchSize], ['seed', saved.seed, opts.seed], ['image size', c?.imageSize, opts.imageSize],
    ['freeze', c?.freeze, opts.freeze], ['bn', c?.bn, opts.bn],
  ];
  const diffs = want.filter(([, a, b]) => a !== b).map(([k, a, b]) => `${k}: saved ${String(a)}, now ${String(b)}`);
  if (diffs.length > 0) throw new WolfpackError('E_RESUME', `--resume ${dir} is from a different job (${diffs.join('; ')})`);
  // A stop saves the step it reached within an epoch; that step means the same only with the same epoch length.
  const epochStart = saved.epoch * steps;
  const step = typeof saved.step === 'number' && saved.step > epochStart ? saved.step : epochStart;
  if (step > epochStart && (saved.stepsPerEpoch !== steps || step > epochStart + steps)) {
    throw new WolfpackError('E_RESUME', `--resume ${dir}: train-state.json saved step ${saved.step} within epoch ${saved.epoch + 1} of ${String(saved.stepsPerEpoch)} steps, ` +
      `but the data now makes ${steps} steps an epoch (${statePath})`);
  }
  const ckptPath = join(dir, 'last.ckpt');
  const model = modelFromTensors(await readCkpt(ckptPath), ckptPath, { withMomentum: true });
  if (model.config.flavour !== c.flavour || model.config.width !== c.width || model.config.numClasses !== classes.length) {
    throw new WolfpackError('E_RESUME', `--resume ${dir}: last.ckpt is a ${model.config.flavour} ResNet-50 (width ${model.config.width}, ${model.config.numClasses} classes), ` +
      `train-state.json says ${c.flavour} (width ${c.width}, ${classes.length} classes)`);
  }
  return { state: model.state, accum: model.accum!, flavour: model.config.flavour, width: model.config.width,
    start: { epoch: saved.epoch, step, ...(step > epochStart && saved.partial ? { partial: saved.partial } : {}), bestAccuracy: saved.bestAccuracy, bestEpoch: saved.bestEpoch } };
}

export async function runJob(opts: JobOptions): Promise<JobResult> {
  const log = opts.logger.child({ component: 'coordinator' });
  // Listen, and let local workers start (onListening), before preparing the job: a worker boots (Node,
  // TF.js, wasm: ~1.3 s here) while the coordinator reads the weights and scans the data, and its hello
  // waits in the server until the job admits it. (Measured on the demo: the first step ~1.2 s sooner.)
  const server = await CoordinatorServer.listen(opts.host, opts.port, log, opts.security ? { security: opts.security } : undefined);
  log.info({ host: opts.host, port: server.port, workers: opts.workers }, 'listening for workers');
  // A stop request ends the waits that are not on a member (those the cluster interrupts): joins, holds, the preparation.
  const stopped = whenStopped(opts.stop);
  const untilStop = <T>(w: Promise<T>): Promise<T> => (stopped ? Promise.race([w, stopped]) : w);
  let p: Prepared;
  try {
    opts.events?.listening?.({ port: server.port, heartbeat: (id) => server.heartbeat(id) });
    await opts.onListening?.(server.port);
    p = await untilStop(prepare(opts, log));
  } catch (e) {
    await server.close();
    if (e instanceof StopRequested) {
      log.warn({ reason: e.why }, 'stopped before training started');
      return { bestAccuracy: -1, bestEpoch: -1, epochs: [], stopped: { why: e.why, epoch: 0, step: 0, stepsPerEpoch: 0, saved: 'none' } };
    }
    throw e;
  }
  const { state, accum, config, store } = p;
  // What training can change (the rest of state/accum is what the job started with): the epoch-end
  // state fetch carries only these ranges, and the checkpoints re-encode only the tensors in them.
  const ranges = mutableRanges(state.layout, config.freeze, config.bn);
  const output = new RunOutput(opts.out, ranges);
  await output.init().catch(async (e: unknown) => { await server.close(); throw e; });
  const stepTimeout = opts.stepTimeoutMs ?? opts.timeoutMs * 10;
  const joinTimeout = opts.joinTimeoutMs ?? 10 * 60_000;
  const minWorkers = opts.minWorkers ?? 1;
  const maxBadSteps = opts.maxBadSteps ?? 5;
  const holdTimeout = opts.holdTimeoutMs ?? DEFAULT_HOLD_TIMEOUT_MS;
  const S = stepsPerEpoch(p.trainRefs.length, opts.batchSize);
  const stopTimeout = opts.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;

  const cluster = new Cluster(server, config, opts.timeoutMs, log);
  const interrupt = () => cluster.interrupt(new StopRequested(stopReason(opts.stop!)));
  opts.stop?.addEventListener('abort', interrupt, { once: true });
  try {
    const result: JobResult = { bestAccuracy: p.start.bestAccuracy, bestEpoch: p.start.bestEpoch, epochs: [] };
    let epoch = p.start.epoch;
    let done = p.start.step; // global steps completed (a stop may have saved one within the epoch)
    let source: 'coordinator' | 'peer' = 'coordinator';
    let needRing = true;
    let badInARow = 0;
    let acc = EpochAccumulator.from(p.start.partial);
    const clock = { t0: performance.now(), done0: done };
    // Replies to the step not counted yet: a loss can cut it short after some members replied, and one of
    // them may be the survivor that holds it (recover() counts the new rank 0's).
    const uncounted = new Map<Member, MessageOf<'stepDone'>>();

    const sendBlobs = async (m: Member, hashes: string[]) => {
      const missing = store.missing(m.hello.memberId, hashes);
      for (let i = 0; i < missing.length;) {
        const items: { h: string; n: number }[] = [];
        const parts: Uint8Array[] = [];
        let bytes = 0;
        while (i < missing.length && (items.length === 0 || bytes + store.bytes(missing[i]).length <= BLOBS_MAX_BYTES)) {
          const b = store.bytes(missing[i]);
          items.push({ h: missing[i], n: b.length });
          parts.push(b);
          bytes += b.length;
          i++;
        }
        await cluster.send(m, { type: 'blobs', items }, Buffer.concat(parts));
      }
    };

    const formRing = async () => {
      const world = cluster.members.length;
      const g = cluster.generation;
      await Promise.all(cluster.members.map((m, rank) => {
        const left = cluster.members[(rank + world - 1) % world].hello;
        // A left neighbour that serves TLS is reached with wss://, pinned to the certificate it announced.
        const leftUrl = `${left.ringCert !== undefined ? 'wss' : 'ws'}://${left.ringHost}:${left.ringPort}`;
        return cluster.send(m, { type: 'ring', generation: g, rank, world, leftUrl, rightRank: (rank + 1) % world, source, lastStep: done - 1,
          ...(left.ringCert !== undefined ? { leftCert: left.ringCert } : {}) });
      }));
      if (source === 'coordinator') {
        const m0 = cluster.members[0];
        const bufs = { params: state.params, stats: state.stats, accum };
        await sendState(bufs, wholeRanges(bufs), (part, payload) => cluster.send(m0, { type: 'weightsPart', ...part }, payload));
      }
      await cluster.all('ready', stepTimeout);
      log.info({ generation: g, ring: cluster.members.map((m, r) => ({ rank: r, worker: describe(m) })), from: source === 'coordinator' ? 'coordinator' : 'rank 0 (a peer)' }, 'ring formed');
      opts.events?.members?.(memberInfos(cluster.members), g);
      source = 'peer';
    };

    /** Runs the rest of the epoch's steps; returns early (false) when joiners wait at a boundary. */
    const runSteps = async (): Promise<boolean> => {
      const batches = epochBatches(p.trainRefs.length, opts.batchSize, opts.seed, epoch);
      const world = cluster.members.length;
      const g = cluster.generation;
      let sent = done;
      const sendStep = async (global: number) => {
        const s = global - epoch * S;
        await Promise.all(cluster.members.map(async (m, rank) => {
          const samples = rankShare(batches[s], world, rank).map((i) => p.trainRefs[i]);
          await sendBlobs(m, samples.map((x) => x.h));
          await cluster.send(m, { type: 'step', generation: g, epoch, step: global, samples });
        }));
        sent = global + 1;
      };
      const end = (epoch + 1) * S;
      const lookahead = opts.lookahead ?? 1;
      while (sent < Math.min(end, done + lookahead + 1)) await sendStep(sent);
      while (done < end) {
        const replies = await Promise.all(cluster.members.map(async (m) => {
          const r = await cluster.expect(m, 'stepDone', stepTimeout);
          uncounted.set(m, r.msg);
          return r;
        }));
        uncounted.clear();
        for (const r of replies) {
          if (r.msg.step !== done || r.msg.generation !== g) throw new WolfpackError('E_PROTOCOL', `rank ${r.msg.rank} finished step ${r.msg.step} (generation ${r.msg.generation}), expected ${done} (${g})`);
          acc.allreduceMs += r.msg.timings.allreduce;
          acc.totalMs += r.msg.timings.data + r.msg.timings.compute + r.msg.timings.allreduce + r.msg.timings.update;
        }
        const d = replies[0].msg;
        done++;
        acc.add(d);
        if (d.skipped) {
          badInARow++;
          const ranks = replies.filter((r) => r.msg.nonFinite).map((r) => r.msg.rank);
          log.warn({ step: d.step, ranks }, `non-finite loss or gradient on rank(s) ${ranks.join(', ')}: step skipped on every replica`);
          if (badInARow >= maxBadSteps) {
            throw new WolfpackError('E_DIVERGED', `training diverged: ${badInARow} steps in a row had a non-finite loss or gradient (last on rank(s) ${ranks.join(', ')}); ` +
              'lower --lr or check the data', { step: d.step, ranks });
          }
        } else {
          badInARow = 0;
        }
        if (opts.progress) opts.progress(progressLine(epoch, opts.epochs, done, S, d.loss, clock));
        const hold = opts.events?.step?.(stepEvent({ epoch: epoch + 1, step: done - epoch * S, steps: S, global_step: done }, replies.map((r) => r.msg)));
        if (isPromise(hold)) {
          const t0 = performance.now();
          await untilStop(settleWithin(hold, holdTimeout, log, `epoch ${epoch + 1} step ${done - epoch * S}`));
          acc.heldMs += performance.now() - t0;
        }
        log.debug({ epoch: epoch + 1, step: done - epoch * S, of: S, loss: d.loss }, 'step');
        // Joiners are admitted at a step boundary: stop sending, let the steps in flight finish.
        if (server.waiting > 0) {
          if (sent === done) return false;
          continue;
        }
        if (sent < end) await sendStep(sent);
      }
      return true;
    };

    const evaluate = async (): Promise<{ accuracy: number; checksum: string }> => {
      const world = cluster.members.length;
      const g = cluster.generation;
      const evals = await Promise.all(cluster.members.map(async (m, rank) => {
        const samples = rankShare(p.valRefs.map((_, i) => i), world, rank).map((i) => p.valRefs[i]);
        await sendBlobs(m, samples.map((x) => x.h));
        await cluster.send(m, { type: 'eval', generation: g, epoch, samples });
        return (await cluster.expect(m, 'evalResult', stepTimeout)).msg;
      }));
      const sums = new Set(evals.map((e) => e.checksum));
      if (sums.size > 1) {
        const byRank = evals.map((e) => `rank ${e.rank}: ${e.checksum}`).join(', ');
        throw new WolfpackError('E_REPLICA', `replicas diverged at the end of epoch ${epoch + 1}: ${byRank}`, { epoch });
      }
      const correct = evals.reduce((a, e) => a + e.correct, 0);
      const total = evals.reduce((a, e) => a + e.total, 0);
      return { accuracy: total > 0 ? correct / total : 0, checksum: evals[0].checksum };
    };

    // Only what training can have changed travels (`ranges`: the head alone with --freeze backbone
    // --bn frozen, ~16 KB instead of ~200 MB); the rest of `state` and `accum` is what the job started with.
    const fetchState = async (m = cluster.members[0], timeoutMs = stepTimeout) => {
      await cluster.send(m, { type: 'stateRequest', epoch });
      await receiveState({ params: state.params, stats: state.stats, accum }, ranges, async () => {
        const { msg, payload } = await cluster.expect(m, 'statePart', timeoutMs);
        return { part: msg, payload };
      }, `worker ${describe(m)}`);
    };

    const endEpoch = async () => {
      const tEval = performance.now();
      const { accuracy, checksum } = await evaluate();
      const tFetch = performance.now();
      await fetchState();
      // What the checkpoints will hold must be what the replicas hold (the fetch carries only the changed
      // ranges; this proves the rest was right too).
      const held = stateChecksum(state);
      if (held !== checksum) {
        throw new WolfpackError('E_REPLICA', `the state fetched from rank 0 at the end of epoch ${epoch + 1} (checksum ${held}) is not the replicas' state (${checksum})`, { epoch });
      }
      const tEnd = performance.now();
      const trainTime = (tEnd - acc.t0 - acc.heldMs) / 1000;
      const metrics: EpochMetrics = {
        epoch: epoch + 1, train_loss: acc.steps > 0 ? acc.lossSum / acc.steps : NaN, last_loss: acc.lastLoss, val_accuracy: accuracy,
        images_per_s: (S * opts.batchSize) / trainTime, step_time_s: trainTime / S,
        allreduce_share: acc.totalMs > 0 ? acc.allreduceMs / acc.totalMs : 0, skipped_steps: acc.skipped, epoch_time_s: trainTime, workers: cluster.members.length,
        samples: acc.samples,
        eval_s: (tFetch - tEval) / 1000, state_fetch_s: (tEnd - tFetch) / 1000,
      };
      const improved = accuracy >= result.bestAccuracy;
      if (improved) {
        result.bestAccuracy = accuracy;
        result.bestEpoch = epoch + 1;
        await output.saveBest(state);
      }
      await output.saveLast(state, accum, trainState(epoch + 1));
      metrics.checkpoint_s = (performance.now() - tEnd) / 1000;
      result.epochs.push(metrics);
      await output.appendMetrics(metrics);
      opts.print('-'.repeat(20));
      opts.print(`Epoch: ${epoch + 1}/${opts.epochs}, train Loss: ${metrics.train_loss.toFixed(4)} (last step ${acc.lastLoss.toFixed(4)}), val Acc: ${accuracy.toFixed(4)}${improved ? ' (best, saved best.ckpt)' : ''}`);
      opts.print(`epoch time: ${trainTime.toFixed(1)} s, per step time: ${metrics.step_time_s.toFixed(2)} s, images/s: ${metrics.images_per_s.toFixed(1)}, ` +
        `all-reduce share: ${(metrics.allreduce_share * 100).toFixed(1)}%, workers: ${cluster.members.length}`);
      // The epoch is on disk (checkpoints, metrics line) and printed: a callback may read it, and may hold the run here.
      const hold = opts.events?.epoch?.(metrics);
      if (improved) opts.events?.event?.({ kind: 'best', text: `epoch ${epoch + 1}: val accuracy ${accuracy.toFixed(4)}, saved best.ckpt` });
      await untilStop(settleWithin(hold, holdTimeout, log, `the end of epoch ${epoch + 1}`));
      epoch++;
      acc = new EpochAccumulator();
    };

    /** train-state.json beside last.ckpt: `completed` epochs, the steps done, and (stopped within an epoch) its figures so far. */
    const trainState = (completed: number, partial?: PartialEpoch): TrainState => {
      const { jobId: _jobId, ...persisted } = config;
      return { epoch: completed, step: done, stepsPerEpoch: S, ...(partial ? { partial } : {}), seed: opts.seed,
        bestAccuracy: result.bestAccuracy, bestEpoch: result.bestEpoch, config: persisted,
        job: { data: resolve(opts.data), epochs: opts.epochs, workers: opts.workers } };
    };

    const train = async () => {
      await untilStop(server.members(opts.workers, joinTimeout));
      const first = server.takeArrivals(opts.workers);
      await cluster.admit(first);
      opts.events?.event?.(joinedEvent(first));
      cluster.members = first;
      while (epoch < opts.epochs) {
        // recover() may have begun a new generation after the stop was asked for (abort() ends an interruption)
        if (opts.stop?.aborted) throw new StopRequested(stopReason(opts.stop));
        try {
          await trainUntilBoundary();
        } catch (e) {
          if (!(e instanceof MemberLost)) throw e;
          await recover(e);
        }
      }
    };

    /** Admits joiners, (re)forms the ring, runs steps until the epoch ends or joiners wait; ends the epoch. */
    async function trainUntilBoundary(): Promise<void> {
      if (server.waiting > 0) {
        const joiners = server.takeArrivals();
        await cluster.admit(joiners);
        cluster.members.push(...joiners);
        cluster.generation++;
        needRing = true;
        log.info({ joined: joiners.map(describe) }, 'workers joined at a step boundary');
        opts.events?.event?.(joinedEvent(joiners));
      }
      if (needRing) {
        await formRing();
        needRing = false;
      }
      if (done < (epoch + 1) * S) {
        if (!(await runSteps())) return;
      }
      await endEpoch();
    }

    /**
     * The stop: abort the step in flight, fetch the state after the last completed step from the replica
     * that got furthest, save it as last.ckpt (train-state.json names the step and keeps the epoch's figures
     * so far), tell the workers to stop. Waits are bounded by stopTimeout; whatever fails leaves last.ckpt
     * at the last epoch end, and says so.
     */
    const stopRun = async (why: string): Promise<StopOutcome> => {
      log.warn({ reason: why, epoch: epoch + 1, step: done - epoch * S, workers: cluster.members.length }, 'stopping: the step in flight is aborted, the last completed step saved');
      let saved: StopOutcome['saved'] = result.epochs.length > 0 || opts.resume ? 'epoch' : 'none';
      let dir = result.epochs.length > 0 ? opts.out : opts.resume;
      cluster.prune();
      if (cluster.members.length > 0) {
        try {
          const reports = await cluster.abort(`stopping (${why})`, stopTimeout);
          cluster.prune();
          const kept = reports.filter((r) => cluster.members.includes(r.member)).sort((a, b) => b.lastStep - a.lastStep);
          const lead = kept[0];
          if (lead !== undefined && lead.lastStep + 1 > epoch * S && lead.lastStep + 1 >= done) {
            const first = uncounted.get(lead.member);
            for (const d of [...(first ? [first] : []), ...lead.late]) if (d.step >= done && d.step <= lead.lastStep) acc.add(d);
            done = lead.lastStep + 1;
            await fetchState(lead.member, stopTimeout);
            await output.saveLast(state, accum, trainState(epoch, acc.partial()));
            saved = 'step';
            dir = opts.out;
          }
        } catch (e) {
          log.warn({ reason: (e as Error).message }, `the state after the last step could not be fetched; last.ckpt is ${saved === 'none' ? 'not written' : 'the last epoch end'}`);
        }
        await Promise.all(cluster.members.map((m) => m.channel.send({ type: 'shutdown', reason: `stopped (${why})` }).catch(() => undefined)));
      }
      log.info({ saved, dir, epoch, step: done }, 'stopped');
      return { why, epoch, step: done, stepsPerEpoch: S, saved, ...(dir !== undefined ? { dir } : {}) };
    };

    try {
      await train();
    } catch (e) {
      if (!(e instanceof StopRequested)) throw e;
      result.stopped = await stopRun(e.why);
      return result;
    }

    async function recover(e: MemberLost): Promise<void> {
      for (const m of cluster.prune()) {
        log.warn({ worker: describe(m), reason: e.message }, 'worker lost');
        opts.events?.event?.(lostEvent(m, e));
      }
      const reports = await cluster.abort(e.message, stepTimeout);
      for (const m of cluster.prune()) {
        log.warn({ worker: describe(m) }, 'worker lost while aborting');
        opts.events?.event?.(lostEvent(m, 'while the step in flight was aborted'));
      }
      // The survivor that applied the most steps is the new rank 0 and relays its state to the others
      // (a member that answered the abort and was lost after it is no survivor: its steps are not kept).
      const kept = reports.filter((r) => cluster.members.includes(r.member));
      kept.sort((a, b) => b.lastStep - a.lastStep || cluster.members.indexOf(a.member) - cluster.members.indexOf(b.member));
      cluster.members = kept.map((r) => r.member);
      if (kept.length > 0) {
        // Steps it applied beyond the last one counted here (the loss cut their replies short) count from its own replies.
        const first = uncounted.get(kept[0].member);
        for (const d of [...(first ? [first] : []), ...kept[0].late]) if (d.step >= done && d.step <= kept[0].lastStep) acc.add(d);
        done = Math.max(kept[0].lastStep + 1, epoch * S);
      }
      uncounted.clear();
      if (kept.length === 0) {
        // Nobody holds the epoch's progress any more: it starts over from the coordinator's copy (the last epoch end).
        source = 'coordinator';
        done = epoch * S;
        acc = new EpochAccumulator();
      }
      while (cluster.members.length < Math.max(1, minWorkers)) {
        log.warn({ have: cluster.members.length, need: Math.max(1, minWorkers) }, 'waiting for workers to (re)join');
        const rejoin = opts.rejoinTimeoutMs ?? joinTimeout;
        if (server.waiting === 0) await untilStop(server.arrival(rejoin));
        if (server.waiting === 0) {
          const saved = result.epochs.length > 0 ? opts.out : opts.resume; // where the last completed epoch is
          throw new WolfpackError('E_WORKER', `only ${cluster.members.length} worker(s) left and none joined within ${rejoin / 1000} s (--min-workers ${minWorkers}); ` +
            (saved ? `the last completed epoch (${epoch}) is saved in ${saved}: start workers and run the same command with --resume ${saved}` : 'no epoch was completed, so there is nothing to resume'), { epoch, saved });
        }
        const joiners = server.takeArrivals();
        await cluster.admit(joiners);
        cluster.members.push(...joiners);
        opts.events?.event?.(joinedEvent(joiners));
      }
      cluster.generation++;
      needRing = true;
      log.warn({ workers: cluster.members.length, resumeAtStep: done, epoch: epoch + 1 }, 'ring will be re-formed; training continues from the last completed step');
    }

    opts.print('='.repeat(20));
    opts.print(`End training, the best Accuracy is: ${result.bestAccuracy.toFixed(4)}, the best Accuracy epoch is ${result.bestEpoch}`);
    await renderCurves(join(opts.out, 'metrics.jsonl'), join(opts.out, 'curves.png'))
      .catch((e: Error) => log.warn({ reason: e.message }, 'curves.png not drawn'));
    log.info({ out: opts.out, best: join(opts.out, 'best.ckpt') }, 'training finished');
    await Promise.all(cluster.members.map((m) => m.channel.send({ type: 'shutdown', reason: 'training finished' }).catch(() => undefined)));
    return result;
  } finally {
    opts.stop?.removeEventListener('abort', interrupt);
    cluster.close();
    await server.close();
  }
}
