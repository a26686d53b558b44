// Time to accuracy: how long the demo (`wolfpack demo`'s settings: 2 local workers, global batch 18,
// 64x64, frozen backbone, frozen BatchNorm, lr 0.0002, on the demo's generated data set and calibrated
// checkpoint) takes to reach a target validation accuracy, with and without the feature cache, and its
// training images/s against PyTorch's for the same model, batch and image size.
//
// Variants (each run until the target is reached, then stopped; at most `maxEpochs`):
//   demo                 the demo as `npm start` runs it (training augmentation, a new draw every epoch)
//   augment-none         --augment none: the eval transform for training too (no cache)
//   augment-none+cache   --augment none --cache-features: backbone features computed once per sample
//   views+cache          --views K --cache-features: K augmentation draws per sample, each cached
// The time is the wall time from starting `wolfpack train` (process start, weights, ring) until the
// epoch's metrics line that first meets the target; beside it the sum of the epochs' epoch_time_s
// (metrics.jsonl: the steps, the epoch-end evaluation and state fetch; not start-up or checkpoint writes).
// Step throughput is from the coordinator's step completions, the first step of each epoch left out.
// The PyTorch peer (bench/peers/torch_tta.py) runs the same recipe in plain PyTorch on 2 threads: the
// same data set, the same starting weights (the checkpoint converted to safetensors), the same model
// flavour, transforms, batch, optimiser, target and epoch limit; its wall time also counts from process start.
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { BENCH_RECIPE } from '../shared/demo/assets.js';
import { WolfpackError } from '../shared/errors.js';
import { workPath } from '../shared/paths.js';
import { readCkpt } from '../shared/weights/ckpt.js';
import { writeSafetensors } from '../shared/weights/safetensors.js';
import type { Fixture } from './fixture.js';
import { round, waitQuiet, type QuietRecord } from './machine.js';
import type { PeerRun } from './model.js';
import { runBenchPeer } from './peers.js';
import { runTrain, type TrainRun } from './train-run.js';

export type TtaVariant = 'demo' | 'augment-none' | 'augment-none+cache' | 'views+cache';
export const TTA_VARIANTS: readonly TtaVariant[] = ['demo', 'augment-none', 'augment-none+cache', 'views+cache'];

export interface TtaEpoch {
  epoch: number;
  val_accuracy: number;
  images_per_s: number;
  epoch_time_s: number;
  wall_s: number;
  /** Share of the epoch's samples whose features came from the cache (0 without one). */
  cache_hit_rate: number;
}

export interface TtaRun {
  variant: TtaVariant;
  flags: string[];
  reached: boolean;
  /** First epoch whose validation accuracy met the target (1-based), or null. */
  epoch: number | null;
  wall_s: number | null;
  /** Sum of epoch_time_s up to the target epoch (steps, evaluation and state fetch). */
  epochs_s: number | null;
  epochs: TtaEpoch[];
  /** Median step throughput over the run's steps (first step of each epoch left out), images/s. */
  step_images_per_s: number;
  /** The same over the last epoch run only (for the cache: its warmest epoch). */
  last_epoch_step_images_per_s: number;
  quiet: QuietRecord;
}

export interface PeerStepResult {
  mode: string;
  threads: number;
  batch: number;
  size: number;
  img_s: number;
  median_s: number;
}

/** One epoch line of bench/peers/torch_tta.py. */
export interface PeerTtaEpoch {
  epoch: number;
  val_accuracy: number;
  train_loss: number;
  /** Training steps plus evaluation, s (not the checkpoint save). */
  epoch_s: number;
  /** Seconds from the peer process's start until this epoch's line. */
  wall_s: number;
  train_s: number;
  eval_s: number;
  save_s: number;
  steps: number;
  /** Training images/s of the epoch (data loading included). */
  images_per_s: number | null;
}

/** bench/peers/torch_tta.py's final line, with its epoch lines. */
export interface PeerTtaResult {
  bench: 'torch_time_to_accuracy';
  torch: string;
  threads: number;
  batch: number;
  size: number;
  lr: number;
  momentum: number;
  seed: number;
  target: number;
  max_epochs: number;
  reached: boolean;
  epoch: number | null;
  /** Seconds from process start to the target epoch's line (null: not reached). */
  wall_s: number | null;
  total_wall_s: number;
  /** Sum of epoch_s up to the target epoch (null: not reached). */
  epochs_s: number | null;
  /** Seconds from process start to the first step (imports, data set scan, weights). */
  setup_s: number;
  best_val_accuracy: number;
  epochs: PeerTtaEpoch[];
}

export interface TtaResult {
  bench: 'wolfpack_time_to_accuracy';
  target: number;
  max_epochs: number;
  views: number;
  command: string;
  runs: TtaRun[];
  peer: PeerRun<PeerStepResult>;
  /** Step images/s over PyTorch's frozen-backbone step (above 1: wolfpack is faster). */
  ratio: Partial<Record<TtaVariant, number>>;
  /** The same recipe in PyTorch (bench/peers/torch_tta.py), timed to the same target. */
  peer_tta: PeerRun<PeerTtaResult>;
  /**
   * PyTorch's wall s to the target over the variant's (above 1: wolfpack reaches it sooner); only where both
   * reached it.
   */
  tta_ratio: Partial<Record<TtaVariant, number>>;
  /** How busy the machine was before the PyTorch time-to-accuracy run (null: not run). */
  peer_tta_quiet: QuietRecord | null;
}

