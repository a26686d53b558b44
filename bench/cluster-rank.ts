// One worker of the simulated cluster (`wolfpack bench cluster`, bench/cluster.ts), started as
// `node dist/bench/cluster-rank.js HOST` (inside its host's network namespace) with an IPC channel to
// the parent. It listens on HOST's ring port, reports it, gets its rank and its left neighbour's URL,
// joins the ring (the real ring transport), and runs warmup + steps modelled training steps
// (bench/cluster-step.ts: compute is timed waits, the all-reduce of the gradient buffer is real).
//
// The buffer is filled with rank+1 once; the first step's all-reduce is checked to give exactly
// N(N+1)/2 everywhere, later steps reduce whatever the buffer holds (the values only grow), and the
// SHA-256 of the final buffer lets the parent check that every rank ended bitwise identical. After the
// timed steps one more, untimed, reduction through the same schedule runs over mixed-magnitude values
// (rank-seeded, so the order of summation shows in the last bits); its SHA-256 (mixedSha256) lets the
// parent check that --schedule overlap's buckets give the bits of --schedule none's whole-buffer ring.
// Messages (JSON over IPC), rank -> parent: listening {port} | ready | result {...} | error {message, code};
// parent -> rank: setup {...} | exit. The rank exits when the parent's channel closes.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { bucketedAllReduce } from '../shared/allreduce/buckets.js';
import { chunkElemsOfKib, createRingBuffer, ringAllReduce } from '../shared/allreduce/ring.js';
import type { Link } from '../shared/allreduce/link.js';
import { isWolfpackError } from '../shared/errors.js';
import { connectRing, listenRing, wsLink } from '../shared/transport/ring/index.js';
import {
  createSchedule,
  modelledStep,
  type BucketedCollective,
  releaseOrder,
  stepTimeline,
  type ScheduleOptions,
} from './cluster-step.js';
import { listenToParent, nextParentMessage, sendToParent } from './rank-ipc.js';

export interface ClusterRankSetup extends ScheduleOptions {
  t: 'setup';
  rank: number;
  size: number;
  /** ws:// URL of the left neighbour's ring port. */
  left: string;
  jobId: string;
  /** Gradient sizes per layer in buffer (forward) order; the backward pass releases them in reverse. */
  layerSizes: number[];
  computeMs: number;
  steps: number;
  warmup: number;
  /** Network device whose tbf qdisc counts the bytes on the wire (eth0 in a namespace), or null. */
  iface: string | null;
  /** Whether this rank samples the machine's CPU (/proc/stat) over the timed steps. */
  machineStats: boolean;
  /** Bound on connecting the ring, ms. */
  connectTimeoutMs: number;
}

/** One step as the rank saw it, ms. */
export interface ClusterStepTimes {
  /** forward + backward (the modelled compute, as the timers delivered it). */
  compute_ms: number;
  /** From the end of the backward pass to the end of the last all-reduce: communication not hidden. */
  exposed_ms: number;
  /** From the start of the first all-reduce to the end of the last. */
  allreduce_ms: number;
  step_ms: number;
}

export interface ClusterRankResult {
  t: 'result';
  rank: number;
  /** Every step, warm-up first. */
  steps: ClusterStepTimes[];
  /** Payload bytes this rank's ring sent in one step (the ring's own count). */
  bytesSent: number;
  /** Per timed step, from the host's tbf qdisc (null when its link is not shaped): bytes and packets sent
   * as a wire carries them (every TCP segment's Ethernet/IP/TCP headers, ACKs included), packets dropped. */
  wire: { bytes: number; packets: number; drops: number } | null;
  /** CPU seconds of this process over the timed steps (user, system). */
  cpuUserS: number;
  cpuSystemS: number;
  /** Wall time of the timed steps, s. */
  timedWallS: number;
  /** The first all-reduce gave exactly N(N+1)/2 everywhere. */
  ok: boolean;
  firstBad?: string;
  sha256: string;
  /** SHA-256 of the buffer after the untimed mixed-values reduction through the schedule. */
  mixedSha256: string;
  /** Share of the machine's CPU time busy, in system and in softirq over the timed steps (machineStats only). */
  machine?: { busy: number; system: number; softirq: number };
}

