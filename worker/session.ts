// A worker's life after admission: it follows the coordinator's orders. `ring` (re)forms the ring: links
// to the new neighbours, and the state relayed from the new rank 0. `step`: decode its share of the batch,
// compute gradients, ring all-reduce them, apply the same Momentum update as every other replica, report.
// `eval`: its share of the validation set. `abort`: drop the step in flight and say how far it got.
// `stateRequest`: send what training changed. `shutdown`: the end.
import { performance } from 'node:perf_hooks';
import { chainBroadcast } from '../shared/allreduce/broadcast.js';
import type { Link } from '../shared/allreduce/link.js';
import { ringAllReduce } from '../shared/allreduce/ring.js';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { resnet50Spec } from '../shared/model/spec.js';
import { mutableRanges, ParamLayout, type ModelState } from '../shared/model/state.js';
import { Channel, type Received } from '../shared/protocol/channel.js';
import type { JobConfig, MessageOf, SampleRef } from '../shared/protocol/messages.js';
import { sendState } from '../shared/protocol/state-transfer.js';
import { connectRing, wsLink, type RingListener } from '../shared/transport/ring/index.js';
import type { WorkerSecurity } from '../shared/auth/config.js';
import { RingHelloVerifier, ringHelloAuth } from '../shared/auth/ring-auth.js';
import { argmaxRows } from '../shared/train/loss.js';
import { stateChecksum } from '../shared/train/checksum.js';
import type { Batch } from '../shared/train/replica.js';
import { createReplica } from '../shared/train/create-replica.js';
import type { TrainingReplica } from '../shared/train/training-replica.js';
import { tf } from '../shared/backend/tf.js';
import { ImageCache, loadBatch } from './batch-loader.js';
import { computeAndReduce } from './gradient-reduce.js';
import { receiveWeights } from './connect.js';
import { exchangeSize, stepLoadOptions, StepFeatureCache, type StepBatch, type StepFeatures } from './feature-cache.js';

/** Images per forward pass during evaluation (bounds memory). */
const EVAL_CHUNK = 16;

/** A worker's life after admission: ring generations, steps, evaluations. */
export class WorkerSession {
  config!: JobConfig;
  webgpuOptimizer: 'gpu' | 'host' = 'gpu';
  /** Called once each ring is formed and this replica's state is in place. */
  onRing: (rank: number) => void = () => undefined;
  log: Logger;
  /** The logger of the session; each ring's (`log`) is a child of it with that ring's rank and generation. */
  sessionLog: Logger;
  /** Set while a ring is being formed: an abort from the coordinator stops its wait for the neighbours. */
  private abortFormation: ((e: Error) => void) | undefined;
  rank = 0;
  private world = 1;
  private generation = -1;
  /**
   * A generation whose ring failed here: none of its remaining steps or evaluations run (the coordinator aborts it).
   */
  private broken: number | undefined;
  private link: Link | undefined;
  private collective = 0; // numbers the collectives of the current ring, so tags never collide
  private state: ModelState | undefined;
  private replica: TrainingReplica | undefined;
  /** Global index of the last step this replica applied (-1: none). */
  private lastStep = -1;
  private readonly cache = new ImageCache();
  private readonly decoding = new Map<number, Promise<Batch>>();

  constructor(
    private readonly ch: Channel,
    private readonly listener: RingListener,
    log: Logger,
    private readonly timeoutMs: number,
    private readonly secret: WorkerSecurity['secret'],
    private readonly ringGuard: RingHelloVerifier | undefined,
  ) {
    this.log = log;
    this.sessionLog = log;
  }

