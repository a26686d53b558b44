// Memory benchmark of the real trainer's worker processes (`wolfpack train`, 2 local workers):
//  - peak: each worker's peak resident set (the kernel's VmHWM, read from /proc while it runs) at
//    224x224 with 18 images per worker per step and the backbone frozen, and with full fine-tuning at
//    the largest per-worker batch whose step fits the wasm backend's 4 GiB heap (bench/model.ts
//    largestWasmTrainBatch: 6 at 224x224), a few steps each;
//  - growth: tf.memory().numTensors and RSS, which every worker reports after each step (its
//    'step timings' debug line), over a run of several epochs at a small image size -- epoch ends,
//    evaluations and checkpoint transfers included. A leak shows as a count that moves or an RSS that
//    keeps climbing after the first epoch; the figures are each epoch's median RSS and the RSS slope over
//    the later epochs. (Rank 0 also sends the whole state to the coordinator at every epoch end, so its
//    RSS saw-tooths with the garbage collector; a leak is a trend, not a tooth.)
import { rmSync } from 'node:fs';
import type { Freeze } from '../shared/model/state.js';
import { workPath } from '../shared/paths.js';
import type { Fixture } from './fixture.js';
import { round, waitQuiet, type QuietRecord } from './machine.js';
import { largestWasmTrainBatch } from './model.js';
import { runTrain } from './train-run.js';

const MiB = 2 ** 20;

export interface PeakFigure {
  freeze: Freeze;
  image_size: number;
  batch_per_worker: number;
  /** Why the batch is what it is (full fine-tuning is capped by the wasm heap). */
  note?: string;
  steps: number;
  /** Each worker's peak RSS (VmHWM), MiB. */
  peak_rss_mib: number[];
  command: string;
  quiet: QuietRecord;
}

export interface GrowthFigure {
  freeze: Freeze;
  image_size: number;
  batch_per_worker: number;
  epochs: number;
  steps: number;
  /** numTensors after each worker's first and last step, and the distinct values seen. */
  tensors_first: number;
  tensors_last: number;
  tensors_distinct: number[];
  /** Worker RSS (MiB, median over workers) after the first epoch's last step and after the run's last step. */
  rss_after_epoch1_mib: number;
  rss_last_mib: number;
  /** Per worker, the median RSS (MiB) over each epoch's steps: growth shows as a rising row. */
  rss_epoch_medians_mib: number[][];
  /** Least-squares RSS slope over steps after the first epoch, MiB per 100 steps (median over workers). */
  rss_slope_mib_per_100_steps: number;
  /** Per worker: [step, RSS MiB] after every step. */
  series: Array<{ pid: number; points: Array<[number, number]> }>;
  command: string;
  quiet: QuietRecord;
}

export interface MemoryResult {
  bench: 'wolfpack_memory';
  peak: PeakFigure[];
  growth: GrowthFigure[];
}

function trainArgs(f: Fixture, freeze: Freeze, size: number, perWorker: number, epochs: number): string[] {
  return [
    '--data',
    f.data,
    '--weights',
    f.weights,
    '--workers',
    '2',
    '--batch-size',
    String(2 * perWorker),
    '--epochs',
    String(epochs),
    '--image-size',
    String(size),
    '--freeze',
    freeze,
    '--bn',
    freeze === 'backbone' ? 'frozen' : 'train',
    '--lr',
    '0.0001',
    '--backend',
    'wasm',
    '--timeout',
    '300',
  ];
}

function slope(points: Array<[number, number]>): number {
  if (points.length < 2) return 0;
  const n = points.length;
  const mx = points.reduce((a, p) => a + p[0], 0) / n;
  const my = points.reduce((a, p) => a + p[1], 0) / n;
  let num = 0;
  let den = 0;
  for (const [x, y] of points) {
    num += (x - mx) * (y - my);
    den += (x - mx) ** 2;
  }
  return den > 0 ? num / den : 0;
}

const med = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s.length % 2 ? s[s.length >> 1]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

