// TLS for the coordinator connection (wss://): the coordinator serves a certificate and key
// (--tls-cert/--tls-key), workers verify it against the system CAs or a CA file (--tls-ca). Files are read
// and checked up front so that a bad path or a key that does not fit the certificate is an E_USAGE at
// start-up, not a handshake failure later. Ring links get their own TLS identity (ring/certificate.ts).
import { readFileSync } from 'node:fs';
import {
  createServer as createHttpServer,
  type IncomingMessage,
  type Server as HttpServer,
  type ServerResponse,
} from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { resolve } from 'node:path';
import { createSecureContext } from 'node:tls';
import { WolfpackError } from '../errors.js';
import { MAX_HEADER_BYTES } from './admission.js';

/** A TLS handshake must finish within this long, ms. */
export const TLS_HANDSHAKE_TIMEOUT_MS = 10_000;

/** The coordinator's certificate chain and key (PEM). */
export interface TlsServerMaterial {
  cert: Buffer;
  key: Buffer;
  certPath: string;
  keyPath: string;
}

function readPem(path: string, what: string): Buffer {
  let b: Buffer;
  try {
    b = readFileSync(path);
  } catch (e) {
    throw new WolfpackError(
      'E_USAGE',
      `cannot read the ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`,
    );
  }
  if (!b.includes('-----BEGIN '))
    throw new WolfpackError('E_USAGE', `the ${what} ${path} is not PEM (no '-----BEGIN' line)`);
  return b;
}

/** Reads and checks the coordinator's certificate and key (E_USAGE naming the file and the problem). */
export function loadServerTls(certPath: string, keyPath: string): TlsServerMaterial {
  const cp = resolve(certPath);
  const kp = resolve(keyPath);
  const cert = readPem(cp, 'TLS certificate (--tls-cert)');
  const key = readPem(kp, 'TLS key (--tls-key)');
  try {
    createSecureContext({ cert, key });
  } catch (e) {
    throw new WolfpackError(
      'E_USAGE',
      `TLS certificate ${cp} and key ${kp} are unusable together: ${(e as Error).message}`,
    );
  }
  return { cert, key, certPath: cp, keyPath: kp };
}

/** Reads a CA bundle (PEM) that workers trust for the coordinator's certificate (--tls-ca). */
export function loadCa(path: string): Buffer {
  const p = resolve(path);
  const ca = readPem(p, 'TLS CA file (--tls-ca)');
  try {
    createSecureContext({ ca });
  } catch (e) {
    throw new WolfpackError('E_USAGE', `the TLS CA file ${p} is unusable: ${(e as Error).message}`);
  }
  return ca;
}

function upgradeOnly(_req: IncomingMessage, res: ServerResponse): void {
  res.writeHead(426, { 'content-type': 'text/plain', connection: 'close' });
  res.end('wolfpack coordinator: WebSocket only\n');
}

/**
 * The HTTP(S) server a WebSocketServer attaches to: HTTPS with `tls`, plain HTTP without. Plain requests
 * get 426; slow TLS handshakes and request heads are cut off, and a head over MAX_HEADER_BYTES is refused
 * (431). The coordinator's AdmissionGuard bounds each connection further, from TCP accept.
 */
export function createCoordinatorHttpServer(tls: TlsServerMaterial | undefined): HttpServer | HttpsServer {
  if (tls === undefined) {
    const s = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, upgradeOnly);
    s.headersTimeout = TLS_HANDSHAKE_TIMEOUT_MS;
    return s;
  }
  const s = createHttpsServer(
    {
      cert: tls.cert,
      key: tls.key,
      minVersion: 'TLSv1.2',
      handshakeTimeout: TLS_HANDSHAKE_TIMEOUT_MS,
      maxHeaderSize: MAX_HEADER_BYTES,
    },
    upgradeOnly,
  );
  s.headersTimeout = TLS_HANDSHAKE_TIMEOUT_MS;
  return s;
}
