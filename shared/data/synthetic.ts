// A small made-up "dogs vs wolves" ImageFolder data set, for tests, demos and benchmarks on machines
// without the lab's photos. The classes differ the way the real ones mostly do: dogs are warm brown or
// tan animals, mostly on grass or indoor beige; wolves are grey, noisier-furred animals, mostly on
// snow or in a dark forest. Some of each borrow the other's colours or scenery, so a small network
// learns it well but not instantly perfectly. Every pixel comes from sampleRng, so a seed gives
// byte-identical files (with the same sharp/libjpeg build).
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import sharp from 'sharp';
import { WolfpackError } from '../errors.js';
import { prefetch } from './prefetch.js';
import { sampleRng, STREAM, type SampleRng } from './rng.js';

export const SYNTHETIC_CLASSES = ['dogs', 'wolves'] as const;
export type SyntheticClass = (typeof SYNTHETIC_CLASSES)[number];
export type SyntheticSplit = 'train' | 'val';

export interface SyntheticOptions {
  /** Images per class in train/ (default 60). */
  trainPerClass?: number;
  /**
   * 'mixed' (default): some of each class borrow the other's colours or scenery, as real photos do.
   * 'distinct': every dog is warm-coloured on grass or indoors, every wolf grey on snow or in a forest: the
   * classes differ in colour and texture statistics, which even a random backbone's features keep (the demo's
   * set, whose starting network cannot be pretrained here).
   */
  look?: 'mixed' | 'distinct';
  /** Images per class in val/ (default 20). */
  valPerClass?: number;
  /** Longer image side in pixels (default 96); images are size x 3/4 size, 3/4 size x size or square. */
  size?: number;
  seed?: number;
}

export interface SyntheticSummary {
  root: string;
  /** Every file written, in order: train then val, dogs then wolves. */
  files: string[];
  counts: Record<SyntheticSplit, Record<SyntheticClass, number>>;
}

type Rgb = [number, number, number];

function hsv(h: number, s: number, v: number): Rgb {
  const f = (n: number): number => {
    const k = (n + h / 60) % 6;
    return 255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1)));
  };
  return [f(5), f(3), f(1)];
}

interface Ellipse {
  cx: number;
  cy: number;
  rx: number;
  ry: number;
  cos: number;
  sin: number;
  colour: Rgb;
}

interface Scene {
  width: number;
  height: number;
  top: Rgb;
  bottom: Rgb;
  /** Body, head, ears: drawn in this order. */
  animal: Ellipse[];
  /** Fur noise amplitude and stripe strength (wolves are noisier). */
  furNoise: number;
  stripes: number;
  stripeFreq: number;
  distractors: Ellipse[];
}

function pick<T>(rng: SampleRng, weighted: [number, T][]): T {
  let u = rng.next();
  for (const [w, v] of weighted) {
    if (u < w) return v;
    u -= w;
  }
  return weighted[weighted.length - 1]![1];
}

type Background = 'grass' | 'indoor' | 'snow' | 'forest';

function background(rng: SampleRng, kind: Background): [Rgb, Rgb] {
  const shade = (h: number, s: number, v: number): [Rgb, Rgb] => [
    hsv(h, s, v),
    hsv(h + rng.uniform(-10, 10), s * rng.uniform(0.8, 1.2), v * rng.uniform(0.75, 1.05)),
  ];
  switch (kind) {
    case 'grass':
      return shade(rng.uniform(85, 130), rng.uniform(0.4, 0.7), rng.uniform(0.35, 0.65));
    case 'indoor':
      return shade(rng.uniform(30, 50), rng.uniform(0.1, 0.3), rng.uniform(0.7, 0.9));
    case 'snow':
      return shade(rng.uniform(190, 220), rng.uniform(0.02, 0.12), rng.uniform(0.8, 0.96));
    default:
      return shade(rng.uniform(120, 200), rng.uniform(0.15, 0.35), rng.uniform(0.15, 0.35));
  }
}

function furColour(rng: SampleRng, cls: SyntheticClass, borrow: number): Rgb {
  if (cls === 'dogs') {
    // Mostly brown/tan/golden; some grey-brown dogs look like wolves.
    return rng.next() < borrow
      ? hsv(rng.uniform(20, 40), rng.uniform(0.12, 0.25), rng.uniform(0.4, 0.7))
      : hsv(rng.uniform(18, 42), rng.uniform(0.35, 0.75), rng.uniform(0.35, 0.85));
  }
  // Mostly grey or blue-grey; some brownish-grey wolves look like dogs.
  return rng.next() < borrow
    ? hsv(rng.uniform(25, 40), rng.uniform(0.2, 0.32), rng.uniform(0.4, 0.7))
    : hsv(rng.uniform(190, 230), rng.uniform(0.02, 0.15), rng.uniform(0.35, 0.75));
}

