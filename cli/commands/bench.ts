// `wolfpack bench`: the benchmarks beside their PyTorch peers, each printing the commands it ran and
// its figures. `bench model` times ResNet-50 on a TF.js backend against torchvision on the CPU,
// `bench allreduce` the WebSocket ring all-reduce alone, `bench allreduce-vs-gloo` it against PyTorch's
// Gloo and raw TCP, `bench curve` busbw against message size for both (table and PNG), `bench scaling`
// the real trainer's images/s with N workers, `bench tta` the demo's time to accuracy with and without the
// feature cache, `bench memory` the workers' peak RSS and growth, `bench cluster` the ring all-reduce of
// ResNet-50's gradients between N processes in network namespaces on shaped links around a modelled
// compute step (root only), `bench chaos` a bounded chaos run (workers killed, stopped and cut off at
// random; the result must match an uninterrupted run; not in `bench all`), and `bench all` the others as
// markdown (bench/results/latest.md, .json, and the curve's PNG); `bench webgpu` (= `bench all --backend
// webgpu`) ResNet-50 on the webgpu backend beside PyTorch on the same GPU. Ratios are wolfpack's speed over
// the peer's: above 1, wolfpack is faster.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { runAllreduceBench, runRawTcpBench, type AllreduceBenchResult } from '../../bench/allreduce.js';
import { MAX_SLOT_PAIRS } from '../../shared/allreduce/simd-add.js';
import { chunkElemsOfKib, MAX_CHUNK_KIB } from '../../shared/allreduce/ring.js';
import { allreduceCurve, compareAllreduce, CURVE_SIZES } from '../../bench/allreduce-compare.js';
import { CHAOS_FLAGS, CHAOS_USAGE, chaosOptionsFrom, chaosTable, runChaos } from '../../bench/chaos.js';
import {
  CLUSTER_NETS,
  clusterUnavailable,
  crossCheckSchedules,
  runClusterBench,
  type ClusterBenchOptions,
  type ClusterRunResult,
} from '../../bench/cluster.js';
import { SCHEDULES, WIRE_FORMATS, type GradScheduleKind } from '../../bench/cluster-step.js';
import { demoFixture } from '../../bench/fixture.js';
import { machineInfo, waitQuiet } from '../../bench/machine.js';
import { benchMemory } from '../../bench/memory.js';
import { benchModel, benchPeer, type ModelBenchResult, type PeerModelResult, type PeerRun } from '../../bench/model.js';
import {
  allreduceSection,
  clusterSection,
  scheduleLabel,
  curveSection,
  fmt,
  machineLine,
  memorySection,
  quietLine,
  scalingSection,
  ttaSection,
} from '../../bench/report.js';
import { benchScaling, type ScalingResult } from '../../bench/scaling.js';
import { benchTimeToAccuracy, TTA_VARIANTS, type TtaVariant } from '../../bench/time-to-accuracy.js';
import {
  compareWebGpu,
  WEBGPU_BENCH_FLAGS,
  webgpuOptionsFrom,
  webgpuSection,
  writeWebGpuReport,
} from '../../bench/webgpu-compare.js';
import { workPath } from '../../shared/paths.js';
import { BACKENDS } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger, jsonLineStream, jsonRequested } from '../../shared/log.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, parse, str } from '../../shared/config/args.js';