  async serve(): Promise<void> {
    // Runs as frames arrive, even while a step is in flight: images are stored, steps start decoding
    // (overlapping the previous step's compute), and an abort cuts the ring at once so a collective
    // waiting on a lost peer fails now rather than after a timeout.
    this.ch.onMessage = (r: Received) => {
      const m = r.msg;
      if (m.type === 'blobs') {
        this.cache.addAll(m.items, r.payload);
        return true;
      }
      if (m.type === 'step' && this.current(m.generation)) {
        const p = this.loadStep(m.samples, m.epoch); // the step's view; only uncached images
        p.catch(() => undefined); // surfaced when the step runs
        this.decoding.set(m.step, p);
      }
      if (m.type === 'abort') {
        this.cutRing();
        this.abortFormation?.(new WolfpackError('E_WORKER', 'the coordinator aborted the ring being formed'));
      }
      return false;
    };
    for (;;) {
      const { msg } = await this.ch.next(this.timeoutMs * 10);
      switch (msg.type) {
        case 'shutdown':
          this.log.info({ reason: msg.reason }, 'shutdown');
          return;
        case 'ring':
          await this.guard('ring', () => this.formRing(msg));
          break;
        case 'abort':
          this.generation = msg.generation;
          this.cutRing();
          this.decoding.clear();
          this.log.warn({ reason: msg.reason, lastStep: this.lastStep }, 'step aborted by the coordinator');
          await this.ch.send({ type: 'aborted', rank: this.rank, generation: msg.generation, lastStep: this.lastStep });
          break;
        case 'step':
          if (this.current(msg.generation)) await this.guard('step', () => this.runStep(msg));
          break;
        case 'eval':
          if (this.current(msg.generation)) await this.guard('eval', () => this.runEval(msg));
          break;
        case 'stateRequest':
          await this.sendState();
          break;
        default:
          throw new WolfpackError('E_PROTOCOL', `unexpected message ${msg.type} from the coordinator`);
      }
    }
  }

  /** Whether orders of generation `g` are carried out: it is the current ring's, and that ring has not failed here. */
  private current(g: number): boolean {
    return g === this.generation && g !== this.broken;
  }

  /**
   * Ring work fails when a peer is lost; the coordinator then aborts and re-forms the ring, so the
   * worker logs the failure and waits for orders. Steps of that ring already sent are not run: without
   * the ring they would apply this replica's own gradient alone, one step ahead of a skipped one.
   * Anything else is the worker's own failure.
   */
  private async guard(what: string, fn: () => Promise<void>): Promise<void> {
    try {
      await fn();
    } catch (e) {
      const err = e as WolfpackError;
      if (err.code !== 'E_WORKER' && err.code !== 'E_PROTOCOL' && err.code !== 'E_AUTH') throw e;
      this.cutRing();
      this.broken = this.generation;
      this.log.warn({ what, reason: err.message }, 'ring operation failed; waiting for the coordinator');
    }
  }

  /**
   * The ring's link for a collective; undefined when this replica is alone in the ring. A ring that an abort
   * cut meanwhile fails the operation (guard() then marks the generation broken): skipping the all-reduce
   * would apply this replica's own gradient alone and report a step that no other replica took.
   */
  private ringLink(what: string): Link | undefined {
    if (this.world === 1) return undefined;
    if (!this.link)
      throw new WolfpackError(
        'E_WORKER',
        `${what}: the ring was cut (the coordinator aborted it) before its collective`,
      );
    return this.link;
  }

  private cutRing(): void {
    this.link?.close();
    this.link = undefined;
  }

