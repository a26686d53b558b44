// The all-reduce side by side with PyTorch's Gloo (bench/peers/peer_allreduce.py), on loopback:
//  - headline: N = 2, 3, 4 at 25,557,032 floats (ResNet-50's parameters) and 4,098 (the 2-class head),
//    in `rounds` interleaved rounds (wolfpack's set, then Gloo's, again ...), so that a change in the
//    machine's load hits both; each figure is the median over rounds of each round's median time;
//  - the raw TCP ceiling for N = 2: 102 MB over one plain TCP stream between two Node processes, one way
//    and both ways at once (a two-rank ring sends the whole buffer each way: busbw = bytes / time);
//  - a curve of busbw against message size, 4 KB to 102 MB, for both, drawn as a PNG (SVG rasterised
//    by sharp, as shared/report/curves.ts does).
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp from 'sharp';
import { writeFileAtomic } from '../shared/fs/atomic-write.js';
import { runAllreduceBench, runRawTcpBench, type AllreduceBenchResult } from './allreduce.js';
import { median, round, spread, waitQuiet, type QuietRecord } from './machine.js';
import { runPeerScript, type PeerRun } from './model.js';

/** What the Gloo peer prints per (N, size) (the fields used here). */
export interface GlooResult {
  bench: 'torch_gloo_allreduce';
  procs: number;
  elems: number;
  reps: number;
  median_s: number;
  algbw_MBps: number;
  busbw_MBps: number;
}

export const HEADLINE_SIZES = [25_557_032, 4_098] as const;
export const HEADLINE_WORKERS = [2, 3, 4] as const;
/** 4 KB to 102 MB in powers of 4, ending at ResNet-50's parameter count. */
export const CURVE_SIZES = [1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 25_557_032] as const;

export interface PairFigure {
  procs: number;
  elems: number;
  /** Median over rounds of each round's median all-reduce time, seconds. */
  wolfpack_s: number;
  gloo_s: number | null;
  wolfpack_busbw_MBps: number;
  gloo_busbw_MBps: number | null;
  /** Gloo's time over wolfpack's: above 1, wolfpack is faster. */
  ratio: number | null;
  wolfpack_rounds_s: number[];
  gloo_rounds_s: number[];
  wolfpack_spread: number;
  gloo_spread: number;
  verified: boolean;
}

export interface RawTcpFigure {
  bytes: number;
  one_way_MBps: number;
  duplex_MBps: number;
  one_way_rounds: number[];
  duplex_rounds: number[];
}

export interface AllreduceComparison {
  rounds: number;
  gloo_command: string;
  gloo_skipped?: string;
  figures: PairFigure[];
  raw_tcp: RawTcpFigure;
  /** wolfpack N=2 busbw at 25,557,032 floats over the raw TCP figures. */
  vs_raw_tcp: { one_way: number; duplex: number };
  quiet: QuietRecord[];
}

function glooArgs(procs: readonly number[], elems: readonly number[], reps: number, warmup: number): string[] {
  return ['--procs', procs.join(','), '--elems', elems.join(','), '--reps', String(reps), '--warmup', String(warmup)];
}

