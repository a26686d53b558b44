// Where a process may listen without a shared secret: loopback only. A coordinator or ring listener bound
// to another interface without a token would let anyone who reaches the port join the job (and read the
// weights and images it sends), so that is refused with E_USAGE saying how to set a token.
import { isIP } from 'node:net';
import { WolfpackError } from '../errors.js';
import { TOKEN_HELP, type SharedSecret } from './secret.js';

/** True for addresses only this host can reach: localhost, 127.0.0.0/8, ::1 (and ::ffff:127.x.y.z). */
export function isLoopbackHost(host: string): boolean {
  const h = host
    .trim()
    .toLowerCase()
    .replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost' || h.endsWith('.localhost')) return true;
  if (isIP(h) === 4) return h.startsWith('127.');
  if (isIP(h) === 6) {
    if (h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
    const m = /^(?:0:0:0:0:0|:):ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(h);
    return m !== null && m[1]!.startsWith('127.');
  }
  return false;
}

/**
 * Refuses (E_USAGE) to listen on `host` without a secret unless it is loopback. `what` names the flag,
 * e.g. 'coordinator --host' or 'worker --ring-bind'.
 */
export function checkBind(host: string, secret: SharedSecret | undefined, what: string): void {
  if (secret !== undefined || isLoopbackHost(host)) return;
  throw new WolfpackError(
    'E_USAGE',
    `${what} ${host}: refusing to listen beyond loopback without a shared token ` +
      `(anyone who can reach the port could join ` +
      `the job and read its weights and images); ${TOKEN_HELP}. Without a token, listen on 127.0.0.1 only.`,
  );
}