/**
 * The counters of `iface`'s root qdisc when it is tbf, else null. A qdisc counts a GSO packet as the
 * segments it becomes, headers included (the device's own tx_bytes counts one header per GSO packet).
 */
function qdiscCounters(iface: string | null): { bytes: number; packets: number; drops: number } | null {
  if (iface === null) return null;
  const out = execFileSync('tc', ['-s', '-j', 'qdisc', 'show', 'dev', iface], { encoding: 'utf8', timeout: 5000 });
  const q = (
    JSON.parse(out) as Array<{ kind?: string; root?: boolean; bytes?: number; packets?: number; drops?: number }>
  ).find((x) => x.root === true);
  return q?.kind === 'tbf' ? { bytes: q.bytes ?? 0, packets: q.packets ?? 0, drops: q.drops ?? 0 } : null;
}

/** /proc/stat's first line: jiffies busy, in system, in softirq, and in total. */
function cpuJiffies(): { busy: number; system: number; softirq: number; total: number } | undefined {
  try {
    const v = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - v[3]! - (v[4] ?? 0), system: v[2]!, softirq: v[6] ?? 0, total };
  } catch {
    return undefined;
  }
}

function checkFirst(buf: Float32Array, size: number): { ok: boolean; firstBad?: string } {
  const want = (size * (size + 1)) / 2;
  for (let i = 0; i < buf.length; i++) {
    if (buf[i] !== want)
      return { ok: false, firstBad: `element ${i} = ${buf[i]} after the first all-reduce, expected ${want}` };
  }
  return { ok: true };
}

const hashOf = (buf: Float32Array): string =>
  createHash('sha256')
    .update(new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength))
    .digest('hex');

/** Rank-seeded values of mixed magnitudes (xorshift32), so that sums in another order would round differently. */
function fillMixed(buf: Float32Array, rank: number): void {
  let x = (0x9e3779b9 ^ (rank * 0x85ebca6b)) >>> 0 || 1;
  for (let i = 0; i < buf.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    const u = x / 4294967296;
    buf[i] = (u * 2 - 1) * ((x & 7) === 0 ? 1e4 : 1e-2);
  }
}

