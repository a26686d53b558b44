// Simulated cluster benchmark (`wolfpack bench cluster`): how well data-parallel training would scale to
// N hosts on links of a given rate, with the real all-reduce and a modelled compute step.
//
// Each of N worker processes (bench/cluster-rank.ts) runs in a network namespace of its own, joined to
// the others through a bridge by a veth whose both ends are shaped to --link-mbit with tbf
// (bench/netlab.ts); they form the real ring (shared/transport/ring/, shared/allreduce/ring.ts)
// over the real ResNet-50 gradient layout (25,557,032 floats in 161 tensors, from shared/model/spec.ts
// via ParamLayout; --layout-scale shrinks every tensor for quick runs). Compute is MODELLED: a step of
// T = --compute-ms is a forward wait of T/3 and a backward of 2T/3 releasing the layers' gradients in
// reverse order, in proportion to their sizes (bench/cluster-step.ts); no arithmetic is done, because the
// real compute would be on a GPU. With --schedule none (today's design) the whole buffer is all-reduced
// in float32 after the backward pass; with --schedule overlap it is cut into DDP-style buckets of about
// --bucket-mb MiB (default 25) in reverse layer order, each all-reduced (shared/allreduce/buckets.ts) as
// soon as the backward pass has released its layers, while the backward pass goes on.
//
// Per run (one N) it reports, for the slowest rank, averaged over the timed steps:
//   step_s               wall time of a step
//   exposed_allreduce_s  all-reduce time not hidden by compute (end of backward -> end of all-reduce)
//   efficiency           T / step_s: the share of the step a GPU would spend computing
//   bytes_per_rank       payload bytes each rank's ring sent per step (the ring's own count)
// beside the figure on paper, T / (T + 2(N-1)/N * 4L bytes / link rate) for --schedule none, and for
// overlap the same ring at line rate bucket by bucket, each starting when it is ready and the previous
// one is done (overlapOnPaper), the bytes each host's link
// actually carried (headers and ACKs included, from its tbf qdisc), CPU seconds per step of each rank,
// how busy the machine was and the load average before and after. `--net loopback` runs the same ranks on
// 127.0.0.1 without namespaces (no shaping), to tell the harness apart from the network.
//
// Cleanup: every rank is killed by pid and every namespace (with its veth and bridge) deleted on every
// exit path, and on SIGINT/SIGTERM/SIGHUP (bench/netlab.ts); every wait is bounded.
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import os from 'node:os';
import { MAX_CHUNK_KIB } from '../shared/allreduce/ring.js';
import { resnet50Spec } from '../shared/model/spec.js';
import { ParamLayout } from '../shared/model/state.js';
import { distPath } from '../shared/paths.js';
import { WolfpackError } from '../shared/errors.js';
import type { ClusterRankResult, ClusterRankSetup } from './cluster-rank.js';
import {
  checkScheduleOptions,
  DEFAULT_BUCKET_MB,
  gradBuckets,
  bucketReadyAfter,
  releaseOrder,
  stepTimeline,
  type GradScheduleKind,
  type WireFormat,
} from './cluster-step.js';
import { NetLab, MAX_HOSTS, netlabUnavailable } from './netlab.js';
import { expectMessage, postMessage, stopRanks, waitRankExit, watchRank, type RankProcess } from './rank-process.js';

export const CLUSTER_NETS = ['netns', 'loopback'] as const;
export type ClusterNet = (typeof CLUSTER_NETS)[number];

/** Said in every report: the figures are not a real training run. */
export const COMPUTE_MODELLED_NOTE =
  'Compute is modelled, not run: each step waits T/3 (forward) and then releases the gradients layer by layer ' +
  'over 2T/3 (backward), ' +
  'as a GPU would, using no CPU; the all-reduce is real (ring transport, ring schedule, N processes).';

export interface ClusterBenchOptions {
  workers: number;
  /** Link rate in Mbit/s, each direction, on every host link; undefined or 0: unshaped. */
  linkMbit?: number;
  /** T, the modelled compute of one step, ms. */
  computeMs: number;
  /** Timed steps (>= 1) and untimed ones before them. */
  steps: number;
  warmup: number;
  schedule?: GradScheduleKind;
  bucketMb?: number;
  inflight?: number;
  /** --chunk-kib: KiB of float32 in one ring message (default: the ring's, 4096). */
  chunkKib?: number;
  wire?: WireFormat;
  /** Every gradient tensor scaled by this (1: the real ResNet-50), at least one float each. */
  layoutScale?: number;
  net?: ClusterNet;
  /** Bound on the whole run (default: generous, from the sizes and rate). */
  timeoutMs?: number;
  progress?: (line: string) => void;
}

