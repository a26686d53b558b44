// Holding a run at a boundary. A JobEvents `step` or `epoch` callback (./dashboard/events.ts) that returns
// a promise holds the job there until it settles: `settleWithin` is that wait, bounded so that a callback
// that never settles cannot hang the run (the workers, idle meanwhile, give up on a silent coordinator
// after 10 x their --timeout). `holdFileEvents` is the CLI's way in (--hold-file, --hold-at): at each step
// and epoch boundary the run holds while a file exists; at the --hold-at points the coordinator makes the
// file itself and logs that it holds, so a test or an operator acts on that line and deletes the file to
// let the run go on.
import { existsSync, writeFileSync } from 'node:fs';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { isPromise, type Hold, type JobEvents } from './dashboard/events.js';

/** How long a hold may last by default (ms). */
export const DEFAULT_HOLD_TIMEOUT_MS = 10 * 60_000;
/** How often a held run looks for its hold file (ms). */
const POLL_MS = 100;

/**
 * Waits for `hold` (a callback's result) for at most `timeoutMs`. A rejection or the timeout is logged and
 * the job goes on; never throws. Resolves at once when nothing holds.
 */
export async function settleWithin(hold: Hold, timeoutMs: number, log: Logger, at: string): Promise<void> {
  if (!isPromise(hold)) return;
  let timer: NodeJS.Timeout | undefined;
  // unref: the bound alone must not keep a process alive whose job has ended meanwhile.
  const expired = new Promise<'expired'>((resolve) => {
    timer = setTimeout(() => resolve('expired'), timeoutMs).unref();
  });
  const outcome = await Promise.race([
    Promise.resolve(hold).then(
      () => 'settled' as const,
      (e: unknown) => {
        log.warn(
          { at, err: (e as Error)?.message ?? String(e) },
          `the events callback at ${at} failed; the job goes on`,
        );
        return 'settled' as const;
      },
    ),
    expired,
  ]);
  clearTimeout(timer);
  if (outcome === 'expired')
    log.warn(
      { at, timeoutMs },
      `the events callback at ${at} still holds the run after ${timeoutMs / 1000} s; the job goes on`,
    );
}

/** A point of the run: the end of `epoch`, or the end of `step` within `epoch` (both 1-based). */
export interface HoldPoint {
  epoch: number;
  step?: number;
}

/** `--hold-at E[:S][,E[:S]...]`: E alone is the end of epoch E; E:S is after step S of epoch E. */
export function parseHoldPoints(spec: string, epochs: number): HoldPoint[] {
  return spec.split(',').map((raw) => {
    const part = raw.trim();
    const m = /^(\d+)(?::(\d+))?$/.exec(part);
    const epoch = m ? Number(m[1]) : NaN;
    const step = m?.[2] === undefined ? undefined : Number(m[2]);
    if (!m || epoch < 1 || (step !== undefined && step < 1)) {
      throw new WolfpackError(
        'E_USAGE',
        '--hold-at: expected E (the end of epoch E) or E:S (after step S of epoch E), 1-based, comma-separated; ' +
          `got '${part}'`,
      );
    }
    if (epoch > epochs) throw new WolfpackError('E_USAGE', `--hold-at ${part}: the run has ${epochs} epoch(s)`);
    return step === undefined ? { epoch } : { epoch, step };
  });
}

export interface HoldFileOptions {
  /** While this file exists at a boundary, the run holds there. */
  file: string;
  /** Points where the coordinator makes the file itself (and so holds). */
  points: HoldPoint[];
  /** Give up after this long (ms); the coordinator's own bound (settleWithin) is the same. */
  timeoutMs: number;
  log: Logger;
}

/** The JobEvents sink of --hold-file/--hold-at; see the top of this file. */
export function holdFileEvents(o: HoldFileOptions): JobEvents {
  const isPoint = (epoch: number, step?: number) => o.points.some((p) => p.epoch === epoch && p.step === step);
  let checkedSteps = false;
  const hold = (where: string, fields: Record<string, number>, make: boolean): Promise<void> | undefined => {
    if (make) writeFileSync(o.file, `held ${where} by pid ${process.pid}\n`);
    if (!existsSync(o.file)) return undefined;
    o.log.info({ ...fields, file: o.file }, `holding ${where} until ${o.file} is removed`);
    const t0 = Date.now();
    // A little past the coordinator's own bound, so that its warning is the one that says the hold ended.
    const deadline = t0 + o.timeoutMs + 1000;
    return new Promise<void>((resolve) => {
      const poll = () => {
        if (!existsSync(o.file)) {
          o.log.info({ ...fields, held_s: (Date.now() - t0) / 1000 }, `released ${where}: ${o.file} was removed`);
          resolve();
        } else if (Date.now() > deadline) resolve();
        else setTimeout(poll, POLL_MS).unref();
      };
      poll();
    });
  };
  return {
    step: (s) => {
      if (!checkedSteps) {
        checkedSteps = true;
        for (const p of o.points.filter((x) => x.step !== undefined && x.step > s.steps)) {
          o.log.warn(
            { epoch: p.epoch, step: p.step, steps: s.steps },
            `--hold-at ${p.epoch}:${p.step} is never reached: an epoch has ${s.steps} steps`,
          );
        }
      }
      return hold(`at epoch ${s.epoch} step ${s.step}`, { epoch: s.epoch, step: s.step }, isPoint(s.epoch, s.step));
    },
    epoch: (m) => hold(`at the end of epoch ${m.epoch}`, { epoch: m.epoch }, isPoint(m.epoch)),
  };
}
