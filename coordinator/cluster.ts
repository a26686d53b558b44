// The coordinator's view of its workers: who is in the ring, in which order, in which generation,
// and who is alive. A member is lost when its control connection closes, when it reports a failure,
// or when it is silent (no heartbeat, no message) for --timeout while others are heard from; every
// wait on a member races against its loss, so a dead, frozen or cut-off worker is noticed within the
// timeout and never hangs the job, and a coordinator that stalls itself blames no one for it.
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { attentiveClock } from '../shared/time/attentive-clock.js';
import type { Received } from '../shared/protocol/channel.js';
import type { JobConfig, Message, MessageOf, MessageType } from '../shared/protocol/messages.js';
import type { CoordinatorServer, Member } from './server.js';

/** A member was lost: which one, and why. */
export class MemberLost extends WolfpackError {
  readonly member: Member;
  constructor(member: Member, reason: string) {
    super('E_WORKER', `worker ${describe(member)} lost: ${reason}`, { pid: member.hello.pid, host: member.hello.host });
    this.member = member;
  }
}

export function describe(m: Member): string {
  return `${m.hello.host}/pid ${m.hello.pid} (${m.hello.ringHost}:${m.hello.ringPort})`;
}

const WATCH_MS = 250;
/** A stall of the coordinator's own event loop at least this long is logged, ms. */
const STALL_WARN_MS = 1000;

function round1(x: number): number {
  return Math.round(x * 10) / 10;
}

export class Cluster {
  /** Members in ring order: index = rank. */
  members: Member[] = [];
  generation = 0;
  private readonly server: CoordinatorServer;
  private readonly config: JobConfig;
  private readonly heartbeatTimeoutMs: number;
  private readonly log: Logger;
  private readonly lost = new Map<Member, MemberLost>();
  private readonly admittedAt = new Map<Member, number>();
  private readonly listeners = new Set<(l: MemberLost) => void>();
  /**
   * Aborted with the generation: a wait still pending then (a member's reply to a step whose ring broke)
   * is withdrawn, so it cannot take the reply to the abort and blame a survivor for answering it.
   */
  private waits = new AbortController();
  /** Set by interrupt(): every wait, pending or new, fails with it until the next abort(). */
  private interruption: Error | undefined;
  private readonly watchdog: NodeJS.Timeout;
  private lastWatch = attentiveClock.now();
  /** When each member was last heard, as the previous watch saw it. */
  private readonly lastHeard = new Map<Member, number>();
  /** When each member was last heard again after a silence of its own longer than the timeout. */
  private readonly resumedAt = new Map<Member, number>();

  constructor(server: CoordinatorServer, config: JobConfig, heartbeatTimeoutMs: number, log: Logger) {
    this.server = server;
    this.config = config;
    this.heartbeatTimeoutMs = heartbeatTimeoutMs;
    this.log = log;
    this.watchdog = setInterval(() => this.watch(), WATCH_MS);
    this.watchdog.unref();
  }