function ellipse(cx: number, cy: number, rx: number, ry: number, angle: number, colour: Rgb): Ellipse {
  return { cx, cy, rx, ry, cos: Math.cos(angle), sin: Math.sin(angle), colour };
}

function drawScene(rng: SampleRng, cls: SyntheticClass, size: number, look: 'mixed' | 'distinct'): Scene {
  const shape = rng.next();
  const short = Math.round((size * 3) / 4);
  const [width, height] = shape < 0.5 ? [size, short] : shape < 0.8 ? [short, size] : [size, size];
  const mixed = look === 'mixed';
  const kind: Background =
    cls === 'dogs'
      ? pick(
          rng,
          mixed
            ? [
                [0.7, 'grass'],
                [0.2, 'indoor'],
                [0.1, 'snow'],
              ]
            : [[1, 'grass']],
        )
      : pick(
          rng,
          mixed
            ? [
                [0.55, 'snow'],
                [0.3, 'forest'],
                [0.15, 'grass'],
              ]
            : [[1, 'snow']],
        );
  const [top, bottom] = background(rng, kind);

  const fur = furColour(rng, cls, mixed ? 0.15 : 0);
  const m = Math.min(width, height);
  const rx = m * rng.uniform(0.18, 0.32);
  const ry = rx * rng.uniform(0.5, 0.8);
  const cx = width * rng.uniform(0.3, 0.7);
  const cy = height * rng.uniform(0.35, 0.7);
  const angle = rng.uniform(-0.5, 0.5);
  const side = rng.next() < 0.5 ? -1 : 1;
  // Head at one end of the body, a little above it; two ears on top of the head.
  const hr = rx * rng.uniform(0.4, 0.55);
  const hx = cx + side * Math.cos(angle) * rx * 0.95;
  const hy = cy - ry * rng.uniform(0.5, 0.9);
  const earColour: Rgb = [fur[0] * 0.8, fur[1] * 0.8, fur[2] * 0.8];
  const animal = [
    ellipse(cx, cy, rx, ry, angle, fur),
    ellipse(hx, hy, hr, hr * rng.uniform(0.75, 0.95), 0, fur),
    ellipse(hx - hr * 0.45, hy - hr * 0.9, hr * 0.22, hr * 0.45, -0.3, earColour),
    ellipse(hx + hr * 0.45, hy - hr * 0.9, hr * 0.22, hr * 0.45, 0.3, earColour),
  ];

  const distractors: Ellipse[] = [];
  const nd = Math.floor(rng.next() * 3);
  for (let i = 0; i < nd; i++) {
    const r = m * rng.uniform(0.04, 0.1);
    distractors.push(
      ellipse(
        width * rng.next(),
        height * rng.next(),
        r,
        r * rng.uniform(0.5, 1),
        rng.uniform(0, Math.PI),
        hsv(rng.uniform(0, 360), rng.uniform(0.1, 0.6), rng.uniform(0.2, 0.9)),
      ),
    );
  }
  return {
    width,
    height,
    top,
    bottom,
    animal,
    distractors,
    furNoise: cls === 'dogs' ? rng.uniform(4, 10) : rng.uniform(10, 22),
    stripes: cls === 'dogs' ? rng.uniform(0, 6) : rng.uniform(6, 18),
    stripeFreq: rng.uniform(0.6, 1.4),
  };
}

// Coverage of a pixel by an ellipse, 0..1 with a one-pixel soft edge, and how far in (0 centre, 1 edge).
function cover(e: Ellipse, x: number, y: number): { alpha: number; depth: number } {
  const dx = x - e.cx;
  const dy = y - e.cy;
  const u = (dx * e.cos + dy * e.sin) / e.rx;
  const v = (-dx * e.sin + dy * e.cos) / e.ry;
  const r = Math.sqrt(u * u + v * v);
  const edge = (1 - r) * Math.min(e.rx, e.ry);
  return { alpha: Math.max(0, Math.min(1, edge + 0.5)), depth: r };
}

