// What a run reports to files as it goes, beside the checkpoints and metrics.jsonl (./checkpoints.ts):
// steps.jsonl in --out, one line per completed step, and, with --tensorboard DIR, a TensorBoard event
// file (shared/report/tensorboard.ts) with the per-step and per-epoch scalars. Both are written from the
// job's events (`reportEvents` is one JobEvents sink), so runJob knows nothing of them.
import { appendFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { EventFileWriter, type Scalar } from '../shared/report/tensorboard.js';
import type { EpochMetrics } from './checkpoints.js';
import { guardEvents, type JobEvents, type StepEvent } from './dashboard/events.js';

/** One line of steps.jsonl. A value the step has not (a skipped step's loss and accuracy) is null. */
export interface StepLine {
  epoch: number;
  /** Within the epoch, 1-based. */
  step: number;
  /** Since the run began, all epochs (a resumed run goes on counting). */
  global_step: number;
  loss: number | null;
  /** Of the global batch, predicted right before the update. */
  accuracy: number | null;
  skipped: boolean;
  /** Global batch / the slowest rank's step time. */
  images_per_s: number;
  /** All-reduce time / step time, over all ranks. */
  allreduce_share: number;
  workers: number;
  /** When the step was reported, seconds since the Unix epoch (the wall_time of its TensorBoard event). */
  wall_time: number;
}

export const STEPS_FILE = 'steps.jsonl';

const finiteOrNull = (v: number): number | null => (Number.isFinite(v) ? v : null);

export function stepLine(s: StepEvent, wallTime: number): StepLine {
  return {
    epoch: s.epoch,
    step: s.step,
    global_step: s.global_step,
    loss: finiteOrNull(s.loss),
    accuracy: finiteOrNull(s.accuracy),
    skipped: s.skipped,
    images_per_s: s.images_per_s,
    allreduce_share: s.allreduce_share,
    workers: s.ranks.length,
    wall_time: wallTime,
  };
}

/** A step's scalars, at its global step; a skipped step has no loss or accuracy. */
export function stepScalars(l: StepLine): Scalar[] {
  return [
    ...(l.loss === null ? [] : [{ tag: 'step/loss', value: l.loss }]),
    ...(l.accuracy === null ? [] : [{ tag: 'step/accuracy', value: l.accuracy }]),
    { tag: 'step/images_per_s', value: l.images_per_s },
    { tag: 'step/allreduce_share', value: l.allreduce_share },
    { tag: 'step/workers', value: l.workers },
  ];
}

/** An epoch's scalars, at the epoch's number; `trainAccuracy` from its steps (undefined when none counted). */
export function epochScalars(m: EpochMetrics, trainAccuracy: number | undefined): Scalar[] {
  const finite = (tag: string, v: number | undefined): Scalar[] =>
    v !== undefined && Number.isFinite(v) ? [{ tag, value: v }] : [];
  return [
    ...finite('epoch/train_loss', m.train_loss),
    ...finite('epoch/last_loss', m.last_loss),
    ...finite('epoch/train_accuracy', trainAccuracy),
    ...finite('epoch/val_accuracy', m.val_accuracy),
    ...finite('epoch/images_per_s', m.images_per_s),
    ...finite('epoch/allreduce_share', m.allreduce_share),
    ...finite('epoch/workers', m.workers),
  ];
}

export interface ReportOptions {
  /** The run's output directory: steps.jsonl goes there. */
  out: string;
  /** Where to write a TensorBoard event file; none when undefined. */
  tensorboard?: string;
  logger: Logger;
  now?: () => number;
}

function eventFile(dir: string, now: () => number): EventFileWriter {
  try {
    return new EventFileWriter(dir, now);
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot write TensorBoard events in ${dir}: ${(e as Error).message}`, { dir });
  }
}

/**
 * The sink that writes steps.jsonl and (with `tensorboard`) the event file. The event file is created
 * at once, so an unwritable folder fails before training starts; a write that fails later is logged
 * once and the run goes on. Never holds the run.
 */
export function reportEvents(o: ReportOptions): JobEvents {
  const now = o.now ?? Date.now;
  const writer = o.tensorboard === undefined ? undefined : eventFile(o.tensorboard, now);
  if (writer) o.logger.info({ file: writer.path }, 'writing TensorBoard events');
  const stepsPath = join(o.out, STEPS_FILE);
  let madeOut = false;
  // train accuracy of the epoch so far: correct and total images over its counted steps
  const train = new Map<number, { correct: number; samples: number }>();
  return guardEvents(
    {
      step(s) {
        const wallTime = now() / 1000;
        const line = stepLine(s, wallTime);
        if (!madeOut) mkdirSync(o.out, { recursive: true });
        madeOut = true;
        appendFileSync(stepsPath, JSON.stringify(line) + '\n');
        const samples = s.ranks.reduce((a, r) => a + r.samples, 0);
        if (line.accuracy !== null && samples > 0) {
          const t = train.get(s.epoch) ?? { correct: 0, samples: 0 };
          t.correct += Math.round(line.accuracy * samples); // a count: the all-reduced number right
          t.samples += samples;
          train.set(s.epoch, t);
        }
        writer?.scalars(s.global_step, stepScalars(line), wallTime);
      },
      epoch(m) {
        const t = train.get(m.epoch);
        train.delete(m.epoch);
        writer?.scalars(m.epoch, epochScalars(m, t ? t.correct / t.samples : undefined));
      },
    },
    o.logger,
  );
}
