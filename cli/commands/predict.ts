// `wolfpack predict`: classify images (or an already-normalised NCHW tensor) with a weights file that has
// its classification head, in evaluation mode (BatchNorm moving statistics). `--json` prints one JSON
// object per input on stdout, so logs go to stderr only.
import { BACKENDS, selectBackend } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { loadPredictModel, predictLogits, readImages, readInputTensor, softmax } from '../../api/inference.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../../shared/config/args.js';

const USAGE = 'wolfpack predict --weights FILE (IMAGE... | --input-tensor X.npy) [--json] [--classes a,b,...] ' +
  `[--image-size 224] [--batch-size 8] [--backend ${BACKENDS.join('|')}]`;

export interface Prediction {
  index: number;
  path?: string;
  logits: number[];
  probabilities: number[];
  class: string;
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
    const state = await loadPredictModel(weights, logger);
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