  /**
   * Evicts members that closed, or that stayed silent (no heartbeat and no message) for the timeout.
   * Silence is measured in attentive time, so this process's own stalls never count against a worker;
   * and a worker is evicted for silence only when others were heard from meanwhile (the fault is then
   * the worker's) or, when nobody was, after twice the timeout (the fault may be ours or the network's,
   * and evicting every worker would not help). A member just back from a silence past the timeout is not
   * heard from in that sense: its silence and this one's were one stall. Each eviction logs its evidence.
   */
  private watch(): void {
    const now = attentiveClock.now();
    const stalled = attentiveClock.stallsSince(this.lastWatch);
    this.lastWatch = now;
    if (stalled.maxGapMs >= STALL_WARN_MS) {
      this.log.warn(
        { stalled_ms: stalled.maxGapMs },
        "the coordinator's event loop stalled; that time is not counted as any worker's silence",
      );
    }
    const heard = new Map<Member, number>();
    for (const m of this.members) {
      if (this.lost.has(m)) continue;
      if (m.channel.closed) {
        this.markLost(m, 'its connection closed');
        continue;
      }
      const beat = this.server.heartbeat(m.hello.memberId);
      if (beat?.closed) {
        this.markLost(m, 'its heartbeat connection closed');
        continue;
      }
      heard.set(m, Math.max(beat?.heard ?? -Infinity, m.channel.lastHeardAt, this.admittedAt.get(m) ?? now));
    }
    for (const [m, at] of heard) {
      const prev = this.lastHeard.get(m);
      if (prev !== undefined && at - prev > this.heartbeatTimeoutMs) this.resumedAt.set(m, at);
      this.lastHeard.set(m, at);
    }
    for (const [m, at] of heard) {
      const silentMs = now - at;
      if (silentMs <= this.heartbeatTimeoutMs) continue;
      // Heard in the later half of this member's silence: when it was already overdue, others were not.
      // (Merely after its last word is not enough: a host frozen whole stops its workers' beats one by one.)
      // A member that has just come back from a silence as long as this one's is no witness: they went quiet
      // together (a host or the network stalled), and the one still silent may be a moment behind it.
      const othersHeard = [...heard]
        .filter(
          ([o, t]) =>
            o !== m &&
            t > now - silentMs / 2 &&
            !((this.resumedAt.get(o) ?? -Infinity) > now - this.heartbeatTimeoutMs),
        )
        .map(([o]) => this.members.indexOf(o));
      if (othersHeard.length === 0 && silentMs <= 2 * this.heartbeatTimeoutMs) continue;
      const stalls = attentiveClock.stallsSince(at);
      const beat = this.server.heartbeat(m.hello.memberId);
      this.log.warn(
        {
          worker: describe(m),
          rank: this.members.indexOf(m),
          silent_s: round1(silentMs / 1000),
          wall_since_last_beat_s: beat ? round1((Date.now() - beat.last) / 1000) : null,
          timeout_s: this.heartbeatTimeoutMs / 1000,
          others_heard_recently: othersHeard,
          coordinator_stalled_s: round1(stalls.totalMs / 1000),
          coordinator_longest_stall_ms: stalls.maxGapMs,
        },
        othersHeard.length > 0
          ? 'evicting a silent worker: the others were heard from meanwhile'
          : 'evicting a silent worker: nobody was heard from for twice the timeout',
      );
      this.markLost(
        m,
        `no heartbeat for ${(silentMs / 1000).toFixed(1)} s (--timeout ${this.heartbeatTimeoutMs / 1000} s)`,
      );
    }
  }

  private markLost(m: Member, reason: string): MemberLost {
    const existing = this.lost.get(m);
    if (existing) return existing;
    const l = new MemberLost(m, reason);
    this.lost.set(m, l);
    m.channel.close(4000, 'evicted');
    for (const fn of this.listeners) fn(l);
    return l;
  }

  isLost(m: Member): boolean {
    return this.lost.has(m);
  }

  /** Admits `joiners` (sends them the job's config) and appends them to the ring order. */
  async join(joiners: Member[]): Promise<void> {
    await this.admit(joiners);
    this.members.push(...joiners);
  }

  /**
   * The ring order from now on (after a loss: the survivors, the one that got furthest first); lost members are
   * dropped.
   */
  reorder(members: Member[]): void {
    this.members = members.filter((m) => !this.lost.has(m));
  }

  /** Starts a new ring generation: its ring is formed next, and orders of older ones are stale. */
  nextGeneration(): number {
    return ++this.generation;
  }

  /** Admits workers that said hello (sends them the job's config). */
  async admit(members: Member[]): Promise<void> {
    for (const m of members) {
      this.admittedAt.set(m, attentiveClock.now());
      await m.channel.send({ type: 'welcome', config: this.config });
      this.log.info({ worker: describe(m) }, 'worker admitted');
    }
  }