export interface ClusterRunResult {
  bench: 'wolfpack_cluster_sim';
  compute: 'modelled';
  note: string;
  workers: number;
  net: ClusterNet;
  link_mbit: number | null;
  compute_ms: number;
  steps: number;
  warmup: number;
  schedule: GradScheduleKind;
  /** --schedule overlap: the bucket size (MiB) and how many buckets the gradients made; null otherwise. */
  bucket_mb: number | null;
  buckets: number | null;
  /** --schedule overlap: buckets all-reduced at once (1 or 2); null otherwise. */
  inflight: number | null;
  /** KiB of float32 in one ring message (--chunk-kib). */
  chunk_kib: number;
  wire: WireFormat;
  layout_scale: number;
  layers: number;
  elements: number;
  /** Mean step time of the slowest rank over the timed steps, s. */
  step_s: number;
  /** The slowest rank's timed steps, and the all-reduce time in each, s. */
  step_times_s: number[];
  allreduce_times_s: number[];
  /** Shortest and longest single step over all ranks, s. */
  step_min_s: number;
  step_max_s: number;
  /**
   * Of the slowest rank: all-reduce time not hidden by compute, whole all-reduce time, modelled compute as
   * delivered, s.
   */
  exposed_allreduce_s: number;
  allreduce_s: number;
  compute_s: number;
  /** T / step_s. */
  efficiency: number;
  /**
   * none: T / (T + 2(N-1)/N * 4L * 8 / rate), the ring at line rate with nothing hidden; overlap: overlapOnPaper;
   * null when unshaped.
   */
  efficiency_on_paper: number | null;
  /** Payload bytes each rank sent per step (index = rank). */
  bytes_per_rank: number[];
  /**
   * Bytes each host sent per step as a wire carries them (payload plus WebSocket/TCP/IP/Ethernet headers, ACKs),
   * from its tbf qdisc; null when unshaped.
   */
  wire_tx_bytes_per_rank: Array<number | null>;
  /** Packets tbf dropped per step, summed over the hosts (TCP resends them); null when unshaped. */
  wire_drops: number | null;
  /**
   * CPU seconds per step of each rank process (user + system), and the system part of it (the kernel's send and
   * receive).
   */
  cpu_s_per_step: number[];
  cpu_system_s_per_step: number[];
  /** Share of the whole machine's CPU busy over the timed steps (rank 0's view), and in system / softirq. */
  machine_busy: number | null;
  machine_system: number | null;
  machine_softirq: number | null;
  load1_before: number;
  load1_after: number;
  cores: number;
  /** First all-reduce exact on every rank and every rank's final buffer bitwise identical. */
  verified: boolean;
  /**
   * SHA-256 of rank 0's final buffer (every rank's, when verified), and of its buffer after one more, untimed,
   * reduction of rank-seeded mixed-magnitude values through the same schedule (the bits that depend on the order
   * of summation).
   */
  final_sha256: string;
  mixed_sha256: string;
  /**
   * --schedule overlap run beside --schedule none at the same N and steps (crossCheckSchedules): whether the final
   * buffers are the same bits.
   */
  same_bits_as_none?: boolean;
  /** Why not, when not verified. */
  first_bad?: string;
  wall_s: number;
}

function rankScript(): string {
  const path = distPath('bench/cluster-rank.js');
  if (!existsSync(path)) throw new WolfpackError('E_USAGE', `${path} is missing: build first (npm run build)`);
  return path;
}

/** Gradient sizes of ResNet-50 (ImageNet head) per trainable tensor, in buffer order, each scaled by `scale`. */
export function resnet50GradientSizes(scale = 1): number[] {
  if (!(Number.isFinite(scale) && scale > 0 && scale <= 1))
    throw new WolfpackError('E_USAGE', `layout scale must be in (0, 1], got ${scale}`);
  const layout = new ParamLayout(resnet50Spec({ flavour: 'torchvision', width: 64, numClasses: 1000 }));
  return layout.trainable.map((s) => (scale === 1 ? s.size : Math.max(1, Math.round(s.size * scale))));
}

