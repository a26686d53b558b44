// ResNet-50 (width 64, 224x224, batch 32 by default) on TF.js's webgpu backend: forward and training
// images/s, dispatches a step, GPU time per kernel (timestamp queries) and where the CPU time goes
// (V8's sampling profiler), for
//   forward  stock   Replica.predict: forward.ts in TF.js ops (BatchNorm, ReLU, add as separate kernels)
//            fused   WebGpuReplica.predict: BatchNorm + ReLU (+ shortcut) in one dispatch
//   train    stock   Replica: TF.js ops and autodiff, wolfpack's convolution-gradient kernels, ~270
//                    tensor reads, Momentum in JS, parameters re-uploaded tensor by tensor
//            fused   WebGpuReplica ('ddp': gradients read back for the ring all-reduce, Momentum on the
//                    GPU; 'single': no read-back, one worker; 'host': Momentum in JS, bit-identical
//                    to other backends), through TF.js (capture off) and then captured and replayed
//                    (`captured`: the CPU time to launch a replayed step beside TF.js's recording time)
// Timed like bench/model.ts and the PyTorch peer: warm-up runs, then the median of `reps` runs.
//   node --import tsx bench/webgpu.ts [--batch 32] [--image-size 224] [--reps 5] [--phases LIST]
//        [--classes 1000] [--software] [--out FILE] [--dx-mm] [--dx-gemm] [--submit-batch N]
// --dx-mm uses TF.js's tiled Conv2DBackpropInput (WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE=false) for the
// convolutions that are not 1x1 stride 1, --dx-gemm wolfpack's implicit GEMM for them (inputGradGemm);
// --submit-batch sets WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE.
// prints one JSON object (and writes it to FILE after every phase, so a cut-off run keeps its part).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { tf } from '../shared/backend/tf.js';
import { activateWebGpu, type WebGpuAdapterReport } from '../shared/backend/webgpu/activate.js';
import { profileGpu, type GpuProfile } from '../shared/backend/webgpu/profile.js';
import { countTfjsDispatches, dispatchStats, resetDispatchStats } from '../shared/backend/webgpu/raw.js';
import { inputGradGemm } from '../shared/backend/webgpu/kernels.js';
import { WebGpuReplica, type WebGpuReplicaOptions } from '../shared/train/webgpu-replica.js';
import type { WebGpuBackend } from '../shared/backend/webgpu/types.js';
import type { ModelState } from '../shared/model/state.js';
import { initModel } from '../shared/model/weights.js';
import { Replica } from '../shared/train/replica.js';
import { median, round, timeRuns } from './machine.js';
import { syntheticBatch } from './synthetic-batch.js';
import { DEFAULT_BUCKET_ELEMS } from '../shared/allreduce/buckets.js';

/** In the order they run: the slow stock training step last, so a time limit cuts it first. */
export const PHASES = [
  'forward-stock',
  'forward-fused',
  'train-fused-ddp',
  'train-fused-single',
  'train-fused-host',
  'profile-gpu',
  'profile-cpu',
  'train-stock',
] as const;
export type Phase = (typeof PHASES)[number];

export interface WebGpuBenchOptions {
  batch?: number;
  imageSize?: number;
  reps?: number;
  classes?: number;
  /** Channels of the stem (64 = ResNet-50; 4 = the tests' small network of the same shape). */
  width?: number;
  phases?: readonly Phase[];
  /** Accept a software adapter (lavapipe), for trying the bench without a GPU. */
  software?: boolean;
  /** Write the partial result here after every phase. */
  out?: string;
  /** TF.js's tiled (matrix-product) Conv2DBackpropInput instead of its direct one. */
  dxMatMul?: boolean;
  /** wolfpack's implicit-GEMM Conv2DBackpropInput (shared/backend/webgpu/kernels.ts's inputGradGemm). */
  dxGemm?: boolean;
  /** Dispatches per submitted command buffer (TF.js default 15). */
  submitBatch?: number;
  progress?: (line: string) => void;
}

