// Stopping a job on request (Ctrl-C, `docker stop`, a pod eviction, an API caller's AbortSignal): the
// step in flight is aborted on every worker, the state after the last completed step is fetched from the
// replica that got furthest and saved as last.ckpt with train-state.json (which then names the step, not
// only the epoch, and the epoch's figures so far), and the workers are told to stop. `--resume DIR`
// continues from that step. What the stop can wait for is bounded (stopTimeoutMs): a worker that does not
// answer in time leaves last.ckpt at the last epoch end, which is said.
import { WolfpackError } from '../shared/errors.js';

/** The stop was requested: thrown out of whatever the job was waiting for. */
export class StopRequested extends WolfpackError {
  constructor(readonly why: string) {
    super('E_STOPPED', `stop requested (${why})`);
  }
}

/** Longest a stop waits for the workers' answers to the abort and for the state (ms). */
export const DEFAULT_STOP_TIMEOUT_MS = 5000;

/** Why `signal` was aborted, as words: a signal name, or the reason's message. */
export function stopReason(signal: AbortSignal): string {
  const r: unknown = signal.reason;
  if (typeof r === 'string') return r;
  if (r instanceof Error) return r.message;
  return 'aborted';
}

/**
 * A promise that rejects with StopRequested once `signal` aborts (never settles otherwise); undefined without a signal.
 */
export function whenStopped(signal: AbortSignal | undefined): Promise<never> | undefined {
  if (!signal) return undefined;
  const p = new Promise<never>((_, reject) => {
    const fire = () => reject(new StopRequested(stopReason(signal)));
    if (signal.aborted) fire();
    else signal.addEventListener('abort', fire, { once: true });
  });
  p.catch(() => undefined); // observed by whoever races it; unobserved it must not crash the process
  return p;
}

/**
 * The figures of an epoch stopped part way, kept in train-state.json so that its metrics line counts the whole epoch.
 */
export interface PartialEpoch {
  lossSum: number;
  lastLoss: number | null;
  steps: number;
  skipped: number;
  samples: number;
}

/** How a stopped job ended, for the command's last line. */
export interface StopOutcome {
  why: string;
  /** Epochs completed. */
  epoch: number;
  /** Global steps completed (what last.ckpt holds when `saved` is 'step'). */
  step: number;
  stepsPerEpoch: number;
  /**
   * What last.ckpt holds now: 'step' the state after the last completed step (saved by the stop), 'epoch'
   * the last epoch end (the stop could not fetch a newer state, or no step ran since), 'none' nothing.
   */
  saved: 'step' | 'epoch' | 'none';
  /** Where to resume from (undefined when saved is 'none'). */
  dir?: string;
}

/** The line a command prints after a stop. */
export function describeStop(s: StopOutcome, resumeCommand: (dir: string) => string): string {
  const within = s.step - s.epoch * s.stepsPerEpoch;
  const where = within > 0 ? `epoch ${s.epoch + 1}, step ${within}/${s.stepsPerEpoch}` : `the end of epoch ${s.epoch}`;
  if (s.saved === 'none' || s.dir === undefined)
    return `stopped (${s.why}) before any step was saved: nothing to resume`;
  const what = s.saved === 'step' ? `the state after ${where} is saved` : `last.ckpt holds the end of epoch ${s.epoch}`;
  return `stopped (${s.why}): ${what} in ${s.dir}; resume with: ${resumeCommand(s.dir)}`;
}
