// The WebSocket transport of the ring all-reduce: one implementation of Link (shared/allreduce/link.ts).
//
// Topology. Every rank runs a WebSocket server on its ring port (listenRing) and connects one client to
// its LEFT neighbour's ring port (connectRing). Data flows one way on each connection, server -> client:
// a rank sends to its right neighbour on the server side of the connection that neighbour opened
// (RingOutgoing, a `ws` WebSocket), and receives from its left neighbour on its own client connection
// (RingIncoming). Server frames are unmasked, so the sender hands the caller's bytes to the socket
// without a copy. The receiving client is a small RFC 6455 client of its own (handshake, framing,
// control frames) because it reads the socket with Node's `onread` into memory it chooses: each payload
// goes from the kernel straight into the caller's Float32Array (all-gather) or into a reused, aligned
// scratch buffer (reduce-scatter), with no per-read allocation and no copy (`ws`' receiver allocates a
// buffer per socket read and another per message, which halved throughput when measured).
//
// Handshake. The client sends a text hello as its first frame,
//   {"t":"hello","v":1,"rank":R,"size":N,"job":"<job id>","auth":<opaque, optional>}
// which the server validates (RING_HELLO_MAX_BYTES, fields), passes to `verifyHello` -- THE PLACE FOR THE
// AUTH LAYER: throw WolfpackError('E_AUTH') to refuse -- and matches against accept()'s expectation (the
// rank of the right neighbour, the job id). Only then does it answer {"t":"welcome","v":1}; a refused
// client is closed with a code (4400 bad hello, 4401 auth, 4409 unexpected peer) and a reason. Until its
// hello has passed, a connection is held under shared/transport/admission.ts's deadline (helloTimeoutMs,
// counted from TCP accept), caps and byte limit; the request head is bounded by MAX_HEADER_BYTES, and
// refusals of such connections are logged once per address.
//
// Data message = one WebSocket binary message, normally in two fragments (neither end copies):
//   fragment 1 (16 bytes, little-endian):
//     u8 magic 0x57 ('W') | u8 version 1 | u8 kind 1 (data) | u8 reserved 0
//     u32 tag high 21 bits | u32 tag low 32 bits | u32 element count
//   fragment 2: count * 4 bytes of raw float32 (host order; little-endian hosts only)
// The receiver accepts any fragmentation of that byte sequence.
//
// Validation at the edge (receiver): frame bits (RSV, mask, opcodes, control frame rules), frame and
// message length against the limit (before reading the payload), magic, version, kind, reserved byte,
// tag range, element count against the limit, the payload length against the count, the tag against the
// awaited one (ordered mode: messages arrive in the order they are received), the count against the
// awaited count, duplicate tags. A bad frame closes the connection (1002, or 1009 when too large, with a
// reason), is logged, and rejects the pending and all later receives with E_PROTOCOL. A lost connection
// rejects with E_WORKER.
//
// Backpressure. send() hands at most maxInFlightBytes to the socket and queues further sends
// (references, no copies) until ws reports earlier ones written. Messages that arrive before their
// recv() are kept in scratch buffers; past maxEarlyBytes the receiver stops reading the socket, so TCP
// flow control stops the sender.
import { createHash, randomBytes, randomFillSync } from 'node:crypto';
import { createServer, type IncomingMessage } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { endianness } from 'node:os';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { isValidTag, type Link, type RecvSink } from '../allreduce/link.js';
import { WolfpackError, type ErrorCode } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import { AdmissionGuard, ADMISSION_DEADLINE_MS, MAX_HEADER_BYTES, type AdmissionLimits } from './admission.js';

export const RING_FRAME_MAGIC = 0x57;
export const RING_FRAME_VERSION = 1;
export const RING_FRAME_KIND_DATA = 1;
export const RING_HEADER_BYTES = 16;
/** Largest hello (and welcome) accepted, bytes. */
export const RING_HELLO_MAX_BYTES = 4096;
/** Default largest data payload (one chunk of the ring), bytes. */
export const DEFAULT_MAX_CHUNK_BYTES = 64 * 1024 * 1024;
/** Default bytes handed to the socket and not yet written, per outgoing link. */
export const DEFAULT_MAX_IN_FLIGHT_BYTES = 32 * 1024 * 1024;
/** Default bytes of early (not yet received) messages held before the receiver stops reading. */
export const DEFAULT_MAX_EARLY_BYTES = 64 * 1024 * 1024;

/** Close codes the server uses to refuse a ring connection. */
export const RING_CLOSE_BAD_HELLO = 4400;
export const RING_CLOSE_AUTH = 4401;
export const RING_CLOSE_UNEXPECTED_PEER = 4409;

const TAG_HIGH_LIMIT = 2 ** 21;
const TWO32 = 2 ** 32;
const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Bytes read from the socket at once when not reading straight into a payload. */
const STAGING_BYTES = 256 * 1024;
/** Payload remainders at least this large are read straight into their destination. */
const DIRECT_MIN_BYTES = 4096;
const HTTP_HEAD_MAX_BYTES = 16 * 1024;

/** The first frame on a ring connection: who is connecting, for which job. */
export interface RingHello {
  /** Rank of the connecting rank (the server's right neighbour). */
  rank: number;
  /** Ring size as the connecting rank knows it (optional). */
  size?: number;
  /** Job id; a rank never joins another job's ring. */
  jobId: string;
  /** Opaque credentials for the auth layer (verifyHello). Never logged. */
  auth?: unknown;
}

export interface RingListenOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port, 0 for an ephemeral one (default 0). */
  port?: number;
  /** Largest payload send() accepts, bytes (default DEFAULT_MAX_CHUNK_BYTES; keep equal to the peer's). */
  maxChunkBytes?: number;
  /** Bytes handed to the socket and not yet written (default DEFAULT_MAX_IN_FLIGHT_BYTES). */
  maxInFlightBytes?: number;
  /** Time from TCP accept to a valid hello, ms (default ADMISSION_DEADLINE_MS); a connection that misses it is closed. */
  helloTimeoutMs?: number;
  /** Caps on connections that have not sent a valid hello yet (default: shared/transport/admission.ts's constants). */
  admission?: Omit<AdmissionLimits, 'deadlineMs'>;
  /** Auth hook: called with every well-formed hello; throw (E_AUTH) to refuse the connection. */
  verifyHello?: (hello: RingHello, req: IncomingMessage) => void | Promise<void>;
  logger?: Logger;
}

