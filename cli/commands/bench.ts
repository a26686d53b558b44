// `wolfpack bench`: the benchmarks beside their PyTorch peers, each printing the commands it ran and
// its figures. `bench model` times ResNet-50 on a TF.js backend against torchvision on the CPU,
// `bench allreduce` the WebSocket ring all-reduce, `bench all` both plus PyTorch's Gloo all-reduce, as a
// markdown table with ratios (speed of wolfpack / speed of the peer: above 1, wolfpack is faster).
import { runAllreduceBench, type AllreduceBenchResult } from '../../bench/allreduce.js';
import { benchModel, benchPeer, runPeerScript, type ModelBenchResult, type PeerModelResult, type PeerRun } from '../../bench/model.js';
import { BACKENDS } from '../../shared/backend/select.js';
import { WolfpackError } from '../../shared/errors.js';
import { createLogger } from '../../shared/log.js';
import type { Command } from '../wolfpack.js';
import { num, oneOf, parse } from '../args.js';

const USAGE = [
  `wolfpack bench model [--backend ${BACKENDS.join('|')}] [--image-size 224] [--batch 8] [--reps 3] [--threads 2] [--no-peer] [--json]`,
  '       wolfpack bench allreduce --workers N --elements E [--reps 5] [--warmup 2] [--json]',
  '       wolfpack bench all [--backend B] [--json]   (model at batch 4, 224x224, 2 reps; all-reduce N=2,3,4 at 25,557,032 and 4,098 floats; both peers)',
].join('\n');

/** ResNet-50's parameter count (torchvision, 1000 classes) and the lab's 2-class head (2048*2+2). */
export const ALLREDUCE_SIZES = [25_557_032, 4_098] as const;
export const ALLREDUCE_WORKERS = [2, 3, 4] as const;

/** What the Gloo peer prints per (N, size) (a subset of its fields). */
export interface GlooResult {
  bench: 'torch_gloo_allreduce';
  procs: number;
  elems: number;
  reps: number;
  median_s: number;
  algbw_MBps: number;
  busbw_MBps: number;
}

export interface ModelComparison {
  wolfpack: ModelBenchResult;
  peer: PeerRun<PeerModelResult>;
  /** wolfpack images/s divided by PyTorch's, where both were measured. */
  ratio: { forward?: number; full_finetune?: number };
}

const fmt = (v: number | undefined, digits = 2): string => (v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits));
const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  (a === undefined || b === undefined || b === 0 ? undefined : a / b);
const progress = (line: string): void => { process.stderr.write(`bench: ${line}\n`); };

function commandLine(argv: string[]): string {
  return ['wolfpack', 'bench', ...argv].join(' ');
}

async function compareModel(opts: { backend: (typeof BACKENDS)[number]; imageSize: number; batch: number; reps: number; threads: number; peer: boolean }): Promise<ModelComparison> {
  const logger = createLogger({ base: { component: 'bench' } });
  progress(`ResNet-50 on wolfpack (${opts.backend}): ${opts.imageSize}x${opts.imageSize}, batch ${opts.batch}, ${opts.reps} reps after 1 warm-up`);
  const wolfpack = await benchModel({ backend: opts.backend, imageSize: opts.imageSize, batch: opts.batch, reps: opts.reps, logger });
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
    ratio: { forward: ratio(wolfpack.forward_img_s, p?.forward_img_s), full_finetune: ratio(wolfpack.full_finetune_img_s, p?.full_finetune_img_s) },
  };
}

function modelTable(c: ModelComparison, markdown: boolean): string {
  const w = c.wolfpack;
  const p = c.peer.ok ? c.peer.result : undefined;
  const threads = w.threads === null ? '' : `, ${w.threads} thread${w.threads === 1 ? '' : 's'}`;
  const head = [`ResNet-50 images/s (${w.image_size}x${w.image_size}, batch ${w.batch})`, `wolfpack (${w.backend}${threads})`,
    p ? `PyTorch (${p.threads} threads, 224x224)` : 'PyTorch', 'wolfpack / PyTorch'];
  const rows = [
    ['forward (eval)', fmt(w.forward_img_s), fmt(p?.forward_img_s), fmt(c.ratio.forward, 3)],
    [`full fine-tuning step${w.full_finetune_batch !== undefined && w.full_finetune_batch !== w.batch ? ` (batch ${w.full_finetune_batch})` : ''}`, fmt(w.full_finetune_img_s), fmt(p?.full_finetune_img_s), fmt(c.ratio.full_finetune, 3)],
    ['frozen-backbone step', fmt(w.frozen_backbone_img_s), '-', '-'],
  ];
  return renderTable(head, rows, markdown) + w.notes.map((n) => `note: ${n}\n`).join('');
}

