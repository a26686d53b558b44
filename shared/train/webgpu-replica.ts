// A data-parallel replica for the webgpu backend, with shared/train/replica.ts's interface and
// results, arranged for a GPU:
//  - the forward pass is shared/model/forward.ts's with shared/model/webgpu/resnet-kernels.ts's kernels: each
//    BatchNorm fused with its ReLU / shortcut addition, and a one-dispatch global average pool;
//  - trained parameters live in one flat GPU buffer (webgpu-flat-params.ts): gradients are gathered there by
//    buffer copies and read back for the ring all-reduce in ONE transfer together with the loss, the
//    logits, the batch statistics and a non-finite flag (Replica reads ~270 tensors one by one);
//  - the update is either one Momentum dispatch over the whole model ('gpu', the default; the host's
//    params are refreshed by syncHost()) or Replica's JS loop followed by one upload ('host': the same
//    bits as replicas on other backends);
//  - with `capture` (the default) the step's GPU work is recorded once per batch shape and replayed
//    from then on without TF.js (shared/backend/webgpu/capture.ts): the same dispatches, the same bits;
//  - a replayed step given a GradientStream reads its gradients back bucket by bucket: each gradient is
//    copied into the flat buffer right after the dispatch that finishes it, the replay is submitted in
//    pieces, and bucket k is mapped (and handed to the all-reduce) while the GPU computes the rest.
import { tf } from '../backend/tf.js';
import { createRingBuffer } from '../allreduce/ring.js';
import { backbone, forward, head } from '../model/forward.js';
import { BN_MOVING_MOMENTUM } from '../model/spec.js';
import type { ModelState, Slot } from '../model/state.js';
import { ParamTensors } from '../model/tensors.js';
import { argmaxRows, sparseSoftmaxCrossEntropy } from './loss.js';
import { momentumStep, movingAverage } from './momentum.js';
import { ReduceLayout } from './reduce-buffer.js';
import {
  batchTensors,
  collectingBatchStats,
  evalBatch,
  type BatchStats,
  type Batch,
  type StepMetrics,
  type TrainOptions,
} from './replica.js';
import { FlatGpuParams } from './webgpu-flat-params.js';
import { webGpuForwardKernels } from '../model/webgpu/resnet-kernels.js';
import type { GradientStream, TrainingReplica } from './training-replica.js';
import type { Bucket } from '../allreduce/buckets.js';
import type { RangeReader } from '../backend/webgpu/staging.js';
import type { ReadPart } from '../backend/webgpu/sync-read.js';
import { captureStep, type CapturedStep, type ReplayCut } from '../backend/webgpu/capture.js';
import type { GpuBuffer, WebGpuBackend } from '../backend/webgpu/types.js';
import type { BnSpec } from '../model/spec.js';
import type { Logger } from '../log.js';
import { WolfpackError } from '../errors.js';

export interface WebGpuReplicaOptions {
  /**
   * 'gpu': one Momentum dispatch over the flat buffers; state.params and accum are refreshed by
   * syncHost(). 'host': Momentum in JS on the host (bit-identical to Replica), then one upload.
   */
  optimizer?: 'gpu' | 'host';
  /**
   * Read the gradients back into `buffer` for the ring all-reduce (default true). With one worker,
   * false skips the transfer and the update uses the GPU's gradients directly (optimizer 'gpu').
   */
  hostGradients?: boolean;
  /**
   * Capture the step's GPU work (forward, backward, gradient gathering) once per batch shape and
   * replay it in later steps of that shape, without TF.js's per-operation work (default true). A
   * shape seen once (an epoch's last partial batch) runs the plain path and keeps the capture; a new
   * shape seen twice in a row is captured in its place. Where a step cannot be captured, the replica
   * says why once (on `logger`) and runs the plain path.
   */
  capture?: boolean;
  /** Where the replica says that capture fell back (default: a process warning). */
  logger?: Pick<Logger, 'warn'>;
  /**
   * This thread's CPU time in milliseconds (the benchmark's /proc clock): when given, timings.recordCpu
   * is the CPU time of the recording, which a loaded machine's waits for a core do not inflate.
   */
  cpuClock?: () => number;
}