export function ttaFlags(variant: TtaVariant, views: number): string[] {
  switch (variant) {
    case 'demo':
      return [];
    case 'augment-none':
      return ['--augment', 'none'];
    case 'augment-none+cache':
      return ['--augment', 'none', '--cache-features'];
    case 'views+cache':
      return ['--views', String(views), '--cache-features'];
  }
}

export function demoArgs(fixture: Fixture, maxEpochs: number): string[] {
  const d = BENCH_RECIPE;
  return [
    '--data',
    fixture.data,
    '--weights',
    fixture.weights,
    '--workers',
    String(d.workers),
    '--epochs',
    String(maxEpochs),
    '--batch-size',
    String(d.batchSize),
    '--image-size',
    String(d.imageSize),
    '--freeze',
    d.freeze,
    '--bn',
    d.bn,
    '--lr',
    String(d.lr),
    '--backend',
    'wasm',
    '--timeout',
    '120',
  ];
}

function stepRate(run: TrainRun, batch: number, epochs?: number[]): number {
  const byEpoch = new Map<number, number[]>();
  for (const s of run.coordinatorSteps) {
    if (epochs && !epochs.includes(s.epoch)) continue;
    byEpoch.set(s.epoch, [...(byEpoch.get(s.epoch) ?? []), s.time_ms]);
  }
  const intervals: number[] = [];
  for (const ts of byEpoch.values()) {
    ts.sort((a, b) => a - b);
    for (let i = 1; i < ts.length; i++) intervals.push(ts[i]! - ts[i - 1]!);
  }
  const total = intervals.reduce((a, b) => a + b, 0);
  return intervals.length > 0 && total > 0 ? (intervals.length * batch) / (total / 1000) : NaN;
}

export async function benchTimeToAccuracy(opts: {
  fixture: Fixture;
  target?: number;
  maxEpochs?: number;
  views?: number;
  variants?: readonly TtaVariant[];
  peer?: boolean;
  progress?: (l: string) => void;
}): Promise<TtaResult> {
  const target = opts.target ?? 0.7;
  const maxEpochs = opts.maxEpochs ?? 12;
  const views = opts.views ?? 2;
  const batch = BENCH_RECIPE.batchSize;
  const runs: TtaRun[] = [];
  const onWait = (busy: number): void => {
    opts.progress?.(`waiting for the machine to quieten (CPU ${(busy * 100).toFixed(0)}% busy)`);
  };
  for (const variant of opts.variants ?? TTA_VARIANTS) {
    const flags = ttaFlags(variant, views);
    const out = workPath('runs', 'bench', `tta-${variant.replace('+', '-')}`);
    rmSync(out, { recursive: true, force: true });
    const quiet = await waitQuiet({ onWait });
    opts.progress?.(
      `time to accuracy ${target}: ${variant}${flags.length ? ` (${flags.join(' ')})` : ''}, ` +
        `at most ${maxEpochs} epochs`,
    );
    const run = await runTrain({
      args: [...demoArgs(opts.fixture, maxEpochs), ...flags],
      out,
      timeoutMs: 900_000,
      stopWhen: (e) => e.val_accuracy >= target,
    });
    const epochs: TtaEpoch[] = run.epochs.map((e) => {
      const steps = run.steps.filter((s) => s.epoch === e.epoch - 1);
      const samples = steps.reduce((a, s) => a + s.samples, 0);
      return {
        epoch: e.epoch,
        val_accuracy: round(e.val_accuracy, 4),
        images_per_s: round(e.images_per_s, 1),
        epoch_time_s: round(e.epoch_time_s, 2),
        wall_s: round(e.wall_s, 1),
        cache_hit_rate: samples > 0 ? round(steps.reduce((a, s) => a + s.cached, 0) / samples, 3) : 0,
      };
    });
    const hit = epochs.find((e) => e.val_accuracy >= target);
    const last = epochs.at(-1)?.epoch ?? 1;
    runs.push({
      variant,
      flags,
      reached: hit !== undefined,
      epoch: hit?.epoch ?? null,
      wall_s: hit?.wall_s ?? null,
      epochs_s: hit
        ? round(
            epochs.filter((e) => e.epoch <= hit.epoch).reduce((a, e) => a + e.epoch_time_s, 0),
            2,
          )
        : null,
      epochs,
      step_images_per_s: round(stepRate(run, batch), 1),
      last_epoch_step_images_per_s: round(stepRate(run, batch, [last]), 1),
      quiet,
    });
  }
  const noPeer = { ok: false, command: '', skipped: '--no-peer' } as const;
  let peer: PeerRun<PeerStepResult> = noPeer;
  let peerTta: PeerRun<PeerTtaResult> = noPeer;
  let peerTtaQuiet: QuietRecord | null = null;
  if (opts.peer !== false) {
    await waitQuiet();
    opts.progress?.(
      `PyTorch peer: frozen-backbone step, 2 threads, batch ${batch}, ` +
        `${BENCH_RECIPE.imageSize}x${BENCH_RECIPE.imageSize}`,
    );
    peer = await torchStep({ mode: 'frozen', threads: 2, batch, size: BENCH_RECIPE.imageSize, reps: 7 });
    peerTtaQuiet = await waitQuiet({ onWait });
    opts.progress?.(
      `PyTorch peer: time to accuracy ${target}, the same recipe, 2 threads, at most ${maxEpochs} epochs`,
    );
    peerTta = await torchTta({ fixture: opts.fixture, target, maxEpochs, threads: 2 });
  }
  const ratio: Partial<Record<TtaVariant, number>> = {};
  if (peer.ok) for (const r of runs) ratio[r.variant] = round(r.last_epoch_step_images_per_s / peer.result.img_s, 3);
  const ttaRatio: Partial<Record<TtaVariant, number>> = {};
  if (peerTta.ok && peerTta.result.wall_s !== null) {
    for (const r of runs)
      if (r.wall_s !== null && r.wall_s > 0) ttaRatio[r.variant] = round(peerTta.result.wall_s / r.wall_s, 3);
  }
  return {
    bench: 'wolfpack_time_to_accuracy',
    target,
    max_epochs: maxEpochs,
    views,
    command:
      `WOLFPACK_LOG_LEVEL=debug wolfpack train ${demoArgs(opts.fixture, maxEpochs).join(' ')} ` +
      '[variant flags] --out runs/bench/tta-...',
    runs,
    peer,
    ratio,
    peer_tta: peerTta,
    tta_ratio: ttaRatio,
    peer_tta_quiet: peerTtaQuiet,
  };
}

