// Image transforms as torchvision does them for ImageNet fine-tuning: RandomResizedCrop + horizontal
// flip for training, Resize(256/224 of the size) + CenterCrop for evaluation, then ToTensor and
// Normalize. Output is one HWC Float32Array per image (or a slot of an NHWC batch buffer).
// The random parameters are drawn apart from the pixel work, so a sample's augmentation can be
// re-drawn and tested from (seed, epoch, index) alone. sharp decodes and crops; resampling is
// Pillow's bilinear (resample.ts), which torchvision uses on PIL images.
import sharp, { type Metadata, type OutputInfo, type Sharp } from 'sharp';
import { WolfpackError } from '../errors.js';
import { resizeBilinear, type RgbImage } from './resample.js';
import { sampleRng, STREAM, type UniformSource } from './rng.js';

/** ImageNet channel means and standard deviations (RGB, on x / 255), as torchvision's models use. */
export const MEAN: readonly [number, number, number] = [0.485, 0.456, 0.406];
export const STD: readonly [number, number, number] = [0.229, 0.224, 0.225];

export interface CropBox {
  left: number;
  top: number;
  width: number;
  height: number;
}

export interface TrainAugment {
  crop: CropBox;
  flip: boolean;
}

export interface ImageSize {
  width: number;
  height: number;
}

/** Python's round(): halves go to the even neighbour, which torchvision's integer geometry relies on. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

// torch.randint(low, high): an integer in [low, high).
function randint(rng: UniformSource, low: number, high: number): number {
  return low + Math.floor(rng.next() * (high - low));
}

/**
 * torchvision's RandomResizedCrop.get_params: up to 10 tries of a random area fraction in `scale` and
 * a log-uniform aspect ratio in `ratio`; the first box that fits gets a uniform position. If none
 * fits, the centre crop closest to the image's own aspect ratio (clamped into `ratio`).
 * Draw order per try: uniform(scale), uniform(log ratio), then on success randint(top), randint(left).
 */
export function randomResizedCropParams(
  rng: UniformSource,
  width: number,
  height: number,
  scale: readonly [number, number] = [0.08, 1.0],
  ratio: readonly [number, number] = [3 / 4, 4 / 3],
): CropBox {
  if (!(Number.isInteger(width) && Number.isInteger(height) && width > 0 && height > 0)) {
    throw new WolfpackError(
      'E_USAGE',
      `randomResizedCropParams: image size must be positive integers, got ${width}x${height}`,
    );
  }
  if (!(scale[0] <= scale[1]) || !(ratio[0] <= ratio[1]) || !(ratio[0] > 0)) {
    throw new WolfpackError(
      'E_USAGE',
      `randomResizedCropParams: scale and ratio must be [min, max] ranges, ` +
        `got scale=${String(scale)} ratio=${String(ratio)}`,
    );
  }
  const area = width * height;
  // torch.log(torch.tensor(ratio)) is float32: round the same way so scripted draws match exactly.
  const logLo = Math.fround(Math.log(Math.fround(ratio[0])));
  const logHi = Math.fround(Math.log(Math.fround(ratio[1])));
  for (let attempt = 0; attempt < 10; attempt++) {
    const targetArea = area * rng.uniform(scale[0], scale[1]);
    const aspect = Math.exp(rng.uniform(logLo, logHi));
    const w = roundHalfEven(Math.sqrt(targetArea * aspect));
    const h = roundHalfEven(Math.sqrt(targetArea / aspect));
    if (w > 0 && w <= width && h > 0 && h <= height) {
      const top = randint(rng, 0, height - h + 1);
      const left = randint(rng, 0, width - w + 1);
      return { left, top, width: w, height: h };
    }
  }
  const inRatio = width / height;
  let w: number;
  let h: number;
  if (inRatio < Math.min(ratio[0], ratio[1])) {
    w = width;
    h = roundHalfEven(w / Math.min(ratio[0], ratio[1]));
  } else if (inRatio > Math.max(ratio[0], ratio[1])) {
    h = height;
    w = roundHalfEven(h * Math.max(ratio[0], ratio[1]));
  } else {
    w = width;
    h = height;
  }
  return { left: Math.floor((width - w) / 2), top: Math.floor((height - h) / 2), width: w, height: h };
}

