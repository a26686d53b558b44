// The coordinator's job: scan the data, load the pretrained weights and drop their head, admit N
// workers and give them ranks and ring neighbours, hand the weights to rank 0 (which relays them
// along the ring), then drive the epochs: each step's global batch is split over the ranks and the
// image bytes they lack are sent with it; at each epoch end the validation set is split over the
// workers, replicas' checksums are compared, and best/last checkpoints and metrics are written.
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { scanSplit } from '../shared/data/imagefolder.js';
import { readWeightsFile } from '../shared/weights/read.js';
import { modelFromTensors } from '../shared/model/weights.js';
import type { ModelState } from '../shared/model/state.js';
import { DEFAULT_CHUNK_ELEMS } from '../shared/allreduce/ring.js';
import type { JobConfig, SampleRef, Timings } from '../shared/protocol/messages.js';
import { payloadFloats } from '../shared/protocol/codec.js';
import { renderCurves } from '../shared/report/curves.js';
import { BlobStore } from './blob-store.js';
import { RunOutput, type EpochMetrics, type TrainState } from './checkpoints.js';
import { epochBatches, rankShare } from './data-plan.js';
import { CoordinatorServer, type Member } from './server.js';

export interface JobOptions {
  data: string;
  weights: string;
  workers: number;
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  freeze: 'none' | 'backbone';
  bn: 'train' | 'frozen';
  imageSize: number;
  seed: number;
  out: string;
  host: string;
  port: number;
  /** Per-wait limit for worker replies (ms). */
  timeoutMs: number;
  /** Steps sent ahead of the one being computed, so workers decode while they compute. */
  lookahead?: number;
  logger: Logger;
  /** The lab's human-readable lines (stdout). */
  print: (line: string) => void;
  /** Called once the server listens (single-node mode starts its workers then). */
  onListening?: (port: number) => void | Promise<void>;
}

export interface JobResult {
  bestAccuracy: number;
  bestEpoch: number;
  epochs: EpochMetrics[];
}

const WEIGHTS_CHUNK = 4 * 1024 * 1024; // floats per weightsPart frame (16 MiB)
const BLOBS_MAX_BYTES = 32 * 1024 * 1024;

async function sendBlobs(m: Member, store: BlobStore, rank: number, hashes: string[]): Promise<void> {
  const missing = store.missing(rank, hashes);
  let items: { h: string; n: number }[] = [];
  let parts: Uint8Array[] = [];
  let bytes = 0;
  const flush = async () => {
    if (items.length === 0) return;
    await m.channel.send({ type: 'blobs', items }, Buffer.concat(parts));
    items = [];
    parts = [];
    bytes = 0;
  };
  for (const h of missing) {
    const b = store.bytes(h);
    if (bytes + b.length > BLOBS_MAX_BYTES) await flush();
    items.push({ h, n: b.length });
    parts.push(b);
    bytes += b.length;
  }
  await flush();
}

function floatsAsBytes(f: Float32Array): Uint8Array {
  return new Uint8Array(f.buffer, f.byteOffset, f.byteLength);
}

async function sendWeights(m: Member, bufs: Record<'params' | 'stats' | 'accum', Float32Array>): Promise<void> {
  for (const kind of ['params', 'stats', 'accum'] as const) {
    const buf = bufs[kind];
    for (let off = 0; off < buf.length; off += WEIGHTS_CHUNK) {
      await m.channel.send({ type: 'weightsPart', kind, offset: off, total: buf.length }, floatsAsBytes(buf.subarray(off, off + WEIGHTS_CHUNK)));
    }
  }
}

async function fetchState(m: Member, state: ModelState, accum: Float32Array, epoch: number, timeoutMs: number): Promise<void> {
  await m.channel.send({ type: 'stateRequest', epoch });
  const bufs = { params: state.params, stats: state.stats, accum };
  const left = { params: state.params.length, stats: state.stats.length, accum: accum.length };
  while (left.params + left.stats + left.accum > 0) {
    const { msg, payload } = await m.channel.expect('statePart', timeoutMs);
    const data = payloadFloats(payload);
    const dst = bufs[msg.kind];
    if (msg.total !== dst.length || msg.offset + data.length > dst.length) {
      throw new WolfpackError('E_PROTOCOL', `statePart ${msg.kind} from rank ${msg.rank}: ${data.length} floats at ${msg.offset} do not fit ${dst.length}`);
    }
    dst.set(data, msg.offset);
    left[msg.kind] -= data.length;
  }
}

