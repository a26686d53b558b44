// `predict()`, the programmatic form of `wolfpack predict`: eval-mode logits and softmax probabilities of a
// weights file that has its classification head, in this process. Inputs are image files (resized and
// centre-cropped as in evaluation), .npy files or Float32Arrays already normalised in NCHW layout (the
// PyTorch/MindSpore convention). It runs on api/inference.ts, as `wolfpack predict` does, so the
// numbers are the CLI's.
import { BACKENDS, selectBackend, type BackendChoice } from '../shared/backend/select.js';
import { WolfpackError } from '../shared/errors.js';
import { silentLogger, type Logger } from '../shared/log.js';
import {
  loadPredictModel,
  nchwToNhwc,
  predictLogits,
  readImages,
  readInputTensor,
  softmax,
  type PredictInputs,
} from './inference.js';

/** A float32 NCHW batch [N, 3, H, W], normalised with the ImageNet mean and std. */
export interface TensorInput {
  data: Float32Array;
  shape: readonly [number, number, number, number];
}

/**
 * One input: an image file path (JPEG, PNG, WebP), a path ending in .npy (a float32 NCHW batch), a
 * Float32Array holding one normalised [3, S, S] image (S = options.imageSize), or a TensorInput batch.
 */
export type PredictInput = string | Float32Array | TensorInput;

export interface PredictOptions {
  /** A weights file with its head: what `train()` writes (best.ckpt, last.ckpt) or a safetensors file. */
  weights: string;
  inputs: readonly PredictInput[];
  /** Class names, in head order (default: '0', '1', ...). */
  classes?: readonly string[];
  /** Side of the centre crop for image files, and of a bare Float32Array image (default 224). */
  imageSize?: number;
  /** Images per forward pass (default 8). */
  batchSize?: number;
  /** TF.js backend for this process (default 'auto'). */
  backend?: BackendChoice;
  /** Default: no logs. */
  logger?: Logger;
}

export interface Prediction {
  /** Position among all predicted images. */
  index: number;
  /** Which of options.inputs it came from, and its position in that input (a batch holds several). */
  input: number;
  item: number;
  /** The file it came from, for path inputs. */
  path?: string;
  logits: number[];
  probabilities: number[];
  /** Argmax: its index and name. */
  classIndex: number;
  class: string;
}

function usage(message: string, details: Record<string, unknown> = {}): WolfpackError {
  return new WolfpackError('E_USAGE', `predict(): ${message}`, details);
}

/** NCHW float32 -> the NHWC images predictLogits takes. */
function fromNchw(data: Float32Array, shape: readonly number[], what: string): PredictInputs {
  const [n = 0, c, h = 0, w = 0] = shape;
  if (shape.length !== 4 || c !== 3 || ![n, h, w].every((d) => Number.isInteger(d) && d >= 1)) {
    throw usage(`${what}: shape [${shape.join(',')}], expected NCHW [N,3,H,W]`, { shape });
  }
  if (data.length !== n * c * h * w)
    throw usage(`${what}: ${data.length} floats do not fill shape [${shape.join(',')}] (${n * c * h * w})`);
  return nchwToNhwc(data, n, h, w);
}

/** Reads input `i` as a batch of NHWC images. */
async function readInput(input: PredictInput, i: number, size: number): Promise<PredictInputs> {
  const what = `options.inputs[${i}]`;
  if (typeof input === 'string') {
    if (input.length === 0) throw usage(`${what}: an empty path`);
    return input.toLowerCase().endsWith('.npy') ? readInputTensor(input) : readImages([input], size);
  }
  if (input instanceof Float32Array) {
    if (input.length !== 3 * size * size) {
      throw usage(
        `${what}: a Float32Array of ${input.length} floats is not one [3,${size},${size}] image ` +
          `(options.imageSize ${size}); ` +
          'pass { data, shape: [N,3,H,W] } for other sizes or batches',
      );
    }
    return fromNchw(input, [1, 3, size, size], what);
  }
  if (typeof input === 'object' && input !== null && input.data instanceof Float32Array && Array.isArray(input.shape)) {
    return fromNchw(input.data, input.shape, what);
  }
  throw usage(`${what}: expected an image or .npy path, a Float32Array or { data: Float32Array, shape: [N,3,H,W] }`);
}

/** Classifies `options.inputs`, one Prediction per image, in input order. */
export async function predict(options: PredictOptions): Promise<Prediction[]> {
  if (typeof options !== 'object' || options === null) throw usage('options must be an object');
  if (typeof options.weights !== 'string' || options.weights.length === 0)
    throw usage('options.weights: expected a weights file path');
  if (!Array.isArray(options.inputs) || options.inputs.length === 0)
    throw usage('options.inputs: expected a non-empty array');
  const size = options.imageSize ?? 224;
  const batchSize = options.batchSize ?? 8;
  if (!Number.isInteger(size) || size < 16 || size > 1024)
    throw usage(`options.imageSize: expected an integer in 16..1024, got ${String(size)}`);
  if (!Number.isInteger(batchSize) || batchSize < 1)
    throw usage(`options.batchSize: expected an integer >= 1, got ${String(batchSize)}`);
  const backend = options.backend ?? 'auto';
  if (!BACKENDS.includes(backend))
    throw usage(`options.backend: expected one of ${BACKENDS.join(', ')}, got '${String(backend)}'`);
  const logger = options.logger ?? silentLogger();

  const state = await loadPredictModel(options.weights, logger);
  const k = state.layout.net.config.numClasses;
  if (options.classes !== undefined && options.classes.length !== k) {
    throw usage(
      `options.classes names ${options.classes.length} class(es) but ${options.weights} has a ${k}-class head`,
    );
  }
  const names = options.classes ?? Array.from({ length: k }, (_, i) => String(i));
  const batches: PredictInputs[] = [];
  for (const [i, input] of options.inputs.entries()) batches.push(await readInput(input, i, size));
  await selectBackend(backend, logger);

  const out: Prediction[] = [];
  for (const [i, batch] of batches.entries()) {
    const logits = await predictLogits(state, batch, batchSize);
    const input = options.inputs[i];
    for (let j = 0; j < batch.count; j++) {
      const row = Array.from(logits.subarray(j * k, (j + 1) * k));
      let best = 0;
      for (let c = 1; c < k; c++) if (row[c]! > row[best]!) best = c;
      out.push({
        index: out.length,
        input: i,
        item: j,
        ...(typeof input === 'string' ? { path: input } : {}),
        logits: row,
        probabilities: softmax(row),
        classIndex: best,
        class: names[best]!,
      });
    }
  }
  return out;
}
