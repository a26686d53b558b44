// Finds the samples of an ImageFolder data set (ROOT/<class>/<image>), as torchvision.datasets
// .ImageFolder does: classes are the sorted sub-folder names, labels their indices, files in sorted
// order. Each image's header is read once here, so a broken file is reported by path before training
// starts instead of failing a step later.
import { readdir, stat } from 'node:fs/promises';
import type { Dirent } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import sharp from 'sharp';
import { WolfpackError } from '../errors.js';
import type { Logger } from '../log.js';
import { prefetch } from './prefetch.js';

export interface Sample {
  /** Absolute path of the image file. */
  path: string;
  /** Index of the class in Dataset.classes. */
  label: number;
}

export interface SkippedFile {
  path: string;
  reason: string;
}

export interface Dataset {
  /** Absolute path of the folder that holds the class folders. */
  root: string;
  /** Sorted class folder names; a label is an index into this list. */
  classes: string[];
  samples: Sample[];
  /** Image files that could not be read, each with why. */
  skipped: SkippedFile[];
}

export interface ScanOptions {
  logger?: Logger;
  /** How many image headers to read at once (default 16). */
  concurrency?: number;
}

export interface Split {
  classes: string[];
  train: Dataset;
  val: Dataset;
}

const IMAGE_EXTENSIONS = new Set(['.jpg', '.jpeg', '.png', '.webp']);

/** Whether a file name has an image extension wolfpack reads (.jpg, .jpeg, .png, .webp). */
export function isImageName(name: string): boolean {
  const dot = name.lastIndexOf('.');
  return dot > 0 && IMAGE_EXTENSIONS.has(name.slice(dot).toLowerCase());
}

// Plain code-unit order, the same on every host (no locale), like Python's sorted() for these names.
function byName(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

async function isDirectory(path: string, entry: Dirent): Promise<boolean> {
  if (entry.isDirectory()) return true;
  // Symlinked folders count, as with os.walk(followlinks=True).
  if (entry.isSymbolicLink()) return (await stat(path).catch(() => undefined))?.isDirectory() ?? false;
  return false;
}

async function listDir(dir: string): Promise<Dirent[]> {
  try {
    const entries = await readdir(dir, { withFileTypes: true });
    return entries.filter((e) => !e.name.startsWith('.')).sort((a, b) => byName(a.name, b.name));
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot list ${dir}: ${(e as Error).message}`, { path: dir });
  }
}

// Image files under a class folder, depth first, each folder's files in sorted order.
async function listImages(dir: string): Promise<string[]> {
  const files: string[] = [];
  const subdirs: string[] = [];
  for (const entry of await listDir(dir)) {
    const path = join(dir, entry.name);
    if (await isDirectory(path, entry)) subdirs.push(path);
    else if (isImageName(entry.name)) files.push(path);
  }
  for (const sub of subdirs) files.push(...(await listImages(sub)));
  return files;
}

// Why a file cannot be used, or undefined if it decodes to a real image. The whole image is decoded,
// not just its header: a file cut short after a valid header would otherwise pass here and fail on
// every worker that draws it.
async function unreadableReason(path: string): Promise<string | undefined> {
  try {
    const { info } = await sharp(path, { failOn: 'error' }).raw().toBuffer({ resolveWithObject: true });
    if (!info.width || !info.height) return 'no image size';
    return undefined;
  } catch (e) {
    return (e as Error).message;
  }
}

/** Scan ROOT/<class>/<images>. Unreadable images are skipped (and logged); an empty class is an error. */
export async function scanImageFolder(root: string, options: ScanOptions = {}): Promise<Dataset> {
  const absRoot = resolve(root);
  const rootStat = await stat(absRoot).catch(() => undefined);
  if (!rootStat) throw new WolfpackError('E_DATA', `data folder ${absRoot} does not exist`, { path: absRoot });
  if (!rootStat.isDirectory())
    throw new WolfpackError('E_DATA', `data folder ${absRoot} is not a folder`, { path: absRoot });

  const classes: string[] = [];
  for (const entry of await listDir(absRoot)) {
    if (await isDirectory(join(absRoot, entry.name), entry)) classes.push(entry.name);
  }
  if (classes.length === 0) {
    throw new WolfpackError(
      'E_DATA',
      `data folder ${absRoot} has no class sub-folders (expected ${absRoot}/<class>/<images>)`,
      { path: absRoot },
    );
  }

  const candidates: Sample[] = [];
  for (const [label, name] of classes.entries()) {
    for (const path of await listImages(join(absRoot, name))) candidates.push({ path, label });
  }

  const concurrency = options.concurrency ?? 16;
  const checks = prefetch(
    candidates.map((s) => () => unreadableReason(s.path)),
    concurrency,
  );
  const samples: Sample[] = [];
  const skipped: SkippedFile[] = [];
  let i = 0;
  for await (const reason of checks) {
    const candidate = candidates[i++]!;
    if (reason === undefined) {
      samples.push(candidate);
    } else {
      skipped.push({ path: candidate.path, reason });
      options.logger?.warn({ path: candidate.path, reason }, 'skipping unreadable image');
    }
  }

  const counts = new Array<number>(classes.length).fill(0);
  for (const s of samples) counts[s.label] = counts[s.label]! + 1;
  const emptyLabel = counts.findIndex((n) => n === 0);
  if (emptyLabel >= 0) {
    const folder = join(absRoot, classes[emptyLabel]!);
    const unreadable = skipped.filter((s) => s.path.startsWith(folder + sep)).length;
    const detail = unreadable > 0 ? `; ${unreadable} unreadable file(s) skipped` : '';
    throw new WolfpackError(
      'E_DATA',
      `class folder ${folder} has no readable images (.jpg, .jpeg, .png, .webp${detail})`,
      { path: folder, class: classes[emptyLabel] },
    );
  }
  return { root: absRoot, classes, samples, skipped };
}

/** Scan DIR/train and DIR/val, which must have the same class folders. */
export async function scanSplit(dataDir: string, options: ScanOptions = {}): Promise<Split> {
  const train = await scanImageFolder(join(dataDir, 'train'), options);
  const val = await scanImageFolder(join(dataDir, 'val'), options);
  const onlyTrain = train.classes.filter((c) => !val.classes.includes(c));
  const onlyVal = val.classes.filter((c) => !train.classes.includes(c));
  if (onlyTrain.length > 0 || onlyVal.length > 0) {
    const parts = [];
    if (onlyTrain.length > 0) parts.push(`only in ${train.root}: ${onlyTrain.join(', ')}`);
    if (onlyVal.length > 0) parts.push(`only in ${val.root}: ${onlyVal.join(', ')}`);
    throw new WolfpackError('E_DATA', `train and val class folders differ (${parts.join('; ')})`, {
      path: resolve(dataDir),
      onlyTrain,
      onlyVal,
    });
  }
  return { classes: train.classes, train, val };
}