export async function benchMemory(opts: {
  fixture: Fixture;
  peakSize?: number;
  peakBatch?: number;
  peakSteps?: number;
  growthSize?: number;
  growthEpochs?: number;
  growthFreeze?: Freeze[];
  skipPeak?: boolean;
  progress?: (l: string) => void;
}): Promise<MemoryResult> {
  const peakSize = opts.peakSize ?? 224;
  const peakBatch = opts.peakBatch ?? 18;
  const peakSteps = opts.peakSteps ?? 2;
  const result: MemoryResult = { bench: 'wolfpack_memory', peak: [], growth: [] };
  const wait = () =>
    waitQuiet({
      onWait: (b) => opts.progress?.(`waiting for the machine to quieten (CPU ${(b * 100).toFixed(0)}% busy)`),
    });

  for (const freeze of (opts.skipPeak ? [] : ['backbone', 'none']) as Freeze[]) {
    const fits = freeze === 'none' ? largestWasmTrainBatch(peakBatch, peakSize) : peakBatch;
    const out = workPath('runs', 'bench', `memory-peak-${freeze}`);
    rmSync(out, { recursive: true, force: true });
    const quiet = await wait();
    opts.progress?.(
      `memory: peak RSS, --freeze ${freeze}, ${fits} images per worker, ${peakSize}x${peakSize}, ` +
        `${peakSteps} steps on 2 workers`,
    );
    const args = trainArgs(opts.fixture, freeze, peakSize, fits, 1);
    const run = await runTrain({ args, out, timeoutMs: 900_000, stopAfterSteps: peakSteps });
    result.peak.push({
      freeze,
      image_size: peakSize,
      batch_per_worker: fits,
      ...(fits < peakBatch
        ? {
            note:
              `full fine-tuning at ${fits} images per worker: ${peakBatch} at ${peakSize}x${peakSize} ` +
              "needs more than the wasm backend's 4 GiB heap holds",
          }
        : {}),
      steps: run.coordinatorSteps.length,
      peak_rss_mib: run.workers.map((w) => round(w.hwm / MiB, 0)).sort((a, b) => b - a),
      command: `wolfpack train ${args.join(' ')} --out ${out}`,
      quiet,
    });
  }

  for (const freeze of opts.growthFreeze ?? (['backbone', 'none'] as Freeze[])) {
    const size = opts.growthSize ?? 32;
    const epochs = opts.growthEpochs ?? (freeze === 'backbone' ? 12 : 6);
    const out = workPath('runs', 'bench', `memory-growth-${freeze}`);
    rmSync(out, { recursive: true, force: true });
    const quiet = await wait();
    opts.progress?.(
      `memory: growth over ${epochs} epochs, --freeze ${freeze}, 9 images per worker, ${size}x${size}, 2 workers`,
    );
    const args = trainArgs(opts.fixture, freeze, size, 9, epochs);
    const run = await runTrain({ args, out, timeoutMs: 900_000 });
    const pids = [...new Set(run.steps.map((s) => s.pid))];
    const series = pids.map((pid) => ({
      pid,
      points: run.steps
        .filter((s) => s.pid === pid)
        .sort((a, b) => a.step - b.step)
        .map((s) => [s.step, round(s.rss / MiB, 1)] as [number, number]),
    }));
    const perWorker = pids.map((pid) => run.steps.filter((s) => s.pid === pid).sort((a, b) => a.step - b.step));
    const epoch1Last = (steps: typeof run.steps) => steps.filter((s) => s.epoch === 0).at(-1);
    result.growth.push({
      freeze,
      image_size: size,
      batch_per_worker: 9,
      epochs,
      steps: perWorker[0]?.length ?? 0,
      tensors_first: perWorker[0]?.[0]?.numTensors ?? NaN,
      tensors_last: perWorker[0]?.at(-1)?.numTensors ?? NaN,
      tensors_distinct: [...new Set(run.steps.map((s) => s.numTensors))].sort((a, b) => a - b),
      rss_after_epoch1_mib: round(med(perWorker.map((s) => (epoch1Last(s)?.rss ?? NaN) / MiB)), 1),
      rss_last_mib: round(med(perWorker.map((s) => (s.at(-1)?.rss ?? NaN) / MiB)), 1),
      rss_epoch_medians_mib: perWorker.map((steps) =>
        [...new Set(steps.map((x) => x.epoch))]
          .sort((a, b) => a - b)
          .map((e) => round(med(steps.filter((x) => x.epoch === e).map((x) => x.rss / MiB)), 0)),
      ),
      rss_slope_mib_per_100_steps: round(
        med(
          series.map(
            (s) => slope(s.points.filter(([step]) => run.steps.find((x) => x.step === step)!.epoch > 0)) * 100,
          ),
        ),
        2,
      ),
      series,
      command: `WOLFPACK_LOG_LEVEL=debug wolfpack train ${args.join(' ')} --out ${out}`,
      quiet,
    });
  }
  return result;
}