const USAGE = [
  `wolfpack bench model [--backend ${BACKENDS.join('|')}] [--image-size 224] [--batch 8] [--reps 3] [--threads 2] ` +
    '[--no-peer] [--json]',
  '       wolfpack bench allreduce --workers N --elements E [--reps 5] [--warmup 2] [--chunk-kib 4096] [--json]',
  '       wolfpack bench allreduce-vs-gloo [--rounds 3] [--json]   ' +
    '(N=2,3,4 at 25,557,032 and 4,098 floats, Gloo, raw TCP)',
  '       wolfpack bench rawtcp [--bytes 102228128] [--duplex] [--json]',
  '       wolfpack bench curve [--procs 2,4] [--png bench/results/allreduce-curve.png] [--json]',
  '       wolfpack bench scaling [--freeze backbone|none] [--repeats 2] [--image-size 64] [--batch-per-worker 18] ' +
    '[--workers 1,2] [--json]',
  `       wolfpack bench tta [--target 0.7] [--max-epochs 12] [--views 2] [--variants ${TTA_VARIANTS.join(',')}] ` +
    '[--no-peer] [--json]',
  '       wolfpack bench memory [--skip-peak] [--json]',
  '       wolfpack bench cluster [--workers 2,4,8] [--link-mbit 500] [--compute-ms 2400] [--steps 3] [--warmup 1] ' +
    `[--schedule ${SCHEDULES.join('|')}|none,overlap] [--bucket-mb 25] [--inflight 1-4] [--chunk-kib 4096] ` +
    `[--wire ${WIRE_FORMATS.join('|')}] [--layout-scale 1] [--net ${CLUSTER_NETS.join('|')}] [--json]   ` +
    '(root; compute modelled; --link-mbit 0: unshaped; --bucket-mb: MiB, overlap only; ' +
    '--json: one line per N and schedule)',
  '       wolfpack bench webgpu [--batch 32] [--image-size 224] [--reps 5] [--width 64] [--software] [--profile] ' +
    '[--python PY] [--json]   (webgpu beside PyTorch CUDA on the same GPU)',
  `       ${CHAOS_USAGE}`,
  '       wolfpack bench all [--quick] [--out bench/results]   ' +
    '(every benchmark above with its peer; markdown, JSON and PNG in --out)',
  '       wolfpack bench all --backend webgpu [bench webgpu flags] [--out bench/results]   ' +
    '(a GPU host: bench webgpu into --out/webgpu-latest.{md,json})',
].join('\n');