export interface PhaseResult {
  img_s: number;
  median_s: number;
  times_s: number[];
  /** Dispatches in one run (a forward pass or a training step). */
  dispatches: number;
  /** Synchronous and asynchronous read-backs in one run. */
  reads?: number;
  /** Dispatches by program, one run. */
  by_program?: Record<string, number>;
  /** WebGpuReplica's split of the step: recording GPU work, waiting for the read-back, the update (ms, median). */
  split_ms?: { record: number; read: number; update: number };
  /** split_ms.record of each measured run. */
  record_runs_ms?: number[];
  /** CPU time of the recording thread during split_ms.record (median, and each run; Linux only). */
  record_cpu_ms?: number;
  record_cpu_runs_ms?: number[];
  /** The same step captured once and replayed (WebGpuReplica's `capture`), measured after it. */
  captured?: CapturedPhase;
  /** Captured and replayed with the gradients handed over in 25 MiB buckets (train --bucket-mb 25). */
  streamed?: StreamedPhase;
}

export interface StreamedPhase {
  img_s: number;
  median_s: number;
  buckets: number;
  /** When each bucket was handed over (an all-reduce could start on it), ms after the step began, median. */
  bucket_ms: number[];
  /** When the step's whole read-back had ended, ms after it began, median. */
  done_ms: number;
  /** bucket_ms[0] / done_ms: how early in the step the first bucket's all-reduce can start. */
  first_over_done: number;
  split_ms: { record: number; read: number; update: number };
}

export interface CapturedPhase {
  img_s: number;
  median_s: number;
  times_s: number[];
  /** CPU milliseconds to launch a replayed step (write the inputs, encode the captured dispatches, submit), median. */
  launch_ms: number;
  launch_runs_ms: number[];
  /** launch_ms over the un-captured step's split_ms.record, in the same run. */
  launch_over_record: number;
  /** The main thread's CPU time of a launch (median, each run) and its ratio to record_cpu_ms (Linux only). */
  launch_cpu_ms?: number;
  launch_cpu_runs_ms?: number[];
  launch_cpu_over_record_cpu?: number;
  split_ms: { record: number; read: number; update: number };
  /** launch_ms's parts (medians): submitting TF.js's pending work, writing the inputs, encoding, submitting. */
  launch_split_ms?: { flush: number; inputs: number; encode: number; submit: number };
  /** Dispatches and copies one replay encodes, and the uniform and constant bytes the capture holds. */
  capture?: { dispatches: number; copies: number; bytes: number };
  /** Why capture fell back to TF.js, if it did (then the figures are TF.js's). */
  fallback?: string;
}

export interface CpuProfileSummary {
  wall_ms: number;
  sampled_ms: number;
  top: { fn: string; ms: number; pct: number }[];
}

export interface WebGpuBenchResult {
  bench: 'wolfpack_resnet50_webgpu';
  adapter?: WebGpuAdapterReport;
  batch: number;
  /** Stem channels: 64 is ResNet-50. */
  width: number;
  image_size: number;
  classes: number;
  reps: number;
  flags: Record<string, unknown>;
  forward: Partial<Record<'stock' | 'fused', PhaseResult>>;
  train: Partial<Record<'stock' | 'fused_ddp' | 'fused_single' | 'fused_host', PhaseResult>>;
  gpu_profile?: { fused_step?: GpuProfile; fused_forward?: GpuProfile; stock_step?: GpuProfile };
  cpu_profile?: { fused_step?: CpuProfileSummary };
  errors: string[];
  notes: string[];
}