export interface RingAcceptExpectation {
  /** Rank the connecting right neighbour must announce. */
  rank?: number;
  /** Job id it must announce. */
  jobId?: string;
}

export interface RingListener {
  readonly host: string;
  readonly port: number;
  /** The next ring connection whose hello matches `expect` (others are refused): the sending half. */
  accept(expect?: RingAcceptExpectation, timeoutMs?: number): Promise<RingOutgoing>;
  /** Stop listening; connections already accepted stay open. */
  close(): Promise<void>;
}

export interface RingConnectOptions {
  /** Give up (including retries while the port is closed) after this long (default 30 s). */
  timeoutMs?: number;
  /** Pause between connection attempts while the peer's port is closed (default 100 ms). */
  retryMs?: number;
  /** Largest data payload accepted, bytes (default DEFAULT_MAX_CHUNK_BYTES). */
  maxChunkBytes?: number;
  /** Require messages to arrive in the order they are received (default true): fail fast on desync. */
  ordered?: boolean;
  /** Bytes of early messages held before the socket is no longer read (default DEFAULT_MAX_EARLY_BYTES). */
  maxEarlyBytes?: number;
  logger?: Logger;
}

let quiet: Logger | undefined;
function defaultLogger(): Logger {
  quiet ??= silentLogger();
  return quiet;
}

function checkHost(): void {
  if (endianness() !== 'LE') {
    throw new WolfpackError('E_PROTOCOL', 'the ring transport sends raw float32 and needs a little-endian host');
  }
}

function fmtTag(tag: number): string {
  return `${Math.floor(tag / TWO32)}:${tag % TWO32}`;
}

function positiveInt(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v <= 0) throw new WolfpackError('E_USAGE', `${name} must be a positive integer, got ${v}`);
  return v;
}

function closeReason(reason: string): string {
  return Buffer.from(reason).subarray(0, 120).toString();
}

// ---------------------------------------------------------------------------------------------------
// Sending half: the server side of the connection the right neighbour opened.

interface QueuedSend {
  tag: number;
  data: Float32Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** The sending half of a ring link: the server side of the right neighbour's connection. */
export class RingOutgoing {
  /** The right neighbour's hello. */
  readonly hello: RingHello;
  private readonly ws: WebSocket;
  private readonly log: Logger;
  private readonly maxElems: number;
  private readonly maxInFlight: number;
  private inFlight = 0;
  private readonly queue: QueuedSend[] = [];
  private queueHead = 0;
  private failure: WolfpackError | null = null;

  /** @internal created by RingListener.accept() */
  constructor(ws: WebSocket, hello: RingHello, opts: { maxChunkBytes: number; maxInFlightBytes: number; logger: Logger }) {
    checkHost();
    this.ws = ws;
    this.hello = hello;
    this.log = opts.logger;
    this.maxElems = Math.floor(opts.maxChunkBytes / 4);
    this.maxInFlight = opts.maxInFlightBytes;
    ws.removeAllListeners('message');
    ws.on('message', () => this.fail('E_PROTOCOL', 'unexpected message from the right neighbour'));
    ws.on('close', (code: number, reason: Buffer) => {
      this.fail('E_WORKER', `right neighbour (rank ${hello.rank}) closed the ring connection (code ${code}${reason.length ? `, ${reason.toString()}` : ''})`, false);
    });
  }

  /** @internal ws errors on this socket (installed by the listener). */
  onSocketError(err: Error & { code?: string }): void {
    const proto = typeof err.code === 'string' && err.code.startsWith('WS_ERR_');
    this.fail(proto ? 'E_PROTOCOL' : 'E_WORKER', `ring connection to rank ${this.hello.rank} failed: ${err.message}`, false);
  }

  /** Bytes handed to the socket and not yet written. */
  get bufferedBytes(): number {
    return this.inFlight;
  }

  /** Send `data` as the message `tag` (see Link.send). Never copies `data`. */
  send(tag: number, data: Float32Array): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (!isValidTag(tag)) return Promise.reject(new WolfpackError('E_USAGE', `send: bad tag ${tag}`));
    if (data.length > this.maxElems) {
      return Promise.reject(new WolfpackError('E_USAGE', `send: ${data.length} elements exceed the chunk limit of ${this.maxElems}`));
    }
    return new Promise<void>((resolve, reject) => {
      if (this.inFlight > 0 && this.inFlight + data.byteLength > this.maxInFlight) {
        this.queue.push({ tag, data, resolve, reject });
      } else {
        this.write(tag, data, resolve, reject);
      }
    });
  }

  /** Close the connection after what was sent; queued sends reject. Idempotent. */
  close(): void {
    if (this.failure === null) {
      this.failure = new WolfpackError('E_WORKER', `ring link to rank ${this.hello.rank}: closed`);
      this.rejectQueued(this.failure);
    }
    if (this.ws.readyState === WebSocket.OPEN) {
      this.ws.close(1000);
      // An unreachable peer never answers the close; don't keep the socket (and the process) for ws's 30 s.
      setTimeout(() => this.ws.terminate(), 1000).unref();
    }
  }

  private write(tag: number, data: Float32Array, resolve: () => void, reject: (err: unknown) => void): void {
    const hdr = Buffer.allocUnsafe(RING_HEADER_BYTES);
    hdr[0] = RING_FRAME_MAGIC;
    hdr[1] = RING_FRAME_VERSION;
    hdr[2] = RING_FRAME_KIND_DATA;
    hdr[3] = 0;
    hdr.writeUInt32LE(Math.floor(tag / TWO32), 4);
    hdr.writeUInt32LE(tag % TWO32, 8);
    hdr.writeUInt32LE(data.length, 12);
    const bytes = data.byteLength;
    this.inFlight += bytes;
    this.ws.send(hdr, { binary: true, fin: false });
    this.ws.send(Buffer.from(data.buffer, data.byteOffset, bytes), { binary: true, fin: true }, (err?: Error) => {
      this.inFlight -= bytes;
      if (err) {
        this.fail('E_WORKER', `ring connection to rank ${this.hello.rank} failed: ${err.message}`, false);
        reject(this.failure);
        return;
      }
      resolve();
      this.pump();
    });
  }