  private async formRing(msg: MessageOf<'ring'>): Promise<void> {
    this.cutRing();
    this.decoding.clear();
    const { rank, world, generation, config } = { ...msg, config: this.config };
    this.rank = rank;
    this.world = world;
    this.generation = generation;
    this.collective = 0;
    this.log = this.sessionLog.child({ rank, generation });
    // ring links are bound to the job, the rank and the ring generation (shared/auth/ring-auth.ts)
    const jobId = `${config.jobId}/g${generation}`;
    this.ringGuard?.expect(jobId, generation);
    if (world > 1) {
      // Data flows server -> client on a ring connection, so a rank connects to its LEFT neighbour
      // (whose server sends to it) and accepts its RIGHT neighbour (to which it sends).
      const ringHello = { rank, size: world, jobId };
      const links = Promise.all([
        connectRing(
          msg.leftUrl,
          this.secret ? { ...ringHello, auth: ringHelloAuth(this.secret, ringHello, generation) } : ringHello,
          { timeoutMs: this.timeoutMs, logger: this.log, ...(msg.leftCert !== undefined ? { pin: msg.leftCert } : {}) },
        ),
        this.listener.accept({ rank: msg.rightRank, jobId }, this.timeoutMs),
      ]);
      // A neighbour that died meanwhile never connects: the coordinator's abort ends the wait (not --timeout).
      const aborted = new Promise<never>((_, reject) => {
        this.abortFormation = reject;
      });
      try {
        const [incoming, outgoing] = await Promise.race([links, aborted]);
        this.link = wsLink(outgoing, incoming);
      } catch (e) {
        links.then(
          ([incoming, outgoing]) => wsLink(outgoing, incoming).close(),
          () => undefined,
        ); // opened too late
        throw e;
      } finally {
        this.abortFormation = undefined;
      }
    }
    if (!this.state) {
      const layout = new ParamLayout(
        resnet50Spec({ flavour: config.flavour, width: config.width, numClasses: config.numClasses }),
      );
      this.state = { layout, params: new Float32Array(layout.paramCount), stats: new Float32Array(layout.statCount) };
    }
    const state = this.state;
    const accum = this.replica?.accum ?? new Float32Array(state.layout.paramCount);
    if (rank === 0 && msg.source === 'coordinator')
      await receiveWeights(this.ch, { params: state.params, stats: state.stats, accum }, this.timeoutMs);
    for (const buf of [state.params, state.stats, accum]) {
      const link = this.ringLink(`generation ${generation}'s state relay`);
      if (link)
        await chainBroadcast(buf, rank, world, link, { step: this.collective++, chunkElems: config.chunkElems });
    }
    this.replica?.dispose();
    const trainOptions = { lr: config.lr, momentum: config.momentum, freeze: config.freeze, bn: config.bn };
    this.replica = createReplica(state, trainOptions, accum, {
      webgpuOptimizer: this.webgpuOptimizer,
      logger: this.log,
    });
    this.lastStep = msg.lastStep;
    await this.ch.send({ type: 'ready', rank, generation });
    this.onRing(rank);
    this.log.info(
      {
        world,
        params: state.layout.paramCount,
        reduceFloats: this.replica.reduce.size,
        source: rank === 0 ? msg.source : 'rank 0',
      },
      'ring formed; state in place',
    );
  }

  // Feature cache (worker/feature-cache.ts): --augment / --views pick the step's transform and draw;
  // with --cache-features only the images whose backbone features are not cached are decoded.
  private features: StepFeatureCache | undefined;

  private featureCache(): StepFeatureCache | undefined {
    const training = this.replica?.featureTraining;
    if (this.config.cacheFeatures !== true || training === undefined) return undefined;
    this.features ??= new StepFeatureCache(this.config, this.cache, training.featureDim);
    return this.features;
  }

  private loadStep(samples: SampleRef[], epoch: number): Promise<StepBatch> {
    return (
      this.featureCache()?.load(samples, epoch) ?? loadBatch(this.cache, samples, stepLoadOptions(this.config, epoch))
    );
  }