/** The headline comparison and the raw TCP ceiling. */
export async function compareAllreduce(
  opts: { rounds?: number; reps?: number; warmup?: number; progress?: (l: string) => void } = {},
): Promise<AllreduceComparison> {
  const rounds = opts.rounds ?? 3;
  const reps = opts.reps ?? 5;
  const warmup = opts.warmup ?? 2;
  const ours = new Map<string, AllreduceBenchResult[]>();
  const gloo = new Map<string, GlooResult[]>();
  const quiet: QuietRecord[] = [];
  let glooRun: PeerRun<GlooResult[]> | undefined;
  const key = (n: number, e: number) => `${n}/${e}`;
  const tcp = { one: [] as number[], duplex: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    quiet.push(
      await waitQuiet({
        onWait: (b) => opts.progress?.(`waiting for the machine to quieten (CPU ${(b * 100).toFixed(0)}% busy)`),
      }),
    );
    opts.progress?.(
      `all-reduce round ${r + 1}/${rounds}: wolfpack N=${HEADLINE_WORKERS.join(',')}, then Gloo, then raw TCP`,
    );
    for (const n of HEADLINE_WORKERS) {
      for (const e of HEADLINE_SIZES) {
        const res = await runAllreduceBench({ workers: n, elements: e, reps, warmup });
        ours.set(key(n, e), [...(ours.get(key(n, e)) ?? []), res]);
      }
    }
    glooRun = await runPeerScript<GlooResult>(
      'peer_allreduce.py',
      glooArgs(HEADLINE_WORKERS, HEADLINE_SIZES, reps, warmup),
      600_000,
    );
    if (glooRun.ok)
      for (const g of glooRun.result) gloo.set(key(g.procs, g.elems), [...(gloo.get(key(g.procs, g.elems)) ?? []), g]);
    const bytes = HEADLINE_SIZES[0] * 4;
    tcp.one.push((await runRawTcpBench(bytes)).MBps);
    tcp.duplex.push((await runRawTcpBench(bytes, { duplex: true })).MBps);
  }
  const figures: PairFigure[] = [];
  for (const n of HEADLINE_WORKERS) {
    for (const e of HEADLINE_SIZES) {
      const w = ours.get(key(n, e)) ?? [];
      const g = gloo.get(key(n, e)) ?? [];
      const ws = median(w.map((x) => x.median_s));
      const gs = g.length > 0 ? median(g.map((x) => x.median_s)) : null;
      const bus = (s: number) => (((e * 4) / s) * (2 * (n - 1))) / n / 1e6;
      figures.push({
        procs: n,
        elems: e,
        wolfpack_s: ws,
        gloo_s: gs,
        wolfpack_busbw_MBps: round(bus(ws), 1),
        gloo_busbw_MBps: gs === null ? null : round(bus(gs), 1),
        ratio: gs === null ? null : round(gs / ws, 3),
        wolfpack_rounds_s: w.map((x) => x.median_s),
        gloo_rounds_s: g.map((x) => x.median_s),
        wolfpack_spread: round(spread(w.map((x) => x.median_s)), 3),
        gloo_spread: round(spread(g.map((x) => x.median_s)), 3),
        verified: w.every((x) => x.verified),
      });
    }
  }
  const raw: RawTcpFigure = {
    bytes: HEADLINE_SIZES[0] * 4,
    one_way_MBps: round(median(tcp.one), 1),
    duplex_MBps: round(median(tcp.duplex), 1),
    one_way_rounds: tcp.one.map((v) => round(v, 1)),
    duplex_rounds: tcp.duplex.map((v) => round(v, 1)),
  };
  const big2 = figures.find((f) => f.procs === 2 && f.elems === HEADLINE_SIZES[0])!;
  return {
    rounds,
    gloo_command: glooRun?.command ?? '',
    ...(glooRun && !glooRun.ok ? { gloo_skipped: glooRun.skipped } : {}),
    figures,
    raw_tcp: raw,
    vs_raw_tcp: {
      one_way: round(big2.wolfpack_busbw_MBps / raw.one_way_MBps, 3),
      duplex: round(big2.wolfpack_busbw_MBps / raw.duplex_MBps, 3),
    },
    quiet,
  };
}

export interface CurvePoint {
  procs: number;
  elems: number;
  bytes: number;
  wolfpack_s: number;
  wolfpack_busbw_MBps: number;
  gloo_s: number | null;
  gloo_busbw_MBps: number | null;
}

export interface CurveResult {
  procs: number[];
  sizes: number[];
  gloo_command: string;
  gloo_skipped?: string;
  points: CurvePoint[];
  quiet: QuietRecord;
  png?: string;
}

