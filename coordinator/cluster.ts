// The coordinator's view of its workers: who is in the ring, in which order, in which generation,
// and who is alive. A member is lost when its control connection closes, when it reports a failure,
// or when its heartbeat stops for --timeout; every wait on a member races against its loss, so a
// dead, frozen or cut-off worker is noticed within the timeout and never hangs the job.
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
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
  private readonly watchdog: NodeJS.Timeout;

  constructor(server: CoordinatorServer, config: JobConfig, heartbeatTimeoutMs: number, log: Logger) {
    this.server = server;
    this.config = config;
    this.heartbeatTimeoutMs = heartbeatTimeoutMs;
    this.log = log;
    this.watchdog = setInterval(() => this.watch(), WATCH_MS);
    this.watchdog.unref();
  }

  private watch(): void {
    const now = Date.now();
    for (const m of this.members) {
      if (this.lost.has(m)) continue;
      if (m.channel.closed) {
        this.markLost(m, 'its connection closed');
        continue;
      }
      const beat = this.server.heartbeat(m.hello.memberId);
      if (beat?.closed) this.markLost(m, 'its heartbeat connection closed');
      else {
        const last = beat?.last ?? this.admittedAt.get(m) ?? now;
        if (now - last > this.heartbeatTimeoutMs) this.markLost(m, `no heartbeat for ${((now - last) / 1000).toFixed(1)} s (--timeout ${this.heartbeatTimeoutMs / 1000} s)`);
      }
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

  /** Admits workers that said hello (sends them the job's config). */
  async admit(members: Member[]): Promise<void> {
    for (const m of members) {
      this.admittedAt.set(m, Date.now());
      await m.channel.send({ type: 'welcome', config: this.config });
      this.log.info({ worker: describe(m) }, 'worker admitted');
    }
  }

  /** The next message of `type` from `m`, or MemberLost. Stale messages of other types are skipped. */
  async expect<T extends MessageType>(m: Member, type: T, timeoutMs: number, skip: readonly MessageType[] = []): Promise<Received<MessageOf<T>>> {
    const already = this.lost.get(m);
    if (already) throw already;
    let onLost: ((l: MemberLost) => void) | undefined;
    const lost = new Promise<never>((_, reject) => {
      onLost = (l) => { if (l.member === m) reject(l); };
      this.listeners.add(onLost);
    });
    try {
      for (;;) {
        const r = await Promise.race([m.channel.next(timeoutMs), lost]).catch((e: Error) => {
          throw e instanceof MemberLost ? e : this.markLost(m, e.message);
        });
        if (r.msg.type === type) return r as Received<MessageOf<T>>;
        if (r.msg.type === 'failure') throw this.markLost(m, `it failed: ${r.msg.message}`);
        if (skip.includes(r.msg.type)) continue;
        throw this.markLost(m, `protocol: expected ${type}, got ${r.msg.type}`);
      }
    } finally {
      this.listeners.delete(onLost!);
    }
  }

  /** One message of `type` from every member, in rank order; MemberLost on the first loss. */
  all<T extends MessageType>(type: T, timeoutMs: number, skip: readonly MessageType[] = []): Promise<Received<MessageOf<T>>[]> {
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

  /** Aborts the current generation on every member; returns how far each got (last applied step). */
  async abort(reason: string, timeoutMs: number): Promise<{ member: Member; lastStep: number }[]> {
    this.generation++;
    const out: { member: Member; lastStep: number }[] = [];
    await Promise.all(this.members.map(async (m) => {
      try {
        await this.send(m, { type: 'abort', generation: this.generation, reason });
        const { msg } = await this.expect(m, 'aborted', timeoutMs, ['stepDone', 'evalResult', 'statePart', 'ready']);
        out.push({ member: m, lastStep: msg.lastStep });
      } catch (e) {
        if (!(e instanceof MemberLost)) throw e;
      }
    }));
    return out;
  }

  close(): void {
    clearInterval(this.watchdog);
  }
}
