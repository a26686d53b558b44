// The replica for the active TF.js backend: on webgpu the flat-buffer, fused-kernel WebGpuReplica,
// elsewhere Replica (TF.js ops).
import { tf } from '../backend/tf.js';
import type { Logger } from '../log.js';
import type { ModelState } from '../model/state.js';
import { Replica, type TrainOptions } from './replica.js';
import type { TrainingReplica } from './training-replica.js';
import { WebGpuReplica } from './webgpu-replica.js';

export interface ReplicaChoice {
  /**
   * Where a webgpu replica runs Momentum: 'gpu' (one kernel; replicas on webgpu agree bit for bit with
   * each other) or 'host' (bit-identical to other backends, for a ring that mixes backends; the epoch
   * checksums catch a mismatch).
   */
  webgpuOptimizer?: 'gpu' | 'host';
  /** Where a webgpu replica says that step capture fell back (default: a process warning). */
  logger?: Pick<Logger, 'warn'>;
}

export function createReplica(
  state: ModelState,
  options: TrainOptions,
  accum: Float32Array,
  choice: ReplicaChoice = {},
): TrainingReplica {
  return tf.getBackend() === 'webgpu'
    ? new WebGpuReplica(state, options, accum, {
        optimizer: choice.webgpuOptimizer ?? 'gpu',
        ...(choice.logger ? { logger: choice.logger } : {}),
      })
    : new Replica(state, options, accum);
}
