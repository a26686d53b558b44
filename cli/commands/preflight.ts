// What `train`, `demo` and `coordinator` check before anything is spawned, bound or read at length: the
// folders and files a job names exist, a new run does not mix its files into an old run's --out, and
// `--resume DIR` alone is enough (the job's settings come from DIR/train-state.json; flags given beside it
// override them, and those that contradict the saved job are refused when the job reads it).
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { TrainState } from '../../coordinator/checkpoints.js';
import type { JobOptions } from '../../coordinator/job.js';
import { WolfpackError } from '../../shared/errors.js';

/** The files a run writes in --out (coordinator/checkpoints.ts, coordinator/reports.ts, shared/report/curves.ts). */
export const RUN_FILES = [
  'train-state.json',
  'last.ckpt',
  'best.ckpt',
  'metrics.jsonl',
  'steps.jsonl',
  'curves.png',
] as const;

/**
 * The run to resume: --resume DIR, or with --auto-resume the --out folder when it holds a saved run (a
 * container or pod restarted with the same command continues its run instead of refusing to start).
 */
export function resumeDirFrom(values: Record<string, unknown>, defaultOut: string | undefined): string | undefined {
  if (values.resume !== undefined) return String(values.resume);
  if (values['auto-resume'] !== true) return undefined;
  const out = values.out === undefined ? defaultOut : String(values.out);
  return out !== undefined && kind(join(out, 'train-state.json')) === 'file' ? out : undefined;
}

/** The job settings saved in `dir`/train-state.json, as defaults for the flags not given; {} without --resume. */
export function savedJobDefaults(resumeDir: string | undefined): Partial<JobOptions> {
  if (resumeDir === undefined) return {};
  const file = join(resumeDir, 'train-state.json');
  let saved: TrainState;
  try {
    saved = JSON.parse(readFileSync(file, 'utf8')) as TrainState;
  } catch (e) {
    throw new WolfpackError('E_RESUME', `--resume ${resumeDir}: cannot read ${file}: ${(e as Error).message}`);
  }
  const c = saved.config ?? {};
  const d: Partial<JobOptions> = {
    out: resumeDir,
    seed: saved.seed,
    batchSize: c.globalBatch,
    lr: c.lr,
    momentum: c.momentum,
    freeze: c.freeze,
    bn: c.bn,
    imageSize: c.imageSize,
    augment: c.augment,
    views: c.views,
    cacheFeatures: c.cacheFeatures,
    featureCacheMb: c.featureCacheMb,
    wire: c.wire,
    data: saved.job?.data,
    epochs: saved.job?.epochs,
    workers: saved.job?.workers,
  };
  return Object.fromEntries(Object.entries(d).filter(([, v]) => v !== undefined)) as Partial<JobOptions>;
}

function kind(path: string): 'file' | 'dir' | 'none' {
  try {
    return statSync(path).isDirectory() ? 'dir' : 'file';
  } catch {
    return 'none';
  }
}

/**
 * Checks the job's paths: --data is an ImageFolder root (train/ and val/), --weights a file (a new run),
 * --resume a saved run, and --out holds no other run's files unless `overwrite` (which deletes them).
 */
export function checkJobFiles(o: Pick<JobOptions, 'data' | 'weights' | 'resume' | 'out'>, overwrite: boolean): void {
  if (kind(o.data) !== 'dir')
    throw new WolfpackError(
      'E_DATA',
      `--data ${o.data}: ${kind(o.data) === 'none' ? 'no such folder' : 'not a folder'}`,
    );
  for (const split of ['train', 'val']) {
    if (kind(join(o.data, split)) !== 'dir') {
      throw new WolfpackError(
        'E_DATA',
        `--data ${o.data}: no ${split}/ folder in it (an ImageFolder root holds train/CLASS/*.jpg and val/CLASS/*.jpg)`,
      );
    }
  }
  if (o.resume === undefined) {
    if (o.weights === undefined) throw new WolfpackError('E_USAGE', '--weights is required (or --resume DIR)');
    if (kind(o.weights) !== 'file')
      throw new WolfpackError(
        'E_WEIGHTS',
        `--weights ${o.weights}: ${kind(o.weights) === 'none' ? 'no such file' : 'a folder, not a weights file'}`,
      );
  } else if (kind(join(o.resume, 'last.ckpt')) !== 'file') {
    throw new WolfpackError('E_RESUME', `--resume ${o.resume}: no last.ckpt in it`);
  }
  // Resuming into the run's own folder continues it; anything else would mix two runs' files.
  if (o.resume !== undefined && resolve(o.resume) === resolve(o.out)) return;
  const taken = kind(o.out) === 'dir' ? RUN_FILES.filter((f) => kind(join(o.out, f)) !== 'none') : [];
  if (taken.length === 0) return;
  if (!overwrite) {
    throw new WolfpackError(
      'E_USAGE',
      `--out ${o.out} already holds a run (${taken.join(', ')}): continue it with --resume ${o.out}, ` +
        'choose another --out, or pass --overwrite to replace it',
    );
  }
  for (const f of taken) rmSync(join(o.out, f), { force: true });
}
