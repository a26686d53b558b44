// The train and eval transforms against torchvision: crop parameters from scripted draws fed to
// torchvision's own get_params, pixels against torchvision outputs saved by
// test/fixtures/data/gen_crop_fixtures.py, and exact geometry and normalisation on pictures whose
// every pixel is known.
import t from 'tap';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readNpy } from '../../shared/data/npy.js';
import { sampleRng, type UniformSource } from '../../shared/data/rng.js';
import {
  drawTrainAugment,
  evalGeometry,
  evalTransform,
  imageSize,
  MEAN,
  randomResizedCropParams,
  roundHalfEven,
  STD,
  trainTransform,
} from '../../shared/data/transforms.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/data/${name}`, import.meta.url));

interface CropCase {
  width: number;
  height: number;
  scale: [number, number];
  ratio: [number, number];
  draws: number[];
  expected: { left: number; top: number; width: number; height: number };
  consumed: number;
}

// Hands out a fixed list of draws, as the fixture script hands them to torchvision.
function scripted(draws: number[]): UniformSource & { used: () => number } {
  let used = 0;
  const next = (): number => {
    if (used >= draws.length) throw new Error('ran out of scripted draws');
    return draws[used++]!;
  };
  return { next, uniform: (a, b) => a + next() * (b - a), used: () => used };
}

// The normalised value of byte v in channel c, written out from the definition.
const norm = (v: number, c: number): number => Math.fround((v / 255 - MEAN[c]!) / STD[c]!);

// A picture with a distinct, known colour at every pixel.
function patternRgb(width: number, height: number): Uint8Array {
  const px = new Uint8Array(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const i = (y * width + x) * 3;
      px[i] = x % 256;
      px[i + 1] = y % 256;
      px[i + 2] = (x * 7 + y * 13) % 256;
    }
  }
  return px;
}

const png = (px: Uint8Array, width: number, height: number, channels: 1 | 2 | 3 | 4 = 3): Promise<Buffer> =>
  sharp(px, { raw: { width, height, channels } }).png().toBuffer();

function diffStats(a: Float32Array, b: Float32Array): { max: number; mean: number } {
  let max = 0;
  let sum = 0;
  for (let i = 0; i < a.length; i++) {
    const d = Math.abs(a[i]! - b[i]!);
    sum += d;
    if (d > max) max = d;
  }
  return { max, mean: sum / a.length };
}

t.test('roundHalfEven is Python round()', async (t) => {
  t.same([0.5, 1.5, 2.5, -0.5, -1.5, 16.5, 58.5, 2.4, 2.6].map(roundHalfEven), [0, 2, 2, -0, -2, 16, 58, 2, 3]);
});

t.test('randomResizedCropParams matches torchvision get_params on scripted draws', async (t) => {
  const { cases } = JSON.parse(readFileSync(fixture('crop_params.json'), 'utf8')) as { cases: CropCase[] };
  t.ok(cases.length > 250, 'fixture has the cases');
  let mismatches = 0;
  for (const c of cases) {
    const src = scripted(c.draws);
    const got = randomResizedCropParams(src, c.width, c.height, c.scale, c.ratio);
    if (JSON.stringify(got) !== JSON.stringify(c.expected) || src.used() !== c.consumed) {
      mismatches++;
      t.fail(`case ${c.width}x${c.height} scale=${c.scale} ratio=${c.ratio}`, {
        got,
        expected: c.expected,
        used: src.used(),
        consumed: c.consumed,
      });
    }
  }
  t.equal(mismatches, 0, `${cases.length} cases identical, including every fallback branch`);
  const fallbacks = cases.filter((c) => c.consumed === 20).length;
  t.ok(fallbacks >= 10, `${fallbacks} cases use the centre fallback`);
});

t.test('randomResizedCropParams invariants with the real rng', async (t) => {
  const sizes: [number, number][] = [
    [500, 375],
    [375, 500],
    [96, 72],
    [2000, 30],
    [1, 1],
  ];
  for (const [width, height] of sizes) {
    let bad = 0;
    for (let i = 0; i < 2000; i++) {
      const c = randomResizedCropParams(sampleRng(5, 1, i), width, height);
      const inside =
        c.left >= 0 &&
        c.top >= 0 &&
        c.width >= 1 &&
        c.height >= 1 &&
        c.left + c.width <= width &&
        c.top + c.height <= height;
      // Within the ranges up to the rounding of w and h to integers (or the fallback's clamp).
      const area = (c.width * c.height) / (width * height);
      const ratio = c.width / c.height;
      const slack = 1 / Math.min(c.width, c.height) + 1 / Math.max(1, Math.min(width, height));
      const inRanges =
        (area <= 1 &&
          area >= 0.08 * (1 - 2 * slack) - 1e-9 &&
          ratio >= 0.75 * (1 - slack) &&
          ratio <= (4 / 3) * (1 + slack)) ||
        c.width === width ||
        c.height === height;
      if (!inside || !inRanges) bad++;
    }
    t.equal(bad, 0, `${width}x${height}: 2000 crops inside the image with area in [0.08, 1] and ratio in [3/4, 4/3]`);
  }
  // A 2000x30 picture (ratio 66) never fits: always the centre fallback at the largest ratio.
  const wide = randomResizedCropParams(sampleRng(1, 0, 0), 2000, 30);
  t.same(wide, { left: 980, top: 0, width: 40, height: 30 });
  const tall = randomResizedCropParams(sampleRng(1, 0, 0), 30, 2000);
  t.same(tall, { left: 0, top: 980, width: 30, height: 40 });
});

