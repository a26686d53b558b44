// The one buffer every replica all-reduces each step, and where each part of it lives:
//   [ gradients of the trained parameters | BatchNorm batch statistics | metrics ]
// Every part is pre-scaled by the worker's share of the global batch (gradients by 1/B, statistics
// by n/B), so the ring's plain SUM yields the global-batch mean gradient and the sample-weighted mean
// of the replicas' batch statistics: all replicas then apply the same update and stay identical.
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

  constructor(layout: ParamLayout, freeze: Freeze, bn: BnMode) {
    const r = layout.trainableRange(freeze);
    this.gradBegin = r.begin;
    this.gradEnd = r.end;
    this.statsOffset = r.end - r.begin;
    this.statsSize = bn === 'train' ? layout.statCount : 0;
    this.metricsOffset = this.statsOffset + this.statsSize;
    this.size = this.metricsOffset + METRIC_COUNT;
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
}