/** What a step leaves on the GPU for the host, in the order it is read back (the gradients last). */
interface StepOutputs {
  parts: ReadPart[];
  /** The flat gradients, when they are read back (hostGradients). */
  grads: ReadPart | undefined;
  flagCount: number;
  stats: { bn: BnSpec; size: number }[];
}

/** How a capture's replay hands over one stream's buckets: where each is cut, and its staging buffers. */
interface StreamPlan {
  buckets: readonly Bucket[];
  after: number[];
  reader: RangeReader;
}

export class WebGpuReplica implements TrainingReplica {
  readonly state: ModelState;
  readonly options: TrainOptions;
  readonly gpu: Required<Omit<WebGpuReplicaOptions, 'logger' | 'cpuClock'>>;
  readonly reduce: ReduceLayout;
  readonly accum: Float32Array;
  readonly buffer: Float32Array;
  private readonly tensors: ParamTensors;
  private readonly flat: FlatGpuParams;
  private readonly trained: Slot[];
  private hostStale = false;
  private statsStale = false;
  /**
   * Milliseconds of the last step: recording the GPU work (for a replayed step: writing the inputs
   * and encoding the captured dispatches), waiting for the read-back, the update.
   */
  readonly timings = { record: 0, read: 0, update: 0, recordCpu: 0 };
  /** How the last step ran: through TF.js ('plain'), through TF.js while captured, or replayed. */
  lastStep: 'plain' | 'recorded' | 'replayed' = 'plain';
  /** Why capture is off for this replica, once it fell back. */
  captureOff: string | undefined;
  private captured: { key: string; step: CapturedStep; outputs: StepOutputs; stream?: StreamPlan } | undefined;
  private lastKey: string | undefined;
  private readonly logger: Pick<Logger, 'warn'> | undefined;
  private readonly cpuClock: (() => number) | undefined;
  /** Whether this replica's last computeGradients produced a non-finite loss or gradient. */
  localNonFinite = false;

  constructor(state: ModelState, options: TrainOptions, accum?: Float32Array, gpu: WebGpuReplicaOptions = {}) {
    this.state = state;
    this.options = options;
    this.gpu = {
      optimizer: gpu.optimizer ?? 'gpu',
      hostGradients: gpu.hostGradients ?? true,
      capture: gpu.capture ?? true,
    };
    this.logger = gpu.logger;
    this.cpuClock = gpu.cpuClock;
    if (this.gpu.optimizer === 'host' && !this.gpu.hostGradients)
      throw new WolfpackError('E_BACKEND', "WebGpuReplica: optimizer 'host' needs hostGradients");
    this.reduce = new ReduceLayout(state.layout, options.freeze, options.bn);
    this.accum = accum ?? new Float32Array(state.layout.paramCount);
    // In its own WebAssembly memory, where the ring all-reduce sums with SIMD (~4x its JS loop).
    this.buffer = createRingBuffer(this.reduce.size);
    this.tensors = new ParamTensors(state);
    this.trained = state.layout.trainableFor(options.freeze);
    this.flat = new FlatGpuParams(
      this.trained.map((s) => ({ name: s.spec.name, shape: s.spec.shape, offset: s.offset, size: s.size })),
      state.params,
      this.accum,
    );
  }

  private readonly lookup = (name: string): tf.Tensor => this.flat.get(name) ?? this.tensors.get(name);

