// Training curves from a run's metrics.jsonl, drawn as a PNG: the loss per epoch (the epoch's mean
// train_loss and its last step's last_loss) above the validation accuracy per epoch, with axes, ticks,
// labels and a legend. Drawn as SVG and rasterised by sharp (librsvg), so it needs no canvas.
import { readFile } from 'node:fs/promises';
import sharp from 'sharp';
import { WolfpackError } from '../errors.js';
import { writeFileAtomic } from '../fs/atomic-write.js';

/** One epoch's values; null where the run had none (a NaN loss is written to JSON as null). */
export interface CurvePoint {
  epoch: number;
  train_loss: number | null;
  last_loss: number | null;
  val_accuracy: number | null;
}

export interface CurvesOptions {
  width?: number;
  height?: number;
  title?: string;
}

/** Line colours (matplotlib's first three), exported for tests that look for them. */
export const SERIES_COLORS = { train_loss: '#1f77b4', last_loss: '#ff7f0e', val_accuracy: '#2ca02c' } as const;

const finiteOrNull = (v: unknown): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The epochs in a metrics.jsonl, sorted; a repeated epoch (a resumed run) keeps its last line. */
export async function readMetrics(path: string): Promise<CurvePoint[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot read ${path}: ${(e as Error).message}`, { path });
  }
  const byEpoch = new Map<number, CurvePoint>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(line) as Record<string, unknown>;
    } catch {
      throw new WolfpackError('E_CORRUPT', `${path} line ${i + 1}: not a JSON object`, { path, line: i + 1 });
    }
    if (typeof rec !== 'object' || rec === null || typeof rec.epoch !== 'number' || !Number.isInteger(rec.epoch)) {
      throw new WolfpackError('E_CORRUPT', `${path} line ${i + 1}: no integer 'epoch' field`, { path, line: i + 1 });
    }
    byEpoch.set(rec.epoch, {
      epoch: rec.epoch,
      train_loss: finiteOrNull(rec.train_loss),
      last_loss: finiteOrNull(rec.last_loss),
      val_accuracy: finiteOrNull(rec.val_accuracy),
    });
  }
  if (byEpoch.size === 0) throw new WolfpackError('E_DATA', `${path} has no epochs to draw`, { path });
  return [...byEpoch.values()].sort((a, b) => a.epoch - b.epoch);
}

/** About `count` round tick values, evenly spaced, the first <= lo and the last >= hi. */
export function niceTicks(lo: number, hi: number, count = 5): number[] {
  if (!(hi > lo)) hi = lo + 1;
  const raw = (hi - lo) / count;
  const mag = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 2.5, 5, 10].map((m) => m * mag).find((s) => s >= raw) ?? 10 * mag;
  const ticks: number[] = [];
  const first = Math.floor(lo / step + 1e-9);
  const last = Math.ceil(hi / step - 1e-9);
  for (let k = first; k <= last; k++) ticks.push(Number((k * step).toPrecision(12)));
  return ticks;
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const fmt = (v: number) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(v) : String(Number(v.toPrecision(3))));

interface Series {
  label: string;
  color: string;
  dash?: string;
  values: (number | null)[];
}
interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

/** One panel: frame, grid, ticks, axis labels, the series as lines with point markers, and a legend. */
function panel(
  box: Box,
  epochs: number[],
  series: Series[],
  yRange: [number, number],
  yLabel: string,
  xLabel: string,
): string {
  // readMetrics refuses a file with no epochs, so there is a first and a last.
  const [x0, x1] = [epochs[0]!, epochs[epochs.length - 1]!];
  const pad = 10; // keeps the first and last points off the frame
  const xs = (e: number) => box.x + pad + (x1 === x0 ? box.w / 2 - pad : ((e - x0) / (x1 - x0)) * (box.w - 2 * pad));
  const ys = (v: number) => box.y + box.h - ((v - yRange[0]) / (yRange[1] - yRange[0])) * box.h;
  const out: string[] = [];
  out.push(
    `<rect x="${box.x}" y="${box.y}" width="${box.w}" height="${box.h}" fill="#ffffff" stroke="#333333" ` +
      `stroke-width="1"/>`,
  );
  for (const v of niceTicks(yRange[0], yRange[1]).filter((t) => t >= yRange[0] && t <= yRange[1])) {
    const y = ys(v).toFixed(1);
    out.push(`<line x1="${box.x}" y1="${y}" x2="${box.x + box.w}" y2="${y}" stroke="#e6e6e6" stroke-width="1"/>`);
    out.push(`<line x1="${box.x - 5}" y1="${y}" x2="${box.x}" y2="${y}" stroke="#333333"/>`);
    out.push(`<text x="${box.x - 8}" y="${y}" dy="0.35em" text-anchor="end">${fmt(v)}</text>`);
  }
  const xTicks = niceTicks(x0, Math.max(x1, x0 + 1), Math.min(10, epochs.length)).filter(
    (e) => Number.isInteger(e) && e >= x0 && e <= x1,
  );
  for (const e of xTicks) {
    const x = xs(e).toFixed(1);
    out.push(`<line x1="${x}" y1="${box.y + box.h}" x2="${x}" y2="${box.y + box.h + 5}" stroke="#333333"/>`);
    out.push(`<text x="${x}" y="${box.y + box.h + 18}" text-anchor="middle">${e}</text>`);
  }
  out.push(`<text x="${box.x + box.w / 2}" y="${box.y + box.h + 36}" text-anchor="middle">${esc(xLabel)}</text>`);
  out.push(
    `<text transform="translate(${box.x - 48} ${box.y + box.h / 2}) rotate(-90)" ` +
      `text-anchor="middle">${esc(yLabel)}</text>`,
  );
  for (const s of series) {
    // A null value breaks the line; each run of values is one polyline.
    let run: string[] = [];
    const flush = () => {
      if (run.length > 1) {
        out.push(
          `<polyline points="${run.join(' ')}" fill="none" stroke="${s.color}" stroke-width="2.5" ` +
            `stroke-linejoin="round"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
        );
      }
      run = [];
    };
    s.values.forEach((v, i) => {
      if (v === null) {
        flush();
        return;
      }
      const [x, y] = [xs(epochs[i]!).toFixed(1), ys(v).toFixed(1)];
      run.push(`${x},${y}`);
      out.push(`<circle cx="${x}" cy="${y}" r="3.5" fill="${s.color}"/>`);
    });
    flush();
  }
  // The legend sits above the panel's top-right corner, outside the plot, so it never hides a line.
  let lx = box.x + box.w;
  for (const s of [...series].reverse()) {
    lx -= 36 + s.label.length * 7 + 18;
    const y = box.y - 10;
    out.push(
      `<line x1="${lx}" y1="${y}" x2="${lx + 28}" y2="${y}" stroke="${s.color}" ` +
        `stroke-width="2.5"${s.dash ? ` stroke-dasharray="${s.dash}"` : ''}/>`,
    );
    out.push(`<text x="${lx + 34}" y="${y}" dy="0.35em">${esc(s.label)}</text>`);
  }
  return out.join('\n');
}

