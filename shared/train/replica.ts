// One data-parallel replica of the model: computes its part of a step's gradient into the reduce
// buffer, and, once the buffer holds the sum over all replicas, applies the identical update.
import { tf } from '../backend/tf.js';
import { createRingBuffer } from '../allreduce/ring.js';
import { wasmHeapView } from '../backend/wasm/heap.js';
import { WolfpackError } from '../errors.js';
import { backbone, forward, head, type ForwardKernels, type ForwardOptions } from '../model/forward.js';
import type { BnSpec } from '../model/spec.js';
import { BN_MOVING_MOMENTUM } from '../model/spec.js';
import type { Freeze, ModelState, Slot } from '../model/state.js';
import { ParamTensors } from '../model/tensors.js';
import { argmaxRows } from './loss.js';
import { sparseSoftmaxCrossEntropy } from './loss.js';
import { momentumStep, movingAverage, type MomentumConfig } from './momentum.js';
import { ReduceLayout, type BnMode } from './reduce-buffer.js';
import type { FeatureTraining, TrainingReplica } from './training-replica.js';

export interface TrainOptions extends MomentumConfig {
  freeze: Freeze;
  bn: BnMode;
}

/** Images in NHWC float32 (already normalised), with their labels. */
export interface Batch {
  images: Float32Array;
  labels: Int32Array;
  count: number;
  size: number;
}

export interface StepMetrics {
  /** Mean loss over the global batch. */
  loss: number;
  correct: number;
  samples: number;
  /** True when some replica produced a non-finite loss or gradient: the update was skipped. */
  skipped: boolean;
}

/** A batch as tensors: images [N,S,S,3] and int32 labels [N]. The caller disposes both. */
export function batchTensors(batch: Batch): { x: tf.Tensor4D; y: tf.Tensor1D } {
  return {
    x: tf.tensor4d(batch.images.subarray(0, batch.count * batch.size * batch.size * 3), [
      batch.count,
      batch.size,
      batch.size,
      3,
    ]),
    y: tf.tensor1d(batch.labels.subarray(0, batch.count), 'int32'),
  };
}

/** One BatchNorm's batch statistics from a training forward pass, kept until the step disposes them. */
export interface BatchStats {
  bn: BnSpec;
  mean: tf.Tensor;
  variance: tf.Tensor;
}

/** ForwardOptions of a training step: each BatchNorm's batch statistics are kept and pushed onto `out`. */
export function collectingBatchStats(bnTrain: boolean, out: BatchStats[], kernels?: ForwardKernels): ForwardOptions {
  return {
    bnTrain,
    onBatchStats: (bn, mean, variance) => {
      out.push({ bn, mean: tf.keep(mean), variance: tf.keep(variance) });
    },
    ...(kernels ? { kernels } : {}),
  };
}

/** The values of the tensor `run()` makes, row-major, with every tensor it made disposed. */
export async function tidyValues(run: () => tf.Tensor): Promise<Float32Array> {
  const out = tf.tidy(run);
  try {
    return (await out.data()) as Float32Array;
  } finally {
    out.dispose();
  }
}

/** Row-major output of `run(images)` for a batch (logits, or features), with every tensor it made disposed. */
export async function evalBatch(batch: Batch, run: (x: tf.Tensor4D) => tf.Tensor): Promise<Float32Array> {
  const { x, y } = batchTensors(batch);
  try {
    return await tidyValues(() => run(x));
  } finally {
    x.dispose();
    y.dispose();
  }
}

/** A replica computed with TF.js ops, on any backend (see TrainingReplica). */
export class Replica implements TrainingReplica, FeatureTraining {
  readonly state: ModelState;
  readonly options: TrainOptions;
  readonly reduce: ReduceLayout;
  /** accum of Momentum, one per trainable parameter (flat, like state.params). */
  readonly accum: Float32Array;
  /** The all-reduce buffer for the current step. */
  readonly buffer: Float32Array;
  /** Whether THIS replica's last computeGradients produced a non-finite loss or gradient. */
  localNonFinite = false;
  /** This replica trains the head on cached features too. */
  readonly featureTraining: FeatureTraining = this;
  private readonly tensors: ParamTensors;
  private readonly trained: Slot[];

  constructor(state: ModelState, options: TrainOptions, accum?: Float32Array) {
    this.state = state;
    this.options = options;
    this.reduce = new ReduceLayout(state.layout, options.freeze, options.bn);
    this.accum = accum ?? new Float32Array(state.layout.paramCount);
    // In its own WebAssembly memory, where the ring all-reduce sums with SIMD (~4x its JS loop).
    this.buffer = createRingBuffer(this.reduce.size);
    this.tensors = new ParamTensors(state);
    this.trained = state.layout.trainableFor(options.freeze);
  }

