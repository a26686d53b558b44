// Hostile clients for the admission tests (shared/transport/admission.ts): raw TCP connections to
// 127.0.0.1 from chosen loopback source addresses (127.0.0.2, ...; all of 127/8 is loopback on Linux), each
// idle or opening with something malformed or oversized. Each records when it was opened and when it was
// closed; these clients never close first, so a close is the server's doing (until destroy()).
import { randomBytes } from 'node:crypto';
import net from 'node:net';

/**
 *  idle         connects and sends nothing
 *  partial-head the start of a request head, never finished (slow loris)
 *  long-key     an upgrade request with a 5 KB Sec-WebSocket-Key, never finished (no blank line)
 *  big-head     a complete request whose head is over 12 KB
 *  big-frame    a valid WebSocket upgrade, then a masked binary frame announcing 1 MiB, 64 KiB of it sent
 */
export type FloodKind = 'idle' | 'partial-head' | 'long-key' | 'big-head' | 'big-frame';
export const FLOOD_KINDS: FloodKind[] = ['idle', 'partial-head', 'long-key', 'big-head', 'big-frame'];

export interface FloodSocket {
  kind: FloodKind;
  from: string;
  socket: net.Socket;
  openedAt: number;
  /** Date.now() when the socket closed; undefined while open. */
  closedAt?: number;
  /** The first bytes the server answered (status line etc.). */
  received: string;
  /** Resolves when the socket has closed. */
  closed: Promise<void>;
}

function upgradeHead(key: string, end: boolean): string {
  return (
    'GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n' +
    `Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ${key}\r\n${end ? '\r\n' : ''}`
  );
}

/** A masked binary frame header announcing `len` bytes (64-bit length form), then `sent` bytes of it. */
function bigFrame(len: number, sent: number): Buffer {
  const head = Buffer.alloc(14);
  head[0] = 0x82;
  head[1] = 0x80 | 127;
  head.writeUInt32BE(0, 2);
  head.writeUInt32BE(len, 6);
  randomBytes(4).copy(head, 10);
  return Buffer.concat([head, Buffer.alloc(sent, 0x41)]);
}

/** Opens one hostile connection of `kind` from `from` to 127.0.0.1:`port`. */
export function openFlood(port: number, from: string, kind: FloodKind): FloodSocket {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
  const s: FloodSocket = { kind, from, socket, openedAt: Date.now(), received: '', closed: Promise.resolve() };
  s.closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      s.closedAt = Date.now();
      resolve();
    }),
  );
  socket.on('error', () => undefined); // resets are what the server is expected to do
  let upgraded = false;
  socket.on('data', (d: Buffer) => {
    if (s.received.length < 200) s.received += d.toString('latin1').slice(0, 200 - s.received.length);
    if (kind === 'big-frame' && !upgraded && s.received.startsWith('HTTP/1.1 101')) {
      upgraded = true;
      socket.write(bigFrame(1 << 20, 64 * 1024));
    }
  });
  socket.once('connect', () => {
    if (kind === 'partial-head') socket.write('GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ');
    else if (kind === 'long-key') socket.write(upgradeHead('A'.repeat(5000), false));
    else if (kind === 'big-head')
      socket.write(`GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'b'.repeat(12 * 1024)}\r\n\r\n`);
    else if (kind === 'big-frame') socket.write(upgradeHead(randomBytes(16).toString('base64'), true));
  });
  return s;
}

/** A slot of a sustained flood opens at most one connection this often (ms), so fast refusals do not spin. */
const REOPEN_MIN_MS = 1000;

/**
 * A sustained flood: `count` connections per (address, kind), each reopened when the server closes it
 * (at most every REOPEN_MIN_MS), until stop(). Every connection ever opened is kept in `sockets`; the
 * first ones, opened at once, in `firstRound`.
 */
export class Flood {
  readonly sockets: FloodSocket[] = [];
  readonly firstRound: FloodSocket[];
  private running = true;
  private readonly timers = new Set<NodeJS.Timeout>();

  constructor(
    private readonly port: number,
    from: string[],
    kinds: FloodKind[],
    count: number,
  ) {
    for (const a of from) for (const k of kinds) for (let i = 0; i < count; i++) this.open(a, k);
    this.firstRound = [...this.sockets];
  }

  private open(from: string, kind: FloodKind): void {
    const s = openFlood(this.port, from, kind);
    this.sockets.push(s);
    void s.closed.then(() => {
      if (!this.running) return;
      const timer = setTimeout(
        () => {
          this.timers.delete(timer);
          if (this.running) this.open(from, kind);
        },
        Math.max(0, REOPEN_MIN_MS - ((s.closedAt as number) - s.openedAt)),
      );
      this.timers.add(timer);
    });
  }

  /** Stops reopening; resolves true when every socket has been closed by the server, false after `ms`. */
  async stop(ms: number): Promise<boolean> {
    this.running = false;
    for (const timer of this.timers) clearTimeout(timer);
    this.timers.clear();
    return allClosed(this.sockets, ms);
  }

  /** Sockets not closed yet. */
  get stillOpen(): number {
    return this.sockets.filter((s) => s.closedAt === undefined).length;
  }

  /** Closes whatever is still open (cleanup). */
  destroy(): void {
    this.running = false;
    for (const timer of this.timers) clearTimeout(timer);
    for (const s of this.sockets) s.socket.destroy();
  }
}

/** Resolves true once every one of `sockets` has closed, false after `ms`. */
export async function allClosed(sockets: FloodSocket[], ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const all = Promise.all(sockets.map((s) => s.closed)).then(() => true);
  const late = new Promise<boolean>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([all, late]);
  } finally {
    clearTimeout(timer);
  }
}
