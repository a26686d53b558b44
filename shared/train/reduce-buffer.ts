// The one buffer every replica all-reduces each step, and where each part of it lives:
//   [ gradients of the trained parameters | BatchNorm batch statistics | metrics ]
// Every part is pre-scaled by the worker's share of the global batch (gradients by 1/B, statistics
// by n/B), so the ring's plain SUM yields the global-batch mean gradient and the sample-weighted mean
// of the replicas' batch statistics: all replicas then apply the same update and stay identical.
import { reverseBuckets, type Bucket } from '../allreduce/buckets.js';
import type { BnSpec } from '../model/spec.js';
import type { Freeze, ParamLayout } from '../model/state.js';

export type BnMode = 'train' | 'frozen';

/** Metric slots at the end of the buffer. */
export const METRIC = { lossSum: 0, correct: 1, samples: 2, nonFinite: 3 } as const;
export const METRIC_COUNT = 4;

export class ReduceLayout {
  /** Range of the flat params the gradients cover. */
  readonly gradBegin: number;
  readonly gradEnd: number;
  readonly statsOffset: number;
  readonly statsSize: number;
  readonly metricsOffset: number;
  readonly size: number;

  constructor(
    private readonly layout: ParamLayout,
    freeze: Freeze,
    bn: BnMode,
  ) {
    const r = layout.trainableRange(freeze);
    this.gradBegin = r.begin;
    this.gradEnd = r.end;
    this.statsOffset = r.end - r.begin;
    this.statsSize = bn === 'train' ? layout.statCount : 0;
    this.metricsOffset = this.statsOffset + this.statsSize;
    this.size = this.metricsOffset + METRIC_COUNT;
    this.paramStarts = layout.trainableFor(freeze).map((s) => s.offset - r.begin);
  }

  /** Where each trained parameter's gradient starts in the gradient region. */
  private readonly paramStarts: readonly number[];
  private lastBuckets: { elems: number; buckets: readonly Bucket[] } | undefined;

  /**
   * Buckets of about `bucketElems` over the gradient region, last layers first (the order the backward
   * pass finishes them), cut at the parameters' boundaries: a parameter is split between buckets only
   * when it is larger than one. The same array for the same size, step after step: a webgpu replica
   * keeps its read-back plan for as long as it is given the same buckets.
   */
  gradientBuckets(bucketElems: number): readonly Bucket[] {
    if (this.lastBuckets?.elems !== bucketElems)
      this.lastBuckets = {
        elems: bucketElems,
        buckets: reverseBuckets(this.statsOffset, bucketElems, this.paramStarts),
      };
    return this.lastBuckets.buckets;
  }

  grads(buf: Float32Array): Float32Array {
    return buf.subarray(0, this.statsOffset);
  }

  stats(buf: Float32Array): Float32Array {
    return buf.subarray(this.statsOffset, this.metricsOffset);
  }

  metrics(buf: Float32Array): Float32Array {
    return buf.subarray(this.metricsOffset, this.size);
  }

  /**
   * Writes one BatchNorm's batch mean and unbiased variance into the statistics part, scaled by this
   * replica's share of the global batch (`weight` = count / globalBatch), at the moving statistics' slots.
   */
  writeBatchStats(
    buf: Float32Array,
    bn: BnSpec,
    mean: ArrayLike<number>,
    variance: ArrayLike<number>,
    weight: number,
  ): void {
    const stats = this.stats(buf);
    const at = (name: string): number => {
      const hit = this.layout.find(name);
      if (hit?.kind !== 'stats') throw new Error(`ReduceLayout: ${name} is not a moving statistic`);
      return hit.slot.offset;
    };
    const m = at(bn.mean);
    const v = at(bn.variance);
    for (let c = 0; c < mean.length; c++) {
      stats[m + c] = mean[c]! * weight;
      stats[v + c] = variance[c]! * weight;
    }
  }

  /**
   * Writes this replica's metrics: its loss sum, how many of its `count` predictions match `labels`,
   * and the non-finite flag. Returns whether this replica's loss or gradients were non-finite.
   */
  writeMetrics(
    buf: Float32Array,
    r: { lossSum: number; predicted: Int32Array; labels: ArrayLike<number>; count: number; finite: boolean },
  ): boolean {
    let correct = 0;
    for (let i = 0; i < r.count; i++) if (r.predicted[i] === r.labels[i]) correct++;
    const m = this.metrics(buf);
    m[METRIC.lossSum] = r.lossSum;
    m[METRIC.correct] = correct;
    m[METRIC.samples] = r.count;
    m[METRIC.nonFinite] = r.finite && Number.isFinite(r.lossSum) ? 0 : 1;
    return m[METRIC.nonFinite] !== 0;
  }

  /** The summed metrics of a reduced buffer. */
  readMetrics(buf: Float32Array): { loss: number; correct: number; samples: number; skipped: boolean } {
    const m = this.metrics(buf);
    return {
      loss: m[METRIC.lossSum]!,
      correct: Math.round(m[METRIC.correct]!),
      samples: Math.round(m[METRIC.samples]!),
      skipped: m[METRIC.nonFinite] !== 0,
    };
  }
}
