// The inference building blocks `wolfpack predict` and the programmatic predict() share: reading inputs
// (images through the evaluation transform, or normalised NCHW tensors), loading a weights file that has
// its classification head, and eval-mode logits in batches.
import { tf } from '../shared/backend/tf.js';
import { readNpy } from '../shared/data/npy.js';
import { evalTransform } from '../shared/data/transforms.js';
import { WolfpackError } from '../shared/errors.js';
import { readFileBytes } from '../shared/fs/read-file.js';
import type { Logger } from '../shared/log.js';
import { forward } from '../shared/model/forward.js';
import { headPrefix } from '../shared/model/spec.js';
import type { ModelState } from '../shared/model/state.js';
import { ParamTensors } from '../shared/model/tensors.js';
import { inspectTensors, modelFromTensors } from '../shared/model/weights.js';
import { readWeightsFile } from '../shared/weights/read.js';

/** The inputs as NHWC float32 images of one size, with where each came from. */
export interface PredictInputs {
  images: Float32Array;
  count: number;
  height: number;
  width: number;
  /** Image paths, for image inputs. */
  paths?: string[];
}

/** NCHW float32 [n, 3, h, w] -> NHWC images, as PredictInputs (the shape checked by the caller). */
export function nchwToNhwc(data: Float32Array, n: number, h: number, w: number): PredictInputs {
  const images = new Float32Array(n * h * w * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      const plane = (i * 3 + k) * h * w;
      for (let p = 0; p < h * w; p++) images[(i * h * w + p) * 3 + k] = data[plane + p]!;
    }
  }
  return { images, count: n, height: h, width: w };
}

/** Reads a float32 NCHW [N, 3, H, W] .npy (normalised as PyTorch/MindSpore expect) as NHWC. */
export async function readInputTensor(path: string): Promise<PredictInputs> {
  const x = await readNpy(path);
  if (!(x.data instanceof Float32Array)) {
    throw new WolfpackError('E_DATA', `input tensor ${path}: dtype ${x.dtype}, expected float32 ('<f4')`, {
      path,
      dtype: x.dtype,
    });
  }
  const [n = 0, c, h = 0, w = 0] = x.shape;
  if (x.shape.length !== 4 || c !== 3 || n < 1 || h < 1 || w < 1) {
    throw new WolfpackError(
      'E_DATA',
      `input tensor ${path}: shape [${x.shape.join(',')}], expected NCHW [N,3,H,W] ` +
        '(N >= 1 RGB images, normalised with the ImageNet mean and std)',
      { path, shape: x.shape },
    );
  }
  return nchwToNhwc(x.data, n, h, w);
}

/** Reads and evaluation-transforms images (resize shorter side to size*256/224, centre crop). */
export async function readImages(paths: string[], size: number): Promise<PredictInputs> {
  const per = size * size * 3;
  const images = new Float32Array(paths.length * per);
  for (const [i, path] of paths.entries()) {
    const bytes = await readFileBytes(path, 'image');
    images.set(await evalTransform(bytes, size, path), i * per);
  }
  return { images, count: paths.length, height: size, width: size, paths };
}

/** Softmax of one row, in float64. */
export function softmax(logits: ArrayLike<number>): number[] {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  const e = Array.from({ length: logits.length }, (_, i) => Math.exp(logits[i]! - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/**
 * Eval-mode logits [count, K] row-major, `batchSize` images at a time. Reads results with the async
 * data(): the webgpu backend in Node cannot read synchronously (its readSync needs OffscreenCanvas).
 */
export async function predictLogits(
  state: ModelState,
  inputs: PredictInputs,
  batchSize: number,
): Promise<Float32Array> {
  const net = state.layout.net;
  const k = net.config.numClasses;
  const per = inputs.height * inputs.width * 3;
  const out = new Float32Array(inputs.count * k);
  const tensors = new ParamTensors(state);
  try {
    for (let begin = 0; begin < inputs.count; begin += batchSize) {
      const n = Math.min(batchSize, inputs.count - begin);
      const logits = tf.tidy(() => {
        const x = tf.tensor4d(inputs.images.subarray(begin * per, (begin + n) * per), [
          n,
          inputs.height,
          inputs.width,
          3,
        ]);
        return forward(net, tensors.lookup, x, { bnTrain: false });
      });
      try {
        out.set((await logits.data()) as Float32Array, begin * k);
      } finally {
        logits.dispose();
      }
    }
  } finally {
    tensors.dispose();
  }
  return out;
}

/** A weights file with its classification head, as a model state; a file without one is refused, saying why. */
export async function loadPredictModel(path: string, logger: Logger): Promise<ModelState> {
  const file = await readWeightsFile(path);
  const { flavour, width, headClasses } = inspectTensors(file.tensors, path);
  if (headClasses === undefined) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `${path}: this weights file has no classification head (${headPrefix(flavour)}weight/bias), ` +
        'so it cannot predict; it is a backbone to fine-tune. Train it first (wolfpack train) and predict with the ' +
        'weights that run writes',
      { file: path, missing: [`${headPrefix(flavour)}weight`] },
    );
  }
  const { state, config } = modelFromTensors(file.tensors, path);
  logger.info({ file: path, format: file.format, flavour, width, classes: config.numClasses }, 'weights loaded');
  return state;
}
