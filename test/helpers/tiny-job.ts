// A small, fast training job for end-to-end tests: a width-4 ResNet-50 checkpoint and a tiny
// synthetic two-class data set, written once per test file into a temporary folder.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generateSyntheticCanidae } from '../../shared/data/synthetic.js';
import { initModel, tensorsFromModel } from '../../shared/model/weights.js';
import { writeCkpt } from '../../shared/weights/ckpt.js';

export interface TinyJob {
  dir: string;
  data: string;
  weights: string;
  cleanup(): void;
}

export async function makeTinyJob(opts: { trainPerClass?: number; valPerClass?: number } = {}): Promise<TinyJob> {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-test-'));
  const data = join(dir, 'data');
  await generateSyntheticCanidae(data, {
    trainPerClass: opts.trainPerClass ?? 12,
    valPerClass: opts.valPerClass ?? 4,
    size: 48,
    seed: 3,
  });
  const weights = join(dir, 'start.ckpt');
  await writeCkpt(weights, tensorsFromModel(initModel({ flavour: 'mindspore', width: 4, numClasses: 10 }, 1)));
  return { dir, data, weights, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Flags of a short run of the tiny job. */
export function tinyTrainArgs(job: TinyJob, out: string, extra: string[] = []): string[] {
  return [
    '--data',
    job.data,
    '--weights',
    job.weights,
    '--epochs',
    '1',
    '--batch-size',
    '6',
    '--image-size',
    '32',
    '--out',
    out,
    '--backend',
    'wasm',
    '--timeout',
    '60',
    '--lr',
    '0.05',
    ...extra,
  ];
}
