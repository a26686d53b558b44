// The coordinator's WebSocket endpoint: accepts worker connections, authenticates each one with the shared
// token (mutual HMAC challenge-response, shared/auth/handshake.ts), reads its hello, and hands out the first
// N as members. Serves wss:// when given a certificate (shared/transport/tls.ts). Without a shared secret
// it listens on loopback only and says so (shared/auth/bind-policy.ts). A connection that fails its
// handshake or sends a bad frame is closed alone, with the reason logged; the server keeps serving. Until a
// connection has proved the token (without a token: said hello or beat), it is held under
// shared/transport/admission.ts's deadline from TCP accept, caps and byte limit, and its refusals are logged
// once per address.
import type { IncomingMessage, Server as HttpServer } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { WebSocketServer, type WebSocket } from 'ws';
import { checkBind } from '../shared/auth/bind-policy.js';
import { coordinatorSecurity, type CoordinatorSecurity } from '../shared/auth/config.js';
import { authenticateWorker, CLOSE_AUTH, HANDSHAKE_TIMEOUT_MS } from '../shared/auth/handshake.js';
import type { SharedSecret } from '../shared/auth/secret.js';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { Channel, CLOSE_PROTOCOL } from '../shared/protocol/channel.js';
import type { MessageOf } from '../shared/protocol/messages.js';
import { attentiveClock } from '../shared/time/attentive-clock.js';
import { AdmissionGuard, ADMISSION_GRACE_MS, type AdmissionLimits } from '../shared/transport/admission.js';
import { createCoordinatorHttpServer } from '../shared/transport/tls.js';

/** Largest frame the coordinator accepts from a worker (a state part is 16 MiB). */
export const COORDINATOR_MAX_PAYLOAD = 64 * 1024 * 1024;

/** A member's heartbeat as received here. */
export interface HeartbeatRecord {
  /** Wall-clock ms (Date.now()) of the last beat, for display. */
  last: number;
  /** Attentive time of the last beat (shared/time/attentive-clock.ts), for judging silence. */
  heard: number;
  closed: boolean;
}

export interface Member {
  channel: Channel;
  hello: MessageOf<'hello'>;
  address: string;
}

export interface CoordinatorListenOptions {
  /** Token and TLS. Default: from the environment (shared/auth/config.ts: WOLFPACK_TOKEN, WOLFPACK_TLS_CERT, ...). */
  security?: CoordinatorSecurity;
  /**
   * Time from TCP accept to proof of the token (without a token: to the hello), ms (default:
   * security.handshakeTimeoutMs, else HANDSHAKE_TIMEOUT_MS); a connection that misses it is closed (4401)
   * and destroyed. After the proof, the hello has HANDSHAKE_TIMEOUT_MS.
   */
  handshakeTimeoutMs?: number;
  /** Caps on unauthenticated connections (default: shared/transport/admission.ts's constants). */
  admission?: Omit<AdmissionLimits, 'deadlineMs'>;
}

export class CoordinatorServer {
  readonly wss: WebSocketServer;
  readonly port: number;
  readonly host: string;
  /** 'wss' with TLS, else 'ws'. */
  readonly scheme: 'ws' | 'wss';
  private readonly http: HttpServer | HttpsServer;
  private readonly secret: SharedSecret | undefined;
  private readonly handshakeTimeoutMs: number;
  private readonly arrivals: Member[] = [];
  private readonly waiters: (() => void)[] = [];
  /** Set by close(): the waits for workers end, so that no timer of theirs keeps a stopped process alive. */
  private closing = false;
  private readonly logger: Logger;
  private readonly guard: AdmissionGuard;

  private constructor(
    http: HttpServer | HttpsServer,
    wss: WebSocketServer,
    guard: AdmissionGuard,
    host: string,
    logger: Logger,
    security: CoordinatorSecurity,
  ) {
    this.http = http;
    this.wss = wss;
    this.guard = guard;
    this.host = host;
    this.port = (http.address() as AddressInfo).port;
    this.scheme = security.tls ? 'wss' : 'ws';
    this.secret = security.secret;
    this.handshakeTimeoutMs = guard.deadlineMs;
    this.logger = logger;
    wss.on('connection', (ws: WebSocket, req: IncomingMessage) => this.accept(ws, req));
  }

