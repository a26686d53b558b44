// A worker process: picks its backend, opens its ring listener (TLS when the coordinator is wss://),
// connects to the coordinator (./connect.ts), authenticates, says hello, and once admitted follows the
// coordinator's orders (./session.ts) until told to shut down, stopped, or cut off. A heartbeat thread
// tells the coordinator the process is alive. The state a joining worker trains from comes from a peer
// (or, for the first rank 0, from the coordinator), never from disk.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { selectBackend, type BackendChoice } from '../shared/backend/select.js';
import type { Logger } from '../shared/log.js';
import { generateRingCertificate, listenRing, type RingListener } from '../shared/transport/ring/index.js';
import { checkBind } from '../shared/auth/bind-policy.js';
import type { SecurityFlags, WorkerSecurity } from '../shared/auth/config.js';
import { authenticateToCoordinator } from '../shared/auth/handshake.js';
import { RingHelloVerifier } from '../shared/auth/ring-auth.js';
import type { WorkerState } from '../shared/health/state-file.js';
import { connectWithRetry } from './connect.js';
import { Heartbeat } from './heartbeat.js';
import { WorkerSession } from './session.js';

export interface WorkerOptions {
  connect: string;
  backend: BackendChoice;
  /** Address to bind the ring listener to (default 127.0.0.1). */
  ringBind?: string;
  /** Address peers use to reach this worker's ring port (default: ringBind, or 127.0.0.1). */
  advertise?: string;
  /** Give up on any single wait after this long (ms). */
  timeoutMs?: number;
  /** Which GPU adapter (webgpu) this worker uses, on a host with several. */
  gpuIndex?: number;
  /**
   * Where a webgpu replica runs Momentum: 'gpu' (one kernel over the flat buffer; fastest) or 'host'
   * (the same JS loop as every other backend, bit for bit: for rings that mix backends).
   */
  webgpuOptimizer?: 'gpu' | 'host';
  /** Shared token and TLS trust (shared/auth/config.ts); none: loopback ring only, no authentication. */
  security?: WorkerSecurity;
  /** The flags `security` came from, for the heartbeat thread to authenticate the same way. */
  securityFlags?: SecurityFlags;
  /** Heartbeat interval (ms); the coordinator's --timeout should be several of these. */
  heartbeatMs?: number;
  logger: Logger;
  /** Told of each change of the worker's state (shared/health/state-file.ts: --health-file); must not throw. */
  onState?: (state: WorkerState, detail?: string) => void;
  /**
   * Aborting it makes the worker leave its job at once: it closes its connection (the coordinator counts it
   * lost and goes on without it) and runWorker resolves. A worker is told to stop by its coordinator otherwise.
   */
  stop?: AbortSignal;
}

export async function runWorker(opts: WorkerOptions): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const onState = opts.onState ?? (() => undefined);
  const sel = await selectBackend(opts.backend, opts.logger, { gpuIndex: opts.gpuIndex });
  const ringBind = opts.ringBind ?? '127.0.0.1';
  const secret = opts.security?.secret;
  checkBind(ringBind, secret, 'worker --ring-bind');
  const ringGuard = secret ? new RingHelloVerifier(secret) : undefined;
  // A job whose coordinator speaks TLS gets TLS ring links too: the listener serves a certificate made now,
  // whose fingerprint the hello announces and the coordinator hands to the rank that connects here.
  const ringTls = opts.connect.startsWith('wss:') ? generateRingCertificate() : undefined;
  const listener: RingListener = await listenRing({
    host: ringBind,
    port: 0,
    logger: opts.logger,
    ...(ringGuard ? { verifyHello: ringGuard.verify } : {}),
    ...(ringTls ? { tls: ringTls } : {}),
    ...(opts.security?.handshakeTimeoutMs !== undefined ? { helloTimeoutMs: opts.security.handshakeTimeoutMs } : {}),
  });
  let log = opts.logger.child({ component: 'worker' });
  const memberId = randomBytes(16).toString('hex');
  const heartbeat = new Heartbeat(
    { url: opts.connect, memberId, intervalMs: opts.heartbeatMs ?? 1000, timeoutMs, flags: opts.securityFlags ?? {} },
    log,
  );
  onState('connecting', opts.connect);
  const ch = await connectWithRetry(opts.connect, timeoutMs, log, opts.security?.ca).catch(async (e: unknown) => {
    onState('failed', (e as Error).message);
    await Promise.all([listener.close(), heartbeat.stop()]);
    throw e;
  });
  onState('connected', opts.connect);
  // the moment the coordinator's connection drops, not when the worker gets round to noticing it
  ch.ws.once('close', () => {
    if (!opts.stop?.aborted) onState('lost', `connection to ${opts.connect} closed`);
  });
  const leave = () => {
    log.warn({ reason: String(opts.stop?.reason) }, 'stopping: leaving the job');
    ch.close(1001, 'worker stopping');
  };
  if (opts.stop?.aborted) leave();
  else opts.stop?.addEventListener('abort', leave, { once: true });
  const w = new WorkerSession(ch, listener, log, timeoutMs, secret, ringGuard);
  w.webgpuOptimizer = opts.webgpuOptimizer ?? 'gpu';
  try {
    await Promise.all([authenticateToCoordinator(ch, secret, opts.connect, timeoutMs), heartbeat.start()]);
    await ch.send({
      type: 'hello',
      host: hostname(),
      ringHost: opts.advertise ?? (ringBind === '0.0.0.0' ? '127.0.0.1' : ringBind),
      ringPort: listener.port,
      backend: sel.backend,
      pid: process.pid,
      memberId,
      ...(listener.fingerprint !== undefined ? { ringCert: listener.fingerprint } : {}),
    });
    const { msg: welcome } = await ch.expect('welcome', timeoutMs);
    w.config = welcome.config;
    log = log.child({ memberId: memberId.slice(0, 8) });
    w.log = log;
    w.sessionLog = log;
    log.info(
      {
        backend: sel.backend,
        job: welcome.config.jobId,
        ring: listener.fingerprint !== undefined ? 'wss (TLS, pinned certificate)' : 'ws',
      },
      'admitted',
    );
    onState('admitted', welcome.config.jobId);
    w.onRing = (rank) => onState('training', `rank ${rank}`);
    await w.serve();
    onState('done');
  } catch (e) {
    if (opts.stop?.aborted) {
      onState('done', `stopped (${String(opts.stop.reason)})`);
      log.info('stopped');
      return;
    }
    onState(ch.closed ? 'lost' : 'failed', (e as Error).message);
    log.error({ err: (e as Error).message }, 'worker failed');
    if (!ch.closed)
      await ch.send({ type: 'failure', rank: w.rank, message: (e as Error).message }).catch(() => undefined);
    throw e;
  } finally {
    opts.stop?.removeEventListener('abort', leave);
    await heartbeat.stop();
    w.dispose();
    await listener.close().catch(() => undefined);
    ch.close();
  }
}
