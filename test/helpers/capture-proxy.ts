// A TCP proxy on 127.0.0.1 for tests: forwards every connection to a target port and keeps the bytes of
// both directions, so a test can search the traffic (e.g. for a secret that must never be sent). WebSocket
// clients mask their frames with a random key, so `bytes()` also holds every frame's payload unmasked:
// a secret that leaked into a client frame would show up there.
import net, { type AddressInfo } from 'node:net';

export interface CaptureProxy {
  port: number;
  /** Every byte seen (both directions) plus the unmasked payloads of the WebSocket frames in it. */
  bytes(): Buffer;
  /** WebSocket payloads (unmasked) per connection and direction. */
  payloads(): Buffer[];
  /** The payloads of binary frames only (opcode 2), e.g. to decode every control-channel frame. */
  binaryPayloads(): Buffer[];
  connections(): number;
  close(): Promise<void>;
}

/** The payloads of the WebSocket frames in one direction of a connection (after the HTTP head). */
export function wsPayloads(stream: Buffer, opcode?: number): Buffer[] {
  const head = stream.indexOf('\r\n\r\n');
  if (head < 0) return [];
  const out: Buffer[] = [];
  let p = head + 4;
  while (p + 2 <= stream.length) {
    const op = stream[p]! & 0x0f;
    const masked = (stream[p + 1]! & 0x80) !== 0;
    let len = stream[p + 1]! & 0x7f;
    let q = p + 2;
    if (len === 126) {
      if (q + 2 > stream.length) break;
      len = stream.readUInt16BE(q);
      q += 2;
    } else if (len === 127) {
      if (q + 8 > stream.length) break;
      len = Number(stream.readBigUInt64BE(q));
      q += 8;
    }
    const key = masked ? stream.subarray(q, q + 4) : null;
    if (masked) q += 4;
    if (q + len > stream.length) break;
    const body = Buffer.from(stream.subarray(q, q + len));
    if (key) for (let i = 0; i < body.length; i++) body[i] = body[i]! ^ key[i & 3]!;
    if (opcode === undefined || op === opcode) out.push(body);
    p = q + len;
  }
  return out;
}

export async function captureProxy(targetPort: number, targetHost = '127.0.0.1'): Promise<CaptureProxy> {
  const conns: { up: Buffer[]; down: Buffer[] }[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((client) => {
    const rec = { up: [] as Buffer[], down: [] as Buffer[] };
    conns.push(rec);
    const upstream = net.connect(targetPort, targetHost);
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
    }
    client.on('data', (d: Buffer) => {
      rec.up.push(Buffer.from(d));
      upstream.write(d);
    });
    upstream.on('data', (d: Buffer) => {
      rec.down.push(Buffer.from(d));
      client.write(d);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const payloads = (op?: number) =>
    conns.flatMap((c) => [...wsPayloads(Buffer.concat(c.up), op), ...wsPayloads(Buffer.concat(c.down), op)]);
  return {
    port: (server.address() as AddressInfo).port,
    payloads: () => payloads(),
    binaryPayloads: () => payloads(2),
    bytes: () => Buffer.concat([...conns.flatMap((c) => [...c.up, ...c.down]), ...payloads()]),
    connections: () => conns.length,
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The forms a secret could take on the wire if something leaked it. */
export function secretForms(token: string): Buffer[] {
  const raw = Buffer.from(token, 'utf8');
  return [
    raw,
    Buffer.from(raw.toString('hex')),
    Buffer.from(raw.toString('base64')),
    Buffer.from(raw.toString('base64url')),
  ];
}