  /**
   * Listens on host:port. Refuses (E_USAGE) a non-loopback host without a shared secret; E_IO when the
   * port cannot be bound.
   */
  static async listen(
    host: string,
    port: number,
    logger: Logger,
    opts: CoordinatorListenOptions = {},
  ): Promise<CoordinatorServer> {
    const security = opts.security ?? coordinatorSecurity({}, process.env);
    checkBind(host, security.secret, 'coordinator --host');
    const http = createCoordinatorHttpServer(security.tls);
    const wss = new WebSocketServer({ server: http, maxPayload: COORDINATOR_MAX_PAYLOAD, perMessageDeflate: false });
    const guard = new AdmissionGuard({
      name: 'coordinator',
      proof: security.secret ? 'authentication' : 'hello',
      logger,
      ...opts.admission,
      deadlineMs: opts.handshakeTimeoutMs ?? security.handshakeTimeoutMs ?? HANDSHAKE_TIMEOUT_MS,
    });
    guard.watch(http);
    await new Promise<void>((resolve, reject) => {
      http.once('error', (e: Error) =>
        reject(new WolfpackError('E_IO', `cannot listen on ${host}:${port}: ${e.message}`)),
      );
      http.listen(port, host, () => resolve());
    });
    http.on('error', (e: Error) => logger.error({ err: e.message }, 'coordinator server error'));
    wss.on('error', (e: Error) => logger.error({ err: e.message }, 'coordinator server error'));
    const server = new CoordinatorServer(http, wss, guard, host, logger, security);
    const where = { host, port: server.port, scheme: server.scheme };
    if (security.secret) {
      logger.info(
        { ...where, token: security.secret.source },
        'workers must prove the shared token (mutual HMAC challenge-response)',
      );
    } else {
      logger.info(
        where,
        'no shared token (WOLFPACK_TOKEN or --token-file): listening on loopback only; ' +
          'workers on other hosts cannot join',
      );
    }
    if (security.tls) logger.info({ cert: security.tls.certPath }, 'TLS: workers connect with wss://');
    return server;
  }

  private accept(ws: WebSocket, req: IncomingMessage): void {
    const socket = req.socket;
    const address = socket.remoteAddress ?? '?';
    const peer = `worker@${address}:${socket.remotePort ?? '?'}`;
    // Silent until admitted: the guard logs refusals, once per address, so a flood of bad frames cannot flood the log.
    const chLog = this.logger.child({});
    chLog.level = 'silent';
    const ch = new Channel(ws, peer, chLog, COORDINATOR_MAX_PAYLOAD);
    this.guard.onExpire(socket, () => ch.close(CLOSE_AUTH, 'handshake timed out'));
    // The guard's deadline, counted from TCP accept, comes first; this one only backs it up.
    const deadline = Date.now() + this.handshakeTimeoutMs + ADMISSION_GRACE_MS;
    // Admitted once it has proved the token: a worker sends its hello only after its heartbeat thread has
    // connected, which takes seconds on a busy host. Without a token (loopback only), once it said hello or beat.
    let admitted = false;
    const admit = (): void => {
      if (!this.guard.admit(socket)) throw new WolfpackError('E_PROTOCOL', `${peer}: past the handshake deadline`);
      admitted = true;
      chLog.level = this.logger.level;
    };
    // After authentication a connection is either a worker's control channel (hello) or its
    // heartbeat channel (beat), which a thread of the worker keeps alive while the main thread computes.
    const handshake = async (): Promise<MessageOf<'hello'> | MessageOf<'beat'>> => {
      await authenticateWorker(ch, this.secret, peer, deadline);
      if (this.secret !== undefined) admit();
      const { msg } = await ch.next(admitted ? HANDSHAKE_TIMEOUT_MS : Math.max(1, deadline - Date.now()));
      if (msg.type !== 'hello' && msg.type !== 'beat')
        throw new WolfpackError('E_PROTOCOL', `${peer}: expected hello or beat, got ${msg.type}`);
      if (!admitted) admit();
      // Under TLS the ring links must be encrypted too: a worker that offers a plain ring listener would
      // send and receive gradients in the clear (it connected with wss://, so this one is from another build).
      if (msg.type === 'hello' && this.scheme === 'wss' && msg.ringCert === undefined) {
        throw new WolfpackError(
          'E_PROTOCOL',
          `${peer}: the coordinator serves TLS, but the worker's ring listener ${msg.ringHost}:${msg.ringPort} ` +
            'is plain ws:// (its hello has no ringCert)',
        );
      }
      return msg;
    };
    handshake().then(
      (msg) => {
        if (msg.type === 'beat') {
          this.trackBeats(msg.memberId, ch);
          return;
        }
        this.logger.info(
          {
            peer,
            host: msg.host,
            backend: msg.backend,
            pid: msg.pid,
            ring: `${msg.ringCert !== undefined ? 'wss' : 'ws'}://${msg.ringHost}:${msg.ringPort}`,
          },
          'worker connected',
        );
        this.arrivals.push({ channel: ch, hello: msg, address });
        for (const w of this.waiters.splice(0)) w();
      },
      (e: Error) => {
        const code = e instanceof WolfpackError ? e.code : 'E_PROTOCOL';
        const what = code === 'E_AUTH' ? 'authentication failed' : 'no valid handshake';
        // Before admission the guard counts it (nothing more when it cut the connection itself or the peer left).
        if (admitted) this.logger.warn({ peer, code, reason: e.message }, `connection refused: ${what}`);
        else this.guard.refused(socket, code === 'E_AUTH' ? 'authentication' : 'handshake', `${what}: ${e.message}`);
        if (!ch.closed) ch.close(code === 'E_AUTH' ? CLOSE_AUTH : CLOSE_PROTOCOL, e.message.slice(0, 120));
      },
    );
  }

