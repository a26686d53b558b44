// All-reduce benchmark: N node processes joined in a WebSocket ring on loopback, the same measurement as
// the PyTorch Gloo peer (bench/peers/peer_allreduce.py), and a raw TCP baseline.
//
// runAllreduceBench spawns N ranks (`node dist/bench/allreduce-rank.js ring`); this process is the
// rendezvous: each rank reports its ring port over IPC, gets its rank and its left neighbour's URL, and
// joins the ring (it connects to the left neighbour and accepts the right one, see shared/transport/ring/).
// Each rank fills its buffer with rank+1, then for warmup + reps: barrier (a one-element
// ring all-reduce, as Gloo's barrier is a collective too), timed all-reduce, check that every element is
// N(N+1)/2 (outside the timed region). The time of a rep is the slowest rank's; the figures are
//   median_s   median over reps of that time
//   algbw      bytes / median_s
//   busbw      algbw * 2(N-1)/N   (nccl-tests' definition)
// in the JSON shape peer_allreduce.py prints (plus MB/s, 1 MB = 1e6 bytes).
//
// runRawTcpBench times `bytes` over one plain TCP connection between two node processes (net), the
// ceiling a Node transport can reach on this machine.
//
// Children are killed by pid on every exit path, and every wait is bounded by a timeout (bench/rank-process.ts).
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { distPath } from '../shared/paths.js';
import { WolfpackError } from '../shared/errors.js';
import type { FillMode, RankResult, RankSetup } from './allreduce-rank.js';
import { median } from './machine.js';
import { expectMessage, postMessage, stopRanks, waitRankExit, watchRank, type RankProcess } from './rank-process.js';

export interface AllreduceBenchOptions {
  /** Number of ranks (processes), >= 1. */
  workers: number;
  /** float32 elements per rank. */
  elements: number;
  /** Timed repetitions (default 5; at least repsSmall for elements <= smallMax, as the Gloo peer does). */
  reps?: number;
  /** Untimed repetitions first (default 2). */
  warmup?: number;
  /** Ring chunk size in elements (default: ring.ts DEFAULT_CHUNK_ELEMS). */
  chunkElems?: number;
  /** Reps for latency-bound sizes (default 50). */
  repsSmall?: number;
  /** Largest size counted as latency-bound (default 65536 elements). */
  smallMax?: number;
  /** Input: 'constant' (rank+1, the Gloo peer's) or 'random' (seeded, checked against a float64 sum). */
  fill?: FillMode;
  seed?: number;
  /** 'ring' (default): buffers from createRingBuffer, summed with WebAssembly SIMD; 'plain': Float32Array. */
  buffer?: 'ring' | 'plain';
  /** ring send window, bytes (default: ring/outgoing.ts's DEFAULT_MAX_IN_FLIGHT_BYTES). */
  maxInFlightBytes?: number;
  /** Extra environment for the ranks (e.g. WS_NO_BUFFER_UTIL=1). */
  env?: Record<string, string>;
  /** Bound on the whole run (default 120 s + 10 s per 10^7 elements per rep). */
  timeoutMs?: number;
}

export interface AllreduceBenchRank {
  rank: number;
  bytes_sent: number;
  ok: boolean;
  max_rel_err: number;
  sha256: string;
  sample_idx: number[];
  sample_val: number[];
  /** CPU seconds per rep inside the timed all-reduce (user, system). */
  cpu_user_s: number;
  cpu_system_s: number;
  first_bad?: string;
}

export interface AllreduceBenchResult {
  bench: 'wolfpack_ws_ring_allreduce';
  transport: 'ws-loopback';
  node: string;
  procs: number;
  elems: number;
  bytes: number;
  reps: number;
  warmup: number;
  chunk_elems: number | null;
  buffer: 'ring' | 'plain';
  median_s: number;
  min_s: number;
  max_s: number;
  mean_s: number;
  algbw_Bps: number;
  busbw_Bps: number;
  algbw_MBps: number;
  busbw_MBps: number;
  times_s: number[];
  /** Every rank's result checked and all ranks bitwise identical. */
  verified: boolean;
  ranks: AllreduceBenchRank[];
  group_wall_s: number;
}

