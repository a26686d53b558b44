// The client side of the RFC 6455 opening handshake and the few frames a ring client sends (its hello, pongs
// and its close), for incoming.ts's client. The server is `ws` (listener.ts).
import { createHash, randomBytes, randomFillSync } from 'node:crypto';

const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
/** Largest HTTP response head to the upgrade request, bytes. */
export const UPGRADE_RESPONSE_MAX_BYTES = 16 * 1024;

/** A fresh Sec-WebSocket-Key. */
export function newClientKey(): string {
  return randomBytes(16).toString('base64');
}

/** The HTTP upgrade request for `url` with `key`. */
export function upgradeRequest(url: URL, key: string): string {
  const path = `${url.pathname || '/'}${url.search}`;
  return (
    `GET ${path} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`
  );
}

/** What is wrong with the server's answer to the upgrade request. */
export interface UpgradeRefusal {
  /** 'refused': the server answered with another status (E_WORKER); 'protocol': a bad 101 (E_PROTOCOL). */
  kind: 'refused' | 'protocol';
  message: string;
  /** True when the connection can still carry a close frame (the upgrade itself succeeded). */
  upgraded: boolean;
}

/** Checks the response head (without the blank line) against `key`: null when the upgrade succeeded. */
export function checkUpgradeResponse(head: string, key: string, host: string): UpgradeRefusal | null {
  const lines = head.split('\r\n');
  const status = /^HTTP\/1\.1 (\d{3})/.exec(lines[0] ?? '');
  if (status === null || status[1] !== '101') {
    return {
      kind: 'refused',
      message: `ring peer at ${host} refused the WebSocket upgrade: ${lines[0] ?? '(no status line)'}`,
      upgraded: false,
    };
  }
  const headers = new Map<string, string>();
  for (const line of lines.slice(1)) {
    const i = line.indexOf(':');
    if (i > 0) headers.set(line.slice(0, i).trim().toLowerCase(), line.slice(i + 1).trim());
  }
  const accept = createHash('sha1')
    .update(key + WS_GUID)
    .digest('base64');
  if ((headers.get('upgrade') ?? '').toLowerCase() !== 'websocket' || headers.get('sec-websocket-accept') !== accept) {
    return { kind: 'protocol', message: 'bad WebSocket handshake response (upgrade / accept key)', upgraded: false };
  }
  if (headers.has('sec-websocket-extensions')) {
    return { kind: 'protocol', message: 'the server negotiated an extension nobody asked for', upgraded: true };
  }
  return null;
}

/** One masked, final frame with opcode `op` (clients mask every frame). */
export function clientFrame(op: number, payload: Uint8Array): Buffer {
  const mask = randomFillSync(Buffer.alloc(4));
  const head = Buffer.alloc(payload.length < 126 ? 6 : payload.length < 65536 ? 8 : 14);
  head[0] = 0x80 | op;
  let o = 2;
  if (payload.length < 126) head[1] = 0x80 | payload.length;
  else if (payload.length < 65536) {
    head[1] = 0x80 | 126;
    head.writeUInt16BE(payload.length, 2);
    o = 4;
  } else {
    head[1] = 0x80 | 127;
    head.writeUInt32BE(0, 2);
    head.writeUInt32BE(payload.length, 6);
    o = 10;
  }
  mask.copy(head, o);
  const body = Buffer.from(payload);
  for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ mask[i & 3]!;
  return Buffer.concat([head, body]);
}
