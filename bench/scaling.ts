// Scaling benchmark: training images/s of the real trainer (`wolfpack train`, local worker processes,
// ring all-reduce over loopback) with N workers, against N times the images/s of one worker
// (scaling efficiency), for the frozen backbone and for full fine-tuning.
//
// Each worker gets the same share of every step (`batchPerWorker`, default the lab's batch of 18; the
// global batch is N times it), as DDP benchmarks do, on the demo's data set at a small image size.
// Throughput is taken in steady state from the coordinator's step completions (its 'step' debug lines):
// the first `skipSteps` steps (start-up, kernel compilation) are left out, and so are the epoch ends
// (evaluation and checkpointing); the run is stopped after skipSteps + measureSteps steps. The step-time
// breakdown (decode wait, forward+backward, all-reduce, update) is the workers' own timings (their
// 'step timings' debug lines), medians over the same steps and all workers; 'other' is the rest of the
// step interval (the coordinator's round trip, and ranks waiting for each other).
// Runs alternate N=1, N=2, ... so that a change in the machine's load hits every N alike; the figures
// are medians over the repeats.
import { rmSync } from 'node:fs';
import type { Freeze } from '../shared/model/state.js';
import { workPath } from '../shared/paths.js';
import type { Fixture } from './fixture.js';
import { median, round, spread, waitQuiet, type QuietRecord } from './machine.js';
import { runTrain, type TrainRun } from './train-run.js';

export interface ScalingOptions {
  fixture: Fixture;
  freeze: Freeze;
  workers?: number[];
  imageSize?: number;
  batchPerWorker?: number;
  /** Steps at the start of the epoch left out of the figures (default 3). */
  skipSteps?: number;
  repeats?: number;
  /** Steps timed after the skipped ones; the run is stopped then (default 10; epochs' first steps not counted). */
  measureSteps?: number;
  backend?: string;
  progress?: (line: string) => void;
}

export interface Breakdown {
  data_ms: number;
  compute_ms: number;
  allreduce_ms: number;
  update_ms: number;
  other_ms: number;
  step_ms: number;
}

export interface ScalingRun {
  workers: number;
  images_per_s: number;
  breakdown: Breakdown;
  steps_measured: number;
  skipped_steps: number;
  quiet: QuietRecord;
  wall_s: number;
}

export interface ScalingPoint {
  workers: number;
  images_per_s: number;
  /** images_per_s(N) / (N * images_per_s(1)), from the medians. */
  efficiency: number;
  breakdown: Breakdown;
  /** Each repeat's images/s, and their (max-min)/median. */
  runs_images_per_s: number[];
  spread: number;
}

export interface ScalingResult {
  bench: 'wolfpack_scaling';
  freeze: Freeze;
  bn: 'train' | 'frozen';
  image_size: number;
  batch_per_worker: number;
  skip_steps: number;
  repeats: number;
  command: string;
  points: ScalingPoint[];
  runs: ScalingRun[];
}

/** Worker step records in the measured window: past the first `skip` global steps, no epoch's first step. */
function measuredSteps(run: TrainRun, skip: number): TrainRun['steps'] {
  const firstOfEpoch = new Set<number>();
  for (const s of run.steps) {
    const prev = run.steps.find((x) => x.pid === s.pid && x.step === s.step - 1);
    if (prev === undefined || prev.epoch !== s.epoch) firstOfEpoch.add(s.step);
  }
  return run.steps.filter((s) => s.step >= skip && !firstOfEpoch.has(s.step));
}

function breakdownOf(run: TrainRun, skip: number, stepMs: number): Breakdown {
  const steps = measuredSteps(run, skip);
  const m = (k: keyof StepTimings) => median(steps.map((s) => s.timings[k]));
  const b = { data_ms: m('data'), compute_ms: m('compute'), allreduce_ms: m('allreduce'), update_ms: m('update') };
  const sum = b.data_ms + b.compute_ms + b.allreduce_ms + b.update_ms;
  return { ...roundAll(b), other_ms: round(Math.max(0, stepMs - sum), 1), step_ms: round(stepMs, 1) };
}
type StepTimings = TrainRun['steps'][number]['timings'];

function roundAll<T extends Record<string, number>>(o: T): T {
  return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, round(v, 1)])) as T;
}

/**
 * Steady-state images/s and the median step interval from the coordinator's step completions: the
 * intervals between consecutive steps of one epoch, past the first `skip` steps of the run (an epoch's
 * first step, which follows the previous epoch's evaluation and checkpoint, has no interval).
 */