/** The efficiency of a step of computeMs followed by a ring all-reduce of `elements` float32 at linkMbit. */
export function efficiencyOnPaper(workers: number, elements: number, computeMs: number, linkMbit: number): number {
  const commS = workers <= 1 ? 0 : ((2 * (workers - 1)) / workers) * ((4 * elements * 8) / (linkMbit * 1e6));
  const t = computeMs / 1000;
  return t / (t + commS);
}

/**
 * --schedule overlap on paper: the ring at line rate, bucket by bucket (gradBuckets), bucket k starting
 * when the modelled backward pass has released it and bucket k-1 is done; T / max(T, end of the last).
 */
export function overlapOnPaper(
  workers: number,
  layerSizes: readonly number[],
  computeMs: number,
  linkMbit: number,
  bucketMb = DEFAULT_BUCKET_MB,
): number {
  const t = computeMs / 1000;
  if (workers <= 1) return 1;
  const layers = releaseOrder(layerSizes);
  const buckets = gradBuckets(layerSizes, bucketMb);
  const after = bucketReadyAfter(buckets, layers);
  const tl = stepTimeline(layers, computeMs);
  let end = 0;
  buckets.forEach((b, k) => {
    const comm = ((2 * (workers - 1)) / workers) * ((4 * (b.end - b.begin) * 8) / (linkMbit * 1e6));
    end = Math.max(end, tl.releaseMs[after[k]!]! / 1000) + comm;
  });
  return t / Math.max(t, end);
}

/**
 * Sets same_bits_as_none on each overlap run of `rs` that has a none run beside it (same N, net, link,
 * steps, layout): whether both the final buffers and the mixed-values reductions are the same bits; an
 * overlap run whose bits differ is unverified. Returns how many pairs were compared.
 */
export function crossCheckSchedules(rs: ClusterRunResult[]): number {
  let pairs = 0;
  for (const o of rs.filter((r) => r.schedule === 'overlap')) {
    const n = rs.find(
      (r) =>
        r.schedule === 'none' &&
        r.workers === o.workers &&
        r.net === o.net &&
        r.link_mbit === o.link_mbit &&
        r.steps === o.steps &&
        r.warmup === o.warmup &&
        r.layout_scale === o.layout_scale,
    );
    if (n === undefined) continue;
    pairs++;
    o.same_bits_as_none = o.final_sha256 === n.final_sha256 && o.mixed_sha256 === n.mixed_sha256;
    if (!o.same_bits_as_none) {
      o.verified = false;
      o.first_bad ??= `its buffers are not the bits of --schedule none's at N=${o.workers}`;
    }
  }
  return pairs;
}

/** Why `bench cluster --net netns` cannot run here, or undefined when it can. */
export function clusterUnavailable(): string | undefined {
  return netlabUnavailable();
}