export interface RawTcpBenchResult {
  bench: 'raw_tcp_loopback';
  bytes: number;
  chunk_bytes: number;
  onread: boolean;
  /** Both directions at once; MBps is per direction. */
  duplex: boolean;
  seconds: number;
  MBps: number;
}

function rankScript(): string {
  const path = distPath('bench/allreduce-rank.js');
  if (!existsSync(path)) {
    throw new WolfpackError('E_USAGE', `${path} is missing: build first (npx tsc -p tsconfig.build.json)`);
  }
  return path;
}

/** Starts rank `index` of this benchmark: `node dist/bench/allreduce-rank.js ARGS` with an IPC channel. */
function start(index: number, args: string[], env: Record<string, string> | undefined): RankProcess {
  const proc = spawn(process.execPath, [rankScript(), ...args], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, ...(env ?? {}) },
  });
  return watchRank(index, proc);
}

/** Run the WebSocket ring all-reduce benchmark; see the module comment for what is measured. */
export async function runAllreduceBench(opts: AllreduceBenchOptions): Promise<AllreduceBenchResult> {
  const n = opts.workers;
  const elems = opts.elements;
  if (!Number.isSafeInteger(n) || n < 1)
    throw new WolfpackError('E_USAGE', `workers must be an integer >= 1, got ${n}`);
  if (!Number.isSafeInteger(elems) || elems < 0)
    throw new WolfpackError('E_USAGE', `elements must be an integer >= 0, got ${elems}`);
  const smallMax = opts.smallMax ?? 65536;
  const reps0 = opts.reps ?? 5;
  const reps = elems <= smallMax ? Math.max(reps0, opts.repsSmall ?? 50) : reps0;
  const warmup = opts.warmup ?? 2;
  if (!Number.isSafeInteger(reps) || reps < 1)
    throw new WolfpackError('E_USAGE', `reps must be an integer >= 1, got ${reps}`);
  if (!Number.isSafeInteger(warmup) || warmup < 0)
    throw new WolfpackError('E_USAGE', `warmup must be an integer >= 0, got ${warmup}`);
  const timeoutMs = opts.timeoutMs ?? 120_000 + Math.ceil((elems / 1e7) * 10_000 * (reps + warmup));
  const deadline = Date.now() + timeoutMs;
  const jobId = `bench-${process.pid}-${Date.now()}`;
  const t0 = performance.now();

  const children: RankProcess[] = [];
  try {
    const env: Record<string, string> = { ...(opts.env ?? {}) };
    if (opts.maxInFlightBytes !== undefined) env.WOLFPACK_RING_MAX_IN_FLIGHT = String(opts.maxInFlightBytes);
    for (let i = 0; i < n; i++) children.push(start(i, ['ring'], env));
    const ports = await Promise.all(children.map((c) => expectMessage<{ port: number }>(c, 'listening', deadline)));
    children.forEach((c, i) => {
      const setup: RankSetup = {
        t: 'setup',
        rank: i,
        size: n,
        left: `ws://127.0.0.1:${ports[(i + n - 1) % n]!.port}`,
        jobId,
        elements: elems,
        reps,
        warmup,
        fill: opts.fill ?? 'constant',
        seed: opts.seed ?? 1,
        ...(opts.chunkElems !== undefined ? { chunkElems: opts.chunkElems } : {}),
        ...(opts.buffer !== undefined ? { buffer: opts.buffer } : {}),
      };
      postMessage(c, setup);
    });
    await Promise.all(children.map((c) => expectMessage(c, 'ready', deadline)));
    const results = await Promise.all(children.map((c) => expectMessage<RankResult>(c, 'result', deadline)));
    for (const c of children) postMessage(c, { t: 'exit' });
    await Promise.all(children.map((c) => waitRankExit(c, Math.min(deadline, Date.now() + 5000))));

    const times: number[] = [];
    for (let k = warmup; k < warmup + reps; k++) times.push(Math.max(...results.map((r) => r.times[k]!)));
    const bytes = elems * 4;
    const med = median(times);
    const algbw = bytes / med;
    const busbw = (algbw * 2 * (n - 1)) / n;
    const identical = results.every((r) => r.sha256 === results[0]!.sha256);
    return {
      bench: 'wolfpack_ws_ring_allreduce',
      transport: 'ws-loopback',
      node: process.version,
      procs: n,
      elems,
      bytes,
      reps,
      warmup,
      chunk_elems: opts.chunkElems ?? null,
      buffer: opts.buffer ?? 'ring',
      median_s: med,
      min_s: Math.min(...times),
      max_s: Math.max(...times),
      mean_s: times.reduce((a, b) => a + b, 0) / times.length,
      algbw_Bps: algbw,
      busbw_Bps: busbw,
      algbw_MBps: algbw / 1e6,
      busbw_MBps: busbw / 1e6,
      times_s: times,
      verified: identical && results.every((r) => r.ok),
      ranks: results.map((r) => ({
        rank: r.rank,
        bytes_sent: r.bytesSent,
        ok: r.ok,
        max_rel_err: r.maxRelErr,
        sha256: r.sha256,
        sample_idx: r.sampleIdx,
        sample_val: r.sampleVal,
        cpu_user_s: r.cpuUser / reps,
        cpu_system_s: r.cpuSystem / reps,
        ...(r.firstBad !== undefined ? { first_bad: r.firstBad } : {}),
      })),
      group_wall_s: Math.round(performance.now() - t0) / 1000,
    };
  } finally {
    stopRanks(children);
  }
}