  private readonly beats = new Map<string, HeartbeatRecord>();

  private trackBeats(memberId: string, ch: Channel): void {
    const rec: HeartbeatRecord = { last: Date.now(), heard: attentiveClock.now(), closed: false };
    this.beats.set(memberId, rec);
    ch.onMessage = (r) => {
      if (r.msg.type === 'beat') {
        rec.last = Date.now();
        rec.heard = attentiveClock.now();
      }
      return true;
    };
    ch.ws.once('close', () => {
      rec.closed = true;
    });
  }

  /** Heartbeat state of a member: when it last beat, and whether its heartbeat connection closed. */
  heartbeat(memberId: string): HeartbeatRecord | undefined {
    return this.beats.get(memberId);
  }

  /** Workers that said hello and were not taken yet, in arrival order (closed ones dropped). */
  takeArrivals(max = Infinity): Member[] {
    const open = this.arrivals.filter((m) => !m.channel.closed);
    const taken = open.slice(0, max);
    this.arrivals.splice(0, this.arrivals.length, ...open.slice(taken.length));
    return taken;
  }

  get waiting(): number {
    return this.arrivals.filter((m) => !m.channel.closed).length;
  }

  /** Resolves when a new worker arrives or after `ms`. */
  arrival(ms: number): Promise<void> {
    return new Promise<void>((resolve) => {
      const t = setTimeout(resolve, ms);
      this.waiters.push(() => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  /** The first `n` workers to say hello, in arrival order. */
  async members(n: number, timeoutMs: number): Promise<Member[]> {
    const deadline = Date.now() + timeoutMs;
    while (this.arrivals.filter((m) => !m.channel.closed).length < n) {
      if (this.closing) throw new WolfpackError('E_WORKER', 'the coordinator closed while it waited for workers');
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new WolfpackError(
          'E_WORKER',
          `only ${this.arrivals.filter((m) => !m.channel.closed).length} of ${n} workers joined within ${timeoutMs} ms`,
        );
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
    return this.arrivals.filter((m) => !m.channel.closed).slice(0, n);
  }

  close(): Promise<void> {
    this.closing = true;
    for (const w of this.waiters.splice(0)) w();
    this.guard.close();
    for (const c of this.wss.clients) c.terminate();
    return new Promise((resolve) => {
      this.wss.close(() => {
        this.http.close(() => resolve());
        this.http.closeAllConnections();
      });
    });
  }
}
