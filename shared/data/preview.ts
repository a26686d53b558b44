// The lab's "look at a batch" step: one training batch after the train transform (crop, resize, flip),
// un-normalised for display, as a PNG grid with each tile's class name under it. The augmentation of
// a sample is the one training draws for (seed, epoch, index), so the grid shows what the model sees.
import { mkdir } from 'node:fs/promises';
import { dirname } from 'node:path';
import sharp, { type OverlayOptions } from 'sharp';
import { WolfpackError } from '../errors.js';
import type { Logger } from '../log.js';
import { drawTrainAugment, imageSize, MEAN, STD, trainTransform } from './transforms.js';

export interface PreviewSample {
  bytes: Uint8Array;
  /** Class name written under the tile. */
  label: string;
  /** The sample's index in the data set, for its augmentation draw (default: its position here). */
  index?: number;
}

export interface PreviewOptions {
  /** Tile side in pixels (default 112). */
  size?: number;
  /** Tiles per row (default 6; fewer when there are fewer samples). */
  columns?: number;
  seed?: number;
  epoch?: number;
  logger?: Logger;
}

export interface PreviewLayout {
  /** Tile side in pixels. */
  tile: number;
  columns: number;
  rows: number;
  /** Height of the label bar under each tile. */
  bar: number;
  width: number;
  height: number;
}

/** Space around and between tiles. */
export const PREVIEW_GAP = 4;

// Label bar colours by class order (sorted names): orange, steel blue, then a few more.
const PALETTE: [number, number, number][] = [
  [214, 120, 30],
  [60, 100, 160],
  [70, 150, 70],
  [150, 60, 150],
  [170, 50, 50],
  [60, 150, 150],
];

/** Grid geometry: columns x rows tiles of size x (size + bar), PREVIEW_GAP pixels apart and around. */
export function previewLayout(count: number, size: number, columns: number): PreviewLayout {
  const cols = Math.min(columns, count);
  const rows = Math.ceil(count / cols);
  const bar = Math.max(14, Math.round(size * 0.16));
  return {
    tile: size,
    columns: cols,
    rows,
    bar,
    width: cols * (size + PREVIEW_GAP) + PREVIEW_GAP,
    height: rows * (size + bar + PREVIEW_GAP) + PREVIEW_GAP,
  };
}

// Normalised HWC floats back to bytes: x * std + mean, times 255.
function toBytes(x: Float32Array): Buffer {
  const out = Buffer.alloc(x.length);
  for (let i = 0; i < x.length; i++) {
    const c = i % 3;
    const v = Math.round((x[i]! * STD[c]! + MEAN[c]!) * 255);
    out[i] = v < 0 ? 0 : v > 255 ? 255 : v;
  }
  return out;
}

function escapeXml(s: string): string {
  return s.replace(
    /[<>&'"]/g,
    (ch) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[ch] ?? ch,
  );
}

// All labels as one transparent PNG layer. Rendering text needs fonts; without them it may fail, and
// the coloured bars alone still tell the classes apart.
async function textLayer(
  labels: { text: string; left: number; top: number }[],
  layout: PreviewLayout,
  logger?: Logger,
): Promise<Buffer | undefined> {
  const fontSize = Math.round(layout.bar * 0.72);
  // Keep a long class name inside its tile (sans-serif letters average about 0.6 em).
  const maxChars = Math.max(1, Math.floor((layout.tile - 6) / (0.6 * fontSize)));
  const fit = (s: string): string => (s.length <= maxChars ? s : s.slice(0, Math.max(1, maxChars - 1)) + '\u2026');
  const texts = labels.map(
    (l) =>
      `<text x="${l.left + 3}" y="${l.top + Math.round(layout.bar * 0.78)}" ` +
      `font-family="DejaVu Sans, sans-serif" font-size="${fontSize}" fill="white">${escapeXml(fit(l.text))}</text>`,
  );
  const svg =
    `<svg xmlns="http://www.w3.org/2000/svg" width="${layout.width}" ` +
    `height="${layout.height}">${texts.join('')}</svg>`;
  try {
    return await sharp(Buffer.from(svg)).png().toBuffer();
  } catch (e) {
    logger?.warn({ err: (e as Error).message }, 'preview: cannot render label text; drawing colour bars only');
    return undefined;
  }
}

/** Render the samples' training views as a labelled grid and write it to outPng. */
export async function renderPreview(
  samples: PreviewSample[],
  outPng: string,
  options: PreviewOptions = {},
): Promise<void> {
  const size = options.size ?? 112;
  const columns = options.columns ?? 6;
  if (samples.length === 0) throw new WolfpackError('E_USAGE', 'renderPreview: no samples to show');
  if (!Number.isInteger(size) || size < 8 || !Number.isInteger(columns) || columns < 1) {
    throw new WolfpackError(
      'E_USAGE',
      `renderPreview: size must be an integer >= 8 and columns >= 1, got size=${size} columns=${columns}`,
    );
  }
  const seed = options.seed ?? 0;
  const epoch = options.epoch ?? 0;
  const layout = previewLayout(samples.length, size, columns);
  const classes = [...new Set(samples.map((s) => s.label))].sort();

  const layers: OverlayOptions[] = [];
  const labels: { text: string; left: number; top: number }[] = [];
  for (const [i, sample] of samples.entries()) {
    const index = sample.index ?? i;
    const { width, height } = await imageSize(sample.bytes, `preview sample ${index}`);
    const aug = drawTrainAugment(seed, epoch, index, width, height);
    const pixels = toBytes(await trainTransform(sample.bytes, size, aug, `preview sample ${index}`));
    const left = PREVIEW_GAP + (i % layout.columns) * (size + PREVIEW_GAP);
    const top = PREVIEW_GAP + Math.floor(i / layout.columns) * (size + layout.bar + PREVIEW_GAP);
    layers.push({ input: pixels, raw: { width: size, height: size, channels: 3 }, left, top });
    const [r, g, b] = PALETTE[classes.indexOf(sample.label) % PALETTE.length]!;
    layers.push({
      input: { create: { width: size, height: layout.bar, channels: 3, background: { r, g, b } } },
      left,
      top: top + size,
    });
    labels.push({ text: sample.label, left, top: top + size });
  }
  const text = await textLayer(labels, layout, options.logger);
  if (text) layers.push({ input: text, left: 0, top: 0 });

  try {
    await mkdir(dirname(outPng), { recursive: true });
    await sharp({
      create: { width: layout.width, height: layout.height, channels: 3, background: { r: 24, g: 24, b: 24 } },
    })
      .composite(layers)
      .png()
      .toFile(outPng);
  } catch (e) {
    throw new WolfpackError('E_IO', `cannot write preview ${outPng}: ${(e as Error).message}`, { path: outPng });
  }
}