function renderTable(head: string[], rows: string[][], markdown: boolean): string {
  if (markdown) {
    const line = (r: string[]): string => `| ${r.join(' | ')} |`;
    return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n') + '\n';
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (r: string[]): string => r.map((v, i) => (i === 0 ? v.padEnd(widths[i]) : v.padStart(widths[i]))).join('   ');
  return [line(head), ...rows.map(line)].join('\n') + '\n';
}

function allreduceLine(r: AllreduceBenchResult): string {
  return `N=${r.procs} ${r.elems.toLocaleString('en-US')} floats (${(r.bytes / 1e6).toFixed(2)} MB): median ${(r.median_s * 1e3).toFixed(3)} ms over ` +
    `${r.reps} reps, algbw ${r.algbw_MBps.toFixed(1)} MB/s, busbw ${r.busbw_MBps.toFixed(1)} MB/s, verified ${String(r.verified)}`;
}

function stripRanks(r: AllreduceBenchResult): Omit<AllreduceBenchResult, 'ranks'> {
  const { ranks: _ranks, ...rest } = r;
  return rest;
}

function allreduceTable(ours: AllreduceBenchResult[], gloo: GlooResult[], markdown: boolean): string {
  const head = ['all-reduce (float32 SUM, loopback)', 'wolfpack median ms', 'wolfpack busbw MB/s', 'Gloo median ms', 'Gloo busbw MB/s', 'wolfpack / Gloo'];
  const rows = ours.map((o) => {
    const g = gloo.find((x) => x.procs === o.procs && x.elems === o.elems);
    return [`N=${o.procs}, ${o.elems.toLocaleString('en-US')} floats`, fmt(o.median_s * 1e3, 3), fmt(o.busbw_MBps, 1),
      fmt(g ? g.median_s * 1e3 : undefined, 3), fmt(g?.busbw_MBps, 1), fmt(g ? g.median_s / o.median_s : undefined, 3)];
  });
  return renderTable(head, rows, markdown);
}

async function runModel(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    backend: { type: 'string' }, 'image-size': { type: 'string' }, batch: { type: 'string' }, reps: { type: 'string' },
    threads: { type: 'string' }, 'no-peer': { type: 'boolean' }, json: { type: 'boolean' },
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
  if (c.peer.command) process.stdout.write(`$ ${c.peer.command}${c.peer.ok ? '' : `   (skipped: ${c.peer.skipped})`}\n`);
  process.stdout.write('\n' + modelTable(c, false));
  if (c.wolfpack.image_size !== 224 && c.peer.ok) process.stdout.write('note: the PyTorch peer always runs at 224x224; the ratio compares different sizes\n');
  return 0;
}

async function runAllreduce(argv: string[]): Promise<number> {
  const { values } = parse(argv, {
    workers: { type: 'string' }, elements: { type: 'string' }, reps: { type: 'string' }, warmup: { type: 'string' }, json: { type: 'boolean' },
  });
  if (values.workers === undefined || values.elements === undefined) {
    throw new WolfpackError('E_USAGE', 'bench allreduce needs --workers N and --elements E');
  }
  const workers = num(values, 'workers', 2, { int: true, min: 1, max: 64 });
  const elements = num(values, 'elements', 0, { int: true, min: 1, max: 1 << 30 });
  const reps = num(values, 'reps', 5, { int: true, min: 1, max: 10_000 });
  const warmup = num(values, 'warmup', 2, { int: true, min: 0, max: 10_000 });
  const r = await runAllreduceBench({ workers, elements, reps, warmup });
  if (values.json === true) {
    process.stdout.write(JSON.stringify(stripRanks(r)) + '\n');
  } else {
    process.stdout.write(`$ ${commandLine(['allreduce', ...argv])}\n${allreduceLine(r)}\n`);
  }
  return r.verified ? 0 : 1;
}

async function runAll(argv: string[]): Promise<number> {
  const { values } = parse(argv, { backend: { type: 'string' }, json: { type: 'boolean' } });
  const started = performance.now();
  const model = await compareModel({ backend: oneOf(values, 'backend', BACKENDS, 'auto'), imageSize: 224, batch: 4, reps: 2, threads: 2, peer: true });

  const ours: AllreduceBenchResult[] = [];
  for (const workers of ALLREDUCE_WORKERS) {
    for (const elements of ALLREDUCE_SIZES) {
      progress(`ring all-reduce: N=${workers}, ${elements} floats`);
      ours.push(await runAllreduceBench({ workers, elements, reps: 5, warmup: 2 }));
    }
  }
  progress('Gloo all-reduce peer: N=2,3,4');
  const glooArgs = ['--procs', ALLREDUCE_WORKERS.join(','), '--elems', ALLREDUCE_SIZES.join(','), '--reps', '5', '--warmup', '2'];
  const gloo = await runPeerScript<GlooResult>('peer_allreduce.py', glooArgs, 600_000);
  if (!gloo.ok) progress(`Gloo peer skipped: ${gloo.skipped}`);
  const glooResults = gloo.ok ? gloo.result : [];
  const seconds = (performance.now() - started) / 1000;

  if (values.json === true) {
    process.stdout.write(JSON.stringify({ model, allreduce: ours.map(stripRanks), gloo, seconds }) + '\n');
  } else {
    const out = [
      `$ ${commandLine(['all', ...argv])}`,
      ...(model.peer.command ? [`$ ${model.peer.command}${model.peer.ok ? '' : `   (skipped: ${model.peer.skipped})`}`] : []),
      `$ ${gloo.command}${gloo.ok ? '' : `   (skipped: ${gloo.skipped})`}`,
      '',
      modelTable(model, true),
      allreduceTable(ours, glooResults, true),
      `Ratios are wolfpack's speed over the peer's (above 1: wolfpack is faster). Medians; ${seconds.toFixed(0)} s in all.`,
    ];
    process.stdout.write(out.join('\n') + '\n');
  }
  return ours.every((r) => r.verified) ? 0 : 1;
}

export const bench: Command = {
  summary: 'Benchmarks beside their PyTorch peers: ResNet-50 images/s, ring all-reduce, or all of them.',
  usage: USAGE,
  async run(argv: string[]): Promise<number> {
    const [sub, ...rest] = argv;
    switch (sub) {
      case 'model': return runModel(rest);
      case 'allreduce': return runAllreduce(rest);
      case 'all': return runAll(rest);
      default:
        throw new WolfpackError('E_USAGE', `expected a benchmark (model, allreduce or all), got ${sub === undefined ? 'nothing' : `'${sub}'`}\nusage: ${USAGE}`);
    }
  },
};
