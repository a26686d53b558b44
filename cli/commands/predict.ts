// `wolfpack predict`: classify images (or an already-normalised NCHW tensor) with a weights file that has
// its classification head, in evaluation mode (BatchNorm moving statistics). `--json` prints one JSON
// object per input on stdout, so logs go to stderr only.
import { tf } from '../../shared/backend/tf.js';
import { BACKENDS, selectBackend } from '../../shared/backend/select.js';
import { readNpy } from '../../shared/data/npy.js';
import { evalTransform } from '../../shared/data/transforms.js';
import { WolfpackError } from '../../shared/errors.js';
import { readFileBytes } from '../../shared/fs/read-file.js';
import { createLogger, type Logger } from '../../shared/log.js';
import { forward } from '../../shared/model/forward.js';
import { headPrefix } from '../../shared/model/spec.js';
import type { ModelState } from '../../shared/model/state.js';
import { ParamTensors } from '../../shared/model/tensors.js';
import { inspectTensors, modelFromTensors } from '../../shared/model/weights.js';
import { readWeightsFile } from '../../shared/weights/read.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../args.js';

const USAGE = 'wolfpack predict --weights FILE (IMAGE... | --input-tensor X.npy) [--json] [--classes a,b,...] ' +
  `[--image-size 224] [--batch-size 8] [--backend ${BACKENDS.join('|')}]`;

/** The inputs as NHWC float32 images of one size, with where each came from. */
export interface PredictInputs {
  images: Float32Array;
  count: number;
  height: number;
  width: number;
  /** Image paths, for image inputs. */
  paths?: string[];
}

export interface Prediction {
  index: number;
  path?: string;
  logits: number[];
  probabilities: number[];
  class: string;
}

/** Reads a float32 NCHW [N, 3, H, W] .npy (normalised as PyTorch/MindSpore expect) as NHWC. */
export async function readInputTensor(path: string): Promise<PredictInputs> {
  const x = await readNpy(path);
  if (!(x.data instanceof Float32Array)) {
    throw new WolfpackError('E_DATA', `input tensor ${path}: dtype ${x.dtype}, expected float32 ('<f4')`, { path, dtype: x.dtype });
  }
  const [n, c, h, w] = x.shape;
  if (x.shape.length !== 4 || c !== 3 || n < 1 || h < 1 || w < 1) {
    throw new WolfpackError('E_DATA', `input tensor ${path}: shape [${x.shape.join(',')}], expected NCHW [N,3,H,W] ` +
      '(N >= 1 RGB images, normalised with the ImageNet mean and std)', { path, shape: x.shape });
  }
  const src = x.data;
  const images = new Float32Array(n * h * w * 3);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < 3; k++) {
      const plane = (i * 3 + k) * h * w;
      for (let p = 0; p < h * w; p++) images[(i * h * w + p) * 3 + k] = src[plane + p];
    }
  }
  return { images, count: n, height: h, width: w };
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
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]);
  const e = Array.from({ length: logits.length }, (_, i) => Math.exp(logits[i] - max));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / sum);
}

/**
 * Eval-mode logits [count, K] row-major, `batchSize` images at a time. Reads results with the async
 * data(): the webgpu backend in Node cannot read synchronously (its readSync needs OffscreenCanvas).
 */
export async function predictLogits(state: ModelState, inputs: PredictInputs, batchSize: number): Promise<Float32Array> {
  const net = state.layout.net;
  const k = net.config.numClasses;
  const per = inputs.height * inputs.width * 3;
  const out = new Float32Array(inputs.count * k);
  const tensors = new ParamTensors(state);
  try {
    for (let begin = 0; begin < inputs.count; begin += batchSize) {
      const n = Math.min(batchSize, inputs.count - begin);
      const logits = tf.tidy(() => {
        const x = tf.tensor4d(inputs.images.subarray(begin * per, (begin + n) * per), [n, inputs.height, inputs.width, 3]);
        return forward(net, tensors.lookup, x, { bnTrain: false });
      });
      try {
        out.set(await logits.data() as Float32Array, begin * k);
      } finally {
        logits.dispose();
      }
    }
  } finally {
    tensors.dispose();
  }
  return out;
}

// Nine significant digits give back the same float32 when read.
const f32 = (v: number): number => Number(v.toPrecision(9));