  private pump(): void {
    while (this.queueHead < this.queue.length && this.failure === null) {
      const q = this.queue[this.queueHead];
      if (this.inFlight > 0 && this.inFlight + q.data.byteLength > this.maxInFlight) return;
      this.queueHead++;
      this.write(q.tag, q.data, q.resolve, q.reject);
    }
    if (this.queueHead === this.queue.length) {
      this.queue.length = 0;
      this.queueHead = 0;
    }
  }

  private rejectQueued(err: WolfpackError): void {
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i].reject(err);
    this.queue.length = 0;
    this.queueHead = 0;
  }

  private fail(code: ErrorCode, reason: string, closeSocket = true): void {
    if (this.failure !== null) return;
    this.failure = new WolfpackError(code, `ring link to rank ${this.hello.rank}: ${reason}`, { peer: this.hello.rank });
    if (code === 'E_PROTOCOL') this.log.warn({ peer: this.hello.rank, reason }, 'ring connection closed: protocol error');
    else this.log.info({ peer: this.hello.rank, reason }, 'ring connection lost');
    this.rejectQueued(this.failure);
    if (closeSocket && this.ws.readyState === WebSocket.OPEN) this.ws.close(1002, closeReason(reason));
  }
}

function parseHello(text: string): RingHello | string {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    return 'hello is not JSON';
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'hello is not an object';
  const o = v as Record<string, unknown>;
  if (o.t !== 'hello') return `first frame must be a hello, got t=${JSON.stringify(o.t)}`;
  if (o.v !== 1) return `unsupported hello version ${JSON.stringify(o.v)}`;
  if (!Number.isSafeInteger(o.rank) || (o.rank as number) < 0) return 'hello.rank must be a non-negative integer';
  if (o.size !== undefined && (!Number.isSafeInteger(o.size) || (o.size as number) < 1)) return 'hello.size must be a positive integer';
  if (typeof o.job !== 'string' || o.job.length > 256) return 'hello.job must be a string of at most 256 characters';
  const hello: RingHello = { rank: o.rank as number, jobId: o.job };
  if (o.size !== undefined) hello.size = o.size as number;
  if (o.auth !== undefined) hello.auth = o.auth;
  return hello;
}

interface Candidate {
  ws: WebSocket;
  hello: RingHello;
  outgoing: RingOutgoing | null;
}

interface AcceptWaiter {
  expect: RingAcceptExpectation;
  resolve: (out: RingOutgoing) => void;
  reject: (err: unknown) => void;
  timer: NodeJS.Timeout;
}

