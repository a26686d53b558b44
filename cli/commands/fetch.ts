// `wolfpack fetch`: downloads the lab's data set (unpacked into the ImageFolder layout) and starting
// checkpoint into --dir, resuming broken downloads, checking sizes (and sha256 where known), checking
// that what arrived is a data set and a weights file wolfpack reads, and prints the `wolfpack train`
// command to run next. Progress goes to stderr, the results to stdout; with WOLFPACK_LOG_FORMAT=json (as in
// the images) each line as a JSON record.
import { stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { scanSplit } from '../../shared/data/imagefolder.js';
import { WolfpackError } from '../../shared/errors.js';
import { download, progressPrinter, type ProgressStream } from '../../shared/fetch/download.js';
import { unzipImageFolder } from '../../shared/fetch/unzip.js';
import { readWeightsFile } from '../../shared/weights/read.js';
import { jsonLineStream, jsonRequested } from '../../shared/log.js';
import type { Command } from '../wolfpack.js';
import { optStr, parse, str } from '../../shared/config/args.js';

export interface Source {
  url: string;
  /** File name under --dir. */
  file: string;
  size?: number;
  sha256?: string;
}

/** Data sets by --dataset name; `folder` is where the ImageFolder (train/, val/) ends up under --dir. */
export const DATASETS: Record<string, Source & { folder: string }> = {
  canidae: {
    url: 'https://mindspore-website.obs.cn-north-4.myhuaweicloud.com/notebook/datasets/intermediate/Canidae_data.zip',
    file: 'Canidae_data.zip',
    folder: 'Canidae',
  },
};

/** Starting checkpoints by --weights name (MindSpore's ResNet-50 trained on CIFAR-10, as in the lab). */
export const WEIGHTS: Record<string, Source> = {
  resnet50: {
    url:
      'https://download.mindspore.cn/model_zoo/official/cv/resnet/' +
      'resnet50_v1.5_ascend_0.3.0_cifar10_official_classification_20200718/resnet50.ckpt',
    file: 'resnet50.ckpt',
  },
};

const USAGE =
  `wolfpack fetch [--dataset ${Object.keys(DATASETS).join('|')}|none] ` +
  `[--weights ${Object.keys(WEIGHTS).join('|')}|none] ` +
  '[--dir data] [--url-dataset URL] [--url-weights URL]';

export interface FetchOptions {
  dataset?: string;
  weights?: string;
  dir: string;
  urlDataset?: string;
  urlWeights?: string;
  /** Tries after the first for a broken connection (default 3). */
  retries?: number;
  retryDelayMs?: number;
}

export interface FetchResult {
  /** The ImageFolder folder (holding train/ and val/), when a data set was fetched. */
  data?: string;
  weights?: string;
  /** The command to run next. */
  next: string;
}

function pick<T>(table: Record<string, T>, name: string, flag: string): T {
  const v = table[name];
  if (!v)
    throw new WolfpackError(
      'E_USAGE',
      `--${flag}: unknown '${name}', expected one of ${[...Object.keys(table), 'none'].join(', ')}`,
    );
  return v;
}

/** The file name a URL points at, for --url-* sources. */
function fileOf(url: string, fallback: string): string {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    throw new WolfpackError('E_USAGE', `not a URL: '${url}'`);
  }
  const name = basename(decodeURIComponent(path));
  return /^[\w.-]+$/.test(name) ? name : fallback;
}

const quote = (s: string) => (/^[\w./:=@%+-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

export async function runFetch(opts: FetchOptions, out: ProgressStream, err: ProgressStream): Promise<FetchResult> {
  const say = (line: string) => out.write(line + '\n');
  const result: FetchResult = { next: '' };
  const common = { retries: opts.retries, retryDelayMs: opts.retryDelayMs };

  if (opts.dataset !== 'none') {
    const name = opts.dataset ?? 'canidae';
    const ds = pick(DATASETS, name, 'dataset');
    const src: Source = opts.urlDataset ? { url: opts.urlDataset, file: fileOf(opts.urlDataset, 'dataset.zip') } : ds;
    const folder = join(opts.dir, ds.folder);
    if (await stat(join(folder, 'train')).catch(() => undefined)) {
      say(`dataset ${name}: ${folder} is already there (delete it to fetch it again)`);
    } else {
      const zip = join(opts.dir, src.file);
      say(`dataset ${name}: ${src.url} -> ${zip}`);
      const got = await download({
        url: src.url,
        dest: zip,
        size: src.size,
        sha256: src.sha256,
        ...common,
        onProgress: progressPrinter(err, src.file),
      });
      say(
        got.skipped ? `  ${zip} is already there (${got.bytes} bytes)` : `  ${got.bytes} bytes, sha256 ${got.sha256}`,
      );
      const un = await unzipImageFolder(zip, folder);
      say(`  unpacked ${un.files} files from ${un.rootInZip || 'the top of the zip'}/ into ${folder}`);
    }
    const split = await scanSplit(folder);
    const skipped = split.train.skipped.length + split.val.skipped.length;
    say(
      `  classes: ${split.classes.join(', ')}; ` +
        `train ${split.train.samples.length} images, val ${split.val.samples.length} images` +
        (skipped > 0 ? `; ${skipped} unreadable files will be skipped` : ''),
    );
    result.data = folder;
  }

  if (opts.weights !== 'none') {
    const name = opts.weights ?? 'resnet50';
    const w = pick(WEIGHTS, name, 'weights');
    const src: Source = opts.urlWeights ? { url: opts.urlWeights, file: fileOf(opts.urlWeights, 'weights.ckpt') } : w;
    const dest = join(opts.dir, src.file);
    say(`weights ${name}: ${src.url} -> ${dest}`);
    const got = await download({
      url: src.url,
      dest,
      size: src.size,
      sha256: src.sha256,
      ...common,
      onProgress: progressPrinter(err, src.file),
    });
    say(got.skipped ? `  ${dest} is already there (${got.bytes} bytes)` : `  ${got.bytes} bytes, sha256 ${got.sha256}`);
    const file = await readWeightsFile(dest);
    say(`  ${file.format} file with ${file.tensors.size} tensors`);
    result.weights = dest;
  }

  const parts = ['wolfpack', 'train'];
  if (result.data) parts.push('--data', quote(result.data));
  else parts.push('--data', 'DIR');
  if (result.weights) parts.push('--weights', quote(result.weights));
  else parts.push('--weights', 'FILE');
  result.next = parts.join(' ');
  say('');
  say('next, train with:');
  say(`  ${result.next}`);
  return result;
}

export const fetch: Command = {
  summary:
    "Download the lab's data set (dogs vs wolves, unpacked as train/ and val/) and starting ResNet-50 checkpoint.",
  usage: USAGE,
  async run(argv) {
    const { values } = parse(argv, {
      dataset: { type: 'string' },
      weights: { type: 'string' },
      dir: { type: 'string' },
      'url-dataset': { type: 'string' },
      'url-weights': { type: 'string' },
    });
    const json = jsonRequested(argv);
    await runFetch(
      {
        dataset: optStr(values, 'dataset'),
        weights: optStr(values, 'weights'),
        dir: str(values, 'dir', 'data'),
        urlDataset: optStr(values, 'url-dataset'),
        urlWeights: optStr(values, 'url-weights'),
      },
      json ? jsonLineStream(1) : process.stdout,
      json ? jsonLineStream(2) : process.stderr,
    );
    return 0;
  },
};