/** A sample's training augmentation: crop then flip (p = 0.5), drawn from (seed, epoch, index) only. */
export function drawTrainAugment(
  seed: number,
  epoch: number,
  index: number,
  width: number,
  height: number,
): TrainAugment {
  const rng = sampleRng(seed, epoch, index, STREAM.AUGMENT);
  const crop = randomResizedCropParams(rng, width, height);
  const flip = rng.next() < 0.5;
  return { crop, flip };
}

/**
 * The Resize(round(size * 256 / 224)) + CenterCrop(size) geometry of torchvision: the shorter side
 * goes to the target and the longer one is truncated (int()), and the crop offsets round half-to-even.
 */
export function evalGeometry(width: number, height: number, size: number): { resize: ImageSize; crop: CropBox } {
  const target = roundHalfEven((size * 256) / 224);
  let resize: ImageSize;
  if (width <= height) {
    resize = { width: target, height: Math.trunc((target * height) / width) };
  } else {
    resize = { width: Math.trunc((target * width) / height), height: target };
  }
  // torchvision returns the image unchanged when the shorter side already has the target length.
  if (Math.min(width, height) === target) resize = { width, height };
  const crop = {
    left: roundHalfEven((resize.width - size) / 2),
    top: roundHalfEven((resize.height - size) / 2),
    width: size,
    height: size,
  };
  return { resize, crop };
}

// (v / 255 - mean) / std for every byte value and channel: one table look-up per output value.
const NORMALISE_LUT: Float32Array = (() => {
  const lut = new Float32Array(3 * 256);
  for (let c = 0; c < 3; c++) {
    for (let v = 0; v < 256; v++) lut[c * 256 + v] = (v / 255 - MEAN[c]!) / STD[c]!;
  }
  return lut;
})();

/**
 * HWC uint8 RGB -> HWC float32, (x / 255 - MEAN) / STD per channel. With `mirror`, each row is
 * written right to left (the horizontal flip, done here to save a pass over the pixels).
 */
export function normalise(
  rgb: RgbImage,
  mirror = false,
  out: Float32Array = new Float32Array(rgb.data.length),
): Float32Array {
  const lut = NORMALISE_LUT;
  const { data, width, height } = rgb;
  for (let y = 0; y < height; y++) {
    const row = y * width * 3;
    for (let x = 0; x < width; x++) {
      const i = row + x * 3;
      const o = mirror ? row + (width - 1 - x) * 3 : i;
      out[o] = lut[data[i]!]!;
      out[o + 1] = lut[256 + data[i + 1]!]!;
      out[o + 2] = lut[512 + data[i + 2]!]!;
    }
  }
  return out;
}

function describe(source: string | undefined): string {
  return source ?? 'image bytes';
}

function checkOutput(size: number, out: Float32Array | undefined): Float32Array {
  if (!Number.isInteger(size) || size < 1) {
    throw new WolfpackError('E_USAGE', `transform size must be a positive integer, got ${String(size)}`);
  }
  if (out === undefined) return new Float32Array(size * size * 3);
  if (out.length !== size * size * 3) {
    throw new WolfpackError(
      'E_USAGE',
      `transform output holds ${out.length} floats, size ${size} needs ${size * size * 3}`,
    );
  }
  return out;
}

// Pixels as stored, as PIL reads them: no EXIF auto-rotation and no ICC conversion.
function decoder(bytes: Uint8Array): Sharp {
  return sharp(bytes, { ignoreIcc: true, autoOrient: false, failOn: 'error' });
}

