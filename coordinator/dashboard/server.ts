// The coordinator's read-only dashboard: a small HTTP(S) server with one page (./static/index.html and
// ./static/dashboard.js: plain HTML, SVG drawn by the page's script, nothing from another origin) and
// one Server-Sent Events stream, /events, that pushes the run's state as it changes (./state.ts): a
// snapshot on connect, then every step, epoch, ring and event. /state answers the snapshot as JSON once,
// for scripts.
//
// Who may look, like the coordinator (shared/auth/bind-policy.ts): without a shared token it listens on
// loopback only and answers only requests whose Host is a loopback name (so a web page elsewhere cannot
// read it through DNS rebinding); with a token it may listen anywhere and every request must show the
// token: `?token=TOKEN` once (answered with a session cookie and a redirect that drops the token from the
// address bar), the cookie, or `Authorization: Bearer TOKEN`. With the coordinator's TLS certificate it
// serves https://. A connection must complete a request that passes those checks within the handshake
// deadline from TCP accept, under shared/transport/admission.ts's caps; a refused request closes its
// connection.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { checkBind, isLoopbackHost } from '../../shared/auth/bind-policy.js';
import { coordinatorSecurity, type CoordinatorSecurity } from '../../shared/auth/config.js';
import type { SharedSecret } from '../../shared/auth/secret.js';
import { WolfpackError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { packageRoot } from '../../shared/paths.js';
import { AdmissionGuard, MAX_HEADER_BYTES, type AdmissionLimits } from '../../shared/transport/admission.js';
import type { JobEvents } from './events.js';
import { DashboardState, type JobSummary, type Update } from './state.js';

/** Event streams served at once (default); more are answered 503. */
export const MAX_DASHBOARD_CLIENTS = 32;
/** A stream whose unsent data passes this many bytes (a client that stopped reading) is dropped. */
export const MAX_CLIENT_BACKLOG_BYTES = 4 * 1024 * 1024;
/** A comment line is sent this often on an idle stream, so proxies keep it open, ms. */
export const KEEPALIVE_MS = 15_000;
/** The session cookie set after `?token=`. */
export const SESSION_COOKIE = 'wolfpack_dashboard';

const STATIC_DIR = join(packageRoot, 'coordinator', 'dashboard', 'static');

// The page's own script and style only; it may open connections to this origin only.
const SECURITY_HEADERS: Record<string, string> = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; connect-src 'self'; " +
    "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

export interface DashboardOptions {
  /** Interface to listen on: the coordinator's --host. */
  host: string;
  /** 0 = an ephemeral port. */
  port: number;
  /** Token and TLS. Default: from the environment, as the coordinator reads them. */
  security?: CoordinatorSecurity;
  logger: Logger;
  /** The run's settings, for the page's header. */
  job?: JobSummary;
  /** Default: a new DashboardState, closed with the server. */
  state?: DashboardState;
  /** Default MAX_DASHBOARD_CLIENTS. */
  maxClients?: number;
  /**
   * Limits on connections that have not completed an allowed request (default: security.handshakeTimeoutMs and
   * admission.ts's constants).
   */
  admission?: AdmissionLimits;
}

interface Asset {
  type: string;
  body: Buffer;
}

async function loadAssets(): Promise<Map<string, Asset>> {
  const files: [string, string, string][] = [
    ['/', 'index.html', 'text/html; charset=utf-8'],
    ['/dashboard.js', 'dashboard.js', 'text/javascript; charset=utf-8'],
  ];
  const out = new Map<string, Asset>();
  for (const [route, file, type] of files) {
    const path = join(STATIC_DIR, file);
    try {
      out.set(route, { type, body: await readFile(path) });
    } catch (e) {
      throw new WolfpackError(
        'E_IO',
        `dashboard: cannot read its page ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
      );
    }
  }
  return out;
}

/** `host` as it goes in a URL: a wildcard address becomes this machine's name, IPv6 gets brackets. */
function urlHost(host: string): string {
  if (host === '0.0.0.0' || host === '::' || host === '') return hostname();
  return host.includes(':') ? `[${host}]` : host;
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const i = part.indexOf('=');
    if (i > 0) out.set(part.slice(0, i).trim(), part.slice(i + 1).trim());
  }
  return out;
}

function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

export class DashboardServer {
  readonly url: string;
  readonly port: number;
  readonly state: DashboardState;
  private readonly http: HttpServer | HttpsServer;
  private readonly logger: Logger;
  private readonly secret: SharedSecret | undefined;
  private readonly assets: Map<string, Asset>;
  private readonly maxClients: number;
  private readonly streams = new Set<ServerResponse>();
  private readonly guard: AdmissionGuard;
  /** Per server start: the value a token check is made against, and the session cookie's value. */
  private readonly nonce = randomBytes(16).toString('hex');
  private readonly session: string | undefined;

  private constructor(
    http: HttpServer | HttpsServer,
    guard: AdmissionGuard,
    scheme: 'http' | 'https',
    host: string,
    opts: DashboardOptions,
    secret: SharedSecret | undefined,
    assets: Map<string, Asset>,
    state: DashboardState,
  ) {
    this.http = http;
    this.guard = guard;
    this.port = (http.address() as AddressInfo).port;
    this.url = `${scheme}://${urlHost(host)}:${this.port}/`;
    this.logger = opts.logger;
    this.secret = secret;
    this.assets = assets;
    this.state = state;
    this.maxClients = opts.maxClients ?? MAX_DASHBOARD_CLIENTS;
    this.session = secret?.hmac('wolfpack-dashboard-session', this.nonce).toString('hex');
    http.on('request', (req: IncomingMessage, res: ServerResponse) => this.handle(req, res));
  }

  /**
   * Starts the dashboard on host:port. E_USAGE for a non-loopback host without a shared token (as the
   * coordinator), E_IO when the port cannot be bound.
   */
  static async start(opts: DashboardOptions): Promise<DashboardServer> {
    const security = opts.security ?? coordinatorSecurity({}, process.env);
    checkBind(opts.host, security.secret, 'dashboard (--host)');
    const assets = await loadAssets();
    const tls = security.tls;
    const http = tls
      ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2', maxHeaderSize: MAX_HEADER_BYTES })
      : createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES });
    http.headersTimeout = 10_000;
    const guard = new AdmissionGuard({
      name: 'dashboard',
      proof: 'allowed request',
      logger: opts.logger,
      ...(security.handshakeTimeoutMs !== undefined ? { deadlineMs: security.handshakeTimeoutMs } : {}),
      ...opts.admission,
    });
    guard.watch(http, { upgrades: false });
    await new Promise<void>((resolve, reject) => {
      http.once('error', (e: Error) =>
        reject(new WolfpackError('E_IO', `dashboard: cannot listen on ${opts.host}:${opts.port}: ${e.message}`)),
      );
      http.listen(opts.port, opts.host, () => resolve());
    });
    http.on('error', (e: Error) => opts.logger.error({ err: e.message }, 'dashboard server error'));
    const state = opts.state ?? new DashboardState(opts.job);
    const server = new DashboardServer(
      http,
      guard,
      tls ? 'https' : 'http',
      opts.host,
      opts,
      security.secret,
      assets,
      state,
    );
    opts.logger.info(
      { url: server.url, ...(security.secret ? { token: `required: open ${server.url}?token=TOKEN once` } : {}) },
      `dashboard: ${server.url}`,
    );
    return server;
  }

  /** The sink to give runJob (JobOptions.events). */
  get events(): JobEvents {
    return this.state;
  }

  /** Streams open now. */
  get clients(): number {
    return this.streams.size;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard');
    } catch {
      this.refuse(req, res, 'bad request URL');
      this.reply(res, 400, 'bad request\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      this.refuse(req, res, `method ${req.method ?? '?'}`);
      res.setHeader('allow', 'GET, HEAD');
      this.reply(res, 405, 'the dashboard is read-only\n');
      return;
    }
    if (!this.allowed(req, res, url)) return;
    this.guard.admit(req.socket);
    if (url.pathname === '/events') {
      this.stream(req, res);
      return;
    }
    if (url.pathname === '/state') {
      this.reply(
        res,
        200,
        JSON.stringify(this.state.snapshot()),
        'application/json; charset=utf-8',
        req.method === 'HEAD',
      );
      return;
    }
    if (url.pathname === '/favicon.ico') {
      this.reply(res, 204, '');
      return;
    }
    const asset = this.assets.get(url.pathname === '/index.html' ? '/' : url.pathname);
    if (!asset) {
      this.reply(res, 404, 'not found\n');
      return;
    }
    this.reply(res, 200, asset.body, asset.type, req.method === 'HEAD');
  }

  /** Checks Host (no token) or the token (with one); answers the request itself when it is refused. */
  private allowed(req: IncomingMessage, res: ServerResponse, url: URL): boolean {
    if (!this.secret) {
      let host = '';
      try {
        host = new URL(`http://${req.headers.host ?? ''}`).hostname;
      } catch {
        /* refused below */
      }
      if (isLoopbackHost(host)) return true;
      this.refuse(req, res, `Host '${req.headers.host ?? ''}' is not a loopback name`);
      this.reply(
        res,
        403,
        `dashboard: Host '${req.headers.host ?? ''}' refused: ` +
          'without a shared token the dashboard answers loopback names only\n',
      );
      return false;
    }
    const token = url.searchParams.get('token');
    if (token !== null && this.tokenMatches(token)) {
      // Swap the token in the address bar for a session cookie.
      const rest = new URLSearchParams(url.searchParams);
      rest.delete('token');
      res.statusCode = 303;
      res.setHeader(
        'set-cookie',
        `${SESSION_COOKIE}=${this.session}; HttpOnly; SameSite=Strict; ` +
          `Path=/${this.url.startsWith('https') ? '; Secure' : ''}`,
      );
      res.setHeader('location', url.pathname + (rest.size > 0 ? `?${rest.toString()}` : ''));
      res.end();
      this.guard.admit(req.socket);
      return false;
    }
    const auth = req.headers.authorization;
    if (auth?.startsWith('Bearer ') && this.tokenMatches(auth.slice('Bearer '.length).trim())) return true;
    const cookie = cookies(req).get(SESSION_COOKIE);
    if (cookie !== undefined && sameBytes(Buffer.from(cookie), Buffer.from(this.session!))) return true;
    this.logger.debug(
      { address: req.socket.remoteAddress, path: url.pathname },
      'dashboard: request without the token refused',
    );
    this.refuse(req, res, 'request without the token');
    this.reply(
      res,
      401,
      "this dashboard needs the job's shared token (--token-file or WOLFPACK_TOKEN): " +
        `open ${this.url}?token=TOKEN once\n`,
    );
    return false;
  }

  /**
   * A refused request on a connection that is not admitted yet: logged by the guard, and the connection closes after
   * the answer.
   */
  private refuse(req: IncomingMessage, res: ServerResponse, reason: string): void {
    if (this.guard.refused(req.socket, 'request', reason)) res.setHeader('connection', 'close');
  }

  private tokenMatches(token: string): boolean {
    const want = this.secret!.hmac('wolfpack-dashboard', this.nonce);
    const got = createHmac('sha256', Buffer.from(token, 'utf8'))
      .update(`wolfpack-dashboard|${this.nonce}`, 'utf8')
      .digest();
    return sameBytes(got, want);
  }

  private reply(
    res: ServerResponse,
    status: number,
    body: string | Buffer,
    type = 'text/plain; charset=utf-8',
    head = false,
  ): void {
    res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
    res.end(head ? undefined : body);
  }

  /** The Server-Sent Events stream: a snapshot, then every update. */
  private stream(req: IncomingMessage, res: ServerResponse): void {
    if (this.streams.size >= this.maxClients) {
      res.setHeader('retry-after', '5');
      this.reply(res, 503, `dashboard: ${this.maxClients} viewers already connected\n`);
      return;
    }
    res.writeHead(200, {
      ...SECURITY_HEADERS,
      'content-type': 'text/event-stream; charset=utf-8',
      connection: 'keep-alive',
      'x-accel-buffering': 'no',
    });
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    res.socket?.setNoDelay(true);
    this.streams.add(res);
    const send = (event: string, data: unknown): void => {
      if (res.writableLength > MAX_CLIENT_BACKLOG_BYTES) {
        this.logger.debug({ address: req.socket.remoteAddress }, 'dashboard: a viewer stopped reading; stream dropped');
        res.destroy();
        return;
      }
      res.write(`event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
    };
    res.write('retry: 2000\n\n');
    send('snapshot', this.state.snapshot());
    const unsubscribe = this.state.subscribe((u: Update) => send(u.type, u.data));
    const keepalive = setInterval(() => res.write(': keep-alive\n\n'), KEEPALIVE_MS);
    keepalive.unref();
    res.on('close', () => {
      clearInterval(keepalive);
      unsubscribe();
      this.streams.delete(res);
    });
  }

  /** The run ended: the page shows the best accuracy. */
  finish(result: { bestAccuracy: number; bestEpoch: number }): void {
    this.state.finish(result);
  }

  /** The run failed: the page shows why. */
  fail(e: Error): void {
    this.state.fail(e);
  }

  /** Ends every stream and stops listening. */
  async close(): Promise<void> {
    this.guard.close();
    this.state.close();
    for (const res of this.streams) res.end();
    await new Promise<void>((resolve) => {
      this.http.close(() => resolve());
      this.http.closeAllConnections();
    });
  }
}

/**
 * Runs `job` with the dashboard's events (when there is a dashboard), shows how the run ended on the page,
 * then closes the dashboard. The CLI's `train` and `coordinator` use it.
 */
export async function runWithDashboard<T extends { bestAccuracy: number; bestEpoch: number }>(
  dashboard: DashboardServer | undefined,
  job: (events: JobEvents | undefined) => Promise<T>,
): Promise<T> {
  if (!dashboard) return job(undefined);
  try {
    const result = await job(dashboard.events);
    dashboard.finish(result);
    return result;
  } catch (e) {
    dashboard.fail(e as Error);
    throw e;
  } finally {
    await dashboard.close();
  }
}