/** The SVG for the curves of `points`. */
export function curvesSvg(points: CurvePoint[], opts: CurvesOptions = {}): string {
  const width = opts.width ?? 800;
  const height = opts.height ?? 600;
  const epochs = points.map((p) => p.epoch);
  const losses = points.flatMap((p) => [p.train_loss, p.last_loss]).filter((v): v is number => v !== null);
  const lossMax = losses.length > 0 ? Math.max(...losses) : 1;
  const lossMin = losses.length > 0 ? Math.min(0, ...losses) : 0;
  const lossTop = niceTicks(lossMin, lossMax > lossMin ? lossMax * 1.05 : lossMin + 1).at(-1)!;
  const left = 80;
  const right = 24;
  const top = 64;
  const gap = 72;
  const bottom = 48;
  const h = (height - top - gap - bottom) / 2;
  const box1: Box = { x: left, y: top, w: width - left - right, h };
  const box2: Box = { x: left, y: top + h + gap, w: width - left - right, h };
  const title = opts.title ?? `Training curves (${points.length} epoch${points.length === 1 ? '' : 's'})`;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ` +
      'font-family="DejaVu Sans, Liberation Sans, Arial, sans-serif" font-size="12" fill="#222222">',
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="${width / 2}" y="26" text-anchor="middle" font-size="16" font-weight="bold">${esc(title)}</text>`,
    panel(
      box1,
      epochs,
      [
        { label: 'train_loss (epoch mean)', color: SERIES_COLORS.train_loss, values: points.map((p) => p.train_loss) },
        {
          label: 'last_loss (last step)',
          color: SERIES_COLORS.last_loss,
          dash: '7 4',
          values: points.map((p) => p.last_loss),
        },
      ],
      [lossMin, lossTop],
      'loss',
      'epoch',
    ),
    panel(
      box2,
      epochs,
      [{ label: 'val_accuracy', color: SERIES_COLORS.val_accuracy, values: points.map((p) => p.val_accuracy) }],
      [0, 1],
      'validation accuracy',
      'epoch',
    ),
    '</svg>',
  ].join('\n');
}

/** Reads `metricsJsonlPath` and writes the curves to `outPng` (atomically). */
export async function renderCurves(
  metricsJsonlPath: string,
  outPng: string,
  opts: CurvesOptions = {},
): Promise<{ epochs: number; width: number; height: number }> {
  const points = await readMetrics(metricsJsonlPath);
  const svg = curvesSvg(points, opts);
  let png: Buffer;
  try {
    png = await sharp(Buffer.from(svg)).png().toBuffer();
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot draw ${outPng}: ${(e as Error).message}`, { path: outPng });
  }
  await writeFileAtomic(outPng, png);
  return { epochs: points.length, width: opts.width ?? 800, height: opts.height ?? 600 };
}
