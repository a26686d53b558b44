// One rank of the all-reduce benchmark (and of the real-process ring tests), started by bench/allreduce.ts
// as `node dist/bench/allreduce-rank.js <mode>` with an IPC channel to the parent:
//   ring        listen on an ephemeral ring port, report it, get rank and right neighbour, join the ring,
//               run warmup + reps all-reduces (each after a barrier), verify, report times
//   tcp-source  raw TCP baseline: listen, report the port, send `bytes` to the sink, time until its ack
//   tcp-sink    raw TCP baseline: connect to the source, read `bytes`, ack
//   tcp-duplex  raw TCP baseline, both directions at once between two such processes (a 2-rank ring)
// Messages (JSON over IPC), child -> parent: listening {port} | ready | result {...} | error {message, code}
// parent -> child: setup {...} | exit.
import { createHash } from 'node:crypto';
import net from 'node:net';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRingBuffer, ringAllReduce } from '../shared/allreduce/ring.js';
import type { Link } from '../shared/allreduce/link.js';
import { connectRing, listenRing, wsLink, type RingListener } from '../shared/transport/ring/index.js';
import { isWolfpackError } from '../shared/errors.js';
import { listenToParent, nextParentMessage, sendToParent } from './rank-ipc.js';

export type FillMode = 'constant' | 'random';

export interface RankSetup {
  t: 'setup';
  rank: number;
  size: number;
  /** ws:// URL of the left neighbour's ring port (this rank connects to it and receives from it). */
  left: string;
  jobId: string;
  elements: number;
  reps: number;
  warmup: number;
  chunkElems?: number;
  fill: FillMode;
  seed: number;
  /** 'ring': createRingBuffer (WebAssembly SIMD sums, the default); 'plain': a Float32Array (JS loop). */
  buffer?: 'ring' | 'plain';
  samples?: number;
}

export interface RankResult {
  t: 'result';
  rank: number;
  /** Seconds for each all-reduce, warmup included (first `warmup` entries). */
  times: number[];
  /** Bytes this rank sent in one all-reduce. */
  bytesSent: number;
  /** Whether every result matched (constant fill: exactly N(N+1)/2; random fill: the float64 sum). */
  ok: boolean;
  /** Largest |result - float64 sum| / (sum of |inputs|) over the buffer (random fill). */
  maxRelErr: number;
  /** SHA-256 of the final result bytes: equal on every rank when the results are bitwise identical. */
  sha256: string;
  /** Indices and values of some result elements, for the caller's own check. */
  sampleIdx: number[];
  sampleVal: number[];
  firstBad?: string;
  /** CPU seconds (user, system) this rank spent inside the timed all-reduces, summed over reps. */
  cpuUser: number;
  cpuSystem: number;
}

/** The input element `i` of rank `rank` for the random fill: a float32 in [-1, 1), a hash of the three. */
export function benchValue(seed: number, rank: number, i: number): number {
  let h = Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) ^ Math.imul(rank + 1, 0xc2b2ae35) ^ Math.imul(i, 0x27d4eb2f);
  h ^= h >>> 15;
  h = Math.imul(h, 0x2c1b3c6d);
  h ^= h >>> 12;
  h = Math.imul(h, 0x297a2d39);
  h ^= h >>> 15;
  return Math.fround(((h >>> 0) / 4294967296) * 2 - 1);
}

function fill(buf: Float32Array, setup: RankSetup): void {
  if (setup.fill === 'constant') buf.fill(setup.rank + 1);
  else for (let i = 0; i < buf.length; i++) buf[i] = benchValue(setup.seed, setup.rank, i);
}

function verify(buf: Float32Array, setup: RankSetup): { ok: boolean; maxRelErr: number; firstBad?: string } {
  const n = setup.size;
  if (setup.fill === 'constant') {
    const want = (n * (n + 1)) / 2;
    for (let i = 0; i < buf.length; i++) {
      if (buf[i] !== want)
        return { ok: false, maxRelErr: Infinity, firstBad: `element ${i} = ${buf[i]}, expected ${want}` };
    }
    return { ok: true, maxRelErr: 0 };
  }
  let worst = 0;
  let firstBad: string | undefined;
  for (let i = 0; i < buf.length; i++) {
    let sum = 0;
    let mag = 0;
    for (let r = 0; r < n; r++) {
      const v = benchValue(setup.seed, r, i);
      sum += v;
      mag += Math.abs(v);
    }
    const rel = Math.abs(buf[i]! - sum) / (mag || 1);
    if (rel > worst) worst = rel;
    if (firstBad === undefined && rel > (n - 1) * 2 ** -24) firstBad = `element ${i} = ${buf[i]}, float64 sum ${sum}`;
  }
  return firstBad === undefined ? { ok: true, maxRelErr: worst } : { ok: false, maxRelErr: worst, firstBad };
}