  /**
   * As Replica.computeGradients: fills `buffer` (gradients only when hostGradients). With `stream`, a
   * replayed step hands over its gradients bucket by bucket as the GPU finishes them.
   */
  async computeGradients(batch: Batch, globalBatch: number, stream?: GradientStream): Promise<void> {
    const buf = this.buffer;
    buf.subarray(this.reduce.statsOffset).fill(0);
    if (batch.count === 0) {
      this.reduce.grads(buf).fill(0);
      if (!this.gpu.hostGradients) this.flat.writeGrads(this.reduce.grads(buf));
      return;
    }
    const key = `${batch.count}x${batch.size}/${globalBatch}`;
    const t0 = performance.now();
    const c0 = this.cpuClock?.() ?? 0;
    if (this.captured?.key === key) {
      const streamed = stream && this.gpu.hostGradients ? this.streamCuts(this.captured, stream) : undefined;
      this.captured.step.replay(
        {
          images: batch.images.subarray(0, batch.count * batch.size * batch.size * 3),
          labels: batch.labels.subarray(0, batch.count),
        },
        streamed?.cuts,
      );
      this.lastStep = 'replayed';
      this.lastKey = key;
      const t1 = performance.now();
      this.timings.record = t1 - t0;
      this.timings.recordCpu = (this.cpuClock?.() ?? 0) - c0;
      await Promise.all([this.readBack(this.captured.outputs, batch, globalBatch, !!streamed), streamed?.landed]);
      this.timings.read = performance.now() - t1;
      return;
    }
    const record =
      this.gpu.capture && this.captureOff === undefined && (this.captured === undefined || this.lastKey === key);
    this.lastKey = key;
    const kept: tf.Tensor[] = [];
    const { x, y } = batchTensors(batch);
    let reading: Promise<void>;
    let t1: number;
    try {
      let outputs: StepOutputs;
      this.lastStep = 'plain';
      if (record) {
        this.uploadUntrained();
        const r = captureStep(
          tf.backend(),
          [
            { name: 'images', tensor: x },
            { name: 'labels', tensor: y },
          ],
          () => this.runStep(x, y, globalBatch, kept),
        );
        outputs = r.result;
        if (r.step) {
          this.dropCapture();
          this.captured = { key, step: r.step, outputs };
          this.lastStep = 'recorded';
        } else {
          this.captureOff = r.why ?? 'unknown';
          const msg = `webgpu step capture is off for this replica: ${this.captureOff}; steps run through TF.js`;
          if (this.logger) this.logger.warn({ why: this.captureOff }, msg);
          else process.emitWarning(msg);
        }
      } else {
        outputs = this.runStep(x, y, globalBatch, kept);
      }
      t1 = performance.now();
      this.timings.record = t1 - t0;
      this.timings.recordCpu = (this.cpuClock?.() ?? 0) - c0;
      // The copies for the read-back are submitted before the step's tensors are disposed.
      reading = this.readBack(outputs, batch, globalBatch);
    } finally {
      x.dispose();
      y.dispose();
      for (const t of kept) t.dispose();
    }
    await reading;
    this.timings.read = performance.now() - t1;
  }

