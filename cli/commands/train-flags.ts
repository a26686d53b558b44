// The training flags `train`, `coordinator` and `demo` share, and their defaults (the lab's).
import { BACKENDS, type BackendChoice } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger, type LogFormat } from '../../shared/log.js';
import type { JobOptions } from '../../coordinator/job.js';
import { num, oneOf, str, type Options } from '../args.js';

export const TRAIN_FLAGS: Options = {
  data: { type: 'string' },
  weights: { type: 'string' },
  workers: { type: 'string' },
  epochs: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  momentum: { type: 'string' },
  freeze: { type: 'string' },
  bn: { type: 'string' },
  'image-size': { type: 'string' },
  seed: { type: 'string' },
  out: { type: 'string' },
  backend: { type: 'string' },
  host: { type: 'string' },
  port: { type: 'string' },
  timeout: { type: 'string' },
  'log-format': { type: 'string' },
  'log-level': { type: 'string' },
};

export const TRAIN_USAGE = '--data DIR --weights FILE [--workers N] [--epochs 20] [--batch-size 18] [--lr 0.001] ' +
  '[--momentum 0.9] [--freeze none|backbone] [--bn train|frozen] [--image-size 224] [--seed 0] [--out DIR] ' +
  '[--backend auto|tensorflow-gpu|webgpu|tensorflow|wasm|cpu] [--timeout SECONDS] [--log-format pretty|json]';

export function loggerFrom(values: Record<string, unknown>, base: Record<string, unknown>) {
  const format = values['log-format'] === undefined ? undefined : oneOf<LogFormat>(values, 'log-format', ['pretty', 'json'], 'json');
  return createLogger({ format, level: values['log-level'] as string | undefined, base });
}

export function jobOptionsFrom(values: Record<string, unknown>, defaults: Partial<JobOptions> = {}): Omit<JobOptions, 'logger' | 'print'> & { backend: BackendChoice } {
  const workers = num(values, 'workers', defaults.workers ?? 2, { int: true, min: 1, max: 256 });
  const batchSize = num(values, 'batch-size', defaults.batchSize ?? 18, { int: true, min: 1 });
  if (batchSize < workers) throw new WolfpackError('E_USAGE', `--batch-size ${batchSize} is smaller than --workers ${workers}: every worker needs a sample`);
  return {
    data: str(values, 'data', defaults.data),
    weights: str(values, 'weights', defaults.weights),
    workers,
    epochs: num(values, 'epochs', defaults.epochs ?? 20, { int: true, min: 1 }),
    batchSize,
    lr: num(values, 'lr', defaults.lr ?? 0.001, { min: 0 }),
    momentum: num(values, 'momentum', defaults.momentum ?? 0.9, { min: 0, max: 1 }),
    freeze: oneOf(values, 'freeze', ['none', 'backbone'] as const, defaults.freeze ?? 'none'),
    bn: oneOf(values, 'bn', ['train', 'frozen'] as const, defaults.bn ?? 'train'),
    imageSize: num(values, 'image-size', defaults.imageSize ?? 224, { int: true, min: 16, max: 1024 }),
    seed: num(values, 'seed', defaults.seed ?? 0, { int: true, min: 0 }),
    out: str(values, 'out', defaults.out ?? 'runs/latest'),
    host: str(values, 'host', defaults.host ?? '127.0.0.1'),
    port: num(values, 'port', defaults.port ?? 0, { int: true, min: 0, max: 65535 }),
    timeoutMs: num(values, 'timeout', 600, { min: 1 }) * 1000,
    backend: oneOf(values, 'backend', BACKENDS, 'auto'),
  };
}
