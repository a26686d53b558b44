// Admission control for a listener that serves peers before they have proved who they are: the
// coordinator's port, each worker's ring port, the dashboard. One AdmissionGuard per server watches every
// TCP connection from accept (the server's 'connection' event, before any TLS or HTTP parsing). A
// connection is *pending* until the listener calls admit(socket) -- the coordinator once a worker has
// authenticated and said hello (or beat), a ring listener once a hello passed its checks, the dashboard
// once a request passed its token / Host check. A pending connection:
//   - must be admitted within `deadlineMs` of accept (ADMISSION_DEADLINE_MS). At the deadline it is closed:
//     with the listener's own polite close when one is registered (onExpire), then destroyed
//     ADMISSION_GRACE_MS later if it is still open; destroyed at once otherwise. A deadline timer that fires
//     late because this process was blocked gives the peer that time back (its lateness is not the peer's);
//   - counts against `maxPending` (MAX_PENDING_CONNECTIONS) and `maxPendingPerAddress`
//     (MAX_PENDING_PER_ADDRESS; IPv6 addresses count per /64). Over the per-address cap it is destroyed at
//     accept. When the total is full, a newcomer whose address holds at least two fewer pending connections
//     than the busiest address takes the place of that address's oldest one (so a few busy addresses cannot
//     lock everyone else out); otherwise the newcomer is destroyed at accept;
//   - may send at most `maxUnprovenBytes` (MAX_UNPROVEN_BYTES) after its HTTP upgrade: the first WebSocket
//     messages of an unproven peer are small whatever the listener's maxPayload for admitted peers. The
//     HTTP head before that is bounded by the server's maxHeaderSize (MAX_HEADER_BYTES, passed by each
//     listener when it creates its server); a bad or oversized head is answered 400/431 and closed.
// A refused connection stays counted until it has closed. Refusals are logged once per address: a warn
// line with the reason of the first ('connection refused'), then at most one summary line per
// `logIntervalMs` (REFUSAL_LOG_INTERVAL_MS) with the count and the reasons ('connections refused'), so a
// flood cannot flood the log. Past MAX_LOGGED_ADDRESSES addresses, refusals are counted under '*'.
import { isIPv6, type Server, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { IncomingMessage } from 'node:http';
import { WolfpackError } from '../errors.js';
import type { Logger } from '../log.js';

/** Time from TCP accept to proof (authentication and hello, a valid ring hello, a checked request), ms. */
export const ADMISSION_DEADLINE_MS = 10_000;
/** Unproven connections held at once, from all addresses. */
export const MAX_PENDING_CONNECTIONS = 256;
/** Unproven connections held at once from one address (one /64 for IPv6). */
export const MAX_PENDING_PER_ADDRESS = 32;
/** Largest HTTP request head a listener reads (its servers' maxHeaderSize), bytes. */
export const MAX_HEADER_BYTES = 8 * 1024;
/** Bytes an unproven peer may send after its HTTP upgrade (an authProof plus a hello is under 1 KiB). */
export const MAX_UNPROVEN_BYTES = 16 * 1024;
/** How long a connection refused with a polite close may take to close before it is destroyed, ms. */
export const ADMISSION_GRACE_MS = 1000;
/** Refusals from one address are summarised at most this often, ms. */
export const REFUSAL_LOG_INTERVAL_MS = 60_000;
/** Addresses whose refusals are counted apart; the rest share one line ('*'). */
export const MAX_LOGGED_ADDRESSES = 256;
/** A deadline timer this late (ms) means this process was blocked: the peer gets the lost time back. */
const LATE_TIMER_MS = 500;

export interface AdmissionLimits {
  /** Default ADMISSION_DEADLINE_MS. */
  deadlineMs?: number;
  /** Default MAX_PENDING_CONNECTIONS. */
  maxPending?: number;
  /** Default MAX_PENDING_PER_ADDRESS. */
  maxPendingPerAddress?: number;
  /** Default MAX_UNPROVEN_BYTES. */
  maxUnprovenBytes?: number;
  /** Default REFUSAL_LOG_INTERVAL_MS. */
  logIntervalMs?: number;
}

export interface AdmissionOptions extends AdmissionLimits {
  /** Names the listener in log lines: 'coordinator', 'ring', 'dashboard'. */
  name: string;
  /** What a peer must show to be admitted, for the deadline's log line ('authentication and hello'). */
  proof: string;
  logger: Logger;
}

type State = 'pending' | 'refused' | 'admitted' | 'closed';

interface Entry {
  socket: Socket;
  key: string;
  address: string;
  group: string;
  state: State;
  due: number;
  timer: NodeJS.Timeout | undefined;
  bytes: number;
  /** The socket whose 'data' is counted after the upgrade (the TLS socket under TLS), and the counter. */
  counted?: { socket: Duplex; fn: (chunk: Buffer) => void };
  expire?: () => void;
}

interface Refusals {
  count: number;
  reasons: Map<string, number>;
}

/** The group an address counts in: IPv4 (and IPv4-mapped IPv6) as is, other IPv6 by its /64. */
export function addressGroup(address: string): string {
  if (address.startsWith('::ffff:') && address.includes('.')) return address.slice(7);
  if (!isIPv6(address)) return address;
  const [head = '', tail = ''] = address.split('::');
  const left = head === '' ? [] : head.split(':');
  const right = tail === '' ? [] : tail.split(':');
  const full = address.includes('::')
    ? [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right]
    : left;
  return `${full
    .slice(0, 4)
    .map((h) => h.toLowerCase().replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

function positive(name: string, v: number): number {
  if (!Number.isFinite(v) || v <= 0)
    throw new WolfpackError('E_USAGE', `admission: ${name} must be a positive number, got ${v}`);
  return v;
}

function keyOf(s: { remoteAddress?: string; remotePort?: number }): string | undefined {
  return s.remoteAddress === undefined || s.remotePort === undefined ? undefined : `${s.remoteAddress}|${s.remotePort}`;
}

export class AdmissionGuard {
  readonly deadlineMs: number;
  readonly maxPending: number;
  readonly maxPendingPerAddress: number;
  readonly maxUnprovenBytes: number;
  readonly logIntervalMs: number;
  private readonly name: string;
  private readonly proof: string;
  private readonly log: Logger;
  /** Open connections not admitted yet (pending or refused), by remote address|port. */
  private readonly open = new Map<string, Entry>();
  /** The same, by address group, oldest first. */
  private readonly groups = new Map<string, Set<Entry>>();
  private readonly refusals = new Map<string, Refusals>();
  private summaryTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(opts: AdmissionOptions) {
    this.name = opts.name;
    this.proof = opts.proof;
    this.log = opts.logger;
    this.deadlineMs = positive('deadlineMs', opts.deadlineMs ?? ADMISSION_DEADLINE_MS);
    this.maxPending = Math.floor(positive('maxPending', opts.maxPending ?? MAX_PENDING_CONNECTIONS));
    this.maxPendingPerAddress = Math.floor(
      positive('maxPendingPerAddress', opts.maxPendingPerAddress ?? MAX_PENDING_PER_ADDRESS),
    );
    this.maxUnprovenBytes = positive('maxUnprovenBytes', opts.maxUnprovenBytes ?? MAX_UNPROVEN_BYTES);
    this.logIntervalMs = positive('logIntervalMs', opts.logIntervalMs ?? REFUSAL_LOG_INTERVAL_MS);
  }

  /**
   * Guards `server`: every connection it accepts from now on is pending until admitted. Also answers the
   * server's HTTP errors ('clientError': 400, or 431 for an oversized head), refuses pending connections whose
   * TLS handshake fails, and, with `upgrades` (default true; false for a server that serves no WebSocket),
   * counts what an upgraded connection sends until it is admitted.
   */
  watch(server: Server, opts: { upgrades?: boolean } = {}): void {
    server.prependListener('connection', (socket: Socket) => this.accept(socket));
    if (opts.upgrades ?? true)
      server.prependListener('upgrade', (_req: IncomingMessage, socket: Duplex) => this.countBytes(socket));
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => this.clientError(err, socket));
    server.on('tlsClientError', (err: Error, socket: Duplex) => {
      const e = this.find(socket);
      if (e?.state === 'pending') this.refuse(e, 'tls', `TLS handshake failed: ${err.message}`);
      socket.destroy();
    });
  }

  /** Connections not admitted yet and still open (refused ones count until they have closed). */
  get pending(): number {
    return this.open.size;
  }

  /**
   * `socket` (the accepted one, or the TLS socket over it) proved itself: no deadline, no byte limit, not
   * counted any more. False when it is not pending (its deadline passed, it was refused or has closed): the
   * listener must then not serve it.
   */
  admit(socket: Duplex): boolean {
    const e = this.find(socket);
    if (e === undefined || e.state !== 'pending') return false;
    e.state = 'admitted';
    this.release(e);
    return true;
  }

  /**
   * The listener refuses the pending `socket` itself (a failed authentication, a bad hello) and closes it
   * politely: the refusal is logged (once per address, then counted), and the guard destroys the socket
   * ADMISSION_GRACE_MS later if it is still open. Nothing more happens for a socket already refused or
   * closed. False when the guard does not hold `socket` (admitted, closed, or never seen).
   */
  refused(socket: Duplex, kind: string, reason: string): boolean {
    const e = this.find(socket);
    if (e?.state === 'pending') this.refuse(e, kind, reason, true);
    return e !== undefined;
  }

  /** At `socket`'s deadline, call `close` (a polite close) instead of destroying it at once. */
  onExpire(socket: Duplex, close: () => void): void {
    const e = this.find(socket);
    if (e?.state === 'pending') e.expire = close;
  }

  /**
   * Logs the refusals not summarised yet and stops the summary timer. Pending connections keep their
   * deadlines (a listener that stops listening keeps the connections it accepted).
   */
  close(): void {
    this.closed = true;
    this.summarise(true);
  }

  private find(socket: Duplex): Entry | undefined {
    const key = keyOf(socket as Socket);
    return key === undefined ? undefined : this.open.get(key);
  }

  private accept(socket: Socket): void {
    const key = keyOf(socket);
    if (key === undefined || this.closed) {
      socket.destroy(); // already gone (reset before we looked), or the listener is closing
      return;
    }
    const address = socket.remoteAddress as string;
    const group = addressGroup(address);
    const mine = this.groups.get(group)?.size ?? 0;
    if (mine >= this.maxPendingPerAddress) {
      this.note(
        group,
        'address cap',
        `${mine} connections from this address are already waiting to prove themselves ` +
          `(cap ${this.maxPendingPerAddress})`,
      );
      socket.destroy();
      return;
    }
    if (this.open.size >= this.maxPending) {
      const busiest = this.busiestGroup();
      if (busiest === undefined || busiest.size < mine + 2) {
        this.note(
          group,
          'total cap',
          `${this.open.size} connections are already waiting to prove themselves (cap ${this.maxPending})`,
        );
        socket.destroy();
        return;
      }
      const oldest = busiest.values().next().value as Entry;
      if (oldest.state === 'refused') {
        // already refused and counted: only its close was pending
        oldest.socket.destroy();
        this.release(oldest);
      } else {
        this.refuse(
          oldest,
          'evicted',
          `closed to make room: ${this.open.size} connections were waiting to prove themselves ` +
            `(cap ${this.maxPending}), ${busiest.size} from this address`,
        );
      }
    }
    const e: Entry = {
      socket,
      key,
      address,
      group,
      state: 'pending',
      due: Date.now() + this.deadlineMs,
      timer: undefined,
      bytes: 0,
    };
    this.open.set(key, e);
    let set = this.groups.get(group);
    if (set === undefined) this.groups.set(group, (set = new Set()));
    set.add(e);
    this.arm(e, this.deadlineMs);
    socket.once('close', () => {
      e.state = 'closed';
      this.release(e);
    });
  }

  private busiestGroup(): Set<Entry> | undefined {
    let best: Set<Entry> | undefined;
    for (const s of this.groups.values()) if (best === undefined || s.size > best.size) best = s;
    return best;
  }

  private arm(e: Entry, ms: number): void {
    e.timer = setTimeout(() => this.expired(e), ms);
    e.timer.unref();
  }

  private expired(e: Entry): void {
    e.timer = undefined;
    if (e.state !== 'pending') {
      if (e.state === 'refused') e.socket.destroy(); // a polite close that did not complete in time
      return;
    }
    const late = Date.now() - e.due;
    if (late > LATE_TIMER_MS) {
      e.due = Date.now() + late;
      this.arm(e, late);
      return;
    }
    this.refuse(e, 'deadline', `no ${this.proof} within ${this.deadlineMs} ms of connecting`, e.expire !== undefined);
    e.expire?.();
  }

  /** Refuses a pending entry: logs, then destroys it now or, when the listener closes it politely, after the grace. */
  private refuse(e: Entry, kind: string, reason: string, polite = false): void {
    e.state = 'refused';
    clearTimeout(e.timer);
    this.stopCounting(e);
    this.note(e.group, kind, reason);
    if (polite) {
      this.arm(e, ADMISSION_GRACE_MS); // still counted until it has closed
    } else {
      e.socket.destroy();
      this.release(e);
    }
  }

  private release(e: Entry): void {
    clearTimeout(e.timer);
    e.timer = undefined;
    this.stopCounting(e);
    if (this.open.get(e.key) === e) this.open.delete(e.key);
    const set = this.groups.get(e.group);
    if (set?.delete(e) && set.size === 0) this.groups.delete(e.group);
  }

  private countBytes(socket: Duplex): void {
    const e = this.find(socket);
    if (e?.state !== 'pending') return;
    // Bytes read past the request head go back into the socket (ws unshifts them) and are counted here too.
    const fn = (chunk: Buffer): void => {
      e.bytes += chunk.length;
      if (e.bytes > this.maxUnprovenBytes && e.state === 'pending') {
        this.refuse(e, 'oversized', `sent more than ${this.maxUnprovenBytes} bytes before proving itself`);
      }
    };
    e.counted = { socket, fn };
    socket.prependListener('data', fn);
    if (socket !== e.socket) {
      socket.once('close', () => {
        e.state = 'closed';
        this.release(e);
      });
    }
  }

  private stopCounting(e: Entry): void {
    if (e.counted === undefined) return;
    e.counted.socket.off('data', e.counted.fn);
    e.counted = undefined;
  }

  private clientError(err: NodeJS.ErrnoException, socket: Duplex): void {
    const e = this.find(socket);
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy(); // the peer went away: nothing to answer, nothing to refuse
      return;
    }
    const tooLarge = err.code === 'HPE_HEADER_OVERFLOW';
    if (e?.state === 'pending') {
      this.refuse(
        e,
        tooLarge ? 'oversized' : 'bad request',
        tooLarge
          ? "request head too large (over the server's maxHeaderSize)"
          : `bad HTTP request (${err.code ?? err.message})`,
        true,
      );
    }
    const status = tooLarge ? '431 Request Header Fields Too Large' : '400 Bad Request';
    socket.end(`HTTP/1.1 ${status}\r\nConnection: close\r\n\r\n`, () => socket.destroy());
  }

  /** Counts a refusal from `group`; the first of a quiet period is logged at once, the rest in the summaries. */
  private note(group: string, kind: string, reason: string): void {
    let address = group;
    let r = this.refusals.get(address);
    if (r === undefined && this.refusals.size >= MAX_LOGGED_ADDRESSES) {
      address = '*';
      r = this.refusals.get(address);
    }
    if (r === undefined) {
      this.refusals.set(address, { count: 0, reasons: new Map() });
      this.log.warn(
        {
          listener: this.name,
          address,
          reason,
          kind,
          summary:
            `further refusals from ${address === '*' ? 'other addresses' : 'this address'} ` +
            `are counted and logged every ${Math.round(this.logIntervalMs / 1000)} s`,
        },
        'connection refused',
      );
      this.startSummaries();
      return;
    }
    r.count++;
    r.reasons.set(kind, (r.reasons.get(kind) ?? 0) + 1);
  }

  private startSummaries(): void {
    if (this.summaryTimer !== undefined || this.closed) return;
    this.summaryTimer = setInterval(() => this.summarise(false), this.logIntervalMs);
    this.summaryTimer.unref();
  }

  private summarise(final: boolean): void {
    for (const [address, r] of this.refusals) {
      if (r.count === 0) {
        this.refusals.delete(address); // quiet for a whole interval: the next refusal is logged in full
        continue;
      }
      this.log.warn(
        {
          listener: this.name,
          address,
          count: r.count,
          reasons: Object.fromEntries(r.reasons),
          seconds: Math.round(this.logIntervalMs / 1000),
        },
        'connections refused',
      );
      r.count = 0;
      r.reasons.clear();
    }
    if (final || this.refusals.size === 0) {
      clearInterval(this.summaryTimer);
      this.summaryTimer = undefined;
    }
    if (final) this.refusals.clear();
  }
}
