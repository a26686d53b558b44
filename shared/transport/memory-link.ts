// In-memory Links for N simulated ranks in one process: the test bed for the collective algorithms.
// createMemoryRing(n) returns one Link per rank; link i sends to link (i+1) mod n. A message is delivered
// zero-copy (the receiver's callback sees the sender's own view), like a transport that reads the
// sender's memory until delivery, and send() resolves only then. Optional seeded random delays shake the
// relative timing of ranks and messages, `reorder` delivers the messages of one link out of order, and
// `checkReuse` (on by default) detects an algorithm that writes into a buffer it has handed to send()
// before the send resolved, or into a received view.
import { formatTag, isValidTag, type Link, type RecvSink } from '../allreduce/link.js';
import { WolfpackError } from '../errors.js';

export interface MemoryRingOptions {
  /** Random delivery delays, seeded: microtask, setImmediate or a timer of up to maxMs (default 1). */
  delays?: boolean | { seed?: number; maxMs?: number };
  /** Deliver each message after its own random delay, so messages overtake each other (needs delays). */
  reorder?: boolean;
  /** Snapshot sent data and fail the send if it changed before delivery (default true). */
  checkReuse?: boolean;
}

interface Message {
  tag: number;
  data: Float32Array;
  snapshot: Float32Array | null;
  resolve: () => void;
  reject: (err: unknown) => void;
}

