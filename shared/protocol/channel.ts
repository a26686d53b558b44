// A message channel over one WebSocket: sends frames with backpressure, decodes and validates every
// incoming frame (a bad one closes the connection with the reason), and queues messages for
// `receive`, which is bounded by a timeout so no wait can hang forever.
import type WebSocket from 'ws';
import { WolfpackError } from '../errors.js';
import type { Logger } from '../log.js';
import { attentiveClock, attentiveTimeout } from '../time/attentive-clock.js';
import { decodeFrame, encodeFrame } from './codec.js';
import type { Message, MessageOf, MessageType } from './messages.js';

/** WebSocket close code for a protocol violation. */
export const CLOSE_PROTOCOL = 4002;

export interface Received<T extends Message = Message> {
  msg: T;
  payload: Uint8Array;
}

export class Channel {
  readonly ws: WebSocket;
  private readonly queue: Received[] = [];
  private readonly waiters: { resolve: (r: Received) => void; reject: (e: Error) => void; cancel?: () => void }[] = [];
  private failure: Error | undefined;
  private readonly label: string;
  private readonly logger?: Logger;
  /** Attentive time (shared/time/attentive-clock.ts) of the last frame received: the peer was heard then. */
  lastHeardAt = attentiveClock.now();
  /** Called for every message as it arrives, before it is queued (return true to consume it). */
  onMessage?: (r: Received) => boolean;

  constructor(ws: WebSocket, label: string, logger?: Logger, maxPayload?: number) {
    this.ws = ws;
    this.label = label;
    this.logger = logger;
    ws.binaryType = 'nodebuffer';
    ws.on('message', (data: Buffer, isBinary: boolean) => {
      this.lastHeardAt = attentiveClock.now();
      let r: Received;
      try {
        if (!isBinary) throw new WolfpackError('E_PROTOCOL', 'text frames are not part of the protocol');
        r = decodeFrame(data, maxPayload);
      } catch (e) {
        const reason = (e as Error).message;
        this.logger?.warn({ peer: this.label, reason }, 'bad frame: closing the connection');
        this.fail(e as Error);
        ws.close(CLOSE_PROTOCOL, reason.slice(0, 120));
        return;
      }
      if (this.onMessage?.(r)) return;
      const w = this.waiters.shift();
      if (w) {
        w.cancel?.();
        w.resolve(r);
      } else this.queue.push(r);
    });
    ws.on('close', (code: number, reason: Buffer) => {
      this.fail(
        new WolfpackError(
          'E_WORKER',
          `${this.label}: connection closed (${code}${reason.length ? ` ${reason.toString()}` : ''})`,
          { code },
        ),
      );
    });
    ws.on('error', (err: Error) => this.fail(new WolfpackError('E_WORKER', `${this.label}: ${err.message}`)));
  }

  get closed(): boolean {
    return this.failure !== undefined;
  }

  private fail(err: Error): void {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiters.splice(0)) {
      w.cancel?.();
      w.reject(err);
    }
  }

  /** Sends one message; resolves when the socket has taken the bytes (backpressure). */
  send(msg: Message, payload?: Uint8Array): Promise<void> {
    if (this.failure) return Promise.reject(this.failure);
    const frame = encodeFrame(msg, payload);
    return new Promise((resolve, reject) => {
      this.ws.send(frame, { binary: true }, (err) =>
        err ? reject(new WolfpackError('E_WORKER', `${this.label}: send failed: ${err.message}`)) : resolve(),
      );
    });
  }

  /**
   * The next message; rejects when the connection fails or after `timeoutMs` of attentive time (time this
   * process was running to hear it: its own stalls do not count against the peer). When `signal` aborts
   * first, the wait is withdrawn (rejecting with the signal's reason) and takes no message.
   */
  next(timeoutMs: number, signal?: AbortSignal): Promise<Received> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.failure) return Promise.reject(this.failure);
    return new Promise((resolve, reject) => {
      const w: (typeof this.waiters)[number] = { resolve, reject };
      const withdraw = (err: Error) => {
        w.cancel?.();
        const i = this.waiters.indexOf(w);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(err);
      };
      const cancels: (() => void)[] = [];
      if (Number.isFinite(timeoutMs)) {
        cancels.push(
          attentiveTimeout(
            () => withdraw(new WolfpackError('E_WORKER', `${this.label}: no message within ${timeoutMs} ms`)),
            timeoutMs,
          ),
        );
      }
      if (signal) {
        const onAbort = () => withdraw(signal.reason as Error);
        signal.addEventListener('abort', onAbort, { once: true });
        cancels.push(() => signal.removeEventListener('abort', onAbort));
      }
      w.cancel = () => {
        for (const c of cancels) c();
      };
      this.waiters.push(w);
    });
  }

  /** The next message, which must be of `type` (a 'failure' report or any other type is an error). */
  async expect<T extends MessageType>(type: T, timeoutMs: number): Promise<Received<MessageOf<T>>> {
    const r = await this.next(timeoutMs);
    if (r.msg.type === type) return r as Received<MessageOf<T>>;
    if (r.msg.type === 'failure') throw new WolfpackError('E_WORKER', `${this.label} failed: ${r.msg.message}`);
    throw new WolfpackError('E_PROTOCOL', `${this.label}: expected ${type}, got ${r.msg.type}`);
  }

  close(code = 1000, reason = ''): void {
    this.fail(new WolfpackError('E_WORKER', `${this.label}: closed locally`));
    try {
      this.ws.close(code, reason);
    } catch {
      /* already closed */
    }
  }
}
