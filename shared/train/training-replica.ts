// What a worker needs of its model replica, whatever the backend: gradients of its share of a step
// into the all-reduce buffer, the update from the reduced buffer, evaluation, and its host copy of the
// state for checksums and checkpoints. Two implementations: Replica (TF.js ops on any backend,
// replica.ts) and WebGpuReplica (flat GPU buffers and fused kernels, webgpu-replica.ts);
// createReplica picks one for the active backend.
import type { Bucket } from '../allreduce/buckets.js';
import type { ModelState } from '../model/state.js';
import type { ReduceLayout } from './reduce-buffer.js';
import type { Batch, StepMetrics, TrainOptions } from './replica.js';

export interface TrainingReplica {
  readonly state: ModelState;
  readonly options: TrainOptions;
  readonly reduce: ReduceLayout;
  /** Momentum's accumulators, one per trainable parameter (flat, like state.params). */
  readonly accum: Float32Array;
  /** The all-reduce buffer for the current step. */
  readonly buffer: Float32Array;
  /** Whether this replica's last gradient computation produced a non-finite loss or gradient. */
  readonly localNonFinite: boolean;
  /**
   * Fills `buffer` with this replica's share of the step: gradients of the mean loss over the GLOBAL
   * batch restricted to its samples, its batch statistics weighted by count/globalBatch, and metrics.
   * With `stream`, a replica that can may hand over buckets of gradients before it resolves (the webgpu
   * replica, on a replayed step); every bucket is final once it resolves.
   */
  computeGradients(batch: Batch, globalBatch: number, stream?: GradientStream): Promise<void>;
  /** Applies the reduced buffer (the same on every replica): Momentum, moving statistics, metrics. */
  applyReduced(): StepMetrics;
  /** Logits in evaluation mode (moving statistics), [count, K] row-major. */
  predict(batch: Batch): Promise<Float32Array>;
  /** Brings `state` and `accum` on the host up to date (a replica that updates on a device). Blocking. */
  syncHost(): void;
  /** Re-reads all tensors from `state` and `accum` (after the weights were replaced from outside). */
  reload(): void;
  dispose(): void;
  /** Head-only training on cached backbone features (--cache-features), where this replica offers it. */
  readonly featureTraining?: FeatureTraining;
}

/** Gradients handed over bucket by bucket while a step computes them (DDP's overlap with the backward pass). */
export interface GradientStream {
  /** Ranges of the gradient region of `buffer` (ReduceLayout.grads), in the order the backward pass finishes them. */
  readonly buckets: readonly Bucket[];
  /** Bucket k's gradients are final in `buffer`: called in order k = 0, 1, ..., each at most once. */
  landed(k: number): void;
}

/** Training the head alone on backbone features computed once (worker/feature-cache.ts). */
export interface FeatureTraining {
  /** Length of one image's backbone feature vector. */
  readonly featureDim: number;
  /** Backbone features of a batch, [count, featureDim] row-major. */
  computeFeatures(batch: Batch): Promise<Float32Array>;
  /** Like computeGradients, for the head only, from features. */
  computeHeadGradients(features: Float32Array, labels: Int32Array, count: number, globalBatch: number): Promise<void>;
  /** Logits of the head on features, [count, K] row-major. */
  predictFromFeatures(features: Float32Array, count: number): Promise<Float32Array>;
}