/** Listen for the ring connection of the right neighbour. Resolves once the port is bound. */
export async function listenRing(opts: RingListenOptions = {}): Promise<RingListener> {
  checkHost();
  const host = opts.host ?? '127.0.0.1';
  const maxChunkBytes = positiveInt('maxChunkBytes', opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES);
  const maxInFlightBytes = positiveInt('maxInFlightBytes', opts.maxInFlightBytes ?? DEFAULT_MAX_IN_FLIGHT_BYTES);
  const helloTimeoutMs = positiveInt('helloTimeoutMs', opts.helloTimeoutMs ?? ADMISSION_DEADLINE_MS);
  const log = (opts.logger ?? defaultLogger()).child({ component: 'ring-link' });
  // Our own HTTP server, so that close() stops listening without waiting for accepted connections.
  const http = createServer({ maxHeaderSize: MAX_HEADER_BYTES }, (_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('wolfpack ring port: WebSocket only\n');
  });
  const wss = new WebSocketServer({
    server: http,
    perMessageDeflate: false,
    maxPayload: RING_HELLO_MAX_BYTES, // the client only sends its hello and control frames
    clientTracking: false,
  });
  const guard = new AdmissionGuard({ name: 'ring', proof: 'valid ring hello', logger: log, ...opts.admission, deadlineMs: helloTimeoutMs });
  guard.watch(http);
  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: Error) => reject(new WolfpackError('E_WORKER', `cannot listen for ring connections on ${host}:${opts.port ?? 0}: ${err.message}`)));
    http.listen(opts.port ?? 0, host, () => resolve());
  });
  http.on('error', (err: Error) => log.error({ err: err.message }, 'ring listener error'));
  wss.on('error', (err: Error) => log.error({ err: err.message }, 'ring listener error'));
  const port = (http.address() as AddressInfo).port;

  const queued: Candidate[] = [];
  const waiters: AcceptWaiter[] = [];
  let closed = false;

  const refuse = (ws: WebSocket, code: number, reason: string, pending?: Duplex): void => {
    // Before its hello has passed (`pending`: its socket), the guard counts the refusal and logs it once per address.
    if (pending !== undefined) guard.refused(pending, 'hello', reason);
    else log.warn({ reason }, 'ring connection refused');
    if (ws.readyState === WebSocket.OPEN) ws.close(code, closeReason(reason));
    setTimeout(() => ws.terminate(), 1000).unref();
  };
  const matches = (e: RingAcceptExpectation, h: RingHello): string | null => {
    if (e.jobId !== undefined && h.jobId !== e.jobId) return `job ${JSON.stringify(h.jobId)} is not this ring's job`;
    if (e.rank !== undefined && h.rank !== e.rank) return `rank ${h.rank} is not the expected right neighbour ${e.rank}`;
    return null;
  };
  const admit = (c: Candidate): RingOutgoing => {
    const out = new RingOutgoing(c.ws, c.hello, { maxChunkBytes, maxInFlightBytes, logger: log });
    c.outgoing = out;
    c.ws.send(JSON.stringify({ t: 'welcome', v: 1 }));
    return out;
  };
  const offer = (c: Candidate): boolean => {
    const w = waiters[0];
    if (w === undefined) return false;
    const why = matches(w.expect, c.hello);
    if (why !== null) {
      refuse(c.ws, RING_CLOSE_UNEXPECTED_PEER, why);
      return true;
    }
    waiters.shift();
    clearTimeout(w.timer);
    w.resolve(admit(c));
    return true;
  };

  wss.on('connection', (ws: WebSocket, req: IncomingMessage) => {
    if (closed) {
      ws.terminate();
      return;
    }
    let cand: Candidate | null = null;
    const socket = req.socket;
    /** `socket` while its hello has not passed (the guard holds it); undefined after. */
    let pending: Duplex | undefined = socket;
    ws.on('error', (err: Error & { code?: string }) => {
      if (cand?.outgoing) cand.outgoing.onSocketError(err);
      else if (pending !== undefined) guard.refused(pending, 'hello', err.message);
      else log.info({ err: err.message }, 'ring connection failed before it was accepted');
    });
    guard.onExpire(socket, () => refuse(ws, RING_CLOSE_BAD_HELLO, 'no hello in time', pending));
    ws.once('close', () => {
      const i = cand === null ? -1 : queued.indexOf(cand);
      if (i >= 0) queued.splice(i, 1);
    });
    ws.once('message', (data: RawData, isBinary: boolean) => {
      ws.on('message', () => refuse(ws, RING_CLOSE_BAD_HELLO, 'message before welcome', pending));
      if (isBinary) {
        refuse(ws, RING_CLOSE_BAD_HELLO, 'first frame must be a text hello', pending);
        return;
      }
      const hello = parseHello((data as Buffer).toString('utf8'));
      if (typeof hello === 'string') {
        refuse(ws, RING_CLOSE_BAD_HELLO, hello, pending);
        return;
      }
      void (async () => {
        try {
          if (opts.verifyHello) await opts.verifyHello(hello, req);
        } catch (err) {
          refuse(ws, RING_CLOSE_AUTH, err instanceof Error ? err.message : 'refused', pending);
          return;
        }
        if (ws.readyState !== WebSocket.OPEN || !guard.admit(socket)) return; // closed, or past its deadline meanwhile
        pending = undefined;
        cand = { ws, hello, outgoing: null };
        if (!offer(cand)) queued.push(cand);
      })();
    });
  });

  return {
    host,
    port,
    accept(expect: RingAcceptExpectation = {}, timeoutMs = 30_000): Promise<RingOutgoing> {
      if (closed) return Promise.reject(new WolfpackError('E_WORKER', 'ring listener is closed'));
      return new Promise<RingOutgoing>((resolve, reject) => {
        while (queued.length > 0) {
          const c = queued.shift() as Candidate;
          const why = matches(expect, c.hello);
          if (why === null) {
            resolve(admit(c));
            return;
          }
          refuse(c.ws, RING_CLOSE_UNEXPECTED_PEER, why);
        }
        const timer = setTimeout(() => {
          const i = waiters.findIndex((w) => w.timer === timer);
          if (i >= 0) waiters.splice(i, 1);
          const who = expect.rank !== undefined ? ` from rank ${expect.rank}` : '';
          reject(new WolfpackError('E_WORKER', `no ring connection${who} on port ${port} within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.push({ expect, resolve, reject, timer });
      });
    },
    close(): Promise<void> {
      closed = true;
      for (const w of waiters.splice(0)) {
        clearTimeout(w.timer);
        w.reject(new WolfpackError('E_WORKER', 'ring listener closed'));
      }
      for (const c of queued.splice(0)) refuse(c.ws, 1001, 'listener closed');
      guard.close();
      wss.close();
      http.close(); // stops listening now; its callback would wait for the accepted connections to end
      return new Promise<void>((resolve) => setImmediate(resolve));
    },
  };
}

// ---------------------------------------------------------------------------------------------------
// Receiving half: a minimal RFC 6455 client that reads the socket into memory it chooses.

interface PendingRecv {
  tag: number;
  count: number;
  into: RecvSink | Float32Array;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/** A reusable, aligned receive buffer. */
interface Scratch {
  f32: Float32Array;
  u8: Uint8Array;
  busy: boolean;
}

/** The message being read. */
interface Current {
  tag: number;
  count: number;
  bytes: number;
  /** Where its payload goes: the recv's array, or `scratch`. */
  dest: Uint8Array;
  scratch: Scratch | null;
  recv: PendingRecv | null;
}

/** A complete message nobody has received yet. */
interface Parked {
  count: number;
  scratch: Scratch;
}

const enum Phase {
  Handshake,
  Welcome,
  Open,
  Closed,
}

/** The receiving half of a ring link: this rank's client connection to its left neighbour. */
export class RingIncoming {
  /** The left neighbour's rank, as this rank's hello implies it (rank - 1 mod size). */
  readonly peerRank: number;
  private readonly sock: net.Socket;
  private readonly log: Logger;
  private readonly maxElems: number;
  private readonly maxMessageBytes: number;
  private readonly ordered: boolean;
  private readonly maxEarlyBytes: number;
  private readonly url: URL;
  private readonly key: string;
  private readonly helloText: string;
  private phase = Phase.Handshake;
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private http = Buffer.alloc(0);
  // frame parser
  private inBody = false;
  private readonly fh = Buffer.alloc(14);
  private fhHave = 0;
  private fhNeed = 2;
  private frameOp = 0;
  private frameFin = false;
  private frameLeft = 0;
  private readonly ctl = Buffer.alloc(125);
  private ctlLen = 0;
  // message assembly
  private msgActive = false;
  private msgOp = 0;
  private msgPos = 0;
  private readonly hdr = Buffer.alloc(RING_HEADER_BYTES);
  private text: Buffer[] = [];
  private cur: Current | null = null;
  // matching
  private readonly pending = new Map<number, PendingRecv>();
  private readonly parked = new Map<number, Parked>();
  private parkedBytes = 0;
  private readonly scratches: Scratch[] = [];
  private stopped = false;
  private failure: WolfpackError | null = null;
  private closing = false;
  private opened: { resolve: () => void; reject: (err: WolfpackError) => void } | null = null;

  /** @internal use connectRing() */
  constructor(url: URL, hello: RingHello, opts: { maxChunkBytes: number; ordered: boolean; maxEarlyBytes: number; logger: Logger }) {
    checkHost();
    this.url = url;
    this.peerRank = hello.size !== undefined ? (hello.rank + hello.size - 1) % hello.size : hello.rank - 1;
    this.log = opts.logger;
    this.maxElems = Math.floor(opts.maxChunkBytes / 4);
    this.maxMessageBytes = RING_HEADER_BYTES + this.maxElems * 4;
    this.ordered = opts.ordered;
    this.maxEarlyBytes = opts.maxEarlyBytes;
    this.key = randomBytes(16).toString('base64');
    this.helloText = JSON.stringify({ t: 'hello', v: 1, rank: hello.rank, size: hello.size, job: hello.jobId, auth: hello.auth });
    this.sock = net.connect({
      host: url.hostname.replace(/^\[|\]$/g, ''),
      port: Number(url.port || 80),
      noDelay: true,
      onread: { buffer: () => this.nextReadBuffer(), callback: (n: number, buf: Uint8Array) => this.onRead(n, buf) },
    });
  }

  /** @internal resolves on the welcome; rejects with the reason otherwise (ECONNREFUSED: code kept). */
  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.opened = { resolve, reject };
      this.sock.once('connect', () => {
        const path = `${this.url.pathname || '/'}${this.url.search}`;
        this.sock.write(
          `GET ${path} HTTP/1.1\r\nHost: ${this.url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
            `Sec-WebSocket-Key: ${this.key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
        );
      });
      this.sock.on('error', (err: Error & { code?: string }) => {
        this.fail('E_WORKER', `ring connection to ${this.url.host} failed: ${err.message}`, 0, err.code);
      });
      this.sock.on('close', () => {
        this.fail('E_WORKER', `left neighbour (rank ${this.peerRank}) closed the ring connection`, 0);
      });
    });
  }

  /** Receive the message with `tag` (see Link.recv). */
  recv(tag: number, count: number, into: RecvSink | Float32Array): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    if (!isValidTag(tag) || !Number.isSafeInteger(count) || count < 0 || (into instanceof Float32Array && into.length !== count)) {
      return Promise.reject(new WolfpackError('E_USAGE', `recv: bad tag ${tag}, count ${count} or destination`));
    }
    if (this.pending.has(tag) || this.cur?.recv?.tag === tag) {
      return Promise.reject(new WolfpackError('E_USAGE', `recv: tag ${fmtTag(tag)} already awaited`));
    }
    return new Promise<void>((resolve, reject) => {
      const p: PendingRecv = { tag, count, into, resolve, reject };
      const parked = this.parked.get(tag);
      if (parked !== undefined) {
        if (this.ordered && this.parked.keys().next().value !== tag) {
          this.pending.set(tag, p);
          this.fail('E_PROTOCOL', `message ${fmtTag(this.parked.keys().next().value as number)} arrived before the expected message ${fmtTag(tag)}`);
          return;
        }
        this.parked.delete(tag);
        this.parkedBytes -= parked.count * 4;
        if (parked.count !== count) {
          this.pending.set(tag, p);
          this.fail('E_PROTOCOL', `message ${fmtTag(tag)} has ${parked.count} elements, expected ${count}`);
          return;
        }
        this.finish(p, parked.scratch, count);
        if (this.stopped && this.parkedBytes <= this.maxEarlyBytes / 2) {
          this.stopped = false;
          this.sock.resume();
        }
        return;
      }
      const cur = this.cur;
      if (cur !== null && cur.recv === null && (!this.ordered || this.parked.size === 0)) {
        if (cur.tag === tag) {
          if (cur.count !== count) {
            this.pending.set(tag, p);
            this.fail('E_PROTOCOL', `message ${fmtTag(tag)} has ${cur.count} elements, expected ${count}`);
            return;
          }
          this.attach(cur, p);
          return;
        }
        if (this.ordered) {
          this.pending.set(tag, p);
          this.fail('E_PROTOCOL', `message ${fmtTag(cur.tag)} arrived while message ${fmtTag(tag)} was expected`);
          return;
        }
      }
      if (this.ordered && this.parked.size > 0) {
        this.pending.set(tag, p);
        this.fail('E_PROTOCOL', `message ${fmtTag(this.parked.keys().next().value as number)} arrived while message ${fmtTag(tag)} was expected`);
        return;
      }
      this.pending.set(tag, p);
    });
  }

  /** Close the connection (normal closure); pending receives reject with E_WORKER. Idempotent. */
  close(): void {
    if (this.failure === null) {
      this.failure = new WolfpackError('E_WORKER', `ring link from rank ${this.peerRank}: closed`);
      this.rejectAll(this.failure);
    }
    this.shutdown(1000, '');
  }

  // -- socket reading ---------------------------------------------------------------------------

  /** The memory the next socket read goes to: the current payload's destination when enough is due. */
  private nextReadBuffer(): Uint8Array {
    const cur = this.cur;
    if (this.inBody && this.frameOp < 8 && this.msgOp === 2 && cur !== null && this.msgPos >= RING_HEADER_BYTES) {
      const off = this.msgPos - RING_HEADER_BYTES;
      const want = Math.min(this.frameLeft, cur.bytes - off);
      if (want >= DIRECT_MIN_BYTES) return cur.dest.subarray(off, off + want);
    }
    return this.staging;
  }

  private onRead(n: number, buf: Uint8Array): boolean {
    if (this.phase === Phase.Closed) return true;
    if (buf !== this.staging) {
      // straight into the current payload: nextReadBuffer() sized it to this frame and message
      this.msgPos += n;
      this.frameLeft -= n;
      if (this.frameLeft === 0) this.endFrame();
    } else if (this.phase === Phase.Handshake) {
      this.onHandshakeBytes(n);
    } else {
      this.parse(this.staging, 0, n);
    }
    return !this.stopped;
  }

  private onHandshakeBytes(n: number): void {
    this.http = Buffer.concat([this.http, this.staging.subarray(0, n)]);
    const end = this.http.indexOf('\r\n\r\n');
    if (end < 0) {
      if (this.http.length > HTTP_HEAD_MAX_BYTES) this.fail('E_PROTOCOL', 'handshake response too large', 1002);
      return;
    }
    const lines = this.http.subarray(0, end).toString('latin1').split('\r\n');
    const rest = this.http.subarray(end + 4);
    this.http = Buffer.alloc(0);
    const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
    if (status === null || status[1] !== '101') {
      this.fail('E_WORKER', `ring peer at ${this.url.host} refused the WebSocket upgrade: ${lines[0] ?? '(no status line)'}`, 0);
      this.sock.destroy();
      return;
    }
    const headers = new Map<string, string>();
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
    }
    const accept = createHash('sha1').update(this.key + WS_GUID).digest('base64');
    if ((headers.get('upgrade') ?? '').toLowerCase() !== 'websocket' || headers.get('sec-websocket-accept') !== accept) {
      this.fail('E_PROTOCOL', 'bad WebSocket handshake response (upgrade / accept key)', 0);
      this.sock.destroy();
      return;
    }
    if (headers.has('sec-websocket-extensions')) {
      this.fail('E_PROTOCOL', 'the server negotiated an extension nobody asked for', 1002);
      return;
    }
    this.phase = Phase.Welcome;
    this.sendFrame(0x1, Buffer.from(this.helloText));
    if (rest.length > 0) {
      rest.copy(this.staging, 0);
      this.parse(this.staging, 0, rest.length);
    }
  }

  /** Run the frame parser over buf[i, end). */
  private parse(buf: Buffer, i: number, end: number): void {
    while (i < end && this.failure === null) {
      if (!this.inBody) {
        const take = Math.min(this.fhNeed - this.fhHave, end - i);
        buf.copy(this.fh, this.fhHave, i, i + take);
        this.fhHave += take;
        i += take;
        if (this.fhHave < this.fhNeed) return;
        if (this.fhNeed === 2) {
          const len7 = this.fh[1] & 0x7f;
          const ext = len7 === 126 ? 2 : len7 === 127 ? 8 : 0;
          if (ext > 0) {
            this.fhNeed = 2 + ext;
            continue;
          }
        }
        this.beginFrame();
        continue;
      }
      const take = Math.min(this.frameLeft, end - i);
      if (take > 0) {
        if (this.frameOp >= 8) {
          buf.copy(this.ctl, this.ctlLen, i, i + take);
          this.ctlLen += take;
        } else if (this.msgOp === 1) {
          this.text.push(Buffer.from(buf.subarray(i, i + take)));
        } else {
          this.dataBytes(buf, i, i + take);
        }
        i += take;
        this.frameLeft -= take;
      }
      if (this.frameLeft === 0 && this.failure === null) this.endFrame();
    }
  }

  private beginFrame(): void {
    const b0 = this.fh[0];
    const b1 = this.fh[1];
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    const len7 = b1 & 0x7f;
    let len = len7;
    if (len7 === 126) len = this.fh.readUInt16BE(2);
    else if (len7 === 127) {
      const hi = this.fh.readUInt32BE(2);
      if (hi >= TAG_HIGH_LIMIT) return this.fail('E_PROTOCOL', 'frame length out of range', 1009);
      len = hi * TWO32 + this.fh.readUInt32BE(6);
    }
    this.fhHave = 0;
    this.fhNeed = 2;
    if ((b0 & 0x70) !== 0) return this.fail('E_PROTOCOL', 'RSV bits set, but no extension was negotiated');
    if ((b1 & 0x80) !== 0) return this.fail('E_PROTOCOL', 'masked frame from the server');
    if (op >= 8) {
      if (op > 10) return this.fail('E_PROTOCOL', `unknown control opcode ${op}`);
      if (!fin || len > 125) return this.fail('E_PROTOCOL', 'fragmented or oversized control frame');
      this.ctlLen = 0;
    } else {
      if (op === 0) {
        if (!this.msgActive) return this.fail('E_PROTOCOL', 'continuation frame outside a message');
      } else if (op === 1 || op === 2) {
        if (this.msgActive) return this.fail('E_PROTOCOL', 'new message inside a fragmented message');
        if (op === 2 && this.phase !== Phase.Open) return this.fail('E_PROTOCOL', 'data before the welcome');
        if (op === 1 && this.phase !== Phase.Welcome) return this.fail('E_PROTOCOL', 'text frame on the data channel');
        this.msgActive = true;
        this.msgOp = op;
        this.msgPos = 0;
        this.text = [];
      } else {
        return this.fail('E_PROTOCOL', `unknown opcode ${op}`);
      }
      const limit = this.msgOp === 1 ? RING_HELLO_MAX_BYTES : this.cur !== null ? RING_HEADER_BYTES + this.cur.bytes : this.maxMessageBytes;
      if (this.msgPos + len > limit) {
        const what = this.cur !== null ? `the ${this.cur.count} elements its header announces` : `the limit of ${limit} bytes`;
        return this.fail('E_PROTOCOL', `message of at least ${this.msgPos + len} bytes exceeds ${what}`, 1009);
      }
    }
    this.frameOp = op;
    this.frameFin = fin;
    this.frameLeft = len;
    this.inBody = true;
    if (len === 0) this.endFrame();
  }

  private endFrame(): void {
    this.inBody = false;
    if (this.frameOp >= 8) {
      this.onControl(this.frameOp, this.ctl.subarray(0, this.ctlLen));
      return;
    }
    if (!this.frameFin) return;
    this.msgActive = false;
    if (this.msgOp === 1) {
      this.onText(Buffer.concat(this.text).toString('utf8'));
      this.text = [];
      return;
    }
    const cur = this.cur;
    if (cur === null || this.msgPos !== RING_HEADER_BYTES + cur.bytes) {
      const got = Math.max(0, this.msgPos - RING_HEADER_BYTES);
      this.fail('E_PROTOCOL', cur === null
        ? `data message of ${this.msgPos} bytes is shorter than the ${RING_HEADER_BYTES}-byte header`
        : `payload of ${got} bytes does not hold the ${cur.count} float32 elements the header announces`);
      return;
    }
    this.cur = null;
    if (cur.recv !== null) {
      this.finish(cur.recv, cur.scratch, cur.count);
    } else if (cur.scratch !== null) {
      this.parked.set(cur.tag, { count: cur.count, scratch: cur.scratch });
      this.parkedBytes += cur.bytes;
      if (this.parkedBytes > this.maxEarlyBytes) this.stopped = true; // onRead returns false: readStop
    }
  }

  /** Payload bytes buf[s, e) of a binary message: the 16-byte header first, then the elements. */
  private dataBytes(buf: Buffer, s: number, e: number): void {
    if (this.msgPos < RING_HEADER_BYTES) {
      const take = Math.min(RING_HEADER_BYTES - this.msgPos, e - s);
      buf.copy(this.hdr, this.msgPos, s, s + take);
      this.msgPos += take;
      s += take;
      if (this.msgPos === RING_HEADER_BYTES) this.startMessage();
      if (this.failure !== null) return;
    }
    if (s < e) {
      const cur = this.cur as Current;
      const off = this.msgPos - RING_HEADER_BYTES;
      if (off + (e - s) > cur.bytes) {
        this.fail('E_PROTOCOL', `payload longer than the ${cur.count} float32 elements the header announces`);
        return;
      }
      cur.dest.set(buf.subarray(s, e), off);
      this.msgPos += e - s;
    }
  }

  /** The 16-byte header is in: validate it and decide where the payload goes. */
  private startMessage(): void {
    const h = this.hdr;
    if (h[0] !== RING_FRAME_MAGIC) return this.fail('E_PROTOCOL', `bad magic 0x${h[0].toString(16)} (expected 0x${RING_FRAME_MAGIC.toString(16)})`);
    if (h[1] !== RING_FRAME_VERSION) return this.fail('E_PROTOCOL', `unsupported frame version ${h[1]} (expected ${RING_FRAME_VERSION})`);
    if (h[2] !== RING_FRAME_KIND_DATA || h[3] !== 0) return this.fail('E_PROTOCOL', `unknown frame kind ${h[2]}/${h[3]}`);
    const hi = h.readUInt32LE(4);
    const count = h.readUInt32LE(12);
    if (hi >= TAG_HIGH_LIMIT) return this.fail('E_PROTOCOL', `tag high word ${hi} out of range`);
    if (count > this.maxElems) return this.fail('E_PROTOCOL', `element count ${count} exceeds the limit of ${this.maxElems}`, 1009);
    const tag = hi * TWO32 + h.readUInt32LE(8);
    const p = this.pending.get(tag);
    if (this.ordered && this.pending.size > 0 && this.pending.keys().next().value !== tag) {
      return this.fail('E_PROTOCOL', `message ${fmtTag(tag)} arrived while message ${fmtTag(this.pending.keys().next().value as number)} was expected`);
    }
    if (p !== undefined) {
      if (p.count !== count) return this.fail('E_PROTOCOL', `message ${fmtTag(tag)} has ${count} elements, expected ${p.count}`);
      this.pending.delete(tag);
    } else if (this.parked.has(tag)) {
      return this.fail('E_PROTOCOL', `two messages with tag ${fmtTag(tag)}`);
    }
    const bytes = count * 4;
    if (p !== undefined && p.into instanceof Float32Array) {
      this.cur = { tag, count, bytes, dest: new Uint8Array(p.into.buffer, p.into.byteOffset, bytes), scratch: null, recv: p };
    } else {
      const s = this.takeScratch(count);
      this.cur = { tag, count, bytes, dest: s.u8, scratch: s, recv: p ?? null };
    }
  }

  /**
   * A recv() for the message being read into a scratch buffer. It stays there (a socket read into the
   * scratch may already be registered) and is handed over when complete.
   */
  private attach(cur: Current, p: PendingRecv): void {
    cur.recv = p;
  }

  /** Hand a complete payload to its recv. */
  private finish(p: PendingRecv, scratch: Scratch | null, count: number): void {
    try {
      if (scratch !== null) {
        const view = scratch.f32.subarray(0, count);
        if (typeof p.into === 'function') p.into(view);
        else p.into.set(view);
      }
    } catch (err) {
      p.reject(err);
      return;
    } finally {
      if (scratch !== null) scratch.busy = false;
    }
    p.resolve();
  }

  private takeScratch(count: number): Scratch {
    let free: Scratch | undefined;
    for (const s of this.scratches) {
      if (!s.busy && (free === undefined || s.f32.length > free.f32.length)) free = s;
    }
    if (free === undefined) {
      free = { f32: new Float32Array(0), u8: new Uint8Array(0), busy: false };
      this.scratches.push(free);
    }
    if (free.f32.length < count) {
      free.f32 = new Float32Array(count);
      free.u8 = new Uint8Array(free.f32.buffer);
    }
    free.busy = true;
    return free;
  }

  private onText(text: string): void {
    let w: Record<string, unknown> | null = null;
    try {
      w = JSON.parse(text) as Record<string, unknown>;
    } catch {
      w = null;
    }
    if (w === null || typeof w !== 'object' || w.t !== 'welcome' || w.v !== 1) {
      this.fail('E_PROTOCOL', 'the ring peer answered the hello with something other than a welcome');
      return;
    }
    this.phase = Phase.Open;
    this.opened?.resolve();
    this.opened = null;
  }

  private onControl(op: number, payload: Buffer): void {
    if (op === 0x9) {
      this.sendFrame(0xa, Buffer.from(payload));
    } else if (op === 0x8) {
      const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
      const reason = payload.length > 2 ? payload.subarray(2).toString('utf8') : '';
      let ecode: ErrorCode = 'E_WORKER';
      if (code === RING_CLOSE_AUTH) ecode = 'E_AUTH';
      else if (code === RING_CLOSE_BAD_HELLO || code === RING_CLOSE_UNEXPECTED_PEER || code === 1002) ecode = 'E_PROTOCOL';
      const why = this.phase === Phase.Open ? 'closed the ring connection' : 'refused the ring connection';
      this.fail(ecode, `left neighbour (rank ${this.peerRank}) at ${this.url.host} ${why} (code ${code}${reason ? `, ${reason}` : ''})`, code === 1005 ? 1000 : code);
    }
  }

  /** Send one masked frame (hello, pong, close): the client sends nothing else. */
  private sendFrame(op: number, payload: Buffer): void {
    if (this.sock.destroyed || !this.sock.writable) return;
    const mask = randomFillSync(Buffer.alloc(4));
    const head = Buffer.alloc(payload.length < 126 ? 6 : payload.length < 65536 ? 8 : 14);
    head[0] = 0x80 | op;
    let o = 2;
    if (payload.length < 126) head[1] = 0x80 | payload.length;
    else if (payload.length < 65536) {
      head[1] = 0x80 | 126;
      head.writeUInt16BE(payload.length, 2);
      o = 4;
    } else {
      head[1] = 0x80 | 127;
      head.writeUInt32BE(0, 2);
      head.writeUInt32BE(payload.length, 6);
      o = 10;
    }
    mask.copy(head, o);
    const body = Buffer.from(payload);
    for (let i = 0; i < body.length; i++) body[i] ^= mask[i & 3];
    this.sock.write(Buffer.concat([head, body]));
  }

  private shutdown(code: number, reason: string): void {
    if (this.closing) return;
    this.closing = true;
    if (this.phase === Phase.Welcome || this.phase === Phase.Open) {
      const body = Buffer.alloc(2 + Buffer.byteLength(closeReason(reason)));
      body.writeUInt16BE(code, 0);
      body.write(closeReason(reason), 2);
      this.sendFrame(0x8, body);
    }
    this.phase = Phase.Closed;
    this.sock.pause(); // readStop: no read may land in a caller's array after this
    this.sock.end();
    const sock = this.sock;
    setTimeout(() => sock.destroy(), 1000).unref();
  }

  private rejectAll(err: WolfpackError): void {
    for (const p of this.pending.values()) p.reject(err);
    this.pending.clear();
    if (this.cur?.recv) this.cur.recv.reject(err);
    this.cur = null;
    this.parked.clear();
    this.parkedBytes = 0;
    for (const s of this.scratches) s.busy = false;
  }

  /**
   * Fail the link: reject every receive with `code`, log, and close with WebSocket code `wsCode`
   * (1002 protocol error by default; 0: just drop the socket).
   */
  private fail(code: ErrorCode, reason: string, wsCode = 1002, sysCode?: string): void {
    if (this.failure !== null) return;
    this.failure = new WolfpackError(code, `ring link from rank ${this.peerRank}: ${reason}`, { peer: this.peerRank, ...(sysCode ? { sysCode } : {}) });
    if (code === 'E_PROTOCOL') this.log.warn({ peer: this.peerRank, reason }, 'ring connection closed: protocol error');
    else this.log.info({ peer: this.peerRank, reason }, 'ring connection lost');
    this.rejectAll(this.failure);
    this.opened?.reject(this.failure);
    this.opened = null;
    if (wsCode !== 0) this.shutdown(wsCode, reason);
    else {
      this.phase = Phase.Closed;
      this.closing = true;
      this.sock.destroy();
    }
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/**
 * Connect to the left neighbour's ring port (`url`, e.g. ws://127.0.0.1:PORT), send the hello and wait
 * for the welcome: the receiving half of this rank's link. Retries while the port refuses connections.
 */
export async function connectRing(url: string, hello: RingHello, opts: RingConnectOptions = {}): Promise<RingIncoming> {
  checkHost();
  const timeoutMs = positiveInt('timeoutMs', opts.timeoutMs ?? 30_000);
  const retryMs = positiveInt('retryMs', opts.retryMs ?? 100);
  const maxChunkBytes = positiveInt('maxChunkBytes', opts.maxChunkBytes ?? DEFAULT_MAX_CHUNK_BYTES);
  const maxEarlyBytes = positiveInt('maxEarlyBytes', opts.maxEarlyBytes ?? DEFAULT_MAX_EARLY_BYTES);
  const log = (opts.logger ?? defaultLogger()).child({ component: 'ring-link' });
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new WolfpackError('E_USAGE', `bad ring URL ${JSON.stringify(url)}`);
  }
  if (u.protocol !== 'ws:') throw new WolfpackError('E_USAGE', `ring URL must be ws://host:port, got ${url}`);
  if (!Number.isSafeInteger(hello.rank) || hello.rank < 0) throw new WolfpackError('E_USAGE', `hello.rank must be a non-negative integer, got ${hello.rank}`);
  const size = JSON.stringify({ t: 'hello', v: 1, rank: hello.rank, size: hello.size, job: hello.jobId, auth: hello.auth }).length;
  if (size > RING_HELLO_MAX_BYTES) throw new WolfpackError('E_USAGE', 'ring hello too large (auth field?)');
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const left = deadline - Date.now();
    if (left <= 0) throw new WolfpackError('E_WORKER', `cannot connect the ring to ${url} within ${timeoutMs} ms`);
    const inc = new RingIncoming(u, hello, { maxChunkBytes, ordered: opts.ordered ?? true, maxEarlyBytes, logger: log });
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        inc.open(),
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new WolfpackError('E_WORKER', `no welcome from ${url} within ${timeoutMs} ms`)), left);
        }),
      ]);
      return inc;
    } catch (err) {
      const refused = err instanceof WolfpackError && err.details.sysCode === 'ECONNREFUSED';
      inc.close();
      if (!refused) throw err;
      log.debug({ url }, 'ring peer not listening yet; retrying');
      await sleep(Math.min(retryMs, Math.max(1, deadline - Date.now())));
    } finally {
      clearTimeout(timer);
    }
  }
}

/** A Link from the two halves: send to the right neighbour, receive from the left one. */
export function wsLink(outgoing: RingOutgoing, incoming: RingIncoming): Link {
  return {
    send: (tag, data) => outgoing.send(tag, data),
    recv: (tag, count, into) => incoming.recv(tag, count, into),
    close: () => {
      outgoing.close();
      incoming.close();
    },
  };
}
