// Time as this thread's event loop could observe it: wall time minus the loop's own stalls.
//
// Why: a process judges a peer dead when it has heard nothing from it for a while. But while its own
// event loop is stalled (a long synchronous section, a blocked write to a full stderr pipe, a host so
// busy the OS does not schedule it), it hears nothing from anyone, and when it wakes Node runs expired
// timers before it reads the sockets where the peers' messages have been waiting. Judged on wall time,
// a coordinator stalled for 3 s evicted a healthy worker for "no heartbeat for 3.1 s" on a loaded host.
// Judged on attentive time, a stall counts as at most one tick's worth, so silence is only what the
// process was in a position to hear.
//
// How: a ticker every TICK_MS credits the elapsed time, capped at MAX_CREDIT_MS; the rest is a stall.
// A process starved so that it ticks once a second still advances 0.2 s a second, so a peer that is
// really dead is still declared dead, after a grace that grows with the process's own lag.
import { performance } from 'node:perf_hooks';

/** Ticker period, ms. */
export const TICK_MS = 100;
/** Most time one tick credits, ms: a gap beyond it is this thread's stall, not a peer's silence. */
export const MAX_CREDIT_MS = 2 * TICK_MS;

/** What the clock saw of this thread's stalls. */
export interface StallReport {
  /** Total stalled time (wall time not credited), ms. */
  totalMs: number;
  /** Longest single gap between ticks, ms. */
  maxGapMs: number;
}

interface Stall {
  /** Attentive time at which the stall ended, ms. */
  at: number;
  /** Uncredited time of that stall, ms. */
  ms: number;
  gapMs: number;
}

/** Keeps this long a history of stalls for reports, ms of attentive time. */
const HISTORY_MS = 10 * 60_000;

class AttentiveClock {
  private credited = 0;
  private lastTick = performance.now();
  private readonly stalls: Stall[] = [];
  private timer: NodeJS.Timeout | undefined;

  /** Attentive ms since the clock started (monotonic, never ahead of wall time). */
  now(): number {
    this.ensureRunning();
    return this.credited + Math.min(performance.now() - this.lastTick, MAX_CREDIT_MS);
  }

  /** The stalls that ended after attentive time `since`. */
  stallsSince(since: number): StallReport {
    let totalMs = 0;
    let maxGapMs = 0;
    for (const s of this.stalls) {
      if (s.at < since) continue;
      totalMs += s.ms;
      maxGapMs = Math.max(maxGapMs, s.gapMs);
    }
    return { totalMs: Math.round(totalMs), maxGapMs: Math.round(maxGapMs) };
  }

  private ensureRunning(): void {
    if (this.timer) return;
    this.lastTick = performance.now();
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
  }

  private tick(): void {
    const t = performance.now();
    const gap = t - this.lastTick;
    this.lastTick = t;
    this.credited += Math.min(gap, MAX_CREDIT_MS);
    if (gap > MAX_CREDIT_MS) {
      this.stalls.push({ at: this.credited, ms: gap - MAX_CREDIT_MS, gapMs: gap });
      while (this.stalls.length > 0 && this.stalls[0]!.at < this.credited - HISTORY_MS) this.stalls.shift();
    }
  }
}

/** This thread's clock (each worker thread has its own module instance, so its own clock). */
export const attentiveClock = new AttentiveClock();

/**
 * Like setTimeout, but `ms` counts attentive time: if the thread stalled meanwhile, the timer re-arms for
 * what is left instead of firing early in the peer's disfavour. Returns a function that cancels it.
 */
export function attentiveTimeout(fn: () => void, ms: number): () => void {
  const due = attentiveClock.now() + ms;
  let timer: NodeJS.Timeout;
  const arm = (wait: number) => {
    timer = setTimeout(() => {
      const left = due - attentiveClock.now();
      if (left > 0) arm(left);
      else fn();
    }, wait);
  };
  arm(ms);
  return () => clearTimeout(timer);
}