const mean = (xs: readonly number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;

/** One run of the simulated cluster at N = opts.workers; see the module comment. */
export async function runClusterBench(opts: ClusterBenchOptions): Promise<ClusterRunResult> {
  const n = opts.workers;
  const net = opts.net ?? 'netns';
  const schedule = opts.schedule ?? 'none';
  const wire = opts.wire ?? 'fp32';
  const linkMbit = opts.linkMbit === 0 ? undefined : opts.linkMbit;
  const scale = opts.layoutScale ?? 1;
  if (!Number.isSafeInteger(n) || n < 1 || n > MAX_HOSTS)
    throw new WolfpackError('E_USAGE', `workers must be an integer in [1, ${MAX_HOSTS}], got ${n}`);
  if (!Number.isSafeInteger(opts.steps) || opts.steps < 1)
    throw new WolfpackError('E_USAGE', `steps must be an integer >= 1, got ${opts.steps}`);
  if (!Number.isSafeInteger(opts.warmup) || opts.warmup < 0)
    throw new WolfpackError('E_USAGE', `warmup must be an integer >= 0, got ${opts.warmup}`);
  if (!(Number.isFinite(opts.computeMs) && opts.computeMs >= 0))
    throw new WolfpackError('E_USAGE', `compute ms must be a number >= 0, got ${opts.computeMs}`);
  if (linkMbit !== undefined && !(Number.isFinite(linkMbit) && linkMbit > 0))
    throw new WolfpackError('E_USAGE', `link Mbit/s must be a positive number (0: unshaped), got ${linkMbit}`);
  if (linkMbit !== undefined && net === 'loopback')
    throw new WolfpackError('E_USAGE', '--link-mbit needs --net netns: loopback links cannot be shaped');
  checkScheduleOptions({
    schedule,
    wire,
    ...(opts.bucketMb !== undefined ? { bucketMb: opts.bucketMb } : {}),
    ...(opts.inflight !== undefined ? { inflight: opts.inflight } : {}),
    ...(opts.chunkKib !== undefined ? { chunkKib: opts.chunkKib } : {}),
  });
  if (net === 'netns') {
    const why = netlabUnavailable();
    if (why !== undefined)
      throw new WolfpackError('E_USAGE', `bench cluster --net netns: ${why} (or use --net loopback, unshaped)`);
  }
  const layerSizes = resnet50GradientSizes(scale);
  const elements = layerSizes.reduce((a, b) => a + b, 0);
  const script = rankScript();
  // Generous bound: every step's compute, plus its all-reduce at a quarter of the link rate (or 25 MB/s
  // unshaped), plus a minute to set up.
  const commBoundMs =
    linkMbit !== undefined ? ((2 * 4 * elements * 8) / (linkMbit * 1e6)) * 4000 : ((2 * 4 * elements) / 25e6) * 1000;
  const timeoutMs = opts.timeoutMs ?? 60_000 + (opts.warmup + opts.steps + 3) * (opts.computeMs + commBoundMs + 5_000);
  const deadline = Date.now() + timeoutMs;
  const jobId = `cluster-${process.pid}-${Date.now()}`;
  const load1Before = os.loadavg()[0]!;
  const t0 = performance.now();

  let lab: NetLab | null = null;
  const ranks: RankProcess[] = [];
  try {
    const hosts: string[] = [];
    if (net === 'netns') {
      lab = NetLab.create({ hosts: n, ...(linkMbit !== undefined ? { rateMbit: linkMbit } : {}) });
      await lab.waitUp(Math.max(1, Math.min(10_000, deadline - Date.now())));
      for (const h of lab.hosts) hosts.push(h.addr);
    } else {
      for (let i = 0; i < n; i++) hosts.push('127.0.0.1');
    }
    opts.progress?.(
      `N=${n}: ` +
        (net === 'netns'
          ? `${n} namespaces, links ${linkMbit !== undefined ? `${linkMbit} Mbit/s (tbf)` : 'unshaped'}`
          : 'loopback') +
        ', ' +
        `${elements.toLocaleString('en-US')} floats in ${layerSizes.length} tensors, T = ${opts.computeMs} ms, ` +
        `${opts.warmup} + ${opts.steps} steps`,
    );
    const stdio: ['ignore', 'ignore', 'pipe', 'ipc'] = ['ignore', 'ignore', 'pipe', 'ipc'];
    for (let i = 0; i < n; i++) {
      const proc =
        lab !== null
          ? lab.spawn(i, process.execPath, [script, hosts[i]!], { stdio })
          : spawn(process.execPath, [script, hosts[i]!], { stdio });
      ranks.push(watchRank(i, proc));
    }
    const ports = await Promise.all(ranks.map((c) => expectMessage<{ port: number }>(c, 'listening', deadline)));
    ranks.forEach((c, i) => {
      const left = (i + n - 1) % n;
      const setup: ClusterRankSetup = {
        t: 'setup',
        rank: i,
        size: n,
        left: `ws://${hosts[left]}:${ports[left]!.port}`,
        jobId,
        layerSizes,
        computeMs: opts.computeMs,
        steps: opts.steps,
        warmup: opts.warmup,
        schedule,
        wire,
        ...(opts.bucketMb !== undefined ? { bucketMb: opts.bucketMb } : {}),
        ...(opts.inflight !== undefined ? { inflight: opts.inflight } : {}),
        ...(opts.chunkKib !== undefined ? { chunkKib: opts.chunkKib } : {}),
        iface: lab !== null ? 'eth0' : null,
        machineStats: i === 0,
        connectTimeoutMs: Math.max(1000, Math.min(30_000, deadline - Date.now())),
      };
      postMessage(c, setup);
    });
    await Promise.all(ranks.map((c) => expectMessage(c, 'ready', deadline)));
    opts.progress?.(`N=${n}: ring formed (rank pids ${ranks.map((c) => c.proc.pid).join(', ')}), stepping`);
    const results = await Promise.all(ranks.map((c) => expectMessage<ClusterRankResult>(c, 'result', deadline)));
    for (const c of ranks) postMessage(c, { t: 'exit' });
    await Promise.all(ranks.map((c) => waitRankExit(c, Math.min(deadline, Date.now() + 5000))));
    results.sort((a, b) => a.rank - b.rank);

    const timed = results.map((r) => r.steps.slice(opts.warmup));
    const meanStep = timed.map((ss) => mean(ss.map((s) => s.step_ms)));
    const slow = meanStep.indexOf(Math.max(...meanStep));
    const allSteps = timed.flat().map((s) => s.step_ms);
    const stepS = meanStep[slow]! / 1000;
    const slowest = timed[slow]!;
    const r0 = results[0]!;
    const m0 = r0.machine;
    const bad = results.find((r) => !r.ok);
    const firstBad =
      bad !== undefined
        ? `rank ${bad.rank}: ${bad.firstBad ?? 'wrong result'}`
        : results.some((r) => r.sha256 !== r0.sha256)
          ? "the ranks' final buffers differ"
          : results.some((r) => r.mixedSha256 !== r0.mixedSha256)
            ? "the ranks' buffers differ after the mixed-values reduction"
            : undefined;
    return {
      bench: 'wolfpack_cluster_sim',
      compute: 'modelled',
      note: COMPUTE_MODELLED_NOTE,
      workers: n,
      net,
      link_mbit: linkMbit ?? null,
      compute_ms: opts.computeMs,
      steps: opts.steps,
      warmup: opts.warmup,
      schedule,
      bucket_mb: schedule === 'overlap' ? (opts.bucketMb ?? DEFAULT_BUCKET_MB) : null,
      buckets: schedule === 'overlap' ? gradBuckets(layerSizes, opts.bucketMb ?? DEFAULT_BUCKET_MB).length : null,
      inflight: schedule === 'overlap' ? (opts.inflight ?? 1) : null,
      chunk_kib: opts.chunkKib ?? MAX_CHUNK_KIB,
      wire,
      layout_scale: scale,
      layers: layerSizes.length,
      elements,
      step_s: stepS,
      step_times_s: slowest.map((s) => s.step_ms / 1000),
      allreduce_times_s: slowest.map((s) => s.allreduce_ms / 1000),
      step_min_s: Math.min(...allSteps) / 1000,
      step_max_s: Math.max(...allSteps) / 1000,
      exposed_allreduce_s: mean(slowest.map((s) => s.exposed_ms)) / 1000,
      allreduce_s: mean(slowest.map((s) => s.allreduce_ms)) / 1000,
      compute_s: mean(slowest.map((s) => s.compute_ms)) / 1000,
      efficiency: opts.computeMs / 1000 / stepS,
      efficiency_on_paper:
        linkMbit === undefined
          ? null
          : schedule === 'overlap'
            ? overlapOnPaper(n, layerSizes, opts.computeMs, linkMbit, opts.bucketMb ?? DEFAULT_BUCKET_MB)
            : efficiencyOnPaper(n, elements, opts.computeMs, linkMbit),
      bytes_per_rank: results.map((r) => r.bytesSent),
      wire_tx_bytes_per_rank: results.map((r) => r.wire?.bytes ?? null),
      wire_drops: results.some((r) => r.wire === null) ? null : results.reduce((a, r) => a + (r.wire?.drops ?? 0), 0),
      cpu_s_per_step: results.map((r) => (r.cpuUserS + r.cpuSystemS) / opts.steps),
      cpu_system_s_per_step: results.map((r) => r.cpuSystemS / opts.steps),
      machine_busy: m0?.busy ?? null,
      machine_system: m0?.system ?? null,
      machine_softirq: m0?.softirq ?? null,
      load1_before: load1Before,
      load1_after: os.loadavg()[0]!,
      cores: os.cpus().length,
      verified: firstBad === undefined,
      final_sha256: r0.sha256,
      mixed_sha256: r0.mixedSha256,
      ...(firstBad !== undefined ? { first_bad: firstBad } : {}),
      wall_s: (performance.now() - t0) / 1000,
    };
  } finally {
    stopRanks(ranks);
    lab?.destroy();
  }
}