function render(rng: SampleRng, scene: Scene): Uint8Array {
  const { width, height } = scene;
  const px = new Uint8Array(width * height * 3);
  const c: Rgb = [0, 0, 0];
  for (let y = 0; y < height; y++) {
    const t = y / Math.max(1, height - 1);
    for (let x = 0; x < width; x++) {
      for (let k = 0; k < 3; k++) c[k] = scene.top[k]! * (1 - t) + scene.bottom[k]! * t;
      for (const d of scene.distractors) {
        const { alpha } = cover(d, x, y);
        if (alpha > 0) for (let k = 0; k < 3; k++) c[k] = c[k]! + (d.colour[k]! - c[k]!) * alpha;
      }
      for (const part of scene.animal) {
        const { alpha, depth } = cover(part, x, y);
        if (alpha <= 0) continue;
        // Darker towards the outline, plus fur noise and stripes across the body.
        const stripe = scene.stripes * Math.sin((x * part.cos + y * part.sin) * scene.stripeFreq);
        const shade = 1 - 0.25 * depth * depth;
        const fur = (rng.next() - 0.5) * 2 * scene.furNoise + stripe;
        for (let k = 0; k < 3; k++) c[k] = c[k]! + (part.colour[k]! * shade + fur - c[k]!) * alpha;
      }
      const i = (y * width + x) * 3;
      for (let k = 0; k < 3; k++) {
        const v = c[k]! + (rng.next() - 0.5) * 12;
        px[i + k] = v < 0 ? 0 : v > 255 ? 255 : Math.round(v);
      }
    }
  }
  return px;
}

function positiveInt(name: string, value: number, min: number): number {
  if (!Number.isInteger(value) || value < min) {
    throw new WolfpackError(
      'E_USAGE',
      `generateSyntheticCanidae: ${name} must be an integer >= ${min}, got ${String(value)}`,
    );
  }
  return value;
}

/** Write DIR/{train,val}/{dogs,wolves}/<class>_NNNN.jpg; same options -> same bytes. */
export async function generateSyntheticCanidae(dir: string, options: SyntheticOptions = {}): Promise<SyntheticSummary> {
  const trainPerClass = positiveInt('trainPerClass', options.trainPerClass ?? 60, 1);
  const valPerClass = positiveInt('valPerClass', options.valPerClass ?? 20, 1);
  const size = positiveInt('size', options.size ?? 96, 16);
  const seed = options.seed ?? 0;
  const splits: [SyntheticSplit, number][] = [
    ['train', trainPerClass],
    ['val', valPerClass],
  ];

  const jobs: { path: string; split: number; label: number; cls: SyntheticClass; index: number }[] = [];
  for (const [splitIndex, [split, perClass]] of splits.entries()) {
    for (const [label, cls] of SYNTHETIC_CLASSES.entries()) {
      const folder = join(dir, split, cls);
      try {
        await mkdir(folder, { recursive: true });
      } catch (e) {
        throw new WolfpackError('E_IO', `cannot create ${folder}: ${(e as Error).message}`, { path: folder });
      }
      for (let i = 0; i < perClass; i++) {
        jobs.push({
          path: join(folder, `${cls}_${String(i).padStart(4, '0')}.jpg`),
          split: splitIndex,
          label,
          cls,
          index: i,
        });
      }
    }
  }

  const write = async (job: (typeof jobs)[number]): Promise<void> => {
    // The split takes the rng's epoch slot and the class the high part of the index: every image
    // has its own stream.
    const rng = sampleRng(seed, job.split, job.label * 1_000_000 + job.index, STREAM.SYNTHETIC);
    const scene = drawScene(rng, job.cls, size, options.look ?? 'mixed');
    const px = render(rng, scene);
    const jpeg = await sharp(px, { raw: { width: scene.width, height: scene.height, channels: 3 } })
      .jpeg({ quality: 90 })
      .toBuffer();
    try {
      await writeFile(job.path, jpeg);
    } catch (e) {
      throw new WolfpackError('E_IO', `cannot write ${job.path}: ${(e as Error).message}`, { path: job.path });
    }
  };
  // Drawing is synchronous JS; encoding and writing overlap with the next drawings.
  for await (const _ of prefetch(
    jobs.map((job) => () => write(job)),
    8,
  )) {
    /* wait for each in order */
  }

  const counts = {
    train: { dogs: trainPerClass, wolves: trainPerClass },
    val: { dogs: valPerClass, wolves: valPerClass },
  };
  return { root: dir, files: jobs.map((j) => j.path), counts };
}