/** Counts dispatches and reads of one more run of fn. */
async function countOne(fn: () => Promise<void>): Promise<Pick<PhaseResult, 'dispatches' | 'reads' | 'by_program'>> {
  resetDispatchStats();
  await fn();
  dispatchStats.enabled = false;
  return {
    dispatches: dispatchStats.total,
    reads: dispatchStats.syncReads,
    by_program: Object.fromEntries([...dispatchStats.byName].sort((a, b) => b[1] - a[1])),
  };
}

/** Self time by function of a V8 CPU profile, largest first. */
export function summarizeCpuProfile(
  profile: {
    nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
    samples?: number[];
    timeDeltas?: number[];
  },
  top = 25,
): Omit<CpuProfileSummary, 'wall_ms'> {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const self = new Map<string, number>();
  const samples = profile.samples ?? [];
  const deltas = profile.timeDeltas ?? [];
  let total = 0;
  for (let i = 0; i < samples.length; i++) {
    const n = byId.get(samples[i]!);
    if (!n) continue;
    const f = n.callFrame;
    const file = f.url.split('/').slice(-1)[0] || '';
    const key = `${f.functionName || '(anonymous)'} ${file}${file ? `:${f.lineNumber + 1}` : ''}`;
    const us = deltas[i] ?? 0;
    self.set(key, (self.get(key) ?? 0) + us);
    total += us;
  }
  return {
    sampled_ms: total / 1000,
    top: [...self]
      .sort((a, b) => b[1] - a[1])
      .slice(0, top)
      .map(([fn, us]) => ({ fn, ms: us / 1000, pct: total ? (100 * us) / total : 0 })),
  };
}

/**
 * This thread's CPU time in ms from /proc/thread-self/schedstat, where Linux has it. The kernel
 * brings it up to date at each scheduler tick (every 4 ms here): good for the tens of milliseconds
 * of a recording, +-4 ms for a replay's launch.
 */
const threadCpuMs: (() => number) | undefined = existsSync('/proc/thread-self/schedstat')
  ? () => Number(readFileSync('/proc/thread-self/schedstat', 'utf8').split(' ')[0]) / 1e6
  : undefined;