interface PendingRecv {
  count: number;
  into: RecvSink | Float32Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function sameBits(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

class MemoryLink implements Link {
  right!: MemoryLink;
  left!: MemoryLink;
  private readonly inbox = new Map<number, Message>();
  private readonly pending = new Map<number, PendingRecv>();
  private readonly outQueue: Message[] = [];
  private pumping = false;
  private closed: WolfpackError | null = null;
  private leftGone: WolfpackError | null = null;
  private rightGone: WolfpackError | null = null;

  constructor(
    readonly rank: number,
    private readonly random: (() => number) | null,
    private readonly maxMs: number,
    private readonly reorder: boolean,
    private readonly checkReuse: boolean,
  ) {}

  send(tag: number, data: Float32Array): Promise<void> {
    if (!isValidTag(tag)) return Promise.reject(new WolfpackError('E_USAGE', `memory link: bad tag ${tag}`));
    const down = this.closed ?? this.rightGone;
    if (down !== null) return Promise.reject(down);
    return new Promise<void>((resolve, reject) => {
      const msg: Message = { tag, data, snapshot: this.checkReuse ? data.slice() : null, resolve, reject };
      if (this.random === null) {
        this.right.arrive(msg);
      } else if (this.reorder) {
        this.later(() => this.right.arrive(msg));
      } else {
        this.outQueue.push(msg);
        if (!this.pumping) this.pump();
      }
    });
  }

  recv(tag: number, count: number, into: RecvSink | Float32Array): Promise<void> {
    if (!isValidTag(tag)) return Promise.reject(new WolfpackError('E_USAGE', `memory link: bad tag ${tag}`));
    if (into instanceof Float32Array && into.length !== count) {
      return Promise.reject(
        new WolfpackError('E_USAGE', `memory link: recv into ${into.length} elements, count ${count}`),
      );
    }
    if (this.closed !== null) return Promise.reject(this.closed);
    if (this.pending.has(tag)) {
      return Promise.reject(
        new WolfpackError('E_PROTOCOL', `memory link ${this.rank}: two receives for tag ${formatTag(tag)}`),
      );
    }
    return new Promise<void>((resolve, reject) => {
      const p: PendingRecv = { count, into, resolve, reject };
      const msg = this.inbox.get(tag);
      if (msg !== undefined) {
        this.inbox.delete(tag);
        this.deliver(p, msg);
      } else if (this.leftGone !== null) {
        reject(this.leftGone);
      } else {
        this.pending.set(tag, p);
      }
    });
  }

  close(): void {
    if (this.closed !== null) return;
    this.closed = new WolfpackError('E_WORKER', `memory link ${this.rank}: closed`);
    this.failAll(this.closed);
    this.right.leftClosed();
    this.left.rightClosed();
  }

  private leftClosed(): void {
    this.leftGone = new WolfpackError('E_WORKER', `memory link ${this.rank}: left neighbour closed its link`);
    for (const p of this.pending.values()) p.reject(this.leftGone);
    this.pending.clear();
  }

  private rightClosed(): void {
    this.rightGone = new WolfpackError('E_WORKER', `memory link ${this.rank}: right neighbour closed its link`);
    for (const m of this.outQueue) m.reject(this.rightGone);
    this.outQueue.length = 0;
  }

  private failAll(err: WolfpackError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    for (const m of this.inbox.values()) m.reject(err);
    this.inbox.clear();
    for (const m of this.outQueue) m.reject(err);
    this.outQueue.length = 0;
  }

  /** Run `fn` after a random delay of one of three kinds. */
  private later(fn: () => void): void {
    const r = (this.random as () => number)();
    if (r < 0.4) queueMicrotask(fn);
    else if (r < 0.8) setImmediate(fn);
    else setTimeout(fn, Math.floor(((r - 0.8) / 0.2) * (this.maxMs + 1)));
  }

  /** FIFO delivery with random gaps. */
  private pump(): void {
    this.pumping = true;
    this.later(() => {
      const msg = this.outQueue.shift();
      if (msg !== undefined) this.right.arrive(msg);
      if (this.outQueue.length > 0) this.pump();
      else this.pumping = false;
    });
  }

  private arrive(msg: Message): void {
    if (this.closed !== null) {
      msg.reject(
        new WolfpackError('E_WORKER', `memory link ${this.rank}: message ${formatTag(msg.tag)} sent to a closed link`),
      );
      return;
    }
    const p = this.pending.get(msg.tag);
    if (p !== undefined) {
      this.pending.delete(msg.tag);
      this.deliver(p, msg);
      return;
    }
    if (this.inbox.has(msg.tag)) {
      const err = new WolfpackError(
        'E_PROTOCOL',
        `memory link ${this.rank}: two messages with tag ${formatTag(msg.tag)} in flight`,
      );
      msg.reject(err);
      return;
    }
    this.inbox.set(msg.tag, msg);
  }

  private deliver(p: PendingRecv, msg: Message): void {
    if (msg.data.length !== p.count) {
      const err = new WolfpackError(
        'E_PROTOCOL',
        `memory link ${this.rank}: message ${formatTag(msg.tag)} has ${msg.data.length} elements, expected ${p.count}`,
      );
      msg.resolve();
      p.reject(err);
      return;
    }
    if (msg.snapshot !== null && !sameBits(msg.data, msg.snapshot)) {
      const err = new WolfpackError(
        'E_PROTOCOL',
        `memory link ${this.left.rank}->${this.rank}: ` +
          `buffer of message ${formatTag(msg.tag)} changed before its send resolved`,
      );
      msg.reject(err);
      p.reject(err);
      return;
    }
    try {
      if (typeof p.into === 'function') p.into(msg.data);
      else p.into.set(msg.data);
    } catch (err) {
      msg.resolve();
      p.reject(err);
      return;
    }
    if (msg.snapshot !== null && !sameBits(msg.data, msg.snapshot)) {
      const err = new WolfpackError(
        'E_PROTOCOL',
        `memory link ${this.rank}: the receiver wrote into the view of message ${formatTag(msg.tag)}`,
      );
      msg.reject(err);
      p.reject(err);
      return;
    }
    msg.resolve();
    p.resolve();
  }
}

/** One Link per simulated rank: link i sends to link (i+1) mod n and receives from link (i-1) mod n. */
export function createMemoryRing(n: number, opts: MemoryRingOptions = {}): Link[] {
  if (!Number.isSafeInteger(n) || n < 1)
    throw new WolfpackError('E_USAGE', `createMemoryRing: n must be an integer >= 1, got ${n}`);
  const d = opts.delays;
  const seed = typeof d === 'object' ? (d.seed ?? 1) : 1;
  const maxMs = typeof d === 'object' ? (d.maxMs ?? 1) : 1;
  const links: MemoryLink[] = [];
  for (let i = 0; i < n; i++) {
    const random = d ? prng(seed * 7919 + i) : null;
    links.push(new MemoryLink(i, random, maxMs, opts.reorder === true && random !== null, opts.checkReuse !== false));
  }
  for (const [i, link] of links.entries()) {
    link.right = links[(i + 1) % n]!;
    link.left = links[(i + n - 1) % n]!;
  }
  return links;
}
