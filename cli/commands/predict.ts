// `wolfpack predict`: classify images (or an already-normalised NCHW tensor) with a weights file that has
// its classification head, in evaluation mode (BatchNorm moving statistics). `--json` prints one JSON
// object per input on stdout, so logs go to stderr only.
import { BACKENDS, selectBackend } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import { loadPredictModel, predictLogits, readImages, readInputTensor, softmax } from '../../api/inference.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, optStr, parse, str } from '../../shared/config/args.js';
import { parserOptions, type FlagSpec } from '../../shared/config/flags.js';
import { isImageName, scanImageFolder } from '../../shared/data/imagefolder.js';
import { existsSync, readFileSync } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';

const USAGE = 'wolfpack predict --weights FILE (IMAGE|FOLDER... | --eval DIR | --input-tensor X.npy) [flags below]';

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
  const header = [
    '#',
    'class',
    'p',
    ...(classes.length > 2 ? [`top-${top}`] : ['logits']),
    ...(rows[0]?.path !== undefined ? ['input'] : []),
  ];
  const cells = rows.map((r) => {
    const order = r.probabilities.map((p, i) => [p, i] as const).sort((a, b) => b[0] - a[0]);
    const extra =
      classes.length > 2
        ? order
            .slice(0, top)
            .map(([p, i]) => `${classes[i]} ${p.toFixed(3)}`)
            .join(', ')
        : r.logits.map((l) => l.toFixed(4)).join(' ');
    return [String(r.index), r.class, order[0]![0].toFixed(4), extra, ...(r.path !== undefined ? [r.path] : [])];
  });
  const widths = header.map((h, c) => Math.max(h.length, ...cells.map((row) => row[c]!.length)));
  const line = (row: string[]): string =>
    row.map((v, c) => (c === row.length - 1 ? v : v.padEnd(widths[c]!))).join('  ');
  return [line(header), ...cells.map(line)].join('\n') + '\n';
}

const PREDICT_SPECS: readonly FlagSpec[] = [
  {
    name: 'weights',
    kind: 'string',
    value: 'FILE',
    defaultText: 'required',
    describe: "a checkpoint with its head: a run's best.ckpt or last.ckpt (or safetensors)",
  },
  {
    name: 'eval',
    kind: 'string',
    value: 'DIR',
    describe: 'an ImageFolder split (DIR/CLASS/*.jpg, e.g. data/Canidae/val): print accuracy and the confusion matrix',
  },
  {
    name: 'input-tensor',
    kind: 'string',
    value: 'X.npy',
    describe: 'an already normalised NCHW float32 tensor instead of images',
  },
  {
    name: 'classes',
    kind: 'string',
    value: 'a,b,...',
    defaultText: "the run's, from train-state.json beside --weights",
    describe: 'class names in label order',
  },
  {
    name: 'image-size',
    kind: 'int',
    value: 'PX',
    min: 32,
    max: 1024,
    defaultText: "the run's, from train-state.json beside --weights; else 224",
    describe: 'side of the centre crop the network sees (resize to size*256/224 first)',
  },
  { name: 'batch-size', kind: 'int', value: 'N', min: 1, max: 1024, default: 8, describe: 'images per forward pass' },
  { name: 'backend', kind: 'choice', choices: BACKENDS, default: 'auto', describe: 'TF.js backend' },
  {
    name: 'json',
    kind: 'boolean',
    describe: 'one JSON object per image on stdout (with --eval: one object with accuracy and the matrix)',
  },
];

/** What the run that wrote `weights` knew: its train-state.json beside it, when there is one. */
function runOf(weights: string): { file: string; classes?: string[]; imageSize?: number } | undefined {
  const file = join(dirname(weights), 'train-state.json');
  if (!existsSync(file)) return undefined;
  try {
    const c =
      (JSON.parse(readFileSync(file, 'utf8')) as { config?: { classes?: unknown; imageSize?: unknown } }).config ?? {};
    return {
      file,
      ...(Array.isArray(c.classes) && c.classes.every((x) => typeof x === 'string')
        ? { classes: c.classes as string[] }
        : {}),
      ...(typeof c.imageSize === 'number' ? { imageSize: c.imageSize } : {}),
    };
  } catch (e) {
    throw new WolfpackError('E_CORRUPT', `${file} (the run beside --weights ${weights}): ${(e as Error).message}`);
  }
}

/** The image files an argument names: the file itself, or every image below a folder (sorted, recursive). */
async function imagesOf(arg: string): Promise<string[]> {
  const st = await stat(arg).catch(() => undefined);
  if (!st) throw new WolfpackError('E_IO', `${arg}: no such file or folder`);
  if (!st.isDirectory()) return [arg];
  const found = (await readdir(arg, { recursive: true, withFileTypes: true }))
    .filter((d) => d.isFile() && isImageName(d.name))
    .map((d) => join(d.parentPath ?? (d as unknown as { path: string }).path, d.name))
    .sort();
  if (found.length === 0) throw new WolfpackError('E_DATA', `${arg}: no .jpg, .jpeg, .png or .webp file in it`);
  return found;
}

/** Accuracy and the confusion matrix (rows: true class, columns: predicted) as text. */
function evalReport(classes: string[], confusion: number[][], correct: number, total: number): string {
  const w = Math.max(9, ...classes.map((c) => c.length)) + 2;
  const lines = [
    `accuracy: ${(correct / total).toFixed(4)} (${correct}/${total})`,
    '',
    'confusion matrix (rows: true class, columns: predicted):',
    ' '.repeat(w) + classes.map((c) => c.padStart(w)).join(''),
    ...confusion.map((row, i) => classes[i]!.padEnd(w) + row.map((n) => String(n).padStart(w)).join('')),
  ];
  return lines.join('\n') + '\n';
}

