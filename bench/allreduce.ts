// All-reduce benchmark: N node processes joined in a WebSocket ring on loopback, the same measurement as
// the PyTorch Gloo peer (/work/shared/peers/peer_allreduce.py), and a raw TCP baseline.
//
// runAllreduceBench spawns N ranks (`node dist/bench/allreduce-rank.js ring`); this process is the
// rendezvous: each rank reports its ring port over IPC, gets its rank and its left neighbour's URL, and
// joins the ring (it connects to the left neighbour and accepts the right one, see ws-link.ts). Each rank fills its buffer with rank+1, then for warmup + reps: barrier (a one-element
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
// Children are killed by pid on every exit path, and every wait is bounded by a timeout.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { distPath } from '../shared/paths.js';
import { WolfpackError } from '../shared/errors.js';
import type { FillMode, RankResult, RankSetup } from './allreduce-rank.js';
import { median } from './machine.js';

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
  /** ws-link send window, bytes (default: ws-link's DEFAULT_MAX_IN_FLIGHT_BYTES). */
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

interface Child {
  proc: ChildProcess;
  stderr: string;
  messages: Array<{ t: string } & Record<string, unknown>>;
  waiters: Array<() => void>;
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
}

function rankScript(): string {
  const path = distPath('bench/allreduce-rank.js');
  if (!existsSync(path)) {
    throw new WolfpackError('E_USAGE', `${path} is missing: build first (npx tsc -p tsconfig.build.json)`);
  }
  return path;
}

/** Spawned children, killed by pid when this process exits while they run. */
const live = new Set<ChildProcess>();
let exitHook = false;
function killAll(): void {
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

function start(args: string[], env: Record<string, string> | undefined): Child {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', killAll);
  }
  const proc = spawn(process.execPath, [rankScript(), ...args], {
    stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    env: { ...process.env, ...(env ?? {}) },
  });
  live.add(proc);
  const c: Child = { proc, stderr: '', messages: [], waiters: [], exited: null };
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (s: string) => {
    c.stderr = (c.stderr + s).slice(-4000);
  });
  const wake = (): void => {
    for (const w of c.waiters.splice(0)) w();
  };
  proc.on('message', (m: { t: string } & Record<string, unknown>) => {
    c.messages.push(m);
    wake();
  });
  proc.on('exit', (code, signal) => {
    c.exited = { code, signal };
    live.delete(proc);
    wake();
  });
  proc.on('error', (err) => {
    c.stderr += `\nspawn error: ${err.message}`;
    c.exited = { code: -1, signal: null };
    wake();
  });
  return c;
}

