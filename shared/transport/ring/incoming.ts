// The receiving half of a ring link: this rank's client connection to its left neighbour, a small
// RFC 6455 client of its own (handshake, framing, control frames) because it reads the socket with
// Node's `onread` into memory it chooses: each payload goes from the kernel straight into the caller's
// Float32Array (all-gather) or into a reused, aligned scratch buffer (reduce-scatter), with no per-read
// allocation and no copy (`ws`' receiver allocates a buffer per socket read and another per message,
// which halved throughput when measured).
//
// Validation at the edge: frame bits (RSV, mask, opcodes, control frame rules), frame and message length
// against the limit (before reading the payload), the data header (frame.ts), element count against the
// limit, the payload length against the count, the tag against the awaited one (ordered mode: messages
// arrive in the order they are received), the count against the awaited count, duplicate tags. A bad
// frame closes the connection (1002, or 1009 when too large, with a reason), is logged, and rejects the
// pending and all later receives with E_PROTOCOL. A lost connection rejects with E_WORKER.
//
// Backpressure: messages that arrive before their recv() are kept in scratch buffers; past maxEarlyBytes
// the receiver stops reading the socket, so TCP flow control stops the sender.
//
// TLS (wss://): the same client over a TLS socket (`onread` works there too). The listener's certificate is
// self-signed (certificate.ts), so no CA judges it: the connection goes on only when the SHA-256 of the
// certificate the listener presented equals the fingerprint the coordinator announced for that listener
// (`pin`). On a mismatch nothing is sent (no upgrade, no hello) and the link fails with E_AUTH.
import net from 'node:net';
import tls from 'node:tls';
import { timingSafeEqual } from 'node:crypto';
import { formatTag, isValidTag, type RecvSink } from '../../allreduce/link.js';
import { WolfpackError, type ErrorCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { certificateFingerprint } from './certificate.js';
import {
  checkUpgradeResponse,
  clientFrame,
  newClientKey,
  upgradeRequest,
  UPGRADE_RESPONSE_MAX_BYTES,
} from './client-handshake.js';
import {
  checkHost,
  closeReason,
  decodeDataHeader,
  RING_CLOSE_AUTH,
  RING_CLOSE_BAD_HELLO,
  RING_CLOSE_UNEXPECTED_PEER,
  RING_HEADER_BYTES,
} from './frame.js';
import { helloText, isWelcome, RING_HELLO_MAX_BYTES, type RingHello } from './hello.js';

/** Bytes read from the socket at once when not reading straight into a payload. */
const STAGING_BYTES = 256 * 1024;
/** Payload remainders at least this large are read straight into their destination. */
const DIRECT_MIN_BYTES = 4096;

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

/** Where the connection is: HTTP upgrade, waiting for the welcome text, data, closed. */
const enum Phase {
  Handshake,
  Welcome,
  Open,
  Closed,
}

/** What the frame parser reads next: a frame header (2, 4 or 10 bytes) or that frame's payload. */
const enum FrameState {
  Header,
  Payload,
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
  /** The fingerprint the listener's certificate must have (wss:// only). */
  private readonly pin: string | undefined;
  private phase = Phase.Handshake;
  private readonly staging = Buffer.allocUnsafe(STAGING_BYTES);
  private http = Buffer.alloc(0);
  // frame parser
  private frameState = FrameState.Header;
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
  constructor(
    url: URL,
    hello: RingHello,
    opts: { maxChunkBytes: number; ordered: boolean; maxEarlyBytes: number; pin?: string; logger: Logger },
  ) {
    checkHost();
    this.url = url;
    this.peerRank = hello.size !== undefined ? (hello.rank + hello.size - 1) % hello.size : hello.rank - 1;
    this.log = opts.logger;
    this.maxElems = Math.floor(opts.maxChunkBytes / 4);
    this.maxMessageBytes = RING_HEADER_BYTES + this.maxElems * 4;
    this.ordered = opts.ordered;
    this.maxEarlyBytes = opts.maxEarlyBytes;
    this.key = newClientKey();
    this.helloText = helloText(hello);
    this.pin = opts.pin;
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const onread = {
      buffer: () => this.nextReadBuffer(),
      callback: (n: number, buf: Uint8Array) => this.onRead(n, buf),
    };
    this.sock =
      url.protocol === 'wss:'
        ? // rejectUnauthorized: false because no CA signs a ring certificate; the pin check in open() decides.
          // tls.connect documents `onread` (as net.Socket's); @types/node's ConnectionOptions lacks it.
          tls
            .connect({
              host,
              port: Number(url.port || 443),
              minVersion: 'TLSv1.3',
              rejectUnauthorized: false,
              onread,
              ...(net.isIP(host) === 0 ? { servername: host } : {}),
            } as tls.ConnectionOptions & { onread: net.OnReadOpts })
            .setNoDelay(true)
        : net.connect({ host, port: Number(url.port || 80), noDelay: true, onread });
  }

  /** Null when the listener's certificate is the pinned one, else why not. */
  private checkPin(sock: tls.TLSSocket): string | null {
    const raw = sock.getPeerCertificate().raw as Buffer | undefined;
    if (raw === undefined || raw.length === 0) return 'the listener presented no certificate';
    const got = certificateFingerprint(raw);
    const want = this.pin ?? '';
    if (got.length === want.length && timingSafeEqual(Buffer.from(got), Buffer.from(want))) return null;
    return (
      `the listener's certificate (sha256 ${got.slice(0, 16)}...) is not the one the coordinator announced ` +
      `(sha256 ${want.slice(0, 16)}...)`
    );
  }

  /** @internal resolves on the welcome; rejects with the reason otherwise (ECONNREFUSED: code kept). */
  open(): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.opened = { resolve, reject };
      if (this.sock instanceof tls.TLSSocket) {
        const sock = this.sock;
        sock.once('secureConnect', () => {
          const mismatch = this.checkPin(sock);
          if (mismatch !== null) return this.fail('E_AUTH', `${this.url.host}: ${mismatch}`, 0);
          sock.write(upgradeRequest(this.url, this.key));
        });
      } else {
        this.sock.once('connect', () => {
          this.sock.write(upgradeRequest(this.url, this.key));
        });
      }
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
    if (
      !isValidTag(tag) ||
      !Number.isSafeInteger(count) ||
      count < 0 ||
      (into instanceof Float32Array && into.length !== count)
    ) {
      return Promise.reject(new WolfpackError('E_USAGE', `recv: bad tag ${tag}, count ${count} or destination`));
    }
    if (this.pending.has(tag) || this.cur?.recv?.tag === tag) {
      return Promise.reject(new WolfpackError('E_USAGE', `recv: tag ${formatTag(tag)} already awaited`));
    }
    return new Promise<void>((resolve, reject) => {
      const p: PendingRecv = { tag, count, into, resolve, reject };
      const parked = this.parked.get(tag);
      if (parked !== undefined) {
        if (this.ordered && this.parked.keys().next().value !== tag) {
          this.pending.set(tag, p);
          this.fail(
            'E_PROTOCOL',
            `message ${formatTag(this.parked.keys().next().value as number)} ` +
              `arrived before the expected message ${formatTag(tag)}`,
          );
          return;
        }
        this.parked.delete(tag);
        this.parkedBytes -= parked.count * 4;
        if (parked.count !== count) {
          this.pending.set(tag, p);
          this.fail('E_PROTOCOL', `message ${formatTag(tag)} has ${parked.count} elements, expected ${count}`);
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
            this.fail('E_PROTOCOL', `message ${formatTag(tag)} has ${cur.count} elements, expected ${count}`);
            return;
          }
          this.attach(cur, p);
          return;
        }
        if (this.ordered) {
          this.pending.set(tag, p);
          this.fail('E_PROTOCOL', `message ${formatTag(cur.tag)} arrived while message ${formatTag(tag)} was expected`);
          return;
        }
      }
      if (this.ordered && this.parked.size > 0) {
        this.pending.set(tag, p);
        this.fail(
          'E_PROTOCOL',
          `message ${formatTag(this.parked.keys().next().value as number)} ` +
            `arrived while message ${formatTag(tag)} was expected`,
        );
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
    if (
      this.frameState === FrameState.Payload &&
      this.frameOp < 8 &&
      this.msgOp === 2 &&
      cur !== null &&
      this.msgPos >= RING_HEADER_BYTES
    ) {
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
      if (this.http.length > UPGRADE_RESPONSE_MAX_BYTES) this.fail('E_PROTOCOL', 'handshake response too large', 1002);
      return;
    }
    const head = this.http.subarray(0, end).toString('latin1');
    const rest = this.http.subarray(end + 4);
    this.http = Buffer.alloc(0);
    const refusal = checkUpgradeResponse(head, this.key, this.url.host);
    if (refusal !== null) {
      this.fail(refusal.kind === 'refused' ? 'E_WORKER' : 'E_PROTOCOL', refusal.message, refusal.upgraded ? 1002 : 0);
      if (!refusal.upgraded) this.sock.destroy();
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
      if (this.frameState === FrameState.Header) {
        const take = Math.min(this.fhNeed - this.fhHave, end - i);
        buf.copy(this.fh, this.fhHave, i, i + take);
        this.fhHave += take;
        i += take;
        if (this.fhHave < this.fhNeed) return;
        if (this.fhNeed === 2) {
          const len7 = this.fh[1]! & 0x7f;
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
    const b0 = this.fh[0]!;
    const b1 = this.fh[1]!;
    const fin = (b0 & 0x80) !== 0;
    const op = b0 & 0x0f;
    const len7 = b1 & 0x7f;
    let len = len7;
    if (len7 === 126) len = this.fh.readUInt16BE(2);
    else if (len7 === 127) {
      const hi = this.fh.readUInt32BE(2);
      // a length past 2^53 cannot be a float32 payload this side accepts
      if (hi >= 2 ** 21) return this.fail('E_PROTOCOL', 'frame length out of range', 1009);
      len = hi * 2 ** 32 + this.fh.readUInt32BE(6);
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
      const limit =
        this.msgOp === 1
          ? RING_HELLO_MAX_BYTES
          : this.cur !== null
            ? RING_HEADER_BYTES + this.cur.bytes
            : this.maxMessageBytes;
      if (this.msgPos + len > limit) {
        const what =
          this.cur !== null ? `the ${this.cur.count} elements its header announces` : `the limit of ${limit} bytes`;
        return this.fail('E_PROTOCOL', `message of at least ${this.msgPos + len} bytes exceeds ${what}`, 1009);
      }
    }
    this.frameOp = op;
    this.frameFin = fin;
    this.frameLeft = len;
    this.frameState = FrameState.Payload;
    if (len === 0) this.endFrame();
  }

  private endFrame(): void {
    this.frameState = FrameState.Header;
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
      this.fail(
        'E_PROTOCOL',
        cur === null
          ? `data message of ${this.msgPos} bytes is shorter than the ${RING_HEADER_BYTES}-byte header`
          : `payload of ${got} bytes does not hold the ${cur.count} float32 elements the header announces`,
      );
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
    const header = decodeDataHeader(this.hdr);
    if (typeof header === 'string') return this.fail('E_PROTOCOL', header);
    const { tag, count } = header;
    if (count > this.maxElems)
      return this.fail('E_PROTOCOL', `element count ${count} exceeds the limit of ${this.maxElems}`, 1009);
    const p = this.pending.get(tag);
    if (this.ordered && this.pending.size > 0 && this.pending.keys().next().value !== tag) {
      return this.fail(
        'E_PROTOCOL',
        `message ${formatTag(tag)} ` +
          `arrived while message ${formatTag(this.pending.keys().next().value as number)} was expected`,
      );
    }
    if (p !== undefined) {
      if (p.count !== count)
        return this.fail('E_PROTOCOL', `message ${formatTag(tag)} has ${count} elements, expected ${p.count}`);
      this.pending.delete(tag);
    } else if (this.parked.has(tag)) {
      return this.fail('E_PROTOCOL', `two messages with tag ${formatTag(tag)}`);
    }
    const bytes = count * 4;
    if (p !== undefined && p.into instanceof Float32Array) {
      this.cur = {
        tag,
        count,
        bytes,
        dest: new Uint8Array(p.into.buffer, p.into.byteOffset, bytes),
        scratch: null,
        recv: p,
      };
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
    if (!isWelcome(text)) {
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
      else if (code === RING_CLOSE_BAD_HELLO || code === RING_CLOSE_UNEXPECTED_PEER || code === 1002)
        ecode = 'E_PROTOCOL';
      const why = this.phase === Phase.Open ? 'closed the ring connection' : 'refused the ring connection';
      this.fail(
        ecode,
        `left neighbour (rank ${this.peerRank}) at ${this.url.host} ${why} ` +
          `(code ${code}${reason ? `, ${reason}` : ''})`,
        code === 1005 ? 1000 : code,
      );
    }
  }

  /** Send one masked frame (hello, pong, close): the client sends nothing else. */
  private sendFrame(op: number, payload: Buffer): void {
    if (this.sock.destroyed || !this.sock.writable) return;
    this.sock.write(clientFrame(op, payload));
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
    this.failure = new WolfpackError(code, `ring link from rank ${this.peerRank}: ${reason}`, {
      peer: this.peerRank,
      ...(sysCode ? { sysCode } : {}),
    });
    if (code === 'E_PROTOCOL') this.log.warn({ peer: this.peerRank, reason }, 'ring connection closed: protocol error');
    else if (code === 'E_AUTH')
      this.log.warn({ peer: this.peerRank, reason }, 'ring connection refused: authentication');
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