t.test('drawTrainAugment is a function of (seed, epoch, index)', async (t) => {
  t.same(drawTrainAugment(3, 2, 17, 500, 375), drawTrainAugment(3, 2, 17, 500, 375));
  t.notSame(drawTrainAugment(3, 2, 17, 500, 375), drawTrainAugment(3, 2, 18, 500, 375));
  t.notSame(drawTrainAugment(3, 2, 17, 500, 375), drawTrainAugment(3, 3, 17, 500, 375));
  let flips = 0;
  for (let i = 0; i < 2000; i++) if (drawTrainAugment(0, 0, i, 500, 375).flip) flips++;
  t.ok(flips > 900 && flips < 1100, `flip rate ${flips / 2000} near 0.5`);
});

t.test('evalGeometry is torchvision Resize(int) + CenterCrop', async (t) => {
  // 500x375 -> shorter side 256, longer int(256*500/375) = 341; crop offsets round((341-224)/2 = 58.5) = 58.
  t.same(evalGeometry(500, 375, 224), {
    resize: { width: 341, height: 256 },
    crop: { left: 58, top: 16, width: 224, height: 224 },
  });
  t.same(evalGeometry(375, 500, 224), {
    resize: { width: 256, height: 341 },
    crop: { left: 16, top: 58, width: 224, height: 224 },
  });
  // size 96 -> round(109.71) = 110.
  t.same(evalGeometry(96, 72, 96).resize, { width: 146, height: 110 });
});

t.test('evalTransform against torchvision (PIL bilinear) on a small picture', async (t) => {
  // Same resampler (a port of Pillow's): only float32 rounding of the normalisation may differ.
  const bytes = readFileSync(fixture('eval_input.png'));
  t.same(await imageSize(bytes), { width: 75, height: 53 });
  for (const size of [40, 56]) {
    const expected = await readNpy(fixture(`eval_s${size}.npy`));
    t.same(expected.shape, [size, size, 3]);
    const got = await evalTransform(bytes, size);
    t.equal(got.length, size * size * 3);
    const { max, mean } = diffStats(got, expected.data as Float32Array);
    t.ok(
      mean < 1e-6,
      `eval size ${size} (${size === 40 ? 'shrinks' : 'enlarges'}): mean abs diff ${mean.toExponential(2)} < 1e-6`,
    );
    t.ok(max < 1e-5, `eval size ${size}: max abs diff ${max.toExponential(2)} < 1e-5`);
  }
});

t.test('trainTransform against torchvision resized_crop + hflip', async (t) => {
  const bytes = readFileSync(fixture('eval_input.png'));
  const expected = await readNpy(fixture('train_s32.npy'));
  const got = await trainTransform(bytes, 32, { crop: { left: 7, top: 5, width: 50, height: 40 }, flip: true });
  const { max, mean } = diffStats(got, expected.data as Float32Array);
  t.ok(mean < 1e-6, `train size 32: mean abs diff ${mean.toExponential(2)} < 1e-6`);
  t.ok(max < 1e-5, `train size 32: max abs diff ${max.toExponential(2)} < 1e-5`);
});

t.test('evalTransform geometry and normalisation are exact when no resampling happens', async (t) => {
  // size 112 resizes the shorter side to 128: a picture already 128 high is only cropped.
  for (const width of [150, 151]) {
    const height = 128;
    const px = patternRgb(width, height);
    const out = await evalTransform(await png(px, width, height), 112);
    // left = round((150-112)/2) = 19; round((151-112)/2 = 19.5) = 20 (half to even); top = 8.
    const left = width === 150 ? 19 : 20;
    const top = 8;
    let wrong = 0;
    for (let y = 0; y < 112; y++) {
      for (let x = 0; x < 112; x++) {
        for (let c = 0; c < 3; c++) {
          if (out[(y * 112 + x) * 3 + c] !== norm(px[((y + top) * width + x + left) * 3 + c]!, c)) wrong++;
        }
      }
    }
    t.equal(wrong, 0, `${width}x${height}: every value is the normalised pixel at (x+${left}, y+${top})`);
  }
});