/** The send window, from the parent (bench option maxInFlightBytes): needed before the setup arrives. */
function maxInFlight(): number | undefined {
  const v = Number(process.env.WOLFPACK_RING_MAX_IN_FLIGHT);
  return Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

async function ringMode(): Promise<void> {
  const listener: RingListener = await listenRing({ host: '127.0.0.1', port: 0, maxInFlightBytes: maxInFlight() });
  await sendToParent({ t: 'listening', port: listener.port });
  const setup = await nextParentMessage<RankSetup>('setup');
  const right = (setup.rank + 1) % setup.size;
  let link: Link | null = null;
  if (setup.size > 1) {
    const [outgoing, incoming] = await Promise.all([
      listener.accept({ rank: right, jobId: setup.jobId }, 30_000),
      connectRing(setup.left, { rank: setup.rank, size: setup.size, jobId: setup.jobId }, { timeoutMs: 30_000 }),
    ]);
    link = wsLink(outgoing, incoming);
  }
  await listener.close();
  await sendToParent({ t: 'ready' });

  const buf =
    setup.buffer === 'plain'
      ? new Float32Array(setup.elements)
      : createRingBuffer(setup.elements, setup.chunkElems !== undefined ? { maxChunkElems: setup.chunkElems } : {});
  const bar = new Float32Array(1);
  const times: number[] = [];
  let step = 0;
  let bytesSent = 0;
  let cpuUser = 0;
  let cpuSystem = 0;
  let check: { ok: boolean; maxRelErr: number; firstBad?: string } = { ok: true, maxRelErr: 0 };
  const opts = (s: number): { step: number; chunkElems?: number } =>
    setup.chunkElems === undefined ? { step: s } : { step: s, chunkElems: setup.chunkElems };
  for (let i = 0; i < setup.warmup + setup.reps; i++) {
    fill(buf, setup);
    if (link !== null) await ringAllReduce(bar, setup.rank, setup.size, link, { step: step++ }); // barrier
    const c0 = process.cpuUsage();
    const t0 = performance.now();
    const st = link === null ? { bytesSent: 0 } : await ringAllReduce(buf, setup.rank, setup.size, link, opts(step++));
    times.push((performance.now() - t0) / 1000);
    const c1 = process.cpuUsage(c0);
    if (i >= setup.warmup) {
      cpuUser += c1.user / 1e6;
      cpuSystem += c1.system / 1e6;
    }
    bytesSent = st.bytesSent;
    // outside the timed region: the whole buffer for the constant fill, the last rep for the random one
    if (setup.fill === 'constant' || i === setup.warmup + setup.reps - 1) {
      const c = verify(buf, setup);
      if (check.ok) check = c;
    }
  }
  const samples = Math.min(setup.samples ?? 16, buf.length);
  const sampleIdx: number[] = [];
  const sampleVal: number[] = [];
  for (let k = 0; k < samples; k++) {
    const idx = samples === 1 ? 0 : Math.round((k * (buf.length - 1)) / (samples - 1));
    sampleIdx.push(idx);
    sampleVal.push(buf[idx]!);
  }
  const result: RankResult = {
    t: 'result',
    rank: setup.rank,
    times,
    bytesSent,
    ok: check.ok,
    maxRelErr: check.maxRelErr,
    sha256: createHash('sha256')
      .update(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength))
      .digest('hex'),
    sampleIdx,
    sampleVal,
    cpuUser,
    cpuSystem,
    ...(check.firstBad !== undefined ? { firstBad: check.firstBad } : {}),
  };
  await sendToParent(result);
  await nextParentMessage('exit');
  link?.close();
}

