// A Server-Sent Events client for tests: reads a stream with node:http, parses its frames (event, data,
// comments, retry) and lets a test wait, with a bound, for the next frame or for one that matches.
import { get, type ClientRequest, type IncomingMessage } from 'node:http';

export interface SseFrame {
  event: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  data: any;
}

export class SseReader {
  readonly frames: SseFrame[] = [];
  /** Raw text received, for framing checks. */
  raw = '';
  response!: IncomingMessage;
  private cursor = 0;
  private buffer = '';
  private readonly req: ClientRequest;
  private wake: (() => void) | undefined;
  private endedFlag = false;
  readonly ended: Promise<void>;
  readonly opened: Promise<IncomingMessage>;

  constructor(url: string, headers: Record<string, string> = {}) {
    let onEnd!: () => void;
    let onOpen!: (res: IncomingMessage) => void;
    let onError!: (e: Error) => void;
    this.ended = new Promise((resolve) => {
      onEnd = resolve;
    });
    this.opened = new Promise((resolve, reject) => {
      onOpen = resolve;
      onError = reject;
    });
    this.opened.catch(() => undefined); // a test that never awaits it still sees the failure through next()
    const end = () => {
      this.endedFlag = true;
      this.wake?.();
      onEnd();
    };
    this.req = get(url, { headers: { accept: 'text/event-stream', ...headers } }, (res) => {
      this.response = res;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => this.push(chunk));
      res.on('close', end);
      onOpen(res);
    });
    this.req.on('error', (e) => {
      end();
      onError(e);
    });
  }

  private push(chunk: string): void {
    this.raw += chunk;
    this.buffer += chunk;
    for (let i = this.buffer.indexOf('\n\n'); i >= 0; i = this.buffer.indexOf('\n\n')) {
      const block = this.buffer.slice(0, i);
      this.buffer = this.buffer.slice(i + 2);
      let event = 'message';
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
        if (field === 'event') event = value;
        else if (field === 'data') data.push(value);
      }
      if (data.length > 0) this.frames.push({ event, data: JSON.parse(data.join('\n')) });
    }
    this.wake?.();
  }

  /** The next frame not returned yet that matches `pred` (frames before it are passed over). */
  async next(pred: (f: SseFrame) => boolean = () => true, timeoutMs = 10_000): Promise<SseFrame> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.cursor < this.frames.length) {
        const f = this.frames[this.cursor++]!;
        if (pred(f)) return f;
      }
      if (this.endedFlag)
        throw new Error(`stream ended before the frame looked for; got: ${this.frames.map((f) => f.event).join(', ')}`);
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(
          `timed out after ${timeoutMs} ms; frames so far: ${this.frames.map((f) => f.event).join(', ')}`,
        );
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(t);
          this.wake = undefined;
          resolve();
        };
      });
    }
  }

  /** The next frame named `event`. */
  nextEvent(event: string, timeoutMs = 10_000): Promise<SseFrame> {
    return this.next((f) => f.event === event, timeoutMs);
  }

  close(): void {
    this.req.destroy();
  }
}

/** `p`, or a rejection with `what` after `ms` (the timer is cleared either way). */
export async function within<T>(p: Promise<T>, ms: number, what: () => string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(what())), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
