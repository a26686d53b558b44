// `wolfpack bench chaos`: a bounded chaos run. The tiny job (a width-4 ResNet-50, a synthetic two-class
// data set, both generated here) is trained twice by a coordinator and N worker processes: once
// without faults, then with faults injected at random times drawn from a seeded generator -- a worker
// killed (-9), stopped (SIGSTOP) for less or more than --timeout and let go (SIGCONT), or its network
// link cut (its switch port down) for less or more than --timeout and restored -- with a fresh worker
// started in its place whenever one is lost, so the pack keeps about N members (and with the
// coordinator's --min-workers 2, a run down to one worker waits for a fresh one rather than racing
// through its steps alone while the faults wait for a ring of two). Link cuts need each
// worker in a network namespace of its own (bench/netns-lab.ts: root or CAP_NET_ADMIN, and iproute2);
// elsewhere the run is on loopback and says that it skipped them.
//
// Faults are spaced by events, not by guesses: one at a time, each after a few more steps have
// completed (--gap) on a ring of two workers or more (a fresh worker may still be joining, so faults
// also land on re-formed rings and joins); every wait is bounded, the whole run is bounded by
// --max-minutes, and everything started is killed by pid (and the namespaces deleted) at the end.
//
// Two checks decide the exit status. The weights: with --bn frozen the result does not depend on how a
// batch is split over the workers, so the faulted run's last.ckpt must equal the uninterrupted one's
// to float tolerance (worst per-tensor relative difference, shared/weights/compare.ts; the default
// 1e-4 is above what splitting batches differently does here, up to 1e-6 on the weights and 7e-6 on
// the Momentum accumulators, and far below what a lost or partial step does, 1e-1 and more). The samples:
// each epoch's metrics line says how many images its completed steps trained (`samples`, from the
// workers' all-reduced counts); it must be steps x global batch, so that no sample was lost or
// counted twice. Why the default is --freeze backbone: fine-tuning the whole network amplifies
// rounding differences, so two fault-free runs of this job that merely split batches differently
// (3 vs 2 workers) end 11 apart (worst tensor, relative) after 100 steps at --lr 0.001 (and diverge
// at 0.01); training the head alone keeps them 3e-7 apart.
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { selectBackend } from '../shared/backend/select.js';
import { scanSplit } from '../shared/data/imagefolder.js';
import { generateSyntheticCanidae } from '../shared/data/synthetic.js';
import { evalTransform } from '../shared/data/transforms.js';
import { sampleRng, type SampleRng } from '../shared/data/rng.js';
import { num, oneOf, optStr, type Options } from '../shared/config/args.js';
import { WolfpackError } from '../shared/errors.js';
import { calibrateBatchNorm } from '../shared/model/calibrate.js';
import type { Freeze } from '../shared/model/state.js';
import { initModel, tensorsFromModel } from '../shared/model/weights.js';
import { writeCkpt } from '../shared/weights/ckpt.js';
import { readCkptFloats, worstTensor } from '../shared/weights/compare.js';
import { Pack, signal, type Eviction, type PackProcess } from './chaos-pack.js';
import { median } from './machine.js';
import { Lab, netnsUnavailable } from './netns-lab.js';

export const FAULT_KINDS = ['kill', 'stop-short', 'stop-long', 'cut-short', 'cut-long'] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];
const CUTS: readonly FaultKind[] = ['cut-short', 'cut-long'];
/** A stream of the counter-based generator (shared/data/rng.ts) of its own, for the fault schedule. */
const CHAOS_STREAM = 0xc4a05;
const TOKEN = `chaos-${'5a'.repeat(24)}`;

export interface ChaosOptions {
  workers: number;
  /** The coordinator's --min-workers: below it, training waits for a fresh worker (so faults outpace no join). */
  minWorkers: number;
  epochs: number;
  stepsPerEpoch: number;
  batchSize: number;
  lr: number;
  freeze: Freeze;
  /** The coordinator's --timeout (s): a worker silent this long is evicted. */
  timeoutS: number;
  /** Seed of the fault schedule (times, victims, kinds, durations). */
  seed: number;
  /** Steps completed between one fault's end and the next one (drawn in [min, max]). */
  gap: [number, number];
  maxFaults: number;
  kinds: readonly FaultKind[];
  network: 'auto' | 'netns' | 'loopback';
  maxMinutes: number;
  /** Largest accepted worst per-tensor relative difference of the weights. */
  tolerance: number;
  /** Work folder (job, runs, logs); default a temporary one, removed unless --keep or something failed. */
  dir?: string;
  keep: boolean;
  progress?: (line: string) => void;
}