export interface ModelComparison {
  wolfpack: ModelBenchResult;
  peer: PeerRun<PeerModelResult>;
  /** wolfpack images/s divided by PyTorch's, where both were measured. */
  ratio: { forward?: number; full_finetune?: number };
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined || b === 0 ? undefined : a / b;
// progress on stderr: text, or JSON records with WOLFPACK_LOG_FORMAT=json (as in the images)
let progressStream: { write(s: string): unknown } | undefined;
const progress = (line: string): void => {
  (progressStream ??= jsonRequested() ? jsonLineStream(2) : process.stderr).write(`bench: ${line}\n`);
};

function commandLine(argv: string[]): string {
  return ['wolfpack', 'bench', ...argv].join(' ');
}

async function compareModel(opts: {
  backend: (typeof BACKENDS)[number];
  imageSize: number;
  batch: number;
  reps: number;
  threads: number;
  peer: boolean;
}): Promise<ModelComparison> {
  const logger = createLogger({ base: { component: 'bench' } });
  progress(
    `ResNet-50 on wolfpack (${opts.backend}): ${opts.imageSize}x${opts.imageSize}, ` +
      `batch ${opts.batch}, ${opts.reps} reps after 1 warm-up`,
  );
  const wolfpack = await benchModel({
    backend: opts.backend,
    imageSize: opts.imageSize,
    batch: opts.batch,
    reps: opts.reps,
    logger,
  });
  let peer: PeerRun<PeerModelResult>;
  if (opts.peer) {
    progress(`ResNet-50 on PyTorch: ${opts.threads} threads, batch ${opts.batch}, 224x224`);
    peer = await benchPeer({ threads: opts.threads, batch: opts.batch });
    if (!peer.ok) progress(`PyTorch peer skipped: ${peer.skipped}`);
  } else {
    peer = { ok: false, command: '', skipped: '--no-peer' };
  }
  const p = peer.ok ? peer.result : undefined;
  return {
    wolfpack,
    peer,
    ratio: {
      forward: ratio(wolfpack.forward_img_s, p?.forward_img_s),
      full_finetune: ratio(wolfpack.full_finetune_img_s, p?.full_finetune_img_s),
    },
  };
}

function modelTable(c: ModelComparison, markdown: boolean): string {
  const w = c.wolfpack;
  const p = c.peer.ok ? c.peer.result : undefined;
  const threads = w.threads === null ? '' : `, ${w.threads} thread${w.threads === 1 ? '' : 's'}`;
  const head = [
    `ResNet-50 images/s (${w.image_size}x${w.image_size}, batch ${w.batch})`,
    `wolfpack (${w.backend}${threads})`,
    p ? `PyTorch (${p.threads} threads, 224x224)` : 'PyTorch',
    'wolfpack / PyTorch',
  ];
  const rows = [
    ['forward (eval)', fmt(w.forward_img_s), fmt(p?.forward_img_s), fmt(c.ratio.forward, 3)],
    [
      'full fine-tuning step' +
        (w.full_finetune_batch !== undefined && w.full_finetune_batch !== w.batch
          ? ` (batch ${w.full_finetune_batch})`
          : ''),
      fmt(w.full_finetune_img_s),
      fmt(p?.full_finetune_img_s),
      fmt(c.ratio.full_finetune, 3),
    ],
    ['frozen-backbone step', fmt(w.frozen_backbone_img_s), '-', '-'],
  ];
  return renderTable(head, rows, markdown) + w.notes.map((n) => `note: ${n}\n`).join('');
}

function renderTable(head: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    const line = (r: string[]): string => `| ${r.join(' | ')} |`;
    return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n') + '\n';
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (r: string[]): string =>
    r.map((v, i) => (i === 0 ? v.padEnd(widths[i]!) : v.padStart(widths[i]!))).join('   ');
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

function allreduceLine(r: AllreduceBenchResult): string {
  return (
    `N=${r.procs} ${r.elems.toLocaleString('en-US')} floats (${(r.bytes / 1e6).toFixed(2)} MB): ` +
    `median ${(r.median_s * 1e3).toFixed(3)} ms over ` +
    `${r.reps} reps, algbw ${r.algbw_MBps.toFixed(1)} MB/s, busbw ${r.busbw_MBps.toFixed(1)} MB/s, ` +
    `verified ${String(r.verified)}`
  );
}

function stripRanks(r: AllreduceBenchResult): Omit<AllreduceBenchResult, 'ranks'> {
  const { ranks: _ranks, ...rest } = r;
  return rest;
}

async function runModel(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    backend: { type: 'string' },
    'image-size': { type: 'string' },
    batch: { type: 'string' },
    reps: { type: 'string' },
    threads: { type: 'string' },
    'no-peer': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const c = await compareModel({
    backend: oneOf(values, 'backend', BACKENDS, 'auto'),
    imageSize: num(values, 'image-size', 224, { int: true, min: 32, max: 1024 }),
    batch: num(values, 'batch', 8, { int: true, min: 1, max: 256 }),
    reps: num(values, 'reps', 3, { int: true, min: 1, max: 100 }),
    threads: num(values, 'threads', 2, { int: true, min: 1, max: 256 }),
    peer: values['no-peer'] !== true,
  });
  if (values.json === true) {
    process.stdout.write(JSON.stringify(c) + '\n');
    return 0;
  }
  process.stdout.write(`$ ${commandLine(['model', ...argv])}\n`);
  if (c.peer.command)
    process.stdout.write(`$ ${c.peer.command}${c.peer.ok ? '' : `   (skipped: ${c.peer.skipped})`}\n`);
  process.stdout.write('\n' + modelTable(c, false));
  if (c.wolfpack.image_size !== 224 && c.peer.ok)
    process.stdout.write('note: the PyTorch peer always runs at 224x224; the ratio compares different sizes\n');
  return 0;
}

/** --chunk-kib of `bench allreduce` and `bench cluster`, checked as `train` checks it; undefined when not given. */
function chunkKibFrom(values: Record<string, unknown>): number | undefined {
  return values['chunk-kib'] === undefined
    ? undefined
    : num(values, 'chunk-kib', MAX_CHUNK_KIB, { int: true, min: 1, max: MAX_CHUNK_KIB });
}

async function runAllreduce(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    workers: { type: 'string' },
    elements: { type: 'string' },
    reps: { type: 'string' },
    warmup: { type: 'string' },
    'chunk-kib': { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.workers === undefined || values.elements === undefined) {
    throw new WolfpackError('E_USAGE', 'bench allreduce needs --workers N and --elements E');
  }
  const workers = num(values, 'workers', 2, { int: true, min: 1, max: 64 });
  const elements = num(values, 'elements', 0, { int: true, min: 1, max: 1 << 30 });
  const reps = num(values, 'reps', 5, { int: true, min: 1, max: 10_000 });
  const warmup = num(values, 'warmup', 2, { int: true, min: 0, max: 10_000 });
  const chunkKib = chunkKibFrom(values);
  const r = await runAllreduceBench({
    workers,
    elements,
    reps,
    warmup,
    ...(chunkKib !== undefined ? { chunkElems: chunkElemsOfKib(chunkKib) } : {}),
  });
  if (values.json === true) {
    process.stdout.write(JSON.stringify(stripRanks(r)) + '\n');
  } else {
    process.stdout.write(`$ ${commandLine(['allreduce', ...argv])}\n${allreduceLine(r)}\n`);
  }
  return r.verified ? 0 : 1;
}

/**
 * The `bench cluster` runs `bench all` makes, at the issue's reference point (T = 2.4 s on 500 Mbit/s links):
 * today's design (float32, no overlap), then the tuned one beside its baseline from the same run (bf16 wire,
 * 10 MiB buckets, 2 in flight, 1 MiB messages; BENCHMARKS.md has the sweep that chose them).
 */
const clusterAllArgvs = (steps: number): string[][] => {
  const common = ['--link-mbit', '500', '--compute-ms', '2400', '--steps', String(steps), '--warmup', '1'];
  return [
    ['--workers', '2,4,8', ...common],
    [
      '--workers',
      '4,8',
      ...common,
      '--schedule',
      'none,overlap',
      '--wire',
      'bf16',
      '--bucket-mb',
      '10',
      '--inflight',
      '2',
      '--chunk-kib',
      '1024',
    ],
  ];
};

async function clusterRuns(argv: string[], each?: (r: ClusterRunResult) => void): Promise<ClusterRunResult[]> {
  const { values } = parse(argv, {
    workers: { type: 'string' },
    'link-mbit': { type: 'string' },
    'compute-ms': { type: 'string' },
    steps: { type: 'string' },
    warmup: { type: 'string' },
    schedule: { type: 'string' },
    'bucket-mb': { type: 'string' },
    inflight: { type: 'string' },
    'chunk-kib': { type: 'string' },
    wire: { type: 'string' },
    'layout-scale': { type: 'string' },
    net: { type: 'string' },
    json: { type: 'boolean' },
  });
  const net = oneOf(values, 'net', CLUSTER_NETS, 'netns');
  const base: Omit<ClusterBenchOptions, 'workers'> = {
    linkMbit: num(values, 'link-mbit', net === 'loopback' ? 0 : 500, { min: 0, max: 1e6 }),
    computeMs: num(values, 'compute-ms', 2400, { min: 0, max: 600_000 }),
    steps: num(values, 'steps', 3, { int: true, min: 1, max: 1000 }),
    warmup: num(values, 'warmup', 1, { int: true, min: 0, max: 1000 }),
    wire: oneOf(values, 'wire', WIRE_FORMATS, 'fp32'),
    ...(values['chunk-kib'] !== undefined ? { chunkKib: chunkKibFrom(values) } : {}),
    layoutScale: num(values, 'layout-scale', 1, { min: 1e-6, max: 1 }),
    net,
    progress,
  };
  // --schedule none,overlap runs both at each N, on the same links, one after the other.
  const schedules = (typeof values.schedule === 'string' ? values.schedule : 'none').split(',').map((x) => x.trim());
  for (const x of schedules) {
    if (!(SCHEDULES as readonly string[]).includes(x))
      throw new WolfpackError(
        'E_USAGE',
        `--schedule: expected one or more of ${SCHEDULES.join(', ')} (comma-separated), got '${x}'`,
      );
  }
  if (new Set(schedules).size !== schedules.length)
    throw new WolfpackError('E_USAGE', `--schedule: '${String(values.schedule)}' names a schedule twice`);
  if (values['bucket-mb'] !== undefined && !schedules.includes('overlap'))
    throw new WolfpackError('E_USAGE', '--bucket-mb applies to --schedule overlap only');
  const bucketMb =
    values['bucket-mb'] !== undefined ? num(values, 'bucket-mb', 25, { min: 0.001, max: 1e4 }) : undefined;
  if (values.inflight !== undefined && !schedules.includes('overlap'))
    throw new WolfpackError('E_USAGE', '--inflight applies to --schedule overlap only');
  const inflight =
    values.inflight !== undefined ? num(values, 'inflight', 1, { int: true, min: 1, max: MAX_SLOT_PAIRS }) : undefined;
  const results: ClusterRunResult[] = [];
  for (const workers of intList(values, 'workers', [2, 4, 8]))
    for (const schedule of schedules as GradScheduleKind[]) {
      const r = await runClusterBench({
        ...base,
        workers,
        schedule,
        ...(schedule === 'overlap' && bucketMb !== undefined ? { bucketMb } : {}),
        ...(schedule === 'overlap' && inflight !== undefined ? { inflight } : {}),
      });
      results.push(r);
      crossCheckSchedules(results);
      progress(
        `N=${workers} --schedule ${scheduleLabel(r)}: ` +
          `step ${(r.step_s * 1e3).toFixed(0)} ms, ` +
          `exposed all-reduce ${(r.exposed_allreduce_s * 1e3).toFixed(0)} ms, ` +
          `efficiency ${(r.efficiency * 100).toFixed(1)}%` +
          `${r.efficiency_on_paper === null ? '' : ` (on paper ${(r.efficiency_on_paper * 100).toFixed(1)}%)`}, ` +
          `load ${r.load1_before.toFixed(2)} -> ${r.load1_after.toFixed(2)}` +
          `${r.same_bits_as_none === undefined ? '' : `, same bits as --schedule none: ${r.same_bits_as_none}`}`,
      );
      each?.(r);
    }
  return results;
}

async function runCluster(argv: string[]): Promise<number> {
  const json = argv.includes('--json');
  const results = await clusterRuns(argv, json ? (r) => process.stdout.write(JSON.stringify(r) + '\n') : undefined);
  if (!json)
    process.stdout.write(
      `${machineLine(machineInfo())}\n${clusterSection(results, commandLine(['cluster', ...argv]))}`,
    );
  return results.every((r) => r.verified) ? 0 : 1;
}

/** A bounded chaos run (bench/chaos.ts): exit 1 when the weights or the per-epoch sample counts do not match. */
async function runChaosBench(argv: string[]): Promise<number> {
  const { values } = parse(argv, CHAOS_FLAGS);
  const r = await runChaos({ ...chaosOptionsFrom(values), progress }, commandLine(['chaos', ...argv]));
  emit(values.json === true, r, chaosTable(r));
  return r.ok ? 0 : 1;
}

function emit(json: boolean, value: unknown, text: string): void {
  process.stdout.write(json ? JSON.stringify(value) + '\n' : text);
}

async function runWebGpu(argv: string[], command = commandLine(['webgpu', ...argv])): Promise<number> {
  const { values } = parse(argv, { ...WEBGPU_BENCH_FLAGS, backend: { type: 'string' } });
  const c = await compareWebGpu({ ...webgpuOptionsFrom(values), progress });
  if (typeof values.out === 'string') {
    const md = await writeWebGpuReport(c, values.out, command);
    emit(values.json === true, c, md);
    progress(`wrote ${join(values.out, 'webgpu-latest.md')} and webgpu-latest.json`);
  } else {
    emit(values.json === true, c, webgpuSection(c, command));
  }
  return c.wolfpack.errors.length === 0 ? 0 : 1;
}

async function runAllreduceVsGloo(argv: string[]): Promise<number> {
  const { values } = parse(argv, { rounds: { type: 'string' }, json: { type: 'boolean' } });
  const rounds = num(values, 'rounds', 3, { int: true, min: 1, max: 50 });
  const c = await compareAllreduce({ rounds, progress });
  emit(values.json === true, { machine: machineInfo(), ...c }, `${machineLine(machineInfo())}\n${allreduceSection(c)}`);
  return c.figures.every((f) => f.verified) ? 0 : 1;
}

async function runRawTcp(argv: string[]): Promise<number> {
  const { values } = parse(argv, { bytes: { type: 'string' }, duplex: { type: 'boolean' }, json: { type: 'boolean' } });
  const bytes = num(values, 'bytes', 25_557_032 * 4, { int: true, min: 1, max: 2 ** 32 });
  const r = await runRawTcpBench(bytes, { duplex: values.duplex === true });
  emit(
    values.json === true,
    r,
    `$ ${commandLine(['rawtcp', ...argv])}\n` +
      `${(bytes / 1e6).toFixed(2)} MB over loopback TCP${r.duplex ? ', both ways at once' : ''}: ` +
      `${(r.seconds * 1e3).toFixed(1)} ms, ${r.MBps.toFixed(0)} MB/s${r.duplex ? ' per direction' : ''}\n`,
  );
  return 0;
}

function intList(values: Record<string, unknown>, name: string, fallback: number[]): number[] {
  const raw = values[name];
  if (raw === undefined) return fallback;
  const xs = String(raw).split(',').map(Number);
  if (xs.some((x) => !Number.isSafeInteger(x) || x < 1))
    throw new WolfpackError(
      'E_USAGE',
      `--${name}: expected a comma-separated list of positive integers, got '${String(raw)}'`,
    );
  return xs;
}

async function runCurve(argv: string[]): Promise<number> {
  const { values } = parse(argv, { procs: { type: 'string' }, png: { type: 'string' }, json: { type: 'boolean' } });
  const c = await allreduceCurve({
    procs: intList(values, 'procs', [2, 4]),
    sizes: CURVE_SIZES,
    png: str(values, 'png', join('bench', 'results', 'allreduce-curve.png')),
    progress,
  });
  emit(values.json === true, { machine: machineInfo(), ...c }, `${machineLine(machineInfo())}\n${curveSection(c)}`);
  return 0;
}

async function runScaling(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    freeze: { type: 'string' },
    repeats: { type: 'string' },
    'image-size': { type: 'string' },
    'batch-per-worker': { type: 'string' },
    workers: { type: 'string' },
    json: { type: 'boolean' },
  });
  const fixture = await demoFixture(progress);
  const modes =
    values.freeze === undefined
      ? (['backbone', 'none'] as const)
      : [oneOf(values, 'freeze', ['backbone', 'none'] as const, 'backbone')];
  const results: ScalingResult[] = [];
  for (const freeze of modes) {
    results.push(
      await benchScaling({
        fixture,
        freeze,
        workers: intList(values, 'workers', [1, 2]),
        repeats: num(values, 'repeats', 2, { int: true, min: 1, max: 20 }),
        imageSize: num(values, 'image-size', 64, { int: true, min: 16, max: 1024 }),
        batchPerWorker: num(values, 'batch-per-worker', 18, { int: true, min: 1, max: 256 }),
        progress,
      }),
    );
  }
  emit(
    values.json === true,
    { machine: machineInfo(), scaling: results },
    `${machineLine(machineInfo())}\n${scalingSection(results)}`,
  );
  return 0;
}