async function tcpSource(): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const connected = new Promise<net.Socket>((res) => server.once('connection', res));
  await sendToParent({ t: 'listening', port: (server.address() as net.AddressInfo).port });
  const { bytes, chunkBytes } = await nextParentMessage<{ bytes: number; chunkBytes: number }>('setup');
  const sock = await connected;
  sock.setNoDelay(true);
  const acked = new Promise<void>((res) => sock.once('data', () => res()));
  const t0 = performance.now();
  await writeAll(sock, bytes, chunkBytes);
  await acked;
  const seconds = (performance.now() - t0) / 1000;
  await sendToParent({ t: 'result', seconds });
  sock.destroy();
  server.close();
  await nextParentMessage('exit');
}

async function tcpSink(): Promise<void> {
  const { port, bytes, onread } = await nextParentMessage<{ port: number; bytes: number; onread: boolean }>('setup');
  let got = 0;
  let ack: () => void = () => undefined;
  const done = new Promise<void>((res) => {
    ack = res;
  });
  const count = (n: number): void => {
    got += n;
    if (got >= bytes) ack();
  };
  const sock = onread
    ? net.connect({
        port,
        host: '127.0.0.1',
        onread: {
          buffer: Buffer.allocUnsafe(1 << 20),
          callback: (n: number) => {
            count(n);
            return true;
          },
        },
      })
    : net.connect({ port, host: '127.0.0.1' }).on('data', (d: Buffer) => count(d.length));
  sock.setNoDelay(true);
  await sendToParent({ t: 'ready' });
  await done;
  sock.write(Buffer.from([1]));
  await nextParentMessage('exit');
  sock.destroy();
}

/** Write `bytes` to `sock` in `chunkBytes` writes, respecting backpressure. */
async function writeAll(sock: net.Socket, bytes: number, chunkBytes: number): Promise<void> {
  const chunk = Buffer.alloc(chunkBytes, 1);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, chunkBytes);
    left -= n;
    if (!sock.write(n === chunkBytes ? chunk : chunk.subarray(0, n))) {
      await new Promise<void>((res) => sock.once('drain', () => res()));
    }
  }
}

// Both directions at once, laid out like a two-rank ring: this process sends on the connection its
// peer opened and receives (onread, one reused buffer) on the connection it opened to the peer.
async function tcpDuplex(): Promise<void> {
  const server = net.createServer();
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res));
  const accepted = new Promise<net.Socket>((res) => server.once('connection', res));
  await sendToParent({ t: 'listening', port: (server.address() as net.AddressInfo).port });
  const { port, bytes, chunkBytes } = await nextParentMessage<{ port: number; bytes: number; chunkBytes: number }>(
    'setup',
  );
  let got = 0;
  let t0 = 0;
  let received: (seconds: number) => void = () => undefined;
  const done = new Promise<number>((res) => {
    received = res;
  });
  const inSock = net.connect({
    port,
    host: '127.0.0.1',
    onread: {
      buffer: Buffer.allocUnsafe(1 << 20),
      callback: (n: number) => {
        got += n;
        if (got >= bytes) received((performance.now() - t0) / 1000);
        return true;
      },
    },
  });
  const outSock = await accepted;
  outSock.setNoDelay(true);
  await sendToParent({ t: 'ready' });
  await nextParentMessage('go');
  t0 = performance.now();
  await writeAll(outSock, bytes, chunkBytes);
  const seconds = await done;
  await sendToParent({ t: 'result', seconds });
  await nextParentMessage('exit');
  inSock.destroy();
  outSock.destroy();
  server.close();
}

async function main(): Promise<void> {
  const mode = process.argv[2] ?? 'ring';
  listenToParent();
  try {
    if (mode === 'ring') await ringMode();
    else if (mode === 'tcp-source') await tcpSource();
    else if (mode === 'tcp-sink') await tcpSink();
    else if (mode === 'tcp-duplex') await tcpDuplex();
    else throw new Error(`unknown mode ${mode}`);
    process.exit(0);
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    await sendToParent({ t: 'error', message, code: isWolfpackError(err) ? err.code : undefined }).catch(
      () => undefined,
    );
    process.exit(1);
  }
}

const isMain = process.argv[1] !== undefined && resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) void main();