export const predict: Command = {
  summary:
    'Classify images (files, folders, or an NCHW .npy tensor) with a trained checkpoint; ' +
    'with --eval, score an ImageFolder split.',
  usage: USAGE,
  flags: PREDICT_SPECS,
  examples: [
    'wolfpack predict --weights runs/latest/best.ckpt photo.jpg more/   # class names and image size from the run',
    'wolfpack predict --weights runs/latest/best.ckpt --eval data/Canidae/val',
  ],
  async run(argv: string[]): Promise<number> {
    const { values, positionals } = parse(argv, parserOptions(PREDICT_SPECS), true);
    const weights = str(values, 'weights');
    const inputTensor = optStr(values, 'input-tensor');
    const evalDir = optStr(values, 'eval');
    const run = runOf(weights);
    const size = num(values, 'image-size', run?.imageSize ?? 224, { int: true, min: 32, max: 1024 });
    const batchSize = num(values, 'batch-size', 8, { int: true, min: 1, max: 1024 });
    const backend = oneOf(values, 'backend', BACKENDS, 'auto');
    const classArg = optStr(values, 'classes');
    const json = values.json === true;
    const sources = [inputTensor !== undefined, positionals.length > 0, evalDir !== undefined].filter(Boolean).length;
    if (sources > 1)
      throw new WolfpackError('E_USAGE', 'give one of: images (files or folders), --input-tensor X.npy, --eval DIR');
    if (sources === 0)
      throw new WolfpackError(
        'E_USAGE',
        `nothing to predict: give image files or folders, --input-tensor X.npy or --eval DIR\nusage: ${USAGE}`,
      );
    const classNames = classArg?.split(',').map((s) => s.trim()) ?? run?.classes;
    if (classNames && classNames.some((c) => c.length === 0)) {
      throw new WolfpackError('E_USAGE', `--classes: empty class name in '${classArg}'`);
    }

    const logger = createLogger({ base: { component: 'predict' } });
    if (run && (classArg === undefined || values['image-size'] === undefined)) {
      logger.info(
        { from: run.file, classes: classNames, imageSize: size },
        'class names and image size of the run beside --weights',
      );
    }
    const state = await loadPredictModel(weights, logger);
    const k = state.layout.net.config.numClasses;
    if (classNames && classNames.length !== k) {
      throw new WolfpackError(
        'E_USAGE',
        `${classArg !== undefined ? '--classes' : run!.file} names ${classNames.length} class(es) ` +
          `but ${weights} has a ${k}-class head`,
      );
    }
    if (inputTensor !== undefined && values['image-size'] !== undefined) {
      logger.warn('--image-size is ignored with --input-tensor (the tensor has its own size)');
    }
    const set = evalDir !== undefined ? await scanImageFolder(evalDir, { logger }) : undefined;
    const names = classNames ?? Array.from({ length: k }, (_, i) => String(i));
    if (
      set &&
      (set.classes.length !== k || (classNames !== undefined && set.classes.some((c, i) => c !== classNames[i])))
    ) {
      throw new WolfpackError(
        'E_DATA',
        `--eval ${evalDir}: its classes (${set.classes.join(', ')}) ` +
          `are not the model's (${names.join(', ')}), in label order`,
      );
    }
    const paths = set ? set.samples.map((x) => x.path) : (await Promise.all(positionals.map(imagesOf))).flat();
    const inputs = inputTensor !== undefined ? await readInputTensor(inputTensor) : await readImages(paths, size);
    await selectBackend(backend, logger);

    const started = performance.now();
    const logits = await predictLogits(state, inputs, batchSize);
    logger.info(
      {
        images: inputs.count,
        height: inputs.height,
        width: inputs.width,
        seconds: +((performance.now() - started) / 1000).toFixed(3),
      },
      'predicted',
    );

    const rows: Prediction[] = [];
    const predicted: number[] = [];
    for (let i = 0; i < inputs.count; i++) {
      const row = Array.from(logits.subarray(i * k, (i + 1) * k), f32);
      const probabilities = softmax(row);
      let best = 0;
      for (let c = 1; c < k; c++) if (row[c]! > row[best]!) best = c;
      predicted.push(best);
      rows.push({
        index: i,
        ...(inputs.paths ? { path: inputs.paths[i] } : {}),
        logits: row,
        probabilities: probabilities.map(f32),
        class: names[best]!,
      });
    }
    if (set) {
      const confusion = names.map(() => names.map(() => 0));
      let correct = 0;
      set.samples.forEach((x, i) => {
        const row = confusion[x.label]!;
        const p = predicted[i]!;
        row[p] = row[p]! + 1;
        if (x.label === p) correct++;
      });
      process.stdout.write(
        json
          ? JSON.stringify({
              accuracy: correct / set.samples.length,
              correct,
              total: set.samples.length,
              classes: names,
              confusion,
            }) + '\n'
          : evalReport(names, confusion, correct, set.samples.length),
      );
      return 0;
    }
    process.stdout.write(json ? rows.map((r) => JSON.stringify(r)).join('\n') + '\n' : table(rows, names));
    return 0;
  },
};