async function runTta(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    target: { type: 'string' },
    'max-epochs': { type: 'string' },
    views: { type: 'string' },
    variants: { type: 'string' },
    'no-peer': { type: 'boolean' },
    json: { type: 'boolean' },
  });
  const variants =
    values.variants === undefined
      ? TTA_VARIANTS
      : String(values.variants)
          .split(',')
          .map((v) => {
            if (!TTA_VARIANTS.includes(v as TtaVariant))
              throw new WolfpackError('E_USAGE', `--variants: expected some of ${TTA_VARIANTS.join(', ')}, got '${v}'`);
            return v as TtaVariant;
          });
  const t = await benchTimeToAccuracy({
    fixture: await demoFixture(progress),
    target: num(values, 'target', 0.7, { min: 0, max: 1 }),
    maxEpochs: num(values, 'max-epochs', 12, { int: true, min: 1, max: 200 }),
    views: num(values, 'views', 2, { int: true, min: 1, max: 1000 }),
    variants,
    peer: values['no-peer'] !== true,
    progress,
  });
  emit(values.json === true, { machine: machineInfo(), ...t }, `${machineLine(machineInfo())}\n${ttaSection(t)}`);
  return 0;
}

async function runMemory(argv: string[]): Promise<number> {
  const { values } = parse(argv, { 'skip-peak': { type: 'boolean' }, json: { type: 'boolean' } });
  const m = await benchMemory({
    fixture: await demoFixture(progress),
    skipPeak: values['skip-peak'] === true,
    progress,
  });
  emit(values.json === true, { machine: machineInfo(), ...m }, `${machineLine(machineInfo())}\n${memorySection(m)}`);
  return 0;
}