/** busbw against message size for wolfpack and Gloo (one pass over every size). */
export async function allreduceCurve(
  opts: {
    procs?: number[];
    sizes?: readonly number[];
    reps?: number;
    warmup?: number;
    png?: string;
    progress?: (l: string) => void;
  } = {},
): Promise<CurveResult> {
  const procs = opts.procs ?? [2, 4];
  const sizes = [...(opts.sizes ?? CURVE_SIZES)];
  const reps = opts.reps ?? 5;
  const warmup = opts.warmup ?? 2;
  const quiet = await waitQuiet({
    onWait: (b) => opts.progress?.(`waiting for the machine to quieten (CPU ${(b * 100).toFixed(0)}% busy)`),
  });
  opts.progress?.(
    `all-reduce curve: N=${procs.join(',')}, ${sizes.length} sizes ` +
      `from ${sizes[0]! * 4} B to ${sizes[sizes.length - 1]! * 4} B, wolfpack then Gloo`,
  );
  const points: CurvePoint[] = [];
  for (const n of procs) {
    for (const e of sizes) {
      const r = await runAllreduceBench({ workers: n, elements: e, reps, warmup });
      points.push({
        procs: n,
        elems: e,
        bytes: e * 4,
        wolfpack_s: r.median_s,
        wolfpack_busbw_MBps: round(r.busbw_MBps, 2),
        gloo_s: null,
        gloo_busbw_MBps: null,
      });
    }
  }
  const g = await runPeerScript<GlooResult>('peer_allreduce.py', glooArgs(procs, sizes, reps, warmup), 600_000);
  if (g.ok) {
    for (const x of g.result) {
      const p = points.find((q) => q.procs === x.procs && q.elems === x.elems);
      if (p) {
        p.gloo_s = x.median_s;
        p.gloo_busbw_MBps = round(x.busbw_MBps, 2);
      }
    }
  }
  const result: CurveResult = {
    procs,
    sizes,
    gloo_command: g.command,
    ...(g.ok ? {} : { gloo_skipped: g.skipped }),
    points,
    quiet,
  };
  if (opts.png) {
    await mkdir(dirname(opts.png), { recursive: true });
    await writeFileAtomic(
      opts.png,
      await sharp(Buffer.from(curveSvg(result)))
        .png()
        .toBuffer(),
    );
    result.png = opts.png;
  }
  return result;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728'];
const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

function sizeLabel(bytes: number): string {
  if (bytes >= 1e6) return `${Math.round(bytes / 1e6)} MB`;
  if (bytes >= 1e3) return `${Math.round(bytes / 1e3)} KB`;
  return `${bytes} B`;
}

/** A log-log plot of busbw (MB/s) against message size: a solid line per N for wolfpack, dashed for Gloo. */
export function curveSvg(c: CurveResult, width = 860, height = 560): string {
  const box = { x: 90, y: 70, w: width - 90 - 30, h: height - 70 - 70 };
  const xs = c.sizes.map((e) => e * 4);
  const vals = c.points
    .flatMap((p) => [p.wolfpack_busbw_MBps, p.gloo_busbw_MBps])
    .filter((v): v is number => v !== null && v > 0);
  const lo = 10 ** Math.floor(Math.log10(Math.min(...vals)));
  const hi = 10 ** Math.ceil(Math.log10(Math.max(...vals)));
  const lx0 = Math.log10(xs[0]!);
  const lx1 = Math.log10(xs[xs.length - 1]!);
  const X = (b: number) => box.x + ((Math.log10(b) - lx0) / (lx1 - lx0)) * box.w;
  const Y = (v: number) =>
    box.y + box.h - ((Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo))) * box.h;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}"` +
      ` font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="12" fill="#222222">`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">` +
      `All-reduce busbw vs message size (float32 SUM, loopback): wolfpack ring vs PyTorch Gloo</text>`,
    `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="#ffffff" stroke="#333333"/>`,
  ];
  for (let d = Math.log10(lo); d <= Math.log10(hi) + 1e-9; d++) {
    const v = 10 ** d;
    const y = Y(v).toFixed(1);
    out.push(`<line x1="${box.x}" y1="${y}" x2="${box.x + box.w}" y2="${y}" stroke="#e6e6e6"/>`);
    out.push(`<text x="${box.x - 8}" y="${y}" dy="0.35em" text-anchor="end">${v >= 1 ? v : v.toPrecision(1)}</text>`);
  }
  // labels right to left, so the largest size is always named and no two labels overlap
  let lastLabel = Infinity;
  for (const b of [...xs].reverse()) {
    const x = X(b);
    out.push(`<line x1="${x.toFixed(1)}" y1="${box.y}" x2="${x.toFixed(1)}" y2="${box.y + box.h}" stroke="#f0f0f0"/>`);
    if (lastLabel - x < 50) continue;
    out.push(`<text x="${x.toFixed(1)}" y="${box.y + box.h + 18}" text-anchor="middle">${sizeLabel(b)}</text>`);
    lastLabel = x;
  }
  out.push(
    `<text x="${box.x + box.w / 2}" y="${box.y + box.h + 42}" text-anchor="middle">` +
      `message size (bytes per rank)</text>`,
  );
  out.push(
    `<text transform="translate(${box.x - 60} ${box.y + box.h / 2}) rotate(-90)" text-anchor="middle">` +
      `busbw, MB/s (log)</text>`,
  );
  c.procs.forEach((n, i) => {
    const color = COLORS[i % COLORS.length];
    for (const who of ['wolfpack', 'gloo'] as const) {
      const pts = c.points
        .filter((p) => p.procs === n)
        .map((p) => [p.bytes, who === 'wolfpack' ? p.wolfpack_busbw_MBps : p.gloo_busbw_MBps] as const)
        .filter((p): p is readonly [number, number] => p[1] !== null && p[1] > 0);
      if (pts.length === 0) continue;
      const dash = who === 'gloo' ? ' stroke-dasharray="7 4"' : '';
      out.push(
        `<polyline points="${pts.map(([b, v]) => `${X(b).toFixed(1)},${Y(v).toFixed(1)}`).join(' ')}"` +
          ` fill="none" stroke="${color}" stroke-width="2.5"${dash}/>`,
      );
      for (const [b, v] of pts) {
        out.push(
          who === 'gloo'
            ? `<rect x="${(X(b) - 3).toFixed(1)}" y="${(Y(v) - 3).toFixed(1)}" width="6" height="6"` +
                ` fill="#ffffff" stroke="${color}" stroke-width="1.5"/>`
            : `<circle cx="${X(b).toFixed(1)}" cy="${Y(v).toFixed(1)}" r="3.5" fill="${color}"/>`,
        );
      }
    }
  });
  // legend, top left inside the plot (small messages have the lowest busbw, so the corner is free)
  let ly = box.y + 18;
  c.procs.forEach((n, i) => {
    const color = COLORS[i % COLORS.length];
    for (const who of ['wolfpack', 'Gloo'] as const) {
      const dash = who === 'Gloo' ? ' stroke-dasharray="7 4"' : '';
      out.push(
        `<line x1="${box.x + 12}" y1="${ly}" x2="${box.x + 42}" y2="${ly}"` +
          ` stroke="${color}" stroke-width="2.5"${dash}/>`,
      );
      out.push(`<text x="${box.x + 50}" y="${ly}" dy="0.35em">${esc(`${who} N=${n}`)}</text>`);
      ly += 18;
    }
  });
  out.push('</svg>');
  return out.join('\n');
}