function steady(
  run: TrainRun,
  skip: number,
  globalBatch: number,
): { imagesPerS: number; stepMs: number; steps: number } {
  const done = [...run.coordinatorSteps].sort((a, b) => a.time_ms - b.time_ms);
  const intervals: number[] = [];
  for (let k = Math.max(1, skip); k < done.length; k++) {
    const cur = done[k]!;
    const prev = done[k - 1]!;
    if (cur.epoch === prev.epoch) intervals.push(cur.time_ms - prev.time_ms);
  }
  if (intervals.length === 0) return { imagesPerS: NaN, stepMs: NaN, steps: 0 };
  const total = intervals.reduce((a, b) => a + b, 0) / 1000;
  return { imagesPerS: (intervals.length * globalBatch) / total, stepMs: median(intervals), steps: intervals.length };
}

export function scalingArgs(o: {
  fixture: Fixture;
  freeze: Freeze;
  workers: number;
  imageSize: number;
  batchPerWorker: number;
  backend: string;
}): string[] {
  return [
    '--data',
    o.fixture.data,
    '--weights',
    o.fixture.weights,
    '--workers',
    String(o.workers),
    '--batch-size',
    String(o.batchPerWorker * o.workers),
    '--epochs',
    '20',
    '--image-size',
    String(o.imageSize),
    '--freeze',
    o.freeze,
    '--bn',
    o.freeze === 'backbone' ? 'frozen' : 'train',
    '--lr',
    '0.0001',
    '--backend',
    o.backend,
    '--timeout',
    '120',
  ];
}

export async function benchScaling(opts: ScalingOptions): Promise<ScalingResult> {
  const workers = opts.workers ?? [1, 2];
  const imageSize = opts.imageSize ?? 64;
  const batchPerWorker = opts.batchPerWorker ?? 18;
  const skip = opts.skipSteps ?? 3;
  const repeats = opts.repeats ?? 1;
  const backend = opts.backend ?? 'wasm';
  const runs: ScalingRun[] = [];
  for (let r = 0; r < repeats; r++) {
    for (const n of workers) {
      const out = workPath('runs', 'bench', `scaling-${opts.freeze}-${n}`);
      rmSync(out, { recursive: true, force: true });
      const quiet = await waitQuiet({
        onWait: (b) => opts.progress?.(`waiting for the machine to quieten (CPU ${(b * 100).toFixed(0)}% busy)`),
      });
      opts.progress?.(
        `scaling, --freeze ${opts.freeze}: ${n} worker(s), ${batchPerWorker} images each per step, ` +
          `${imageSize}x${imageSize} (repeat ${r + 1}/${repeats})`,
      );
      const run = await runTrain({
        args: scalingArgs({
          fixture: opts.fixture,
          freeze: opts.freeze,
          workers: n,
          imageSize,
          batchPerWorker,
          backend,
        }),
        out,
        timeoutMs: 600_000,
        stopAfterSteps: skip + (opts.measureSteps ?? 10),
      });
      const s = steady(run, skip, batchPerWorker * n);
      runs.push({
        workers: n,
        images_per_s: round(s.imagesPerS, 2),
        breakdown: breakdownOf(run, skip, s.stepMs),
        steps_measured: s.steps,
        skipped_steps: (run.epochs[0] as unknown as { skipped_steps?: number } | undefined)?.skipped_steps ?? 0,
        quiet,
        wall_s: round(run.wall_s, 1),
      });
    }
  }
  const one = median(runs.filter((r) => r.workers === 1).map((r) => r.images_per_s));
  const points: ScalingPoint[] = workers.map((n) => {
    const mine = runs.filter((r) => r.workers === n);
    const ips = median(mine.map((r) => r.images_per_s));
    const bd = (k: keyof Breakdown) => round(median(mine.map((r) => r.breakdown[k])), 1);
    return {
      workers: n,
      images_per_s: round(ips, 2),
      efficiency: round(ips / (n * one), 3),
      breakdown: {
        data_ms: bd('data_ms'),
        compute_ms: bd('compute_ms'),
        allreduce_ms: bd('allreduce_ms'),
        update_ms: bd('update_ms'),
        other_ms: bd('other_ms'),
        step_ms: bd('step_ms'),
      },
      runs_images_per_s: mine.map((r) => r.images_per_s),
      spread: round(spread(mine.map((r) => r.images_per_s)), 3),
    };
  });
  const example = scalingArgs({
    fixture: opts.fixture,
    freeze: opts.freeze,
    workers: workers[workers.length - 1]!,
    imageSize,
    batchPerWorker,
    backend,
  });
  return {
    bench: 'wolfpack_scaling',
    freeze: opts.freeze,
    bn: opts.freeze === 'backbone' ? 'frozen' : 'train',
    image_size: imageSize,
    batch_per_worker: batchPerWorker,
    skip_steps: skip,
    repeats,
    command: `WOLFPACK_LOG_LEVEL=debug wolfpack train ${example.join(' ')} --out runs/bench/...`,
    points,
    runs,
  };
}
