// wolfpack as a library: `import { train, predict } from 'wolfpack'`. train() runs single-node data-parallel
// fine-tuning (the coordinator in this process, N local worker processes; api/train.ts), predict()
// classifies images or NCHW tensors with a trained weights file (api/predict.ts). Errors are
// WolfpackError values with a code (shared/errors.ts). docs/API.md describes it all.
export { train, checkTrainOptions, type TrainOptions, type TrainResult } from './api/train.js';
import type { PredictOptions, Prediction } from './api/predict.js';
export type { PredictInput, PredictOptions, Prediction, TensorInput } from './api/predict.js';
export { WolfpackError, isWolfpackError, type ErrorCode } from './shared/errors.js';
export type { EpochMetrics } from './coordinator/checkpoints.js';
export type { JobResult } from './coordinator/job.js';
export type {
  HeartbeatProbe,
  JobEvent,
  JobEventKind,
  JobEvents,
  MemberInfo,
  StepEvent,
} from './coordinator/dashboard/events.js';
export { DashboardServer, type DashboardOptions } from './coordinator/dashboard/server.js';
export type { SecurityFlags } from './shared/auth/config.js';
export { BACKENDS, type BackendChoice } from './shared/backend/select.js';
export { createLogger, silentLogger, type Logger, type LogFormat } from './shared/log.js';

/**
 * Classifies `options.inputs` (image files, .npy files, normalised NCHW Float32Arrays) with a weights file
 * that has its head; one Prediction per image, in input order. TensorFlow.js is loaded on the first call,
 * so a program that only trains does not load it.
 */
export async function predict(options: PredictOptions): Promise<Prediction[]> {
  const impl = await import('./api/predict.js');
  return impl.predict(options);
}