function stop(children: Child[]): void {
  for (const c of children) {
    if (c.exited === null && c.proc.pid !== undefined) {
      try {
        process.kill(c.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    live.delete(c.proc);
  }
}

/** The next message of type `t` from child `i`, or an E_WORKER error on exit, error report or timeout. */
function expect<T>(c: Child, i: number, t: string, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const check = (): boolean => {
      const k = c.messages.findIndex((m) => m.t === t || m.t === 'error');
      if (k >= 0) {
        const m = c.messages.splice(k, 1)[0];
        if (m.t === 'error') {
          reject(new WolfpackError('E_WORKER', `rank process ${i} failed: ${String(m.message)}`, { code: m.code }));
        } else {
          resolve(m as unknown as T);
        }
        return true;
      }
      if (c.exited !== null) {
        const how = c.exited.signal ?? `code ${c.exited.code}`;
        reject(new WolfpackError('E_WORKER', `rank process ${i} exited (${how}) while waiting for '${t}'${c.stderr ? `: ${c.stderr.trim().slice(-1000)}` : ''}`));
        return true;
      }
      return false;
    };
    if (check()) return;
    const timer = setTimeout(() => {
      reject(new WolfpackError('E_WORKER', `rank process ${i}: no '${t}' within the time limit`));
    }, Math.max(0, deadline - Date.now()));
    const again = (): void => {
      if (check()) clearTimeout(timer);
      else c.waiters.push(again);
    };
    c.waiters.push(again);
  });
}

function post(c: Child, msg: unknown): void {
  if (c.exited === null && c.proc.connected) c.proc.send(msg as object);
}

/** Run the WebSocket ring all-reduce benchmark; see the module comment for what is measured. */
export async function runAllreduceBench(opts: AllreduceBenchOptions): Promise<AllreduceBenchResult> {
  const n = opts.workers;
  const elems = opts.elements;
  if (!Number.isSafeInteger(n) || n < 1) throw new WolfpackError('E_USAGE', `workers must be an integer >= 1, got ${n}`);
  if (!Number.isSafeInteger(elems) || elems < 0) throw new WolfpackError('E_USAGE', `elements must be an integer >= 0, got ${elems}`);
  const smallMax = opts.smallMax ?? 65536;
  const reps0 = opts.reps ?? 5;
  const reps = elems <= smallMax ? Math.max(reps0, opts.repsSmall ?? 50) : reps0;
  const warmup = opts.warmup ?? 2;
  if (!Number.isSafeInteger(reps) || reps < 1) throw new WolfpackError('E_USAGE', `reps must be an integer >= 1, got ${reps}`);
  if (!Number.isSafeInteger(warmup) || warmup < 0) throw new WolfpackError('E_USAGE', `warmup must be an integer >= 0, got ${warmup}`);
  const timeoutMs = opts.timeoutMs ?? 120_000 + Math.ceil((elems / 1e7) * 10_000 * (reps + warmup));
  const deadline = Date.now() + timeoutMs;
  const jobId = `bench-${process.pid}-${Date.now()}`;
  const t0 = performance.now();

  const children: Child[] = [];
  try {
    const env: Record<string, string> = { ...(opts.env ?? {}) };
    if (opts.maxInFlightBytes !== undefined) env.WOLFPACK_RING_MAX_IN_FLIGHT = String(opts.maxInFlightBytes);
    for (let i = 0; i < n; i++) children.push(start(['ring'], env));
    const ports = await Promise.all(children.map((c, i) => expect<{ port: number }>(c, i, 'listening', deadline)));
    children.forEach((c, i) => {
      const setup: RankSetup = {
        t: 'setup',
        rank: i,
        size: n,
        left: `ws://127.0.0.1:${ports[(i + n - 1) % n].port}`,
        jobId,
        elements: elems,
        reps,
        warmup,
        fill: opts.fill ?? 'constant',
        seed: opts.seed ?? 1,
        ...(opts.chunkElems !== undefined ? { chunkElems: opts.chunkElems } : {}),
        ...(opts.buffer !== undefined ? { buffer: opts.buffer } : {}),
      };
      post(c, setup);
    });
    await Promise.all(children.map((c, i) => expect(c, i, 'ready', deadline)));
    const results = await Promise.all(children.map((c, i) => expect<RankResult>(c, i, 'result', deadline)));
    for (const c of children) post(c, { t: 'exit' });
    await Promise.all(children.map((c) => waitExit(c, Math.min(deadline, Date.now() + 5000))));

    const times: number[] = [];
    for (let k = warmup; k < warmup + reps; k++) times.push(Math.max(...results.map((r) => r.times[k])));
    const bytes = elems * 4;
    const med = median(times);
    const algbw = bytes / med;
    const busbw = (algbw * 2 * (n - 1)) / n;
    const identical = results.every((r) => r.sha256 === results[0].sha256);
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
    stop(children);
  }
}

function waitExit(c: Child, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (c.exited !== null) {
      resolve();
      return;
    }
    const timer = setTimeout(() => {
      stop([c]);
      resolve();
    }, Math.max(0, deadline - Date.now()));
    const again = (): void => {
      if (c.exited !== null) {
        clearTimeout(timer);
        resolve();
      } else c.waiters.push(again);
    };
    c.waiters.push(again);
  });
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
  if (!Number.isSafeInteger(bytes) || bytes < 1) throw new WolfpackError('E_USAGE', `bytes must be a positive integer, got ${bytes}`);
  const chunkBytes = opts.chunkBytes ?? 4 << 20;
  const onread = opts.onread ?? true;
  const duplex = opts.duplex ?? false;
  const deadline = Date.now() + (opts.timeoutMs ?? 60_000 + bytes / 1e5);
  const children: Child[] = [];
  try {
    let seconds: number;
    if (duplex) {
      const a = start(['tcp-duplex'], undefined);
      const b = start(['tcp-duplex'], undefined);
      children.push(a, b);
      const [pa, pb] = await Promise.all([expect<{ port: number }>(a, 0, 'listening', deadline), expect<{ port: number }>(b, 1, 'listening', deadline)]);
      post(a, { t: 'setup', port: pb.port, bytes, chunkBytes });
      post(b, { t: 'setup', port: pa.port, bytes, chunkBytes });
      await Promise.all([expect(a, 0, 'ready', deadline), expect(b, 1, 'ready', deadline)]);
      post(a, { t: 'go' });
      post(b, { t: 'go' });
      const rs = await Promise.all([expect<{ seconds: number }>(a, 0, 'result', deadline), expect<{ seconds: number }>(b, 1, 'result', deadline)]);
      seconds = Math.max(rs[0].seconds, rs[1].seconds);
    } else {
      const source = start(['tcp-source'], undefined);
      const sink = start(['tcp-sink'], undefined);
      children.push(source, sink);
      const { port } = await expect<{ port: number }>(source, 0, 'listening', deadline);
      post(sink, { t: 'setup', port, bytes, onread });
      await expect(sink, 1, 'ready', deadline);
      post(source, { t: 'setup', bytes, chunkBytes });
      seconds = (await expect<{ seconds: number }>(source, 0, 'result', deadline)).seconds;
    }
    for (const c of children) post(c, { t: 'exit' });
    await Promise.all(children.map((c) => waitExit(c, Math.min(deadline, Date.now() + 5000))));
    return { bench: 'raw_tcp_loopback', bytes, chunk_bytes: chunkBytes, onread: onread || duplex, duplex, seconds, MBps: bytes / seconds / 1e6 };
  } finally {
    stop(children);
  }
}
