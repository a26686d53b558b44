// The coordinator's WebSocket endpoint: accepts worker connections, reads each one's hello, and
// hands out the first N as members. Without a shared secret it listens on loopback only.
import { WebSocketServer, type WebSocket } from 'ws';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { Channel } from '../shared/protocol/channel.js';
import type { MessageOf } from '../shared/protocol/messages.js';

/** Largest frame the coordinator accepts from a worker (a state part is 16 MiB). */
export const COORDINATOR_MAX_PAYLOAD = 64 * 1024 * 1024;

export interface Member {
  channel: Channel;
  hello: MessageOf<'hello'>;
  address: string;
}

export class CoordinatorServer {
  readonly wss: WebSocketServer;
  readonly port: number;
  readonly host: string;
  private readonly arrivals: Member[] = [];
  private readonly waiters: (() => void)[] = [];
  private readonly logger: Logger;

  private constructor(wss: WebSocketServer, host: string, logger: Logger) {
    this.wss = wss;
    this.host = host;
    this.port = (wss.address() as { port: number }).port;
    this.logger = logger;
    wss.on('connection', (ws: WebSocket, req) => this.accept(ws, req.socket.remoteAddress ?? '?'));
  }

  static listen(host: string, port: number, logger: Logger): Promise<CoordinatorServer> {
    return new Promise((resolve, reject) => {
      const wss = new WebSocketServer({ host, port, maxPayload: COORDINATOR_MAX_PAYLOAD, perMessageDeflate: false });
      wss.once('listening', () => resolve(new CoordinatorServer(wss, host, logger)));
      wss.once('error', (e) => reject(new WolfpackError('E_IO', `cannot listen on ${host}:${port}: ${e.message}`)));
    });
  }

  private accept(ws: WebSocket, address: string): void {
    const ch = new Channel(ws, `worker@${address}`, this.logger, COORDINATOR_MAX_PAYLOAD);
    ch.expect('hello', 10_000).then(({ msg }) => {
      this.logger.info({ address, host: msg.host, backend: msg.backend, pid: msg.pid }, 'worker connected');
      this.arrivals.push({ channel: ch, hello: msg, address });
      for (const w of this.waiters.splice(0)) w();
    }, (e: Error) => {
      this.logger.warn({ address, reason: e.message }, 'connection refused: no valid hello');
      ch.close(4002, 'expected hello');
    });
  }

  /** The first `n` workers to say hello, in arrival order. */
  async members(n: number, timeoutMs: number): Promise<Member[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.arrivals.filter((m) => !m.channel.closed).length < n) {
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WolfpackError('E_WORKER', `only ${this.arrivals.filter((m) => !m.channel.closed).length} of ${n} workers joined within ${timeoutMs} ms`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
    return this.arrivals.filter((m) => !m.channel.closed).slice(0, n);
  }

  close(): Promise<void> {
    for (const c of this.wss.clients) c.terminate();
    return new Promise((resolve) => this.wss.close(() => resolve()));
  }
}