/**
 * Time `bytes` over loopback TCP between two node processes: one way (source -> sink, the sink reading
 * with `onread` into one reused buffer unless onread is false), or with `duplex` both ways at once over
 * two connections laid out like a two-rank ring (each process sends and receives `bytes`); MB/s is per
 * direction.
 */
export async function runRawTcpBench(
  bytes: number,
  opts: { chunkBytes?: number; onread?: boolean; duplex?: boolean; timeoutMs?: number } = {},
): Promise<RawTcpBenchResult> {
  if (!Number.isSafeInteger(bytes) || bytes < 1)
    throw new WolfpackError('E_USAGE', `bytes must be a positive integer, got ${bytes}`);
  const chunkBytes = opts.chunkBytes ?? 4 << 20;
  const onread = opts.onread ?? true;
  const duplex = opts.duplex ?? false;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000 + bytes / 1e5);
  const children: RankProcess[] = [];
  try {
    let seconds: number;
    if (duplex) {
      const a = start(0, ['tcp-duplex'], undefined);
      const b = start(1, ['tcp-duplex'], undefined);
      children.push(a, b);
      const [pa, pb] = await Promise.all([
        expectMessage<{ port: number }>(a, 'listening', deadline),
        expectMessage<{ port: number }>(b, 'listening', deadline),
      ]);
      postMessage(a, { t: 'setup', port: pb.port, bytes, chunkBytes });
      postMessage(b, { t: 'setup', port: pa.port, bytes, chunkBytes });
      await Promise.all([expectMessage(a, 'ready', deadline), expectMessage(b, 'ready', deadline)]);
      postMessage(a, { t: 'go' });
      postMessage(b, { t: 'go' });
      const rs = await Promise.all([
        expectMessage<{ seconds: number }>(a, 'result', deadline),
        expectMessage<{ seconds: number }>(b, 'result', deadline),
      ]);
      seconds = Math.max(rs[0].seconds, rs[1].seconds);
    } else {
      const source = start(0, ['tcp-source'], undefined);
      const sink = start(1, ['tcp-sink'], undefined);
      children.push(source, sink);
      const { port } = await expectMessage<{ port: number }>(source, 'listening', deadline);
      postMessage(sink, { t: 'setup', port, bytes, onread });
      await expectMessage(sink, 'ready', deadline);
      postMessage(source, { t: 'setup', bytes, chunkBytes });
      seconds = (await expectMessage<{ seconds: number }>(source, 'result', deadline)).seconds;
    }
    for (const c of children) postMessage(c, { t: 'exit' });
    await Promise.all(children.map((c) => waitRankExit(c, Math.min(deadline, Date.now() + 5000))));
    return {
      bench: 'raw_tcp_loopback',
      bytes,
      chunk_bytes: chunkBytes,
      onread: onread || duplex,
      duplex,
      seconds,
      MBps: bytes / seconds / 1e6,
    };
  } finally {
    stopRanks(children);
  }
}
