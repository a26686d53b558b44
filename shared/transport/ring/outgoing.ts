// The sending half of a ring link: the server side (a `ws` WebSocket) of the connection the right
// neighbour opened. Server frames are unmasked, so the caller's bytes go to the socket without a copy:
// each message is the 16-byte header (frame.ts) as one fragment and the float32 payload as the next.
//
// Backpressure. send() hands at most maxInFlightBytes to the socket and queues further sends
// (references, no copies) until ws reports earlier ones written.
import { WebSocket } from 'ws';
import { isValidTag } from '../../allreduce/link.js';
import { WolfpackError, type ErrorCode } from '../../errors.js';
import type { Logger } from '../../log.js';
import { checkHost, closeReason, encodeDataHeader } from './frame.js';
import type { RingHello } from './hello.js';

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
  constructor(
    ws: WebSocket,
    hello: RingHello,
    opts: { maxChunkBytes: number; maxInFlightBytes: number; logger: Logger },
  ) {
    checkHost();
    this.ws = ws;
    this.hello = hello;
    this.log = opts.logger;
    this.maxElems = Math.floor(opts.maxChunkBytes / 4);
    this.maxInFlight = opts.maxInFlightBytes;
    ws.removeAllListeners('message');
    ws.on('message', () => this.fail('E_PROTOCOL', 'unexpected message from the right neighbour'));
    ws.on('close', (code: number, reason: Buffer) => {
      this.fail(
        'E_WORKER',
        `right neighbour (rank ${hello.rank}) closed the ring connection ` +
          `(code ${code}${reason.length ? `, ${reason.toString()}` : ''})`,
        false,
      );
    });
  }

  /** @internal ws errors on this socket (installed by the listener). */
  onSocketError(err: Error & { code?: string }): void {
    const proto = typeof err.code === 'string' && err.code.startsWith('WS_ERR_');
    this.fail(
      proto ? 'E_PROTOCOL' : 'E_WORKER',
      `ring connection to rank ${this.hello.rank} failed: ${err.message}`,
      false,
    );
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
      return Promise.reject(
        new WolfpackError('E_USAGE', `send: ${data.length} elements exceed the chunk limit of ${this.maxElems}`),
      );
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
    const hdr = encodeDataHeader(tag, data.length);
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
      const q = this.queue[this.queueHead]!;
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
    for (let i = this.queueHead; i < this.queue.length; i++) this.queue[i]!.reject(err);
    this.queue.length = 0;
    this.queueHead = 0;
  }

  private fail(code: ErrorCode, reason: string, closeSocket = true): void {
    if (this.failure !== null) return;
    this.failure = new WolfpackError(code, `ring link to rank ${this.hello.rank}: ${reason}`, {
      peer: this.hello.rank,
    });
    if (code === 'E_PROTOCOL')
      this.log.warn({ peer: this.hello.rank, reason }, 'ring connection closed: protocol error');
    else this.log.info({ peer: this.hello.rank, reason }, 'ring connection lost');
    this.rejectQueued(this.failure);
    if (closeSocket && this.ws.readyState === WebSocket.OPEN) this.ws.close(1002, closeReason(reason));
  }
}