async function runRank(host: string): Promise<void> {
  const listener = await listenRing({ host, port: 0 });
  await sendToParent({ t: 'listening', port: listener.port });
  const setup = await nextParentMessage<ClusterRankSetup>('setup');
  const { rank, size } = setup;
  let link: Link | null = null;
  if (size > 1) {
    const [outgoing, incoming] = await Promise.all([
      listener.accept({ rank: (rank + 1) % size, jobId: setup.jobId }, setup.connectTimeoutMs),
      // two buckets in flight interleave their messages on the link: it must match them by tag alone
      connectRing(
        setup.left,
        { rank, size, jobId: setup.jobId },
        { timeoutMs: setup.connectTimeoutMs, ordered: (setup.inflight ?? 1) === 1 },
      ),
    ]);
    link = wsLink(outgoing, incoming);
  }
  await listener.close();
  await sendToParent({ t: 'ready' });

  const layers = releaseOrder(setup.layerSizes);
  const total = setup.layerSizes.reduce((a, b) => a + b, 0);
  const buf = createRingBuffer(total);
  buf.fill(rank + 1);
  let ringStep = 0;
  const chunk = setup.chunkKib !== undefined ? { chunkElems: chunkElemsOfKib(setup.chunkKib) } : {};
  const allReduce = async (region: Float32Array, wire = setup.wire) =>
    link === null
      ? { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 }
      : ringAllReduce(region, rank, size, link, { step: ringStep++, wire, ...chunk });
  const bar = new Float32Array(1);
  const barrier = async (): Promise<void> => {
    await allReduce(bar, 'fp32');
  };
  // --schedule overlap: bucket k is collective ringStep + k, so every rank numbers them alike.
  const bucketed: BucketedCollective = async (buckets, ready) => {
    const step = ringStep;
    ringStep += buckets.length;
    if (link === null) {
      for (let k = 0; k < buckets.length; k++) await ready(k);
      return { bytesSent: 0, bytesReceived: 0, messagesSent: 0, messagesReceived: 0 };
    }
    return bucketedAllReduce(buf, rank, size, link, {
      buckets,
      ready,
      step,
      wire: setup.wire,
      ...chunk,
      ...(setup.inflight !== undefined ? { inflight: setup.inflight } : {}),
    });
  };
  const schedule = createSchedule(setup, buf, layers, allReduce, bucketed);
  const timeline = stepTimeline(layers, setup.computeMs);

  const steps: ClusterStepTimes[] = [];
  let bytesSent = 0;
  let check: { ok: boolean; firstBad?: string } = { ok: true };
  let cpu0 = process.cpuUsage();
  let wall0 = 0;
  let wire0: ReturnType<typeof qdiscCounters> = null;
  let mach0 = cpuJiffies();
  for (let k = 0; k < setup.warmup + setup.steps; k++) {
    // All ranks start the first step, the one after the check and the first timed one together.
    if (k === 0 || k === 1 || k === setup.warmup) await barrier();
    if (k === setup.warmup) {
      cpu0 = process.cpuUsage();
      wall0 = performance.now();
      wire0 = qdiscCounters(setup.iface);
      if (setup.machineStats) mach0 = cpuJiffies();
    }
    const m = await modelledStep(timeline, schedule);
    steps.push({
      compute_ms: m.backwardEnd - m.start,
      exposed_ms: m.end - m.backwardEnd,
      allreduce_ms: m.end - m.commStart,
      step_ms: m.end - m.start,
    });
    bytesSent = m.bytesSent;
    if (k === 0) check = checkFirst(buf, size);
  }
  const timedWallS = (performance.now() - wall0) / 1000;
  const cpu = process.cpuUsage(cpu0);
  const wire1 = qdiscCounters(setup.iface);
  const perStep = (v: number): number => v / Math.max(1, setup.steps);
  let machine: ClusterRankResult['machine'];
  const mach1 = cpuJiffies();
  if (setup.machineStats && mach0 !== undefined && mach1 !== undefined && mach1.total > mach0.total) {
    const dt = mach1.total - mach0.total;
    machine = {
      busy: (mach1.busy - mach0.busy) / dt,
      system: (mach1.system - mach0.system) / dt,
      softirq: (mach1.softirq - mach0.softirq) / dt,
    };
  }
  const sha256 = hashOf(buf);
  fillMixed(buf, rank);
  schedule.begin();
  for (let i = 0; i < layers.length; i++) schedule.ready(i);
  await schedule.finish();
  const mixedSha256 = hashOf(buf);
  const result: ClusterRankResult = {
    t: 'result',
    rank,
    steps,
    bytesSent,
    wire:
      wire0 === null || wire1 === null
        ? null
        : {
            bytes: perStep(wire1.bytes - wire0.bytes),
            packets: perStep(wire1.packets - wire0.packets),
            drops: perStep(wire1.drops - wire0.drops),
          },
    cpuUserS: cpu.user / 1e6,
    cpuSystemS: cpu.system / 1e6,
    timedWallS,
    ok: check.ok,
    ...(check.firstBad !== undefined ? { firstBad: check.firstBad } : {}),
    sha256,
    mixedSha256,
    ...(machine !== undefined ? { machine } : {}),
  };
  await sendToParent(result);
  await nextParentMessage('exit');
  link?.close();
}

async function main(): Promise<void> {
  listenToParent();
  try {
    const host = process.argv[2];
    if (host === undefined) throw new Error('usage: cluster-rank.js HOST (started by wolfpack bench cluster)');
    await runRank(host);
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