  /**
   * Fills `buffer` with this replica's share of the step: gradients of the mean loss over the GLOBAL
   * batch restricted to its samples, its batch statistics weighted by count/globalBatch, and metrics.
   */
  async computeGradients(batch: Batch, globalBatch: number): Promise<void> {
    const buf = this.buffer;
    buf.fill(0);
    this.localNonFinite = false;
    if (batch.count === 0) return;
    const net = this.state.layout.net;
    const kept: tf.Tensor[] = [];
    const statsOut: BatchStats[] = [];
    const fwd = collectingBatchStats(this.options.bn === 'train', statsOut);
    const { x, y } = batchTensors(batch);
    const lookupWith = (override: Map<string, tf.Tensor>) => (name: string) =>
      override.get(name) ?? this.tensors.get(name);
    let logitsKept: tf.Tensor | undefined;
    let result: { value: tf.Scalar; grads: tf.Tensor[] };
    try {
      const params = this.trained.map((s) => this.tensors.get(s.spec.name));
      if (this.options.freeze === 'backbone') {
        const features = tf.tidy(() => backbone(net, this.tensors.lookup, x, fwd));
        kept.push(features);
        result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
          const m = new Map(this.trained.map((s, i) => [s.spec.name, ps[i]!]));
          const logits = head(net, lookupWith(m), features);
          logitsKept = tf.keep(logits);
          return sparseSoftmaxCrossEntropy(logits, y, globalBatch);
        })(params);
      } else {
        result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
          const m = new Map(this.trained.map((s, i) => [s.spec.name, ps[i]!]));
          const logits = forward(net, lookupWith(m), x, fwd);
          logitsKept = tf.keep(logits);
          return sparseSoftmaxCrossEntropy(logits, y, globalBatch);
        })(params);
      }
      kept.push(result.value, ...result.grads);
      if (logitsKept) kept.push(logitsKept);
      for (const s of statsOut) kept.push(s.mean, s.variance);

      let finite = true;
      const grads = this.reduce.grads(buf);
      const base = this.reduce.gradBegin;
      // wasm: copied straight from its heap; elsewhere data() rather than dataSync(): GPU backends
      // (webgpu) can only read back asynchronously.
      const read =
        tf.getBackend() === 'wasm'
          ? undefined
          : await Promise.all(result.grads.map((g) => g.data() as Promise<Float32Array>));
      this.trained.forEach((slot, i) => {
        const g = result.grads[i]!;
        grads.set(read?.[i] ?? wasmHeapView(g) ?? (g.dataSync() as Float32Array), slot.offset - base);
      });
      for (let i = 0; i < grads.length; i++)
        if (!Number.isFinite(grads[i])) {
          finite = false;
          break;
        }
      if (this.reduce.statsSize > 0) {
        for (const s of statsOut) {
          const [mean, variance] = await Promise.all([s.mean.data(), s.variance.data()]);
          this.reduce.writeBatchStats(buf, s.bn, mean, variance, batch.count / globalBatch);
        }
      }
      const lossSum = (await result.value.data())[0]!;
      const predicted = argmaxRows((await logitsKept!.data()) as Float32Array, net.config.numClasses);
      this.localNonFinite = this.reduce.writeMetrics(buf, {
        lossSum,
        predicted,
        labels: batch.labels,
        count: batch.count,
        finite,
      });
    } finally {
      x.dispose();
      y.dispose();
      for (const t of kept) t.dispose();
    }
  }

  // Feature cache (worker/feature-cache.ts): the frozen backbone's output computed once per (sample,
  // view), and a step of the head alone on such features. Valid only with --freeze backbone --bn frozen.

  /** Width of the backbone's pooled features (the head's input). */
  get featureDim(): number {
    return this.state.layout.net.fc.inF;
  }

  private requireFrozenFeatures(what: string): void {
    if (this.options.freeze !== 'backbone' || this.options.bn !== 'frozen') {
      throw new WolfpackError(
        'E_USAGE',
        `Replica.${what}: needs --freeze backbone and --bn frozen ` +
          `(got freeze ${this.options.freeze}, bn ${this.options.bn})`,
      );
    }
  }

  /**
   * The frozen backbone's pooled features of `batch`, [count, featureDim] row-major: exactly what
   * computeGradients feeds the head with --freeze backbone --bn frozen (moving statistics, no tape).
   */
  async computeFeatures(batch: Batch): Promise<Float32Array> {
    this.requireFrozenFeatures('computeFeatures');
    if (batch.count === 0) return new Float32Array(0);
    return evalBatch(batch, (x) => backbone(this.state.layout.net, this.tensors.lookup, x, { bnTrain: false }));
  }

  /**
   * computeGradients on features the backbone already produced (computeFeatures): fills `buffer` with
   * the head's gradients of sum(loss)/globalBatch over these `count` samples and the step's metrics,
   * the same values computeGradients gives for the images the features came from.
   */
  async computeHeadGradients(
    features: Float32Array,
    labels: Int32Array,
    count: number,
    globalBatch: number,
  ): Promise<void> {
    this.requireFrozenFeatures('computeHeadGradients');
    const buf = this.buffer;
    buf.fill(0);
    this.localNonFinite = false;
    if (count === 0) return;
    const net = this.state.layout.net;
    const dim = this.featureDim;
    if (features.length < count * dim || labels.length < count) {
      throw new WolfpackError(
        'E_USAGE',
        `Replica.computeHeadGradients: ${count} samples need ${count * dim} features and ${count} labels, ` +
          `got ${features.length} and ${labels.length}`,
      );
    }
    const f = tf.tensor2d(features.subarray(0, count * dim), [count, dim]);
    const y = tf.tensor1d(labels.subarray(0, count), 'int32');
    const kept: tf.Tensor[] = [];
    try {
      const lookupWith = (override: Map<string, tf.Tensor>) => (name: string) =>
        override.get(name) ?? this.tensors.get(name);
      let logitsKept: tf.Tensor | undefined;
      const params = this.trained.map((s) => this.tensors.get(s.spec.name));
      const result = tf.valueAndGrads((...ps: tf.Tensor[]) => {
        const m = new Map(this.trained.map((s, i) => [s.spec.name, ps[i]!]));
        const logits = head(net, lookupWith(m), f);
        logitsKept = tf.keep(logits);
        return sparseSoftmaxCrossEntropy(logits, y, globalBatch);
      })(params);
      kept.push(result.value, ...result.grads);
      if (logitsKept) kept.push(logitsKept);
      const grads = this.reduce.grads(buf);
      const base = this.reduce.gradBegin;
      const read = await Promise.all(result.grads.map((g) => g.data() as Promise<Float32Array>));
      this.trained.forEach((slot, i) => grads.set(read[i]!, slot.offset - base));
      let finite = true;
      for (let i = 0; i < grads.length; i++)
        if (!Number.isFinite(grads[i])) {
          finite = false;
          break;
        }
      const lossSum = (await result.value.data())[0]!;
      const predicted = argmaxRows((await logitsKept!.data()) as Float32Array, net.config.numClasses);
      this.localNonFinite = this.reduce.writeMetrics(buf, { lossSum, predicted, labels, count, finite });
    } finally {
      f.dispose();
      y.dispose();
      for (const t of kept) t.dispose();
    }
  }

  /** The head's logits on computeFeatures' rows: what predict() gives for the images they came from. */
  async predictFromFeatures(features: Float32Array, count: number): Promise<Float32Array> {
    this.requireFrozenFeatures('predictFromFeatures');
    const dim = this.featureDim;
    if (features.length < count * dim) {
      throw new WolfpackError(
        'E_USAGE',
        `Replica.predictFromFeatures: ${count} samples need ${count * dim} features, got ${features.length}`,
      );
    }
    if (count === 0) return new Float32Array(0);
    const f = tf.tensor2d(features.subarray(0, count * dim), [count, dim]);
    try {
      return await tidyValues(() => head(this.state.layout.net, this.tensors.lookup, f));
    } finally {
      f.dispose();
    }
  }

  /** Applies the summed buffer: Momentum on the trained parameters and the moving statistics. */
  applyReduced(): StepMetrics {
    const buf = this.buffer;
    const metrics: StepMetrics = this.reduce.readMetrics(buf);
    if (metrics.skipped) return metrics; // every replica sees the same flag and skips together
    momentumStep(
      this.state.params,
      this.accum,
      this.reduce.grads(buf),
      this.reduce.gradBegin,
      this.reduce.gradEnd,
      this.options,
    );
    this.tensors.refresh(this.trained, 'params');
    if (this.reduce.statsSize > 0) {
      movingAverage(this.state.stats, this.reduce.stats(buf), BN_MOVING_MOMENTUM);
      this.tensors.refresh(this.state.layout.stats, 'stats');
    }
    return metrics;
  }

  /** Logits in evaluation mode (moving statistics), [count, K] row-major. */
  async predict(batch: Batch): Promise<Float32Array> {
    return evalBatch(batch, (x) => forward(this.state.layout.net, this.tensors.lookup, x, { bnTrain: false }));
  }

  /** Re-reads all tensors from the state (after weights were replaced from outside). */
  /** The host copy is the only copy. */
  syncHost(): void {}

  reload(): void {
    this.tensors.refreshAll();
  }

  dispose(): void {
    this.tensors.dispose();
  }
}
