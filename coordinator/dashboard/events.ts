// What a running job reports as it goes, for a live view (the dashboard, ./server.ts) or a program (the
// `train()` API, api/train.ts): one call per completed step, per epoch, per ring formed, per
// notable event (joins, losses, best checkpoint). runJob (coordinator/job.ts) calls an optional
// `JobEvents` sink; every method is optional. A sink runs on the job's own loop: it must return quickly
// and must not throw (wrap user code with `guardEvents`). `step` and `epoch` may return a promise: the
// job then waits for it at that boundary, bounded (coordinator/hold.ts), as a Keras or Lightning
// callback holds the loop; that is how a program (or `--hold-at`) acts on a point of the run while the
// run stands still.
import type { Logger } from '../../shared/log.js';
import type { MessageOf, Timings } from '../../shared/protocol/messages.js';
import type { EpochMetrics } from '../checkpoints.js';
import type { Member } from '../server.js';
import { describe, type MemberLost } from '../cluster.js';
import { shareSizes } from '../data-plan.js';

/** One completed global step. */
export interface StepEvent {
  /** Epoch, 1-based. */
  epoch: number;
  /** Step within the epoch, 1-based. */
  step: number;
  /** Steps per epoch. */
  steps: number;
  /** Global steps completed since the run began (all epochs). */
  global_step: number;
  /** Mean loss over the global batch; NaN when the step was skipped. */
  loss: number;
  /** The step was skipped on every replica (a non-finite loss or gradient somewhere). */
  skipped: boolean;
  /** Of the global batch, the fraction predicted right (before the update); NaN when the step was skipped. */
  accuracy: number;
  /** Global batch / the slowest rank's step time. */
  images_per_s: number;
  /** The ranks' all-reduce time over their step time, summed over ranks (as an epoch's allreduce_share). */
  allreduce_share: number;
  /**
   * Per rank: its share of the batch, its step time (data + compute + all-reduce + update), its all-reduce time and
   * images/s.
   */
  ranks: { rank: number; samples: number; step_ms: number; allreduce_ms: number; images_per_s: number }[];
}

/** A member of the ring, as a dashboard shows it. */
export interface MemberInfo {
  memberId: string;
  rank: number;
  host: string;
  pid: number;
  backend: string;
  ringHost: string;
  ringPort: number;
}

export type JobEventKind = 'joined' | 'lost' | 'best';

/** Something worth a line in an events list. */
export interface JobEvent {
  kind: JobEventKind;
  text: string;
  /** The workers it concerns (joined, lost). */
  memberIds?: string[];
}

/** A member's heartbeat as the coordinator saw it (CoordinatorServer.heartbeat()). */
export type HeartbeatProbe = (memberId: string) => { last: number; closed: boolean } | undefined;

/**
 * What `step` and `epoch` return: a promise (any thenable) holds the run until it settles; anything else
 * is ignored. (Not `void | Promise<void>`: a callback such as `(s) => steps.push(s)` must still fit.)
 */
export type Hold = unknown;

export interface JobEvents {
  /** The coordinator listens on `port`; `heartbeat` reads a member's last heartbeat at any time. */
  listening?(info: { port: number; heartbeat: HeartbeatProbe }): void;
  /**
   * After every global step (skipped ones included). A returned promise holds the run at this step
   * boundary: no further step is sent (the one already sent ahead finishes) and workers that connect
   * meanwhile are admitted when it settles.
   */
  step?(s: StepEvent): Hold;
  /**
   * At every epoch end, once its checkpoints and metrics line are written and its lines printed, with the
   * figures written to metrics.jsonl. A returned promise holds the run there, before the next epoch (or the end).
   */
  epoch?(m: EpochMetrics): Hold;
  /** After a ring is formed (the first one and every re-formed one): the members in rank order. */
  members?(members: MemberInfo[], generation: number): void;
  /** Joins, losses, a new best checkpoint. */
  event?(e: JobEvent): void;
}

const stepMs = (t: Timings): number => t.data + t.compute + t.allreduce + t.update;