function table(rows: Prediction[], classes: string[]): string {
  const top = Math.min(3, classes.length);
  const header = ['#', 'class', 'p', ...(classes.length > 2 ? [`top-${top}`] : ['logits']), ...(rows[0]?.path !== undefined ? ['input'] : [])];
  const cells = rows.map((r) => {
    const order = r.probabilities.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]);
    const extra = classes.length > 2
      ? order.slice(0, top).map(([p, i]) => `${classes[i]} ${p.toFixed(3)}`).join(', ')
      : r.logits.map((l) => l.toFixed(4)).join(' ');
    return [String(r.index), r.class, order[0][0].toFixed(4), extra, ...(r.path !== undefined ? [r.path] : [])];
  });
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c].length)));
  const line = (row: string[]): string => row.map((v, c) => (c === row.length - 1 ? v : v.padEnd(widths[c]))).join('  ');
  return [line(header), ...cells.map(line)].join('\n') + '\n';
}

async function loadModel(path: string, logger: Logger): Promise<ModelState> {
  const file = await readWeightsFile(path);
  const { flavour, width, headClasses } = inspectTensors(file.tensors, path);
  if (headClasses === undefined) {
    throw new WolfpackError('E_WEIGHTS', `${path}: this weights file has no classification head (${headPrefix(flavour)}weight/bias), ` +
      'so it cannot predict; it is a backbone to fine-tune. Train it first (wolfpack train) and predict with the ' +
      'weights that run writes', { file: path, missing: [`${headPrefix(flavour)}weight`] });
  }
  const { state, config } = modelFromTensors(file.tensors, path);
  logger.info({ file: path, format: file.format, flavour, width, classes: config.numClasses }, 'weights loaded');
  return state;
}

export const predict: Command = {
  summary: 'Classify images (or an NCHW .npy tensor) with a trained weights file that has its head.',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, {
      weights: { type: 'string' },
      'input-tensor': { type: 'string' },
      json: { type: 'boolean' },
      classes: { type: 'string' },
      'image-size': { type: 'string' },
      'batch-size': { type: 'string' },
      backend: { type: 'string' },
    }, true);
    const weights = str(values, 'weights');
    const inputTensor = optStr(values, 'input-tensor');
    const size = num(values, 'image-size', 224, { int: true, min: 32, max: 1024 });
    const batchSize = num(values, 'batch-size', 8, { int: true, min: 1, max: 1024 });
    const backend = oneOf(values, 'backend', BACKENDS, 'auto');
    const classArg = optStr(values, 'classes');
    const json = values.json === true;
    if (inputTensor !== undefined && positionals.length > 0) {
      throw new WolfpackError('E_USAGE', `give images or --input-tensor, not both (got ${positionals.length} image(s) and --input-tensor ${inputTensor})`);
    }
    if (inputTensor === undefined && positionals.length === 0) {
      throw new WolfpackError('E_USAGE', `nothing to predict: give image files or --input-tensor X.npy\nusage: ${USAGE}`);
    }
    const classNames = classArg?.split(',').map((s) => s.trim());
    if (classNames && classNames.some((c) => c.length === 0)) {
      throw new WolfpackError('E_USAGE', `--classes: empty class name in '${classArg}'`);
    }

    const logger = createLogger({ base: { component: 'predict' } });
    const state = await loadModel(weights, logger);
    const k = state.layout.net.config.numClasses;
    if (classNames && classNames.length !== k) {
      throw new WolfpackError('E_USAGE', `--classes names ${classNames.length} class(es) but ${weights} has a ${k}-class head`);
    }
    if (inputTensor !== undefined && values['image-size'] !== undefined) {
      logger.warn('--image-size is ignored with --input-tensor (the tensor has its own size)');
    }
    const inputs = inputTensor !== undefined ? await readInputTensor(inputTensor) : await readImages(positionals, size);
    await selectBackend(backend, logger);

    const started = performance.now();
    const logits = await predictLogits(state, inputs, batchSize);
    logger.info({ images: inputs.count, height: inputs.height, width: inputs.width, seconds: +((performance.now() - started) / 1000).toFixed(3) }, 'predicted');

    const names = classNames ?? Array.from({ length: k }, (_, i) => String(i));
    const rows: Prediction[] = [];
    for (let i = 0; i < inputs.count; i++) {
      const row = Array.from(logits.subarray(i * k, (i + 1) * k), f32);
      const probabilities = softmax(row);
      let best = 0;
      for (let c = 1; c < k; c++) if (row[c] > row[best]) best = c;
      rows.push({
        index: i,
        ...(inputs.paths ? { path: inputs.paths[i] } : {}),
        logits: row,
        probabilities: probabilities.map(f32),
        class: names[best],
      });
    }
    process.stdout.write(json ? rows.map((r) => JSON.stringify(r)).join('\n') + '\n' : table(rows, names));
    return 0;
  },
};