t.test('a constant colour stays exactly that colour through both transforms', async (t) => {
  const [r, g, b] = [200, 100, 50];
  const px = new Uint8Array(300 * 200 * 3);
  for (let i = 0; i < px.length; i += 3) px.set([r, g, b], i);
  const bytes = await png(px, 300, 200);
  const want = [norm(r, 0), norm(g, 1), norm(b, 2)];
  const check = (out: Float32Array, what: string): void => {
    let wrong = 0;
    for (let i = 0; i < out.length; i++) if (out[i] !== want[i % 3]) wrong++;
    t.equal(wrong, 0, `${what}: all values equal (${want.map((v) => v.toFixed(6)).join(', ')})`);
  };
  check(await evalTransform(bytes, 64), 'eval 64');
  check(await trainTransform(bytes, 64, drawTrainAugment(0, 0, 3, 300, 200)), 'train 64');
  t.equal(want[0], Math.fround((200 / 255 - 0.485) / 0.229));
});

t.test('trainTransform: exact crop, a real mirror, deterministic', async (t) => {
  const width = 90;
  const height = 70;
  const px = patternRgb(width, height);
  const bytes = await png(px, width, height);
  const crop = { left: 11, top: 7, width: 48, height: 48 };
  const plain = await trainTransform(bytes, 48, { crop, flip: false });
  const mirrored = await trainTransform(bytes, 48, { crop, flip: true });
  t.equal(plain.length, 48 * 48 * 3);
  let wrongCrop = 0;
  let wrongFlip = 0;
  for (let y = 0; y < 48; y++) {
    for (let x = 0; x < 48; x++) {
      for (let c = 0; c < 3; c++) {
        const v = plain[(y * 48 + x) * 3 + c];
        if (v !== norm(px[((y + 7) * width + x + 11) * 3 + c]!, c)) wrongCrop++;
        if (mirrored[(y * 48 + (47 - x)) * 3 + c] !== v) wrongFlip++;
      }
    }
  }
  t.equal(wrongCrop, 0, 'a crop of the output size is the picture region itself');
  t.equal(wrongFlip, 0, 'flip mirrors the same region left to right');

  const aug = drawTrainAugment(9, 1, 4, width, height);
  const a = await trainTransform(bytes, 32, aug);
  const b = await trainTransform(bytes, 32, aug);
  t.same(a, b, 'same bytes and augmentation give the same floats');
  t.equal(a.length, 32 * 32 * 3);
  const c = await trainTransform(bytes, 32, { ...aug, flip: !aug.flip });
  t.notSame(a, c, 'flip changes the output');

  // Writing into a slot of a batch buffer gives the same values, in place.
  const batch = new Float32Array(2 * 32 * 32 * 3).fill(7);
  const slot = batch.subarray(32 * 32 * 3);
  const written = await trainTransform(bytes, 32, aug, 'x.png', slot);
  t.equal(written, slot, 'returns the buffer it was given');
  t.same(slot, a);
  t.ok(
    batch.subarray(0, 32 * 32 * 3).every((v) => v === 7),
    'the other slot is untouched',
  );
  await t.rejects(evalTransform(bytes, 32, 'x.png', new Float32Array(10)), { code: 'E_USAGE', message: /10 floats/ });
});

t.test('grey and translucent inputs become plain RGB', async (t) => {
  const grey = new Uint8Array(40 * 30).fill(77);
  const fromGrey = await evalTransform(await png(grey, 40, 30, 1), 16);
  t.equal(fromGrey.length, 16 * 16 * 3);
  t.equal(fromGrey[0], norm(77, 0));
  t.equal(fromGrey[1], norm(77, 1));
  t.equal(fromGrey[2], norm(77, 2));
  // RGBA with a translucent alpha: PIL's convert('RGB') keeps the stored colour as is.
  const rgba = new Uint8Array(40 * 30 * 4);
  for (let i = 0; i < rgba.length; i += 4) rgba.set([10, 120, 230, 100], i);
  const fromRgba = await trainTransform(await png(rgba, 40, 30, 4), 16, {
    crop: { left: 3, top: 2, width: 30, height: 20 },
    flip: false,
  });
  t.same([fromRgba[0], fromRgba[1], fromRgba[2]], [norm(10, 0), norm(120, 1), norm(230, 2)]);
});

t.test('bad input is an error that says what', async (t) => {
  const junk = new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8]);
  await t.rejects(evalTransform(junk, 32, '/data/x.jpg'), { code: 'E_CORRUPT', message: /\/data\/x\.jpg/ });
  await t.rejects(imageSize(junk), { code: 'E_CORRUPT' });
  const bytes = await png(patternRgb(20, 20), 20, 20);
  await t.rejects(trainTransform(bytes, 8, { crop: { left: 10, top: 0, width: 15, height: 5 }, flip: false }), {
    code: 'E_USAGE',
    message: /20x20/,
  });
  await t.rejects(evalTransform(bytes, 0), { code: 'E_USAGE' });
});