/** The StepEvent of one step from the ranks' stepDone replies (in any order). */
export function stepEvent(
  at: { epoch: number; step: number; steps: number; global_step: number },
  replies: MessageOf<'stepDone'>[],
): StepEvent {
  const first = replies[0]!; // one reply per rank, and a ring has at least one
  // Every reply carries the all-reduced (global) counts; a rank's own share is its part of the data plan's split.
  const samples = first.samples;
  const shares = shareSizes(samples, replies.length);
  const ranks = replies
    .map((r) => {
      const ms = stepMs(r.timings);
      const share = shares[r.rank] ?? 0;
      return {
        rank: r.rank,
        samples: share,
        step_ms: ms,
        allreduce_ms: r.timings.allreduce,
        images_per_s: ms > 0 ? share / (ms / 1000) : 0,
      };
    })
    .sort((a, b) => a.rank - b.rank);
  const slowest = Math.max(0, ...ranks.map((r) => r.step_ms));
  const totalMs = ranks.reduce((a, r) => a + r.step_ms, 0);
  return {
    ...at,
    loss: first.skipped ? NaN : first.loss,
    skipped: first.skipped,
    accuracy: first.skipped || samples === 0 ? NaN : first.correct / samples,
    images_per_s: slowest > 0 ? samples / (slowest / 1000) : 0,
    allreduce_share: totalMs > 0 ? ranks.reduce((a, r) => a + r.allreduce_ms, 0) / totalMs : 0,
    ranks,
  };
}

/** The ring's members in rank order. */
export function memberInfos(members: Member[]): MemberInfo[] {
  return members.map((m, rank) => ({
    memberId: m.hello.memberId,
    rank,
    host: m.hello.host,
    pid: m.hello.pid,
    backend: m.hello.backend,
    ringHost: m.hello.ringHost,
    ringPort: m.hello.ringPort,
  }));
}

export function joinedEvent(members: Member[]): JobEvent {
  return {
    kind: 'joined',
    text: `${members.length} worker(s) joined: ${members.map(describe).join(', ')}`,
    memberIds: members.map((m) => m.hello.memberId),
  };
}

/** `member` was lost: because of `cause` (its own MemberLost, or another's it was pruned with) or in a phase. */
export function lostEvent(member: Member, cause: MemberLost | string): JobEvent {
  const text =
    typeof cause === 'string'
      ? `worker ${describe(member)} lost ${cause}`
      : cause.member === member
        ? cause.message
        : `worker ${describe(member)} lost (along with ${describe(cause.member)})`;
  return { kind: 'lost', text, memberIds: [member.hello.memberId] };
}

/**
 * `events` with every call guarded: a method that throws, or returns a promise that rejects, is logged
 * (once per method) and the job goes on. For sinks that run user code.
 */
export function guardEvents(events: JobEvents, log: Logger): JobEvents {
  const warned = new Set<string>();
  const warn = (name: keyof JobEvents, e: unknown) => {
    if (!warned.has(name))
      log.warn({ callback: name, err: (e as Error)?.message ?? String(e) }, `events.${name} threw; the job goes on`);
    warned.add(name);
  };
  const guard = <A extends unknown[]>(name: keyof JobEvents, fn: ((...a: A) => Hold) | undefined) =>
    fn &&
    ((...a: A): Hold => {
      try {
        const r = fn.apply(events, a);
        return isPromise(r)
          ? Promise.resolve(r).then(
              () => undefined,
              (e: unknown) => warn(name, e),
            )
          : undefined;
      } catch (e) {
        warn(name, e);
      }
    });
  return {
    listening: guard('listening', events.listening),
    step: guard('step', events.step),
    epoch: guard('epoch', events.epoch),
    members: guard('members', events.members),
    event: guard('event', events.event),
  };
}

/** Whether a callback's result holds the run (a thenable). */
export function isPromise(x: unknown): x is PromiseLike<unknown> {
  return typeof (x as PromiseLike<unknown> | null | undefined)?.then === 'function';
}

/** Each sink's hold (in call order, all called first), as one: undefined when none holds. */
function holdAll(holds: Hold[]): Hold {
  const pending = holds.filter(isPromise);
  return pending.length === 0 ? undefined : Promise.all(pending).then(() => undefined);
}

/** One sink that calls each of `sinks` in turn; `step` and `epoch` hold until every sink's hold settles. */
export function fanOut(...sinks: (JobEvents | undefined)[]): JobEvents {
  const all = sinks.filter((s): s is JobEvents => s !== undefined);
  return {
    listening: (i) => {
      for (const s of all) s.listening?.(i);
    },
    step: (x) => holdAll(all.map((s) => s.step?.(x))),
    epoch: (m) => holdAll(all.map((s) => s.epoch?.(m))),
    members: (m, g) => {
      for (const s of all) s.members?.(m, g);
    },
    event: (e) => {
      for (const s of all) s.event?.(e);
    },
  };
}
