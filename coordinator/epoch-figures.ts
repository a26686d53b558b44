// The figures of an epoch as its steps complete (loss, skipped steps, samples, all-reduce share), and the
// terminal's progress line. An epoch's figures survive a re-formed ring within it, and a stop (they are
// saved in train-state.json and taken up again on resume).
import type { MessageOf } from '../shared/protocol/messages.js';
import type { PartialEpoch } from './stop.js';

/** Per-epoch training figures; survives a re-formed ring within the epoch. */
export class EpochAccumulator {
  lossSum = 0;
  lastLoss = NaN;
  steps = 0;
  skipped = 0;
  allreduceMs = 0;
  totalMs = 0;
  /** Time the run was held at step boundaries (not training time). */
  heldMs = 0;
  /** Images in the epoch's completed steps, skipped ones included: the sum of the all-reduced counts they report. */
  samples = 0;
  readonly t0 = performance.now();

  /** An epoch's accumulator that goes on from figures a stop saved (train-state.json `partial`). */
  static from(p: PartialEpoch | undefined): EpochAccumulator {
    const a = new EpochAccumulator();
    if (p)
      Object.assign(a, {
        lossSum: p.lossSum,
        lastLoss: p.lastLoss ?? NaN,
        steps: p.steps,
        skipped: p.skipped,
        samples: p.samples,
      });
    return a;
  }

  /** The figures worth keeping across a stop (timings are not: they restart with the run). */
  partial(): PartialEpoch {
    return {
      lossSum: this.lossSum,
      lastLoss: Number.isFinite(this.lastLoss) ? this.lastLoss : null,
      steps: this.steps,
      skipped: this.skipped,
      samples: this.samples,
    };
  }

  /** Counts a completed step from one of its replies (every rank's carries the same all-reduced loss and count). */
  add(d: MessageOf<'stepDone'>): void {
    this.samples += d.samples;
    if (d.skipped) {
      this.skipped++;
    } else {
      this.lossSum += d.loss;
      this.lastLoss = d.loss;
      this.steps++;
    }
  }
}

/** 75 s -> '1:15', 4000 s -> '1:06:40'. */
function clockTime(seconds: number): string {
  const t = Math.max(0, Math.round(seconds));
  const [h, m, sec] = [Math.floor(t / 3600), Math.floor((t % 3600) / 60), t % 60];
  return h > 0
    ? `${h}:${String(m).padStart(2, '0')}:${String(sec).padStart(2, '0')}`
    : `${m}:${String(sec).padStart(2, '0')}`;
}

/**
 * The terminal's progress line: where the run is, the step's loss, time since this process started training
 * and the time left at the pace of the steps it has run (epoch ends, evaluations and holds included).
 */
export function progressLine(
  epoch: number,
  epochs: number,
  done: number,
  steps: number,
  loss: number,
  clock: { t0: number; done0: number },
  now = performance.now(),
): string {
  const elapsed = (now - clock.t0) / 1000;
  const ran = done - clock.done0;
  const eta = ran > 0 ? clockTime((elapsed / ran) * (epochs * steps - done)) : '?';
  return (
    `epoch ${epoch + 1}/${epochs} step ${done - epoch * steps}/${steps} loss ${loss.toFixed(4)}  ` +
    `elapsed ${clockTime(elapsed)}  ETA ${eta}`
  );
}