  /**
   * The next message of `type` from `m`, or MemberLost. Stale messages of the `skip` types are passed to
   * `skipped` and dropped. A wait still pending when the generation is aborted rejects (not MemberLost).
   */
  async expect<T extends MessageType>(
    m: Member,
    type: T,
    timeoutMs: number,
    skip: readonly MessageType[] = [],
    skipped?: (msg: Message) => void,
  ): Promise<Received<MessageOf<T>>> {
    const already = this.lost.get(m);
    if (already) throw already;
    if (this.interruption) throw this.interruption;
    const signal = this.waits.signal;
    let onLost: ((l: MemberLost) => void) | undefined;
    const lost = new Promise<never>((_, reject) => {
      onLost = (l) => {
        if (l.member === m) reject(l);
      };
      this.listeners.add(onLost);
    });
    try {
      for (;;) {
        const r = await Promise.race([m.channel.next(timeoutMs, signal), lost]).catch((e: Error) => {
          throw e instanceof MemberLost || signal.aborted ? e : this.markLost(m, e.message);
        });
        if (r.msg.type === type) return r as Received<MessageOf<T>>;
        if (r.msg.type === 'failure') throw this.markLost(m, `it failed: ${r.msg.message}`);
        if (skip.includes(r.msg.type)) {
          skipped?.(r.msg);
          continue;
        }
        throw this.markLost(m, `protocol: expected ${type}, got ${r.msg.type}`);
      }
    } finally {
      this.listeners.delete(onLost!);
    }
  }

  /** One message of `type` from every member, in rank order; MemberLost on the first loss. */
  all<T extends MessageType>(
    type: T,
    timeoutMs: number,
    skip: readonly MessageType[] = [],
  ): Promise<Received<MessageOf<T>>[]> {
    return Promise.all(this.members.map((m) => this.expect(m, type, timeoutMs, skip)));
  }

  async send(m: Member, msg: Message, payload?: Uint8Array): Promise<void> {
    try {
      await m.channel.send(msg, payload);
    } catch (e) {
      throw this.markLost(m, (e as Error).message);
    }
  }

  /** Drops lost members from the ring order. */
  prune(): Member[] {
    const gone = this.members.filter((m) => this.lost.has(m));
    this.members = this.members.filter((m) => !this.lost.has(m));
    return gone;
  }

  /**
   * Aborts the current generation on every member; returns how far each got (last applied step) and the
   * step replies it sent that nobody had taken yet (`late`: steps it completed after the last counted one).
   */
  /**
   * Fails every wait on a member with `reason`, those pending now and those begun later, until the next
   * abort(): a stop request ends what the job was waiting for, wherever it was.
   */
  interrupt(reason: Error): void {
    this.interruption = reason;
    this.waits.abort(reason);
    this.waits = new AbortController();
  }

  async abort(
    reason: string,
    timeoutMs: number,
  ): Promise<{ member: Member; lastStep: number; late: MessageOf<'stepDone'>[] }[]> {
    this.generation++;
    this.interruption = undefined;
    this.waits.abort(new WolfpackError('E_WORKER', `wait withdrawn: generation ${this.generation - 1} was aborted`));
    this.waits = new AbortController();
    const out: { member: Member; lastStep: number; late: MessageOf<'stepDone'>[] }[] = [];
    await Promise.all(
      this.members.map(async (m) => {
        try {
          await this.send(m, { type: 'abort', generation: this.generation, reason });
          const late: MessageOf<'stepDone'>[] = [];
          const { msg } = await this.expect(
            m,
            'aborted',
            timeoutMs,
            ['stepDone', 'evalResult', 'statePart', 'ready'],
            (x) => {
              if (x.type === 'stepDone') late.push(x);
            },
          );
          out.push({ member: m, lastStep: msg.lastStep, late });
        } catch (e) {
          if (!(e instanceof MemberLost)) throw e;
        }
      }),
    );
    return out;
  }

  close(): void {
    clearInterval(this.watchdog);
  }
}