/** Writes a MindSpore .ckpt's tensors, names and order kept, as a .safetensors file (what the PyTorch peer reads). */
export async function ckptToSafetensors(ckpt: string, out: string): Promise<void> {
  await writeSafetensors(out, await readCkpt(ckpt), { source: ckpt });
}

/**
 * bench/peers/torch_tta.py on the fixture with the demo's settings (batch, image size, lr; overridable):
 * the starting checkpoint is converted to DIR/resnet50.safetensors first (DIR emptied; default
 * runs/bench/tta-torch), and the peer saves its best state_dict beside it as best.pt.
 */
export async function torchTta(o: {
  fixture: Fixture;
  target: number;
  maxEpochs: number;
  threads: number;
  lr?: number;
  batch?: number;
  size?: number;
  seed?: number;
  timeoutMs?: number;
  dir?: string;
}): Promise<PeerRun<PeerTtaResult>> {
  const dir = o.dir ?? workPath('runs', 'bench', 'tta-torch');
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const weights = join(dir, 'resnet50.safetensors');
  await ckptToSafetensors(o.fixture.weights, weights);
  const args = [
    '--data',
    o.fixture.data,
    '--weights',
    weights,
    '--out',
    join(dir, 'best.pt'),
    '--target',
    String(o.target),
    '--epochs',
    String(o.maxEpochs),
    '--lr',
    String(o.lr ?? BENCH_RECIPE.lr),
    '--batch',
    String(o.batch ?? BENCH_RECIPE.batchSize),
    '--size',
    String(o.size ?? BENCH_RECIPE.imageSize),
    '--threads',
    String(o.threads),
    '--seed',
    String(o.seed ?? 0),
  ];
  const r = await runBenchPeer<PeerTtaEpoch | Omit<PeerTtaResult, 'epochs'>>(
    'torch_tta.py',
    args,
    o.timeoutMs ?? 900_000,
  );
  if (!r.ok) return r;
  const final = r.result.find(
    (l): l is Omit<PeerTtaResult, 'epochs'> => 'bench' in l && l.bench === 'torch_time_to_accuracy',
  );
  if (!final) throw new WolfpackError('E_WORKER', `peer ${r.command} printed no final line`);
  const epochs = r.result.filter((l): l is PeerTtaEpoch => !('bench' in l));
  return { ok: true, command: r.command, result: { ...final, epochs } };
}

/** bench/peers/torch_resnet50_step.py: PyTorch images/s of one kind of step at any size and batch. */
export async function torchStep(o: {
  mode: 'forward' | 'frozen' | 'full';
  threads: number;
  batch: number;
  size: number;
  reps?: number;
}): Promise<PeerRun<PeerStepResult>> {
  const args = [
    '--threads',
    String(o.threads),
    '--batch',
    String(o.batch),
    '--size',
    String(o.size),
    '--mode',
    o.mode,
    '--reps',
    String(o.reps ?? 5),
  ];
  const r = await runBenchPeer<PeerStepResult>('torch_resnet50_step.py', args, 600_000);
  return r.ok ? { ok: true, command: r.command, result: r.result[0]! } : r;
}