export async function runJob(opts: JobOptions): Promise<JobResult> {
  const log = opts.logger.child({ component: 'coordinator' });
  const split = await scanSplit(opts.data, { logger: log });
  if (split.train.samples.length < opts.batchSize) {
    throw new WolfpackError('E_DATA', `${opts.data}/train has ${split.train.samples.length} images, fewer than one batch of ${opts.batchSize}`);
  }
  const { tensors } = await readWeightsFile(opts.weights);
  const model = modelFromTensors(tensors, opts.weights, { dropHead: true, numClasses: split.classes.length, seed: opts.seed });
  const { state } = model;
  const accum = new Float32Array(state.layout.paramCount);
  log.info({ flavour: model.config.flavour, width: model.config.width, classes: split.classes, train: split.train.samples.length, val: split.val.samples.length }, 'job prepared');

  const store = new BlobStore();
  const trainHashes = await store.add(split.train.samples.map((s) => s.path));
  const valHashes = await store.add(split.val.samples.map((s) => s.path));
  const trainRefs: SampleRef[] = split.train.samples.map((s, i) => ({ h: trainHashes[i], l: s.label, i }));
  const valRefs: SampleRef[] = split.val.samples.map((s, i) => ({ h: valHashes[i], l: s.label, i }));

  const config: JobConfig = {
    jobId: randomBytes(8).toString('hex'), flavour: model.config.flavour, width: model.config.width,
    numClasses: split.classes.length, classes: split.classes, imageSize: opts.imageSize, freeze: opts.freeze, bn: opts.bn,
    lr: opts.lr, momentum: opts.momentum, seed: opts.seed, globalBatch: opts.batchSize, chunkElems: DEFAULT_CHUNK_ELEMS,
  };
  const output = new RunOutput(opts.out);
  await output.init();

  const server = await CoordinatorServer.listen(opts.host, opts.port, log);
  log.info({ host: opts.host, port: server.port, workers: opts.workers }, 'listening for workers');
  try {
    await opts.onListening?.(server.port);
    const members = await server.members(opts.workers, opts.timeoutMs);
    const world = members.length;
    await Promise.all(members.map((m, rank) => {
      const right = members[(rank + 1) % world].hello;
      return m.channel.send({ type: 'welcome', rank, world, config, rightUrl: `ws://${right.ringHost}:${right.ringPort}`, leftRank: (rank + world - 1) % world });
    }));
    log.info({ ring: members.map((m, r) => ({ rank: r, host: m.hello.host, pid: m.hello.pid, ring: `${m.hello.ringHost}:${m.hello.ringPort}` })) }, 'ring formed');
    await sendWeights(members[0], { params: state.params, stats: state.stats, accum });
    await Promise.all(members.map((m) => m.channel.expect('ready', opts.timeoutMs)));
    log.info('all workers ready');

    const result: JobResult = { bestAccuracy: -1, bestEpoch: -1, epochs: [] };
    let globalStep = 0;
    const lookahead = opts.lookahead ?? 1;
    for (let epoch = 0; epoch < opts.epochs; epoch++) {
      const t0 = performance.now();
      const batches = epochBatches(trainRefs.length, opts.batchSize, opts.seed, epoch);
      const sendStep = async (s: number) => {
        await Promise.all(members.map(async (m, rank) => {
          const samples = rankShare(batches[s], world, rank).map((i) => trainRefs[i]);
          await sendBlobs(m, store, rank, samples.map((x) => x.h));
          await m.channel.send({ type: 'step', epoch, step: globalStep + s, samples });
        }));
      };
      let lossSum = 0;
      let lastLoss = NaN;
      let skipped = 0;
      const share = { allreduce: 0, total: 0 };
      for (let s = 0; s < Math.min(lookahead + 1, batches.length); s++) await sendStep(s);
      for (let s = 0; s < batches.length; s++) {
        const done = await Promise.all(members.map((m) => m.channel.expect('stepDone', opts.timeoutMs)));
        if (s + lookahead + 1 < batches.length) await sendStep(s + lookahead + 1);
        const d = done[0].msg;
        for (const r of done) {
          if (r.msg.step !== globalStep + s) throw new WolfpackError('E_PROTOCOL', `rank ${r.msg.rank} finished step ${r.msg.step}, expected ${globalStep + s}`);
          const t: Timings = r.msg.timings;
          share.allreduce += t.allreduce;
          share.total += t.data + t.compute + t.allreduce + t.update;
        }
        if (d.skipped) {
          skipped++;
          log.warn({ step: globalStep + s }, 'non-finite loss or gradient: step skipped on every replica');
        } else {
          lossSum += d.loss;
          lastLoss = d.loss;
        }
        log.debug({ epoch, step: s + 1, of: batches.length, loss: d.loss }, 'step');
      }
      globalStep += batches.length;
      const trainTime = (performance.now() - t0) / 1000;

      // Validation, split over the workers, and the replicas' checksums.
      const evals = await Promise.all(members.map(async (m, rank) => {
        const samples = rankShare(valRefs.map((_, i) => i), world, rank).map((i) => valRefs[i]);
        await sendBlobs(m, store, rank, samples.map((x) => x.h));
        await m.channel.send({ type: 'eval', epoch, samples });
        return (await m.channel.expect('evalResult', opts.timeoutMs)).msg;
      }));
      const sums = new Set(evals.map((e) => e.checksum));
      if (sums.size > 1) {
        const byRank = evals.map((e) => `rank ${e.rank}: ${e.checksum}`).join(', ');
        throw new WolfpackError('E_REPLICA', `replicas diverged at the end of epoch ${epoch + 1}: ${byRank}`, { epoch });
      }
      const correct = evals.reduce((a, e) => a + e.correct, 0);
      const total = evals.reduce((a, e) => a + e.total, 0);
      const acc = total > 0 ? correct / total : 0;
      const epochTime = (performance.now() - t0) / 1000;
      const steps = batches.length - skipped;
      const metrics: EpochMetrics = {
        epoch: epoch + 1, train_loss: steps > 0 ? lossSum / steps : NaN, last_loss: lastLoss, val_accuracy: acc,
        images_per_s: (batches.length * opts.batchSize) / trainTime, step_time_s: trainTime / batches.length,
        allreduce_share: share.total > 0 ? share.allreduce / share.total : 0, skipped_steps: skipped, epoch_time_s: epochTime, workers: world,
      };
      result.epochs.push(metrics);

      await fetchState(members[0], state, accum, epoch, opts.timeoutMs);
      const improved = acc >= result.bestAccuracy;
      if (improved) {
        result.bestAccuracy = acc;
        result.bestEpoch = epoch + 1;
        await output.saveBest(state);
      }
      const { jobId: _jobId, ...persisted } = config;
      const train: TrainState = { epoch: epoch + 1, step: globalStep, seed: opts.seed, bestAccuracy: result.bestAccuracy, bestEpoch: result.bestEpoch, config: persisted };
      await output.saveLast(state, accum, train);
      await output.appendMetrics(metrics);
      opts.print('-'.repeat(20));
      opts.print(`Epoch: ${epoch + 1}/${opts.epochs}, train Loss: ${metrics.train_loss.toFixed(4)} (last step ${lastLoss.toFixed(4)}), val Acc: ${acc.toFixed(4)}${improved ? ' (best, saved best.ckpt)' : ''}`);
      opts.print(`epoch time: ${epochTime.toFixed(1)} s, per step time: ${metrics.step_time_s.toFixed(2)} s, images/s: ${metrics.images_per_s.toFixed(1)}, all-reduce share: ${(metrics.allreduce_share * 100).toFixed(1)}%`);
    }
    opts.print('='.repeat(20));
    opts.print(`End training, the best Accuracy is: ${result.bestAccuracy.toFixed(4)}, the best Accuracy epoch is ${result.bestEpoch}`);
    await renderCurves(join(opts.out, 'metrics.jsonl'), join(opts.out, 'curves.png'))
      .catch((e: Error) => log.warn({ reason: e.message }, 'curves.png not drawn'));
    log.info({ out: opts.out, best: join(opts.out, 'best.ckpt') }, 'training finished');
    await Promise.all(members.map((m) => m.channel.send({ type: 'shutdown', reason: 'training finished' }).catch(() => undefined)));
    return result;
  } finally {
    await server.close();
  }
}
