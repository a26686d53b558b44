// A data-parallel replica for the webgpu backend, with shared/train/replica.ts's interface and
// results, arranged for a GPU:
//  - the forward pass is shared/model/forward.ts's with shared/model/webgpu/resnet-kernels.ts's kernels: each BatchNorm fused
//    with its ReLU / shortcut addition, and a one-dispatch global average pool;
//  - trained parameters live in one flat GPU buffer (webgpu-flat-params.ts): gradients are gathered there by
//    buffer copies and read back for the ring all-reduce in ONE transfer together with the loss, the
//    logits, the batch statistics and a non-finite flag (Replica reads ~270 tensors one by one);
//  - the update is either one Momentum dispatch over the whole model ('gpu', the default; the host's
//    params are refreshed by syncHost()) or Replica's JS loop followed by one upload ('host': the same
//    bits as replicas on other backends).
import { tf } from '../backend/tf.js';
import { createRingBuffer } from '../allreduce/ring.js';
import { backbone, forward, head } from '../model/forward.js';
import { BN_MOVING_MOMENTUM } from '../model/spec.js';
import type { ModelState, Slot } from '../model/state.js';
import { ParamTensors } from '../model/tensors.js';
import { argmaxRows, sparseSoftmaxCrossEntropy } from './loss.js';
import { momentumStep, movingAverage } from './momentum.js';
import { ReduceLayout } from './reduce-buffer.js';
import { batchTensors, collectingBatchStats, evalBatch, type BatchStats, type Batch, type StepMetrics, type TrainOptions } from './replica.js';
import { FlatGpuParams } from './webgpu-flat-params.js';
import { webGpuForwardKernels } from '../model/webgpu/resnet-kernels.js';
import type { TrainingReplica } from './training-replica.js';
import type { ReadPart } from '../backend/webgpu/sync-read.js';
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
}

export class WebGpuReplica implements TrainingReplica {
  readonly state: ModelState;
  readonly options: TrainOptions;
  readonly gpu: Required<WebGpuReplicaOptions>;
  readonly reduce: ReduceLayout;
  readonly accum: Float32Array;
  readonly buffer: Float32Array;
  private readonly tensors: ParamTensors;
  private readonly flat: FlatGpuParams;
  private readonly trained: Slot[];
  private hostStale = false;
  private statsStale = false;
  /** Milliseconds of the last step: recording the GPU work, waiting for the read-back, the update. */
  readonly timings = { record: 0, read: 0, update: 0 };
  /** Whether this replica's last computeGradients produced a non-finite loss or gradient. */
  localNonFinite = false;

  constructor(state: ModelState, options: TrainOptions, accum?: Float32Array, gpu: WebGpuReplicaOptions = {}) {
    this.state = state;
    this.options = options;
    this.gpu = { optimizer: gpu.optimizer ?? 'gpu', hostGradients: gpu.hostGradients ?? true };
    if (this.gpu.optimizer === 'host' && !this.gpu.hostGradients) throw new WolfpackError('E_BACKEND', "WebGpuReplica: optimizer 'host' needs hostGradients");
    this.reduce = new ReduceLayout(state.layout, options.freeze, options.bn);
    this.accum = accum ?? new Float32Array(state.layout.paramCount);
    // In its own WebAssembly memory, where the ring all-reduce sums with SIMD (~4x its JS loop).
    this.buffer = createRingBuffer(this.reduce.size);
    this.tensors = new ParamTensors(state);
    this.trained = state.layout.trainableFor(options.freeze);
    this.flat = new FlatGpuParams(this.trained.map((s) => ({ name: s.spec.name, shape: s.spec.shape, offset: s.offset, size: s.size })),
      state.params, this.accum);
  }

  private readonly lookup = (name: string): tf.Tensor => this.flat.get(name) ?? this.tensors.get(name);

  /** As Replica.computeGradients: fills `buffer` (gradients only when hostGradients). */
  async computeGradients(batch: Batch, globalBatch: number): Promise<void> {
    const buf = this.buffer;
    buf.subarray(this.reduce.statsOffset).fill(0);
    if (batch.count === 0) {
      this.reduce.grads(buf).fill(0);
      if (!this.gpu.hostGradients) this.flat.writeGrads(this.reduce.grads(buf));
      return;
    }
    const net = this.state.layout.net;
    const kept: tf.Tensor[] = [];
    const statsOut: BatchStats[] = [];
    const fwd = collectingBatchStats(this.options.bn === 'train', statsOut, webGpuForwardKernels);
    const t0 = performance.now();
    const { x, y } = batchTensors(batch);
    let logits: tf.Tensor | undefined;
    try {
      const params = this.trained.map((s) => this.flat.get(s.spec.name)!);
      const lookupWith = (m: Map<string, tf.Tensor>) => (name: string) => m.get(name) ?? this.lookup(name);
      let features: tf.Tensor2D | undefined;
      if (this.options.freeze === 'backbone') {
        features = tf.tidy(() => backbone(net, this.lookup, x, fwd));
        kept.push(features);
      }
      const result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
        const m = new Map(this.trained.map((s, i) => [s.spec.name, ps[i]]));
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
      if (this.gpu.hostGradients) parts.push(gradPart);
      const classes = net.config.numClasses;
      const t1 = performance.now();
      this.timings.record = t1 - t0;
      await this.flat.readParts(parts, (bytes) => {
        let off = 0;
        const take = (n: number): Float32Array => {
          const v = new Float32Array(bytes, off, n);
          off += n * 4;
          return v;
        };
        const flags = take(flagPart.size / 4);
        const lossSum = take(1)[0];
        const predicted = argmaxRows(take(batch.count * classes), classes);
        if (this.reduce.statsSize > 0) {
          for (const s of statsOut) {
            const mean = take(s.mean.size);
            this.reduce.writeBatchStats(buf, s.bn, mean, take(s.variance.size), batch.count / globalBatch);
          }
        } else {
          off += statsOut.reduce((n, s) => n + (s.mean.size + s.variance.size) * 4, 0);
        }
        if (this.gpu.hostGradients) this.reduce.grads(buf).set(take(this.flat.count));
        const finite = flags.every((f) => f === 0);
        this.localNonFinite = this.reduce.writeMetrics(buf, { lossSum, predicted, labels: batch.labels, count: batch.count, finite });
      });
      this.timings.read = performance.now() - t1;
    } finally {
      x.dispose();
      y.dispose();
      for (const t of kept) t.dispose();
    }
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
      momentumStep(this.state.params, this.accum, this.reduce.grads(buf), this.reduce.gradBegin, this.reduce.gradEnd, this.options);
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
      this.tensors.refresh(this.state.layout.stats, 'stats');
      this.statsStale = false;
    }
    return evalBatch(batch, (x) => forward(this.state.layout.net, this.lookup, x, { bnTrain: false, kernels: webGpuForwardKernels }));
  }

  /** Re-reads all tensors from the state (after weights were replaced from outside). */
  reload(): void {
    this.tensors.refreshAll();
    this.flat.upload(this.state.params, this.accum);
    this.flat.scatter();
    this.hostStale = false;
    this.statsStale = false;
  }

  dispose(): void {
    this.tensors.dispose();
    this.flat.dispose();
  }
}
