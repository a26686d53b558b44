// The security settings of a coordinator and of a worker, from flags and the environment, in one place.
//
//   setting              flag            environment            who
//   shared token         --token-file    WOLFPACK_TOKEN_FILE    coordinator, worker (a file holding the token)
//                        -               WOLFPACK_TOKEN         coordinator, worker (the token itself)
//   TLS certificate      --tls-cert      WOLFPACK_TLS_CERT      coordinator (PEM chain; then URLs are wss://)
//   TLS key              --tls-key       WOLFPACK_TLS_KEY       coordinator (PEM)
//   TLS trust            --tls-ca        WOLFPACK_TLS_CA        worker (PEM CA bundle; default: system CAs)
//   handshake deadline   --handshake-timeout  WOLFPACK_HANDSHAKE_TIMEOUT  coordinator, worker, dashboard (seconds
//                        from TCP accept to proof; default ADMISSION_DEADLINE_MS, shared/transport/admission.ts)
//
// A flag wins over the environment; WOLFPACK_TOKEN_FILE wins over WOLFPACK_TOKEN. The environment form is
// also how single-node mode hands the settings to the worker processes it spawns (they inherit it).
import { resolve } from 'node:path';
import { WolfpackError } from '../errors.js';
import { loadCa, loadServerTls, type TlsServerMaterial } from '../transport/tls.js';
import { loadSecret, type SharedSecret } from './secret.js';

/** Security flags as given on a command line (paths). */
export interface SecurityFlags {
  tokenFile?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  /** Seconds, as given. */
  handshakeTimeout?: string;
}

export interface CoordinatorSecurity {
  /** Shared secret; without one the coordinator listens on loopback only. */
  secret?: SharedSecret;
  /** Certificate and key: the coordinator serves wss://. */
  tls?: TlsServerMaterial;
  /**
   * Time from TCP accept to proof on the coordinator's and the dashboard's ports, ms (default ADMISSION_DEADLINE_MS).
   */
  handshakeTimeoutMs?: number;
}

export interface WorkerSecurity {
  /** Shared secret; without one the ring listener stays on loopback. */
  secret?: SharedSecret;
  /** CA bundle the coordinator's certificate must chain to (wss:// only). */
  ca?: Buffer;
  /** Time from TCP accept to a valid ring hello on the ring port, ms (default ADMISSION_DEADLINE_MS). */
  handshakeTimeoutMs?: number;
}

function pick(flag: string | undefined, env: NodeJS.ProcessEnv, name: string): string | undefined {
  if (flag !== undefined) return flag;
  const v = env[name];
  return v === undefined || v === '' ? undefined : v;
}

function handshakeTimeoutMs(flags: SecurityFlags, env: NodeJS.ProcessEnv): number | undefined {
  const v = pick(flags.handshakeTimeout, env, 'WOLFPACK_HANDSHAKE_TIMEOUT');
  if (v === undefined) return undefined;
  const s = Number(v);
  if (!Number.isFinite(s) || s <= 0 || s > 3600) {
    throw new WolfpackError(
      'E_USAGE',
      `--handshake-timeout (or WOLFPACK_HANDSHAKE_TIMEOUT) must be a number of seconds in (0, 3600], ` +
        `got ${JSON.stringify(v)}`,
    );
  }
  return Math.round(s * 1000);
}

/** The coordinator's settings; E_USAGE for unreadable files, a certificate without its key, and so on. */
export function coordinatorSecurity(
  flags: SecurityFlags = {},
  env: NodeJS.ProcessEnv = process.env,
): CoordinatorSecurity {
  const secret = loadSecret({ tokenFile: flags.tokenFile, env });
  const cert = pick(flags.tlsCert, env, 'WOLFPACK_TLS_CERT');
  const key = pick(flags.tlsKey, env, 'WOLFPACK_TLS_KEY');
  if ((cert === undefined) !== (key === undefined)) {
    throw new WolfpackError(
      'E_USAGE',
      `TLS needs both a certificate and its key: got ` +
        `${cert === undefined ? 'a key (--tls-key) but no --tls-cert' : 'a certificate (--tls-cert) but no --tls-key'}`,
    );
  }
  const out: CoordinatorSecurity = {};
  if (secret) out.secret = secret;
  if (cert !== undefined && key !== undefined) out.tls = loadServerTls(cert, key);
  const deadline = handshakeTimeoutMs(flags, env);
  if (deadline !== undefined) out.handshakeTimeoutMs = deadline;
  return out;
}

/** A worker's settings; E_USAGE for unreadable files. */
export function workerSecurity(flags: SecurityFlags = {}, env: NodeJS.ProcessEnv = process.env): WorkerSecurity {
  const secret = loadSecret({ tokenFile: flags.tokenFile, env });
  const caPath = pick(flags.tlsCa, env, 'WOLFPACK_TLS_CA');
  const out: WorkerSecurity = {};
  if (secret) out.secret = secret;
  if (caPath !== undefined) out.ca = loadCa(caPath);
  const deadline = handshakeTimeoutMs(flags, env);
  if (deadline !== undefined) out.handshakeTimeoutMs = deadline;
  return out;
}

/**
 * The environment form of `flags` (absolute paths), for this process's own CoordinatorServer (which reads
 * the environment when given no settings) and for the worker processes it spawns. For local workers
 * under TLS, WOLFPACK_TLS_CA defaults to the certificate itself (right for a self-signed certificate).
 */
export function securityEnv(flags: SecurityFlags): Record<string, string> {
  const env: Record<string, string> = {};
  if (flags.tokenFile !== undefined) env.WOLFPACK_TOKEN_FILE = resolve(flags.tokenFile);
  if (flags.tlsCert !== undefined) env.WOLFPACK_TLS_CERT = resolve(flags.tlsCert);
  if (flags.tlsKey !== undefined) env.WOLFPACK_TLS_KEY = resolve(flags.tlsKey);
  const ca = flags.tlsCa ?? flags.tlsCert;
  if (ca !== undefined) env.WOLFPACK_TLS_CA = resolve(ca);
  if (flags.handshakeTimeout !== undefined) env.WOLFPACK_HANDSHAKE_TIMEOUT = flags.handshakeTimeout;
  return env;
}

/**
 * The URL local worker processes use to reach a coordinator on this host's loopback port `port`: wss:// when
 * it serves TLS (its certificate must then name 127.0.0.1: subjectAltName IP:127.0.0.1).
 */
export function localCoordinatorUrl(port: number, security: CoordinatorSecurity): string {
  return `${security.tls ? 'wss' : 'ws'}://127.0.0.1:${port}`;
}