  /**
   * The step's GPU work through TF.js: forward, backward, gradients gathered into the flat buffer.
   * Synchronous (so that it can be captured); the tensors to dispose after the read-back go to `kept`.
   */
  private runStep(x: tf.Tensor4D, y: tf.Tensor1D, globalBatch: number, kept: tf.Tensor[]): StepOutputs {
    const net = this.state.layout.net;
    const statsOut: BatchStats[] = [];
    const fwd = collectingBatchStats(this.options.bn === 'train', statsOut, webGpuForwardKernels);
    let logits: tf.Tensor | undefined;
    const params = this.trained.map((s) => this.flat.get(s.spec.name)!);
    const lookupWith = (m: Map<string, tf.Tensor>) => (name: string) => m.get(name) ?? this.lookup(name);
    let features: tf.Tensor2D | undefined;
    if (this.options.freeze === 'backbone') {
      features = tf.tidy(() => backbone(net, this.lookup, x, fwd));
      kept.push(features);
    }
    const result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
      const m = new Map(this.trained.map((s, i) => [s.spec.name, ps[i]!]));
      const out = features ? head(net, lookupWith(m), features) : forward(net, lookupWith(m), x, fwd);
      logits = tf.keep(out);
      return sparseSoftmaxCrossEntropy(out, y, globalBatch);
    })(params);
    kept.push(result.value, ...result.grads, logits!);
    for (const s of statsOut) kept.push(s.mean, s.variance);
    this.flat.gather(result.grads);

    const { grads: gradPart, flags: flagPart } = this.flat.gradParts();
    const parts: ReadPart[] = [flagPart, this.flat.tensorPart(result.value), this.flat.tensorPart(logits!)];
    for (const s of statsOut) parts.push(this.flat.tensorPart(s.mean), this.flat.tensorPart(s.variance));
    return {
      parts,
      grads: this.gpu.hostGradients ? gradPart : undefined,
      flagCount: flagPart.size / 4,
      stats: statsOut.map((s) => ({ bn: s.bn, size: s.mean.size })),
    };
  }

  /**
   * The replay cuts that read `stream`'s buckets back as the GPU finishes them, and a promise that
   * settles once each has landed in `buffer` and been handed over, in order. The capture is
   * rearranged for it once (CapturedStep.groupCopiesInto) and its staging buffers are kept.
   */
  private streamCuts(
    captured: NonNullable<WebGpuReplica['captured']>,
    stream: GradientStream,
  ): { cuts: ReplayCut[]; landed: Promise<void> } {
    if (captured.stream?.buckets !== stream.buckets) {
      captured.stream?.reader.dispose();
      // the buckets in bytes of the flat gradient buffer (it holds the gradient region of `buffer`)
      const bytes = stream.buckets.map((k) => ({ begin: k.begin * 4, end: k.end * 4 }));
      const after = captured.step.groupCopiesInto(this.flat.gradBuffer, bytes);
      captured.stream = { buckets: stream.buckets, after, reader: this.flat.gradReader(bytes) };
    }
    const plan = captured.stream;
    const grads = this.reduce.grads(this.buffer);
    const cuts: ReplayCut[] = [];
    let landed = Promise.resolve();
    plan.buckets.forEach((k, i) => {
      const { cut, read } = plan.reader.cut(i, plan.after[i]!, (bytes) => grads.set(new Float32Array(bytes), k.begin));
      cuts.push(cut);
      landed = Promise.all([landed, read]).then(() => stream.landed(i));
    });
    return { cuts, landed };
  }

  /**
   * Reads a step's outputs back in one transfer and fills `buffer` from them; the gradients too unless
   * they are `streamed` (read back by the replay's cuts).
   */
  private readBack(outputs: StepOutputs, batch: Batch, globalBatch: number, streamed = false): Promise<void> {
    const buf = this.buffer;
    const classes = this.state.layout.net.config.numClasses;
    const grads = streamed ? undefined : outputs.grads;
    return this.flat.readParts(grads ? [...outputs.parts, grads] : outputs.parts, (bytes) => {
      let off = 0;
      const take = (n: number): Float32Array => {
        const v = new Float32Array(bytes, off, n);
        off += n * 4;
        return v;
      };
      const flags = take(outputs.flagCount);
      const lossSum = take(1)[0]!;
      const predicted = argmaxRows(take(batch.count * classes), classes);
      if (this.reduce.statsSize > 0) {
        for (const s of outputs.stats) {
          const mean = take(s.size);
          this.reduce.writeBatchStats(buf, s.bn, mean, take(s.size), batch.count / globalBatch);
        }
      } else {
        off += outputs.stats.reduce((n, s) => n + s.size * 8, 0);
      }
      if (grads) this.reduce.grads(buf).set(take(this.flat.count));
      const finite = flags.every((f) => f === 0);
      this.localNonFinite = this.reduce.writeMetrics(buf, {
        lossSum,
        predicted,
        labels: batch.labels,
        count: batch.count,
        finite,
      });
    });
  }

  /**
   * Puts the parameter tensors the step reads but does not train (frozen ones, moving statistics) on
   * the GPU before a capture, so that they are not captured as constants.
   */
  private uploadUntrained(): void {
    const b = tf.backend() as WebGpuBackend;
    const trained = new Set(this.trained.map((s) => s.spec.name));
    for (const s of [...this.state.layout.trainable, ...this.state.layout.stats]) {
      if (!trained.has(s.spec.name)) b.uploadToGPU(this.tensors.get(s.spec.name).dataId);
    }
  }

  /** The current capture's size: dispatches and copies a replay encodes, bytes of uniforms and constants. */
  get captureInfo():
    | {
        key: string;
        dispatches: number;
        copies: number;
        bytes: number;
        lastReplay: CapturedStep['lastReplay'];
        /** With a gradient stream: after how many of the commands each bucket's read-back is submitted. */
        stream?: { after: readonly number[] };
      }
    | undefined {
    const c = this.captured;
    return (
      c && {
        key: c.key,
        dispatches: c.step.dispatches,
        copies: c.step.copies,
        bytes: c.step.capturedBytes,
        lastReplay: c.step.lastReplay,
        ...(c.stream ? { stream: { after: c.stream.after } } : {}),
      }
    );
  }

  private dropCapture(): void {
    this.captured?.stream?.reader.dispose();
    this.captured?.step.dispose();
    this.captured = undefined;
  }

  /** As Replica.applyReduced: Momentum on the trained parameters, moving averages of the statistics. */
  applyReduced(): StepMetrics {
    const buf = this.buffer;
    const metrics: StepMetrics = this.reduce.readMetrics(buf);
    if (metrics.skipped) return metrics;
    const t0 = performance.now();
    const { lr, momentum } = this.options;
    if (this.gpu.optimizer === 'gpu') {
      if (this.gpu.hostGradients) this.flat.writeGrads(this.reduce.grads(buf));
      this.flat.momentumStep(lr, momentum);
      this.flat.scatter();
      this.hostStale = true;
    } else {
      momentumStep(
        this.state.params,
        this.accum,
        this.reduce.grads(buf),
        this.reduce.gradBegin,
        this.reduce.gradEnd,
        this.options,
      );
      this.flat.writeParams(this.state.params);
    }
    if (this.reduce.statsSize > 0) {
      movingAverage(this.state.stats, this.reduce.stats(buf), BN_MOVING_MOMENTUM);
      this.statsStale = true;
    }
    this.timings.update = performance.now() - t0;
    return metrics;
  }

  /** Brings state.params and accum up to date with the GPU (after 'gpu' updates). Blocking. */
  syncHost(): void {
    if (!this.hostStale) return;
    this.flat.download(this.state.params, this.accum);
    this.hostStale = false;
  }

  /** Logits in evaluation mode (moving statistics), [count, K] row-major. */
  async predict(batch: Batch): Promise<Float32Array> {
    if (this.statsStale) {
      // New tensors replace the statistics' ones: a capture that reads the old ones is dropped.
      const b = tf.backend() as WebGpuBackend;
      if (
        this.captured &&
        this.state.layout.stats.some((s) => {
          const r = b.tensorMap.get(this.tensors.get(s.spec.name).dataId)?.resource;
          return r != null && this.captured!.step.touches(r as GpuBuffer);
        })
      )
        this.dropCapture();
      this.tensors.refresh(this.state.layout.stats, 'stats');
      this.statsStale = false;
    }
    return evalBatch(batch, (x) =>
      forward(this.state.layout.net, this.lookup, x, { bnTrain: false, kernels: webGpuForwardKernels }),
    );
  }

  /** Re-reads all tensors from the state (after weights were replaced from outside). */
  reload(): void {
    this.dropCapture();
    this.tensors.refreshAll();
    this.flat.upload(this.state.params, this.accum);
    this.flat.scatter();
    this.hostStale = false;
    this.statsStale = false;
  }

  dispose(): void {
    this.dropCapture();
    this.tensors.dispose();
    this.flat.dispose();
  }
}