export const CHAOS_DEFAULTS: Omit<ChaosOptions, 'progress' | 'dir'> = {
  workers: 3,
  minWorkers: 2,
  epochs: 20,
  stepsPerEpoch: 20,
  batchSize: 6,
  lr: 0.001,
  freeze: 'backbone',
  timeoutS: 3,
  seed: 1,
  gap: [2, 6],
  maxFaults: Infinity,
  kinds: FAULT_KINDS,
  network: 'auto',
  maxMinutes: 30,
  tolerance: 1e-4,
  keep: false,
};

export const CHAOS_USAGE =
  'wolfpack bench chaos [--workers 3] [--min-workers 2] [--epochs 20] [--steps-per-epoch 20] [--batch-size 6] ' +
  '[--lr 0.001] [--freeze backbone|none] ' +
  `[--timeout 3] [--seed 1] [--gap 2-6] [--max-faults N] [--kinds ${FAULT_KINDS.join(',')}] ` +
  '[--network auto|netns|loopback] [--max-minutes 30] ' +
  '[--tolerance 1e-4] [--dir DIR] [--keep] [--json]   (link cuts need root; not part of bench all)';

export const CHAOS_FLAGS: Options = {
  workers: { type: 'string' },
  'min-workers': { type: 'string' },
  epochs: { type: 'string' },
  'steps-per-epoch': { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  freeze: { type: 'string' },
  timeout: { type: 'string' },
  seed: { type: 'string' },
  gap: { type: 'string' },
  'max-faults': { type: 'string' },
  kinds: { type: 'string' },
  network: { type: 'string' },
  'max-minutes': { type: 'string' },
  tolerance: { type: 'string' },
  dir: { type: 'string' },
  keep: { type: 'boolean' },
  json: { type: 'boolean' },
};

/** ChaosOptions from the parsed CHAOS_FLAGS, each checked and named when wrong. */
export function chaosOptionsFrom(values: Record<string, unknown>): Omit<ChaosOptions, 'progress'> {
  const d = CHAOS_DEFAULTS;
  const gapRaw = optStr(values, 'gap');
  const gapMatch = gapRaw === undefined ? undefined : /^(\d+)(?:-(\d+))?$/.exec(gapRaw);
  if (gapRaw !== undefined && !gapMatch)
    throw new WolfpackError('E_USAGE', `--gap: expected MIN-MAX (steps between faults), e.g. 2-6; got '${gapRaw}'`);
  const kindsRaw = optStr(values, 'kinds');
  const kinds =
    kindsRaw === undefined
      ? d.kinds
      : kindsRaw.split(',').map((k) => {
          if (!FAULT_KINDS.includes(k as FaultKind))
            throw new WolfpackError('E_USAGE', `--kinds: expected some of ${FAULT_KINDS.join(', ')}, got '${k}'`);
          return k as FaultKind;
        });
  const dir = optStr(values, 'dir');
  const workers = num(values, 'workers', d.workers, { int: true, min: 2, max: 16 });
  return {
    workers,
    minWorkers: num(values, 'min-workers', Math.min(d.minWorkers, workers), { int: true, min: 1, max: workers }),
    epochs: num(values, 'epochs', d.epochs, { int: true, min: 1, max: 1000 }),
    stepsPerEpoch: num(values, 'steps-per-epoch', d.stepsPerEpoch, { int: true, min: 1, max: 10_000 }),
    batchSize: num(values, 'batch-size', d.batchSize, { int: true, min: 2, max: 256 }),
    lr: num(values, 'lr', d.lr, { min: 0 }),
    freeze: oneOf(values, 'freeze', ['backbone', 'none'] as const, 'backbone'),
    timeoutS: num(values, 'timeout', d.timeoutS, { min: 1, max: 600 }),
    seed: num(values, 'seed', d.seed, { int: true, min: 0 }),
    gap: gapMatch ? [Number(gapMatch[1]), Number(gapMatch[2] ?? gapMatch[1])] : d.gap,
    maxFaults: num(values, 'max-faults', d.maxFaults, { int: true, min: 0 }),
    kinds,
    network: oneOf(values, 'network', ['auto', 'netns', 'loopback'] as const, d.network),
    maxMinutes: num(values, 'max-minutes', d.maxMinutes, { min: 1, max: 24 * 60 }),
    tolerance: num(values, 'tolerance', d.tolerance, { min: 0 }),
    ...(dir !== undefined ? { dir } : {}),
    keep: values.keep === true,
  };
}

export interface FaultRecord {
  n: number;
  kind: FaultKind;
  slot: string;
  pid: number;
  /** The victim's rank in the ring at the time (-1: not in it). */
  rank: number;
  /** Where the run was: the last completed step (1-based epoch and step). */
  epoch: number;
  step: number;
  at_s: number;
  /** How long the worker was stopped or its link cut (0 for a kill). */
  held_s: number;
  /** Seconds from the fault to its eviction, if it was evicted. */
  evicted_after_s: number | null;
  /** Seconds from the fault to the next completed step after it ended. */
  resumed_after_s: number | null;
  /** The fresh worker started in its place, if one was. */
  replacement: number | null;
  notes: string[];
}

export interface RunRecord {
  label: 'reference' | 'chaos';
  code: number | null;
  wall_s: number;
  steps_logged: number;
  faults: FaultRecord[];
  evictions: (Eviction & { fault: number | null; expected: boolean })[];
  joins: number;
  workers_started: number;
  /** Every process the run started (coordinator first), all gone when it returns. */
  pids: number[];
  /** What failed the run (a hang, the coordinator's exit, a fault without its eviction, a worker gone by itself). */
  problems: string[];
  /** What is worth a look without failing the run (a process that lingered after its eviction). */
  notes: string[];
  out: string;
  logs: string;
}

export interface EpochSamples {
  epoch: number;
  workers: number | null;
  samples: number | null;
  expected: number;
  ok: boolean;
}

export interface TensorDiff {
  rel: number;
  tensor: string;
}

export interface ChaosResult {
  bench: 'wolfpack_chaos';
  command: string;
  network: 'netns' | 'loopback';
  skipped: string[];
  config: Omit<ChaosOptions, 'progress' | 'dir' | 'keep' | 'maxFaults'> & {
    maxFaults: number | null;
    trainImages: number;
  };
  steps: number;
  faults_by_kind: Record<FaultKind, number>;
  evictions: number;
  unexpected_evictions: number;
  joins: number;
  replacements: number;
  wall_s: { reference: number; chaos: number; total: number };
  /**
   * The worst tensor over the whole checkpoint, and the worst of the weights and of the Momentum accumulators
   * (moments.*) apart.
   */
  weights: {
    worst_rel_diff: number | null;
    tensor: string;
    params: TensorDiff | null;
    momentum: TensorDiff | null;
    tolerance: number;
    ok: boolean;
  };
  samples: EpochSamples[];
  samples_ok: boolean;
  problems: string[];
  reference: RunRecord;
  chaos: RunRecord;
  dir: string | null;
  ok: boolean;
}

const IMAGE_SIZE = 32;

/**
 * The tiny job: a synthetic two-class data set of `trainPerClass` images a class, and a width-4 ResNet-50
 * whose BatchNorm statistics are calibrated on the training images (as the demo's checkpoint is): its
 * features are then well scaled and training the head is a well-conditioned problem, where rounding
 * differences stay at rounding level instead of growing from step to step.
 */
async function makeJob(dir: string, trainPerClass: number): Promise<{ data: string; weights: string }> {
  const data = join(dir, 'data');
  await generateSyntheticCanidae(data, { trainPerClass, valPerClass: 4, size: 48, seed: 3 });
  const state = initModel({ flavour: 'mindspore', width: 4, numClasses: 10 }, 1);
  await selectBackend('wasm');
  const { train } = await scanSplit(data);
  const images = new Float32Array(train.samples.length * IMAGE_SIZE * IMAGE_SIZE * 3);
  for (const [k, x] of train.samples.entries())
    images.set(await evalTransform(await readFile(x.path), IMAGE_SIZE, x.path), k * IMAGE_SIZE * IMAGE_SIZE * 3);
  await calibrateBatchNorm(state, images, train.samples.length, IMAGE_SIZE);
  const weights = join(dir, 'start.ckpt');
  await writeCkpt(weights, tensorsFromModel(state));
  return { data, weights };
}

function shuffled<T>(xs: readonly T[], rng: SampleRng): T[] {
  const a = [...xs];
  for (let i = a.length - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
  return a;
}

const round2 = (x: number) => Math.round(x * 100) / 100;

/** One run of the job by a pack of processes, with faults or without. */
class Run {
  readonly pack: Pack;
  readonly record: RunRecord;
  /** The worker process now in each slot. */
  private readonly slots = new Map<string, PackProcess>();
  private readonly rng: SampleRng;
  /**
   * Draws of the replacements, which run beside the schedule (a stream of their own, so the schedule's draws stay
   * in order).
   */
  private readonly restartRng: SampleRng;
  /** Slots whose lost worker is being replaced (a fresh one started, the old process waited for). */
  private readonly replacing = new Map<string, Promise<void>>();
  private round: FaultKind[] = [];
  private faultActiveSince: number | undefined;

  constructor(
    private readonly o: ChaosOptions,
    label: RunRecord['label'],
    dir: string,
    private readonly lab: Lab | undefined,
    tokenFile: string | undefined,
    private readonly deadline: number,
  ) {
    const logs = join(dir, `${label}-logs`);
    mkdirSync(logs, { recursive: true });
    this.pack = new Pack({ logDir: logs, ...(lab ? { lab } : {}), ...(tokenFile ? { tokenFile } : {}) });
    this.rng = sampleRng(o.seed, 0, 0, CHAOS_STREAM);
    this.restartRng = sampleRng(o.seed, 1, 0, CHAOS_STREAM);
    this.record = {
      label,
      code: null,
      wall_s: 0,
      steps_logged: 0,
      faults: [],
      evictions: [],
      joins: 0,
      workers_started: 0,
      pids: [],
      problems: [],
      notes: [],
      out: join(dir, label),
      logs,
    };
  }

  private slotNames(): string[] {
    return Array.from({ length: this.o.workers }, (_, i) => `w${i + 1}`);
  }

  private get left(): number {
    return this.deadline - Date.now();
  }

  private get stallMs(): number {
    return Math.max(120_000, 20 * this.o.timeoutS * 1000);
  }

  private progress(line: string): void {
    this.o.progress?.(`${this.record.label} ${(this.pack.now() / 1000).toFixed(1)} s: ${line}`);
  }

  async go(job: { data: string; weights: string }, faults: boolean): Promise<RunRecord> {
    const o = this.o;
    const t0 = Date.now();
    const args = [
      '--workers',
      String(o.workers),
      '--min-workers',
      String(o.minWorkers),
      '--data',
      job.data,
      '--weights',
      job.weights,
      '--epochs',
      String(o.epochs),
      '--batch-size',
      String(o.batchSize),
      '--image-size',
      String(IMAGE_SIZE),
      '--out',
      this.record.out,
      '--backend',
      'wasm',
      '--lr',
      String(o.lr),
      '--freeze',
      o.freeze,
      '--bn',
      'frozen',
      '--timeout',
      String(o.timeoutS),
      '--log-level',
      'debug',
    ];
    // A run that stops moving (no step, ring, eviction or join) for this long, with no fault holding it, is hung.
    const watchdog = setInterval(() => {
      const quietFor = this.pack.now() - Math.max(this.pack.lastProgressAt, this.faultActiveSince ?? 0);
      if (quietFor > this.stallMs && !this.pack.coordinatorExited) {
        this.problem(
          `hang: nothing happened for ${(quietFor / 1000).toFixed(0)} s ` +
            `(epoch ${this.pack.epoch} step ${this.pack.stepInEpoch}); last coordinator lines:\n` +
            `${this.pack.tail.slice(-15).join('\n')}`,
        );
        void this.pack.stop();
      }
    }, 1000);
    try {
      const coord = await this.pack.startCoordinator(args, Math.min(120_000, this.left));
      for (const s of this.slotNames()) this.slots.set(s, this.pack.startWorker(s, 60));
      this.progress(`coordinator pid ${coord.pid}, workers ${[...this.slots.values()].map((p) => p.pid).join(', ')}`);
      if (faults)
        await this.schedule().catch((e: Error) => {
          if (!this.pack.coordinatorExited) this.problem(e.message);
        });
      const timer = setTimeout(
        () => {
          this.problem(`time limit: --max-minutes ${o.maxMinutes} reached before the coordinator finished`);
          void this.pack.stop();
        },
        Math.max(0, this.left),
      );
      this.record.code = await coord.exit;
      clearTimeout(timer);
      await Promise.all(this.replacing.values());
      if (this.record.code !== 0)
        this.problem(
          `the coordinator exited with ${this.record.code ?? 'a signal'}:\n${this.pack.tail.slice(-15).join('\n')}`,
        );
      // Workers leave on the coordinator's shutdown; any still there after a while are killed.
      await Promise.all([...this.slots.values()].map((p) => this.pack.exitOrKill(p, 15_000)));
    } finally {
      clearInterval(watchdog);
      await this.pack.stop();
      this.record.wall_s = round2((Date.now() - t0) / 1000);
      this.record.steps_logged = this.pack.steps;
      this.record.joins = this.pack.joins;
      this.record.workers_started = this.pack.workersStarted;
      this.record.pids = [...this.pack.started];
      this.record.evictions = this.pack.evictions.map((e) => this.classify(e));
    }
    return this.record;
  }

  private problem(text: string): void {
    this.record.problems.push(text);
    this.progress(`PROBLEM ${text.split('\n')[0]}`);
  }

  /** Which fault an eviction belongs to, and whether that fault should have caused it. */
  private classify(e: Eviction): RunRecord['evictions'][number] {
    const f = [...this.record.faults].reverse().find((x) => x.at_s * 1000 <= e.at_ms);
    const expected =
      f !== undefined && f.pid === e.pid && (f.kind === 'kill' || f.kind === 'stop-long' || f.kind === 'cut-long');
    return { ...e, at_ms: Math.round(e.at_ms), fault: f?.n ?? null, expected };
  }

  private nextKind(): FaultKind {
    if (this.round.length === 0) this.round = shuffled(this.o.kinds, this.rng);
    return this.round.shift()!;
  }

  /** Faults, one at a time, until the coordinator finishes, the time is up or --max-faults were made. */
  private async schedule(): Promise<void> {
    const o = this.o;
    const pack = this.pack;
    while (this.record.faults.length < o.maxFaults && !pack.finished && this.left > 60_000) {
      this.reconcile(); // a short fault's late eviction
      // Two members at least, so that the run can always go on; a fresh worker may still be on its way in.
      await pack.until(
        () => pack.members().length >= 2,
        Math.min(this.stallMs, this.left),
        'a ring of two workers or more',
      );
      const k = o.gap[0] + this.rng.below(o.gap[1] - o.gap[0] + 1);
      const target = pack.steps + k;
      await pack.until(() => pack.steps >= target, Math.min(this.stallMs, this.left), `${k} more step(s)`);
      // Somewhere within the next step: its compute, its all-reduce, or an epoch end's evaluation.
      const times = pack.stepTimes;
      const stepMs = times.length > 1 ? median(times.slice(1).map((t, i) => t - times[i]!)) : 500;
      await sleep(this.rng.uniform(0, 1.2) * stepMs);
      const kind = this.nextKind();
      const eligible = this.slotNames().filter(
        (s) => !this.replacing.has(s) && pack.members().includes(this.slots.get(s)!.pid),
      );
      if (eligible.length === 0 || pack.finished) continue;
      await this.inject(kind, eligible[this.rng.below(eligible.length)]!);
    }
  }

  private async inject(kind: FaultKind, slot: string): Promise<void> {
    const pack = this.pack;
    const p = this.slots.get(slot)!;
    const t = pack.now();
    const f: FaultRecord = {
      n: this.record.faults.length + 1,
      kind,
      slot,
      pid: p.pid,
      rank: pack.ring.indexOf(p.pid),
      epoch: pack.epoch,
      step: pack.stepInEpoch,
      at_s: round2(t / 1000),
      held_s: 0,
      evicted_after_s: null,
      resumed_after_s: null,
      replacement: null,
      notes: [],
    };
    this.record.faults.push(f);
    this.faultActiveSince = t;
    const timeoutMs = this.o.timeoutS * 1000;
    const short = () => this.rng.uniform(0.15, 0.35) * timeoutMs;
    const evictBound = Math.min(2 * timeoutMs + 60_000, this.left);
    const awaitEviction = () =>
      pack
        .until(() => pack.evicted(p.pid) !== undefined, evictBound, `the eviction of pid ${p.pid} (${kind})`)
        .catch((e: Error) => {
          f.notes.push(`not evicted: ${e.message}`);
          this.problem(`fault ${f.n} (${kind} of pid ${p.pid}): ${e.message}`);
        });
    this.progress(`fault ${f.n}: ${kind} ${slot} pid ${p.pid} (rank ${f.rank}) after epoch ${f.epoch} step ${f.step}`);
    switch (kind) {
      case 'kill':
        signal(p, 'SIGKILL');
        await awaitEviction();
        break;
      case 'stop-short':
      case 'stop-long':
        signal(p, 'SIGSTOP');
        if (kind === 'stop-short') await sleep(short());
        else {
          await awaitEviction();
          await sleep(this.rng.uniform(0, 2000));
        }
        signal(p, 'SIGCONT');
        break;
      case 'cut-short':
      case 'cut-long':
        this.lab!.cut(slot);
        if (kind === 'cut-short') await sleep(short());
        else {
          await awaitEviction();
          await sleep(this.rng.uniform(0, 2000));
        }
        this.lab!.restore(slot);
        break;
    }
    const ended = pack.now();
    f.held_s = kind === 'kill' ? 0 : round2((ended - t) / 1000);
    // Whoever was lost (the victim, and any other worker) is replaced, beside the run going on.
    this.reconcile();
    this.faultActiveSince = undefined;
    // The run goes on: a step completes after the fault ended (a short fault may still cost an eviction meanwhile).
    await pack
      .until(() => pack.lastStepAt > ended, Math.min(this.stallMs, this.left), `a step after fault ${f.n} (${kind})`)
      .then(() => {
        f.resumed_after_s = round2((pack.lastStepAt - t) / 1000);
      })
      .catch((e: Error) => {
        if (!pack.coordinatorExited) this.problem(`fault ${f.n} (${kind} of pid ${p.pid}): ${e.message}`);
      });
    const ev = pack.evicted(p.pid);
    if (ev) f.evicted_after_s = round2((ev.at_ms - t) / 1000);
    if (ev && (kind === 'stop-short' || kind === 'cut-short'))
      f.notes.push(`evicted although held only ${f.held_s} s (--timeout ${this.o.timeoutS} s): ${ev.reason}`);
  }

  /** Every slot whose worker was lost or exited gets a fresh one once the old process is gone, in the background. */
  private reconcile(): void {
    for (const [slot, p] of this.slots) {
      if (this.replacing.has(slot) || this.pack.finished) continue;
      const lost = this.pack.evicted(p.pid) !== undefined;
      if (!lost && p.child.exitCode === null && p.child.signalCode === null) continue;
      this.replacing.set(
        slot,
        this.replace(slot, p, lost).finally(() => this.replacing.delete(slot)),
      );
    }
  }

  private async replace(slot: string, p: PackProcess, lost: boolean): Promise<void> {
    const pack = this.pack;
    const f = [...this.record.faults].reverse().find((x) => x.pid === p.pid);
    if (!lost && !pack.finished) this.problem(`pid ${p.pid} in ${slot} exited without being evicted`);
    // The fresh worker starts beside the old process (ring ports are the system's pick): an evicted
    // worker learns of it when its connection closes -- at once, or once its link is back -- and exits.
    await sleep(this.restartRng.uniform(0, 1000));
    if (!pack.finished) {
      const fresh = pack.startWorker(slot, 60);
      this.slots.set(slot, fresh);
      if (f) f.replacement = fresh.pid;
      this.progress(`started pid ${fresh.pid} in ${slot} in place of pid ${p.pid}`);
    }
    const alone = await pack.exitOrKill(p, 30_000);
    if (!alone) (f?.notes ?? this.record.notes).push(`pid ${p.pid} was still running 30 s after its eviction; killed`);
  }
}

function notRun(dir: string, why: string): RunRecord {
  return {
    label: 'chaos',
    code: null,
    wall_s: 0,
    steps_logged: 0,
    faults: [],
    evictions: [],
    joins: 0,
    workers_started: 0,
    pids: [],
    problems: [`not run: ${why}`],
    notes: [],
    out: join(dir, 'chaos'),
    logs: '',
  };
}

function readMetrics(out: string): { epoch: number; workers?: number; samples?: number }[] {
  try {
    return readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { epoch: number; workers?: number; samples?: number });
  } catch {
    return [];
  }
}

/** Runs the uninterrupted job and the faulted one, and compares them. */
export async function runChaos(opts: ChaosOptions, command: string): Promise<ChaosResult> {
  const o = opts;
  if (o.workers < 2) throw new WolfpackError('E_USAGE', '--workers: a chaos run needs at least 2 workers');
  if (o.gap[0] < 1 || o.gap[1] < o.gap[0])
    throw new WolfpackError('E_USAGE', `--gap: expected MIN-MAX steps with 1 <= MIN <= MAX, got ${o.gap.join('-')}`);
  const started = Date.now();
  const deadline = started + o.maxMinutes * 60_000;
  const skipped: string[] = [];
  let kinds = o.kinds;
  const why = o.network === 'loopback' ? 'loopback was asked for (--network loopback)' : netnsUnavailable();
  if (why !== undefined && o.network === 'netns') throw new WolfpackError('E_USAGE', `--network netns: ${why}`);
  if (why !== undefined && kinds.some((k) => CUTS.includes(k))) {
    skipped.push(`link cuts (${kinds.filter((k) => CUTS.includes(k)).join(', ')}) skipped: ${why}`);
    kinds = kinds.filter((k) => !CUTS.includes(k));
  }
  if (kinds.length === 0) throw new WolfpackError('E_USAGE', '--kinds: no fault kind left to inject');
  const run = { ...o, kinds };
  const dir = o.dir ?? mkdtempSync(join(tmpdir(), 'wolfpack-chaos-'));
  mkdirSync(dir, { recursive: true });
  const trainPerClass = (o.stepsPerEpoch * o.batchSize) / 2;
  if (!Number.isInteger(trainPerClass))
    throw new WolfpackError('E_USAGE', '--steps-per-epoch x --batch-size must be even (two classes of equal size)');
  o.progress?.(`work folder ${dir}; generating the tiny job (${2 * trainPerClass} training images)`);
  const job = await makeJob(dir, trainPerClass);
  let lab: Lab | undefined;
  let tokenFile: string | undefined;
  let failed = true;
  try {
    if (why === undefined) {
      lab = Lab.create([
        { name: 'c', octet: 1 },
        ...Array.from({ length: o.workers }, (_, i) => ({ name: `w${i + 1}`, octet: 11 + i })),
      ]);
      await lab.waitUp();
      tokenFile = join(dir, 'token');
      writeFileSync(tokenFile, TOKEN + '\n');
      chmodSync(tokenFile, 0o600);
    }
    const reference = await new Run(run, 'reference', dir, lab, tokenFile, deadline).go(job, false);
    const chaos =
      reference.code === 0
        ? await new Run(run, 'chaos', dir, lab, tokenFile, deadline).go(job, true)
        : notRun(dir, 'the uninterrupted run failed');
    const result = judge(run, command, lab ? 'netns' : 'loopback', skipped, reference, chaos, started);
    if (chaos.code === 0 && reference.code === 0)
      result.weights = compareWeights(
        await readCkptFloats(join(chaos.out, 'last.ckpt')),
        await readCkptFloats(join(reference.out, 'last.ckpt')),
        o.tolerance,
      );
    result.ok = result.weights.ok && result.samples_ok && result.problems.length === 0;
    failed = !result.ok;
    result.dir = o.keep || failed ? dir : null;
    return result;
  } finally {
    lab?.destroy();
    if (!o.keep && !failed && o.dir === undefined) rmSync(dir, { recursive: true, force: true });
  }
}

function compareWeights(
  got: Map<string, Float32Array>,
  want: Map<string, Float32Array>,
  tolerance: number,
): ChaosResult['weights'] {
  const part = (momentum: boolean): TensorDiff | null => {
    const w = new Map([...want].filter(([k]) => k.startsWith('moments.') === momentum));
    if (w.size === 0) return null;
    const d = worstTensor(got, w);
    return { rel: d.rel, tensor: d.name };
  };
  const all = worstTensor(got, want);
  return {
    worst_rel_diff: all.rel,
    tensor: all.name,
    params: part(false),
    momentum: part(true),
    tolerance,
    ok: all.rel <= tolerance,
  };
}

function judge(
  o: ChaosOptions,
  command: string,
  network: 'netns' | 'loopback',
  skipped: string[],
  reference: RunRecord,
  chaos: RunRecord,
  started: number,
): ChaosResult {
  const expected = o.stepsPerEpoch * o.batchSize;
  const metrics = readMetrics(chaos.out);
  const samples: EpochSamples[] = Array.from({ length: o.epochs }, (_, i) => {
    const m = metrics.find((x) => x.epoch === i + 1);
    const n = m?.samples ?? null;
    return { epoch: i + 1, workers: m?.workers ?? null, samples: n, expected, ok: n === expected };
  });
  const refSamples = readMetrics(reference.out).map((m) => m.samples);
  const problems = [...reference.problems.map((p) => `reference: ${p}`), ...chaos.problems];
  if (refSamples.some((n) => n !== expected))
    problems.push(`reference: samples per epoch ${refSamples.join(', ')}, expected ${expected} each`);
  const byKind = Object.fromEntries(
    FAULT_KINDS.map((k) => [k, chaos.faults.filter((f) => f.kind === k).length]),
  ) as Record<FaultKind, number>;
  const { progress: _p, dir: _d, keep: _k, maxFaults, ...config } = o;
  return {
    bench: 'wolfpack_chaos',
    command,
    network,
    skipped,
    config: {
      ...config,
      maxFaults: Number.isFinite(maxFaults) ? maxFaults : null,
      trainImages: o.stepsPerEpoch * o.batchSize,
    },
    steps: o.epochs * o.stepsPerEpoch,
    faults_by_kind: byKind,
    evictions: chaos.evictions.length,
    unexpected_evictions: chaos.evictions.filter((e) => !e.expected).length,
    joins: chaos.joins,
    replacements: chaos.workers_started - o.workers,
    wall_s: { reference: reference.wall_s, chaos: chaos.wall_s, total: round2((Date.now() - started) / 1000) },
    weights: { worst_rel_diff: null, tensor: '', params: null, momentum: null, tolerance: o.tolerance, ok: false },
    samples,
    samples_ok: samples.every((s) => s.ok),
    problems,
    reference,
    chaos,
    dir: null,
    ok: false,
  };
}

const sci = (x: number | null) => (x === null ? '-' : x.toExponential(1));

/** The result as the table `wolfpack bench chaos` prints. */
export function chaosTable(r: ChaosResult): string {
  const c = r.config;
  const kinds = FAULT_KINDS.filter((k) => c.kinds.includes(k))
    .map((k) => `${k} ${r.faults_by_kind[k]}`)
    .join(', ');
  const nFaults = Object.values(r.faults_by_kind).reduce((a, b) => a + b, 0);
  const bad = r.samples.filter((s) => !s.ok);
  const unexpected = r.chaos.evictions.filter((e) => !e.expected);
  const rows: [string, string][] = [
    [
      'setting',
      `${c.workers} workers, --min-workers ${c.minWorkers} ` +
        `(${r.network === 'netns' ? 'each in a network namespace, token-authenticated' : 'loopback'}), ` +
        `${c.epochs} epochs x ${c.stepsPerEpoch} steps x ${c.batchSize} images, ` +
        `--freeze ${c.freeze} --bn frozen --lr ${c.lr}, --timeout ${c.timeoutS} s, fault seed ${c.seed}`,
    ],
    ['faults', `${nFaults}: ${kinds}`],
    [
      'evictions',
      `${r.evictions} (${r.unexpected_evictions} not caused by the fault's own kind` +
        `${unexpected.length ? `: ${unexpected.map((e) => `pid ${e.pid} ${e.reason}`).join('; ')}` : ''})`,
    ],
    ['joins', `${r.joins} fresh workers entered the ring (${r.replacements} started)`],
    [
      'steps',
      `${r.steps} (${r.chaos.steps_logged} logged by the coordinator; ` +
        'the rest completed on survivors when a fault cut the replies short)',
    ],
    [
      'wall time',
      `chaos ${r.wall_s.chaos.toFixed(0)} s, uninterrupted ${r.wall_s.reference.toFixed(0)} s, ` +
        `total ${r.wall_s.total.toFixed(0)} s`,
    ],
    [
      'weights vs uninterrupted',
      `worst per-tensor relative difference ${sci(r.weights.worst_rel_diff)} ` +
        `${r.weights.ok ? '<=' : 'NOT <='} ${sci(r.weights.tolerance)}: ` +
        `${r.weights.ok ? 'ok' : 'MISMATCH'}` +
        `${r.weights.params ? ` (weights ${sci(r.weights.params.rel)} in ${r.weights.params.tensor}` : ''}` +
        (r.weights.momentum
          ? `, Momentum accumulators ${sci(r.weights.momentum.rel)} in ${r.weights.momentum.tensor})`
          : r.weights.params
            ? ')'
            : ''),
    ],
    [
      'samples per epoch',
      bad.length === 0
        ? `every epoch ${r.samples[0]?.expected ?? 0} = ${c.stepsPerEpoch} steps x ${c.batchSize}: ok`
        : `MISMATCH in ${bad.length} epoch(s): ` +
          `${bad.map((s) => `epoch ${s.epoch} ${s.samples ?? 'no record'} (expected ${s.expected})`).join(', ')}`,
    ],
    ['result', r.ok ? 'ok' : `FAILED${r.dir ? ` (logs in ${r.dir})` : ''}`],
  ];
  const w = Math.max(...rows.map(([k]) => k.length));
  const lines = [
    `$ ${r.command}`,
    '',
    ...r.skipped.map((s) => `note: ${s}`),
    ...rows.map(([k, v]) => `${k.padEnd(w)}   ${v}`),
  ];
  if (r.problems.length > 0) lines.push('', 'problems:', ...r.problems.map((p) => `  ${p.split('\n').join('\n    ')}`));
  if (r.chaos.notes.length > 0) lines.push('', 'notes:', ...r.chaos.notes.map((n) => `  ${n}`));
  lines.push('', 'faults (time, where the run was, victim, what happened):');
  for (const f of r.chaos.faults) {
    lines.push(
      `  ${String(f.n).padStart(3)} ${f.at_s.toFixed(1).padStart(7)} s  e${f.epoch} s${f.step}  ` +
        `${f.kind.padEnd(10)} ${f.slot} pid ${f.pid} rank ${f.rank}` +
        `${f.held_s ? `, held ${f.held_s.toFixed(1)} s` : ''}` +
        `${f.evicted_after_s !== null ? `, evicted after ${f.evicted_after_s.toFixed(1)} s` : ''}` +
        `${f.resumed_after_s !== null ? `, next step after ${f.resumed_after_s.toFixed(1)} s` : ''}` +
        `${f.replacement !== null ? `, replaced by pid ${f.replacement}` : ''}` +
        `${f.notes.length ? `; ${f.notes.join('; ')}` : ''}`,
    );
  }
  return lines.join('\n') + '\n';
}