export async function benchWebGpu(opts: WebGpuBenchOptions = {}): Promise<WebGpuBenchResult> {
  const batchSize = opts.batch ?? 32;
  const imageSize = opts.imageSize ?? 224;
  const reps = opts.reps ?? 5;
  const classes = opts.classes ?? 1000;
  const phases = new Set(opts.phases ?? PHASES);
  const say = opts.progress ?? ((l: string) => process.stderr.write(`bench webgpu: ${l}\n`));
  const result: WebGpuBenchResult = {
    bench: 'wolfpack_resnet50_webgpu',
    batch: batchSize,
    width: opts.width ?? 64,
    image_size: imageSize,
    classes,
    reps,
    flags: {},
    forward: {},
    train: {},
    errors: [],
    notes: [],
  };
  const save = (): void => {
    if (opts.out) writeFileSync(opts.out, JSON.stringify(result, null, 1));
  };
  tf.env().set('PROD', true);
  result.adapter = await activateWebGpu({ allowSoftwareGpu: opts.software ?? false });
  if (opts.dxMatMul) tf.env().set('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE', false);
  inputGradGemm.enabled = opts.dxGemm ?? false;
  if (opts.submitBatch) tf.env().set('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE', opts.submitBatch);
  const backend = tf.backend() as WebGpuBackend;
  countTfjsDispatches(backend);
  result.flags = {
    WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE: tf.env().get('WEBGPU_DEFERRED_SUBMIT_BATCH_SIZE'),
    WEBGPU_CPU_FORWARD: tf.env().get('WEBGPU_CPU_FORWARD'),
    WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE: tf.env().get('WEBGPU_USE_NAIVE_CONV2D_TRANSPOSE'),
    dx_gemm: inputGradGemm.enabled,
    timestamp_query: backend.supportTimestampQuery,
    limits: Object.fromEntries(
      ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxComputeWorkgroupStorageSize'].map((k) => [
        k,
        backend.device.limits[k],
      ]),
    ),
  };
  say(`adapter ${result.adapter.description}; batch ${batchSize}, ${imageSize}x${imageSize}, ${reps} reps`);
  const config = { flavour: 'torchvision' as const, width: result.width, numClasses: classes };
  const state0 = initModel(config, 0);
  const fresh = (): ModelState => ({
    layout: state0.layout,
    params: Float32Array.from(state0.params),
    stats: Float32Array.from(state0.stats),
  });
  const batch = syntheticBatch(batchSize, imageSize, classes);
  const trainOpts = { lr: 1e-3, momentum: 0.9, freeze: 'none' as const, bn: 'train' as const };

  const phase = async (name: Phase, f: () => Promise<void>): Promise<void> => {
    if (!phases.has(name)) return;
    say(`${name} ...`);
    const t0 = performance.now();
    try {
      await f();
    } catch (e) {
      result.errors.push(`${name}: ${(e as Error).stack ?? String(e)}`.slice(0, 2000));
      say(`${name} failed: ${(e as Error).message}`);
    }
    say(`${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
    save();
  };
  const measure = async (run: () => Promise<void>, warmup: number, n = reps): Promise<PhaseResult> => {
    const times = await timeRuns(run, n, warmup);
    const counts = await countOne(run);
    const m = median(times);
    return { img_s: batchSize / m, median_s: m, times_s: times, ...counts };
  };

  await phase('forward-stock', async () => {
    const r = new Replica(fresh(), trainOpts);
    try {
      result.forward.stock = await measure(async () => {
        await r.predict(batch);
      }, 2);
    } finally {
      r.dispose();
    }
  });
  await phase('forward-fused', async () => {
    const r = new WebGpuReplica(fresh(), trainOpts);
    try {
      result.forward.fused = await measure(async () => {
        await r.predict(batch);
      }, 2);
    } finally {
      r.dispose();
    }
  });
  // A software adapter runs the GPU's work on the CPU's cores: the last step's update, still running,
  // would take them from the next step's recording. So there each fused step starts on an idle device.
  const settleBeforeStep = result.adapter.software;
  if (settleBeforeStep)
    result.notes.push(
      "software adapter: each fused training step starts after the previous step's GPU work is done " +
        '(it runs on the CPU cores that record)',
    );
  const fusedTrain = async (
    key: 'fused_ddp' | 'fused_single' | 'fused_host',
    o: WebGpuReplicaOptions,
  ): Promise<void> => {
    const timed = async (capture: boolean, bucketElems?: number) => {
      const r = new WebGpuReplica(fresh(), trainOpts, undefined, {
        ...o,
        capture,
        ...(threadCpuMs ? { cpuClock: threadCpuMs } : {}),
      });
      const settle = settleBeforeStep ? () => backend.device.queue.onSubmittedWorkDone() : async () => {};
      const splits: { record: number; read: number; update: number; recordCpu: number }[] = [];
      const launches: { flush: number; inputs: number; encode: number; submit: number }[] = [];
      // With buckets: when each was handed over, ms after the step began, and when the step's read-back ended.
      const buckets = bucketElems === undefined ? undefined : r.reduce.gradientBuckets(bucketElems);
      const landings: { at: number[]; done: number }[] = [];
      try {
        const step = async (): Promise<void> => {
          await settle();
          const t0 = performance.now();
          const at: number[] = [];
          await r.computeGradients(
            batch,
            batchSize,
            buckets && { buckets, landed: () => at.push(performance.now() - t0) },
          );
          landings.push({ at, done: performance.now() - t0 });
          if (r.applyReduced().skipped) throw new Error('non-finite step');
          splits.push({ ...r.timings });
          launches.push({ ...(r.captureInfo?.lastReplay ?? { flush: 0, inputs: 0, encode: 0, submit: 0 }) });
        };
        // Two warm-ups: with capture, the first records and the second is the first replay.
        const res = await measure(step, 2);
        const tail = splits.slice(2, 2 + reps);
        const split = {
          record: median(tail.map((s) => s.record)),
          read: median(tail.map((s) => s.read)),
          update: median(tail.map((s) => s.update)),
        };
        const lt = launches.slice(2, 2 + reps);
        const parts = {
          flush: median(lt.map((l) => l.flush)),
          inputs: median(lt.map((l) => l.inputs)),
          encode: median(lt.map((l) => l.encode)),
          submit: median(lt.map((l) => l.submit)),
        };
        const cpu = tail.map((s) => round(s.recordCpu, 2));
        const landed = landings.slice(2, 2 + reps);
        return {
          res,
          split,
          parts,
          buckets: buckets && {
            count: buckets.length,
            bucket_ms: buckets.map((_, k) => round(median(landed.map((l) => l.at[k] ?? NaN)), 2)),
            done_ms: round(median(landed.map((l) => l.done)), 2),
          },
          records: tail.map((s) => round(s.record, 2)),
          cpu,
          info: r.captureInfo,
          off: r.captureOff,
        };
      } finally {
        r.dispose();
      }
    };
    const plain = await timed(false);
    result.train[key] = {
      ...plain.res,
      split_ms: plain.split,
      record_runs_ms: plain.records,
      ...(threadCpuMs ? { record_cpu_ms: median(plain.cpu), record_cpu_runs_ms: plain.cpu } : {}),
    };
    const cap = await timed(true);
    result.train[key]!.captured = {
      img_s: cap.res.img_s,
      median_s: cap.res.median_s,
      times_s: cap.res.times_s,
      launch_ms: cap.split.record,
      launch_runs_ms: cap.records,
      launch_over_record: round(cap.split.record / plain.split.record, 4),
      split_ms: cap.split,
      launch_split_ms: cap.parts,
      ...(threadCpuMs
        ? {
            launch_cpu_ms: median(cap.cpu),
            launch_cpu_runs_ms: cap.cpu,
            launch_cpu_over_record_cpu: round(median(cap.cpu) / median(plain.cpu), 4),
          }
        : {}),
      ...(cap.info
        ? { capture: { dispatches: cap.info.dispatches, copies: cap.info.copies, bytes: cap.info.bytes } }
        : {}),
      ...(cap.off ? { fallback: cap.off } : {}),
    };
    // Only where the gradients are read back for the ring with the GPU update (what a worker of a pack runs).
    if (key !== 'fused_ddp') return;
    // The gradients handed over bucket by bucket (train --bucket-mb 25, DDP's default) as the GPU finishes them.
    const streamed = await timed(true, DEFAULT_BUCKET_ELEMS);
    const b = streamed.buckets!;
    result.train[key]!.streamed = {
      img_s: streamed.res.img_s,
      median_s: streamed.res.median_s,
      buckets: b.count,
      bucket_ms: b.bucket_ms,
      done_ms: b.done_ms,
      first_over_done: round(b.bucket_ms[0]! / b.done_ms, 4),
      split_ms: streamed.split,
    };
  };
  await phase('train-fused-ddp', () => fusedTrain('fused_ddp', { optimizer: 'gpu', hostGradients: true }));
  await phase('train-fused-single', () => fusedTrain('fused_single', { optimizer: 'gpu', hostGradients: false }));
  await phase('train-fused-host', () => fusedTrain('fused_host', { optimizer: 'host', hostGradients: true }));
  await phase('profile-gpu', async () => {
    result.gpu_profile = {};
    if (!backend.supportTimestampQuery) result.notes.push('no timestamp-query: GPU times are zero');
    // Through TF.js (no capture): a replayed step bypasses the per-dispatch timers.
    const r = new WebGpuReplica(fresh(), trainOpts, undefined, {
      optimizer: 'gpu',
      hostGradients: true,
      capture: false,
    });
    try {
      await r.computeGradients(batch, batchSize); // compile outside the timed run
      r.applyReduced();
      result.gpu_profile.fused_step = await profileGpu(async () => {
        await r.computeGradients(batch, batchSize);
        r.applyReduced();
      });
      result.gpu_profile.fused_forward = await profileGpu(async () => {
        await r.predict(batch);
      });
    } finally {
      r.dispose();
    }
    if (phases.has('train-stock')) {
      const s = new Replica(fresh(), trainOpts);
      try {
        result.gpu_profile.stock_step = await profileGpu(async () => {
          await s.computeGradients(batch, batchSize);
          s.applyReduced();
        });
      } finally {
        s.dispose();
      }
    }
  });
  await phase('profile-cpu', async () => {
    const r = new WebGpuReplica(fresh(), trainOpts, undefined, {
      optimizer: 'gpu',
      hostGradients: true,
      capture: false,
    });
    const session = new Session();
    session.connect();
    try {
      for (let i = 0; i < 2; i++) {
        await r.computeGradients(batch, batchSize);
        r.applyReduced();
      }
      await session.post('Profiler.enable');
      await session.post('Profiler.setSamplingInterval', { interval: 200 });
      await session.post('Profiler.start');
      const t0 = performance.now();
      const steps = 3;
      for (let i = 0; i < steps; i++) {
        await r.computeGradients(batch, batchSize);
        r.applyReduced();
      }
      const wall = (performance.now() - t0) / steps;
      const { profile } = await session.post('Profiler.stop');
      const summary = summarizeCpuProfile(profile as Parameters<typeof summarizeCpuProfile>[0]);
      result.cpu_profile = {
        fused_step: {
          wall_ms: wall,
          sampled_ms: summary.sampled_ms / steps,
          top: summary.top.map((t) => ({ ...t, ms: t.ms / steps })),
        },
      };
    } finally {
      session.disconnect();
      r.dispose();
    }
  });
  await phase('train-stock', async () => {
    const r = new Replica(fresh(), trainOpts);
    try {
      result.train.stock = await measure(
        async () => {
          await r.computeGradients(batch, batchSize);
          r.applyReduced();
        },
        1,
        Math.min(reps, 2),
      );
    } finally {
      r.dispose();
    }
  });
  return result;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parseArgs({
    args: argv,
    options: {
      batch: { type: 'string' },
      'image-size': { type: 'string' },
      reps: { type: 'string' },
      classes: { type: 'string' },
      phases: { type: 'string' },
      software: { type: 'boolean' },
      out: { type: 'string' },
      'dx-mm': { type: 'boolean' },
      'dx-gemm': { type: 'boolean' },
      'submit-batch': { type: 'string' },
    },
  });
  const int = (v: string | undefined, name: string): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, got ${v}`);
    return n;
  };
  const phases = values.phases
    ?.split(',')
    .map((p) => p.trim())
    .filter(Boolean);
  for (const p of phases ?? [])
    if (!(PHASES as readonly string[]).includes(p)) throw new Error(`unknown phase ${p}; phases: ${PHASES.join(',')}`);
  const r = await benchWebGpu({
    batch: int(values.batch, 'batch'),
    imageSize: int(values['image-size'], 'image-size'),
    reps: int(values.reps, 'reps'),
    classes: int(values.classes, 'classes'),
    phases: phases as Phase[] | undefined,
    software: values.software,
    out: values.out,
    dxMatMul: values['dx-mm'],
    dxGemm: values['dx-gemm'],
    submitBatch: int(values['submit-batch'], 'submit-batch'),
  });
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

// By file name, not import.meta.url: in an esbuild bundle every module shares the bundle's URL.
if (['webgpu.ts', 'webgpu.js', 'bench-webgpu.mjs'].includes(basename(process.argv[1] ?? ''))) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`bench webgpu: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