/**
 * Every benchmark, each beside its peer, in one run (about 12 minutes on 2 cores): markdown to stdout and
 * to OUT/latest.md, everything measured to OUT/latest.json, and the all-reduce curve to OUT/allreduce-curve.png.
 * --quick: one round / repeat each (a smoke run, not for quoting).
 */
async function runAll(argv: string[]): Promise<number> {
  // On a GPU host the comparison that matters is the GPU one (`npm run bench -- --backend webgpu`); the
  // CPU benchmarks (all-reduce, scaling, ...) are `bench all` without it.
  if (argv.some((a, i) => a === '--backend=webgpu' || (a === '--backend' && argv[i + 1] === 'webgpu'))) {
    return runWebGpu(
      argv.some((a) => a === '--out' || a.startsWith('--out='))
        ? argv
        : [...argv, '--out', workPath('bench', 'results')],
      commandLine(['all', ...argv]),
    );
  }
  const { values } = parse(argv, {
    backend: { type: 'string' },
    quick: { type: 'boolean' },
    out: { type: 'string' },
    json: { type: 'boolean' },
  });
  const quick = values.quick === true;
  const outDir = str(values, 'out', workPath('bench', 'results'));
  await mkdir(outDir, { recursive: true });
  const started = performance.now();
  const machine = machineInfo();
  const at = new Date().toISOString();
  const phase: Record<string, number> = {};
  const timed = async <T>(name: string, fn: () => Promise<T>): Promise<T> => {
    const t0 = performance.now();
    try {
      return await fn();
    } finally {
      phase[name] = Math.round((performance.now() - t0) / 100) / 10;
      progress(`${name}: ${phase[name]} s`);
    }
  };
  const fixture = await demoFixture(progress);

  const allreduce = await timed('all-reduce vs Gloo', () => compareAllreduce({ rounds: quick ? 1 : 3, progress }));
  const curve = await timed('all-reduce curve', () =>
    allreduceCurve({ procs: [2, 4], sizes: CURVE_SIZES, png: join(outDir, 'allreduce-curve.png'), progress }),
  );
  curve.png = relative(process.cwd(), curve.png ?? '');
  const modelQuiet = await waitQuiet();
  const model = await timed('model', () =>
    compareModel({
      backend: oneOf(values, 'backend', BACKENDS, 'auto'),
      imageSize: 224,
      batch: 4,
      reps: 2,
      threads: 2,
      peer: true,
    }),
  );
  const scaling: ScalingResult[] = [];
  for (const freeze of ['backbone', 'none'] as const) {
    scaling.push(
      await timed(`scaling ${freeze}`, () =>
        benchScaling({ fixture, freeze, repeats: quick ? 1 : 3, measureSteps: freeze === 'none' ? 8 : 10, progress }),
      ),
    );
  }
  const tta = await timed('time to accuracy', () =>
    benchTimeToAccuracy({ fixture, target: 0.7, maxEpochs: 12, views: 2, progress }),
  );
  const memory = await timed('memory', () =>
    benchMemory({ fixture, peakSteps: 2, ...(quick ? { growthEpochs: 2 } : {}), progress }),
  );
  const clusterSkipped = clusterUnavailable();
  if (clusterSkipped !== undefined) progress(`simulated cluster skipped: ${clusterSkipped}`);
  const clusterArgvs = clusterAllArgvs(quick ? 1 : 3);
  const clusterSets: ClusterRunResult[][] = [];
  if (clusterSkipped === undefined)
    await timed('simulated cluster', async () => {
      for (const argv of clusterArgvs) clusterSets.push(await clusterRuns(argv));
    });
  const cluster = clusterSets.flat();
  const seconds = (performance.now() - started) / 1000;

  const md = [
    `# wolfpack benchmarks (${at})`,
    '',
    `$ ${commandLine(['all', ...argv])}   (${seconds.toFixed(0)} s: ${Object.entries(phase)
      .map(([k, v]) => `${k} ${v.toFixed(0)} s`)
      .join(', ')})`,
    '',
    machineLine(machine),
    '',
    `## All-reduce against PyTorch Gloo (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    allreduceSection(allreduce),
    `## All-reduce busbw against message size (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    curveSection(curve),
    `## ResNet-50 compute against PyTorch (224x224) (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    ...(model.peer.command
      ? [`$ ${model.peer.command}${model.peer.ok ? '' : `   (skipped: ${model.peer.skipped})`}`, '']
      : []),
    modelTable(model, true) + quietLine([modelQuiet]),
    '',
    `## Scaling with N local workers (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    scalingSection(scaling),
    `## Time to accuracy (the demo) and the feature cache (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    ttaSection(tta),
    `## Memory per worker (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    memorySection(memory),
    `## Simulated cluster: modelled compute, real ring on shaped links (${machine.cpu_model}, ${machine.cores} cores)`,
    '',
    clusterSkipped === undefined
      ? clusterSets.map((rs, i) => clusterSection(rs, commandLine(['cluster', ...clusterArgvs[i]!]))).join('\n')
      : `Skipped: ${clusterSkipped}.\n`,
  ].join('\n');
  const all = {
    at,
    command: commandLine(['all', ...argv]),
    seconds,
    phase,
    machine,
    allreduce,
    curve,
    model: { ...model, quiet: modelQuiet },
    scaling,
    tta,
    memory,
    cluster: clusterSkipped === undefined ? cluster : { skipped: clusterSkipped },
  };
  await writeFile(join(outDir, 'latest.md'), md + '\n');
  await writeFile(join(outDir, 'latest.json'), JSON.stringify(all, null, 1) + '\n');
  emit(values.json === true, all, md + '\n');
  progress(`wrote ${join(outDir, 'latest.md')}, latest.json and allreduce-curve.png`);
  return allreduce.figures.every((f) => f.verified) ? 0 : 1;
}

export const bench: Command = {
  summary:
    'Benchmarks beside their PyTorch peers: all-reduce, compute, scaling, time to accuracy, memory, or all of them.',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'model':
        return runModel(rest);
      case 'allreduce':
        return runAllreduce(rest);
      case 'allreduce-vs-gloo':
        return runAllreduceVsGloo(rest);
      case 'rawtcp':
        return runRawTcp(rest);
      case 'curve':
        return runCurve(rest);
      case 'scaling':
        return runScaling(rest);
      case 'tta':
        return runTta(rest);
      case 'memory':
        return runMemory(rest);
      case 'cluster':
        return runCluster(rest);
      case 'webgpu':
        return runWebGpu(rest);
      case 'chaos':
        return runChaosBench(rest);
      case 'all':
        return runAll(rest);
      default:
        throw new WolfpackError(
          'E_USAGE',
          'expected a benchmark ' +
            '(model, allreduce, allreduce-vs-gloo, rawtcp, curve, scaling, tta, memory, cluster, webgpu, ' +
            'chaos or all), ' +
            `got ${sub === undefined ? 'nothing' : `'${sub}'`}\nusage: ${USAGE}`,
        );
    }
  },
};
