// The listening side of the ring: every rank runs a WebSocket server on its ring port, and its right
// neighbour connects to it. Data flows one way on each connection, server -> client: a rank sends to its
// right neighbour on the server side of the connection that neighbour opened (outgoing.ts) and receives
// from its left neighbour on its own client connection (incoming.ts).
//
// Admission. The connecting rank's first frame is its hello (hello.ts), which the server validates, passes
// to `verifyHello` -- THE PLACE FOR THE AUTH LAYER: throw WolfpackError('E_AUTH') to refuse -- and matches
// against accept()'s expectation (the rank of the right neighbour, the job id). Only then does it answer
// the welcome; a refused client is closed with a code (4400 bad hello, 4401 auth, 4409 unexpected peer)
// and a reason. Until its hello has passed, a connection is held under shared/transport/admission.ts's
// deadline (helloTimeoutMs, counted from TCP accept), caps and byte limit; the request head is bounded by
// MAX_HEADER_BYTES, and refusals of such connections are logged once per address.
//
// TLS. With `tls` (certificate.ts: a key and a self-signed certificate made when the worker starts) the
// listener serves wss://: the connecting rank pins the certificate's fingerprint, which it got from the
// coordinator, so the listener proves itself before the hello is sent, and the link is encrypted.
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { WebSocket, WebSocketServer, type RawData } from 'ws';
import { WolfpackError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { AdmissionGuard, ADMISSION_DEADLINE_MS, MAX_HEADER_BYTES, type AdmissionLimits } from '../admission.js';
import type { RingCertificate } from './certificate.js';
import {
  checkHost,
  closeReason,
  defaultLogger,
  DEFAULT_MAX_CHUNK_BYTES,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
  positiveInt,
  RING_CLOSE_AUTH,
  RING_CLOSE_BAD_HELLO,
  RING_CLOSE_UNEXPECTED_PEER,
} from './frame.js';
import { parseHello, RING_HELLO_MAX_BYTES, WELCOME_TEXT, type RingHello } from './hello.js';
import { RingOutgoing } from './outgoing.js';

export interface RingListenOptions {
  /** Interface to bind (default 127.0.0.1). */
  host?: string;
  /** Port, 0 for an ephemeral one (default 0). */
  port?: number;
  /** Largest payload send() accepts, bytes (default DEFAULT_MAX_CHUNK_BYTES; keep equal to the peer's). */
  maxChunkBytes?: number;
  /** Bytes handed to the socket and not yet written (default DEFAULT_MAX_IN_FLIGHT_BYTES). */
  maxInFlightBytes?: number;
  /**
   * Time from TCP accept to a valid hello, ms (default ADMISSION_DEADLINE_MS); a connection that misses it is closed.
   */
  helloTimeoutMs?: number;
  /** Caps on connections that have not sent a valid hello yet (default: shared/transport/admission.ts's constants). */
  admission?: Omit<AdmissionLimits, 'deadlineMs'>;
  /** Auth hook: called with every well-formed hello; throw (E_AUTH) to refuse the connection. */
  verifyHello?: (hello: RingHello, req: IncomingMessage) => void | Promise<void>;
  /** Serve wss:// with this key and certificate (connecting ranks pin its fingerprint); plain ws:// without. */
  tls?: RingCertificate;
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
  /** The fingerprint connecting ranks must pin, when the listener serves TLS. */
  readonly fingerprint: string | undefined;
  /** The next ring connection whose hello matches `expect` (others are refused): the sending half. */
  accept(expect?: RingAcceptExpectation, timeoutMs?: number): Promise<RingOutgoing>;
  /** Stop listening; connections already accepted stay open. */
  close(): Promise<void>;
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
  const upgradeOnly = (_req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(426, { 'content-type': 'text/plain' });
    res.end('wolfpack ring port: WebSocket only\n');
  };
  // Both ends are wolfpack, so TLS 1.3 only. The guard's deadline (from TCP accept) bounds the TLS handshake too.
  const http: HttpServer | HttpsServer =
    opts.tls === undefined
      ? createServer({ maxHeaderSize: MAX_HEADER_BYTES }, upgradeOnly)
      : createHttpsServer(
          { key: opts.tls.keyPem, cert: opts.tls.certPem, minVersion: 'TLSv1.3', maxHeaderSize: MAX_HEADER_BYTES },
          upgradeOnly,
        );
  const wss = new WebSocketServer({
    server: http,
    perMessageDeflate: false,
    maxPayload: RING_HELLO_MAX_BYTES, // the client only sends its hello and control frames
    clientTracking: false,
  });
  const guard = new AdmissionGuard({
    name: 'ring',
    proof: 'valid ring hello',
    logger: log,
    ...opts.admission,
    deadlineMs: helloTimeoutMs,
  });
  guard.watch(http);
  await new Promise<void>((resolve, reject) => {
    http.once('error', (err: Error) =>
      reject(
        new WolfpackError(
          'E_WORKER',
          `cannot listen for ring connections on ${host}:${opts.port ?? 0}: ${err.message}`,
        ),
      ),
    );
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
    if (e.rank !== undefined && h.rank !== e.rank)
      return `rank ${h.rank} is not the expected right neighbour ${e.rank}`;
    return null;
  };
  const admit = (c: Candidate): RingOutgoing => {
    const out = new RingOutgoing(c.ws, c.hello, { maxChunkBytes, maxInFlightBytes, logger: log });
    c.outgoing = out;
    c.ws.send(WELCOME_TEXT);
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
    fingerprint: opts.tls?.fingerprint,
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