async function readHeader(bytes: Uint8Array, source: string | undefined): Promise<ImageSize> {
  let meta: Metadata;
  try {
    meta = await decoder(bytes).metadata();
  } catch (e) {
    throw new WolfpackError('E_CORRUPT', `cannot read image header of ${describe(source)}: ${(e as Error).message}`, {
      path: source,
    });
  }
  if (!meta.width || !meta.height) {
    throw new WolfpackError('E_CORRUPT', `${describe(source)} has no width/height in its header`, { path: source });
  }
  return { width: meta.width, height: meta.height };
}

/** Width and height as stored (before any EXIF orientation), read from the header only. */
export async function imageSize(bytes: Uint8Array, source?: string): Promise<ImageSize> {
  return readHeader(bytes, source);
}

function checkCrop(crop: CropBox, size: ImageSize, source: string | undefined): void {
  const { left, top, width, height } = crop;
  const ok =
    [left, top, width, height].every(Number.isInteger) &&
    left >= 0 &&
    top >= 0 &&
    width > 0 &&
    height > 0 &&
    left + width <= size.width &&
    top + height <= size.height;
  if (!ok) {
    throw new WolfpackError(
      'E_USAGE',
      `crop ${JSON.stringify(crop)} does not fit ${describe(source)} (${size.width}x${size.height})`,
      { path: source },
    );
  }
}

// Decode (a region of) the image to 8-bit RGB as PIL's convert('RGB') would: grey is copied into
// three channels and alpha is dropped, not composited. No resampling happens in sharp.
async function decodeRgb(bytes: Uint8Array, source: string | undefined, region?: CropBox): Promise<RgbImage> {
  let out: { data: Buffer; info: OutputInfo };
  try {
    const image = region ? decoder(bytes).extract(region) : decoder(bytes);
    out = await image.removeAlpha().toColourspace('srgb').raw({ depth: 'uchar' }).toBuffer({ resolveWithObject: true });
  } catch (e) {
    throw new WolfpackError('E_CORRUPT', `cannot decode ${describe(source)}: ${(e as Error).message}`, {
      path: source,
    });
  }
  const { data, info } = out;
  if (info.channels !== 3) {
    throw new WolfpackError('E_CORRUPT', `${describe(source)}: decoded to ${info.channels} channels, expected RGB`, {
      path: source,
    });
  }
  return { data: new Uint8Array(data.buffer, data.byteOffset, data.length), width: info.width, height: info.height };
}

/**
 * Training transform: crop the box, resize it to size x size (Pillow bilinear, antialiased when
 * shrinking), mirror if asked, normalise. Returns size * size * 3 floats, HWC, written into `out`
 * when given (e.g. batch.subarray(i * n, (i + 1) * n)). `source` names the image in errors.
 */
export async function trainTransform(
  bytes: Uint8Array,
  size: number,
  aug: TrainAugment,
  source?: string,
  out?: Float32Array,
): Promise<Float32Array> {
  const target = checkOutput(size, out);
  checkCrop(aug.crop, await readHeader(bytes, source), source);
  const crop = await decodeRgb(bytes, source, aug.crop);
  return normalise(resizeBilinear(crop, size, size), aug.flip, target);
}

/**
 * Evaluation transform: resize the shorter side to round(size * 256 / 224) keeping the aspect ratio,
 * centre-crop size x size, normalise. Returns size * size * 3 floats, HWC (into `out` when given).
 */
export async function evalTransform(
  bytes: Uint8Array,
  size: number,
  source?: string,
  out?: Float32Array,
): Promise<Float32Array> {
  const target = checkOutput(size, out);
  const stored = await readHeader(bytes, source);
  const { resize, crop } = evalGeometry(stored.width, stored.height, size);
  if (resize.width === stored.width && resize.height === stored.height) {
    return normalise(await decodeRgb(bytes, source, crop), false, target);
  }
  // Only the rows and columns of the centre crop are resampled.
  return normalise(resizeBilinear(await decodeRgb(bytes, source), resize.width, resize.height, crop), false, target);
}