  private async runStep(msg: MessageOf<'step'>): Promise<void> {
    const replica = this.replica!;
    const t0 = performance.now();
    const pending = this.decoding.get(msg.step) ?? this.loadStep(msg.samples, msg.epoch);
    const batch = await pending;
    this.decoding.delete(msg.step);
    const t1 = performance.now();
    // feature cache: the head alone on cached + newly computed features
    const fc = this.featureCache();
    let cached = 0;
    let computed: StepFeatures | undefined;
    const link = this.ringLink(`step ${msg.step}`);
    const { computed: t2, early } = await computeAndReduce(
      replica.buffer,
      replica.reduce.statsOffset,
      async (stream) => {
        if (fc !== undefined && replica.featureTraining !== undefined) {
          computed = await fc.features(replica.featureTraining, msg.samples, msg.epoch, batch);
          cached = computed.cached;
          await replica.featureTraining.computeHeadGradients(
            computed.features,
            computed.labels,
            msg.samples.length,
            this.config.globalBatch,
          );
        } else {
          await replica.computeGradients(batch, this.config.globalBatch, stream);
        }
        if (replica.localNonFinite) this.log.warn({ step: msg.step }, 'non-finite loss or gradient on this replica');
      },
      link && {
        rank: this.rank,
        world: this.world,
        link,
        chunkElems: this.config.chunkElems,
        wire: this.config.wire ?? 'fp32',
        take: (count) => (this.collective += count) - count,
      },
      this.config.bucketElems === undefined ? undefined : replica.reduce.gradientBuckets(this.config.bucketElems),
    );
    const nonFinite = replica.localNonFinite;
    // every rank shares the features it computed this step, so all ranks have them all
    // (a rank without the cache, e.g. on webgpu, takes part with an empty buffer: collectives must pair up)
    if (this.config.cacheFeatures === true && link) {
      const ex =
        fc !== undefined && computed !== undefined
          ? fc.packExchange(this.rank, this.world, msg.samples, computed)
          : new Float32Array(exchangeSize(this.state!.layout.net.fc.inF, this.config.globalBatch, this.world));
      await ringAllReduce(ex, this.rank, this.world, this.ringLink(`step ${msg.step}`)!, {
        step: this.collective++,
        chunkElems: this.config.chunkElems,
      });
      fc?.unpackExchange(ex, msg.epoch);
    }
    const t3 = performance.now();
    const m = replica.applyReduced();
    this.lastStep = msg.step;
    const t4 = performance.now();
    // bench (bench/scaling.ts, bench/memory.ts): per-step timings and memory, at debug level
    this.log.debug(
      {
        step: msg.step,
        epoch: msg.epoch,
        samples: msg.samples.length,
        cached,
        timings: { data: t1 - t0, compute: t2 - t1, allreduce: t3 - t2, update: t4 - t3 },
        // buckets (--bucket-mb) whose all-reduce could start before the computation ended
        ...(early > 0 ? { bucketsEarly: early } : {}),
        numTensors: tf.memory().numTensors,
        rss: process.memoryUsage.rss(),
      },
      'step timings',
    );
    await this.ch.send({
      type: 'stepDone',
      rank: this.rank,
      generation: msg.generation,
      step: msg.step,
      loss: m.loss,
      correct: m.correct,
      samples: m.samples,
      skipped: m.skipped,
      nonFinite,
      timings: { data: t1 - t0, compute: t2 - t1, allreduce: t3 - t2, update: t4 - t3 },
    });
  }

  private async runEval(msg: MessageOf<'eval'>): Promise<void> {
    const replica = this.replica!;
    let correct = 0;
    let cached = 0;
    const t0 = performance.now();
    const fc = this.featureCache();
    for (let i = 0; i < msg.samples.length; i += EVAL_CHUNK) {
      const part = msg.samples.slice(i, i + EVAL_CHUNK);
      let logits: Float32Array;
      if (fc !== undefined && replica.featureTraining !== undefined) {
        // the head alone on cached features
        const { features, cached: hits } = await fc.evalFeatures(replica.featureTraining, part);
        cached += hits;
        logits = await replica.featureTraining.predictFromFeatures(features, part.length);
      } else {
        logits = await replica.predict(
          await loadBatch(this.cache, part, {
            size: this.config.imageSize,
            seed: this.config.seed,
            epoch: msg.epoch,
            train: false,
          }),
        );
      }
      const predicted = argmaxRows(logits, this.config.numClasses);
      for (let k = 0; k < part.length; k++) if (predicted[k] === part[k]!.l) correct++;
    }
    replica.syncHost();
    this.log.debug(
      { epoch: msg.epoch, samples: msg.samples.length, cached, ms: performance.now() - t0 },
      'eval timings',
    );
    await this.ch.send({
      type: 'evalResult',
      rank: this.rank,
      generation: msg.generation,
      epoch: msg.epoch,
      correct,
      total: msg.samples.length,
      checksum: stateChecksum(replica.state),
    });
  }

  /** The state that training can have changed (mutableRanges), for the coordinator's checkpoints. */
  private async sendState(): Promise<void> {
    const state = this.state!;
    this.replica!.syncHost();
    await sendState(
      { params: state.params, stats: state.stats, accum: this.replica!.accum },
      mutableRanges(state.layout, this.config.freeze, this.config.bn),
      (part, payload) => this.ch.send({ type: 'statePart', rank: this.rank, ...part }, payload),
    );
  }

  dispose(): void {
    this.replica?.dispose();
    this.cutRing();
  }
}
