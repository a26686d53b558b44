// Bilinear resizing of 8-bit RGB pixels exactly as Pillow's Image.resize(BILINEAR) does it, the
// resampler behind torchvision's transforms on PIL images (Pillow's libImaging/Resample.c):
// separable, horizontal pass first; a triangle filter widened by the scale factor when shrinking
// (so it antialiases); weights in 22-bit fixed point; each pass rounds to uint8.
// libvips (sharp) agrees when shrinking but puts pixel centres half a pixel off when enlarging,
// which is the common case for small lab images resized up to 224, so we resample here.

/** 8-bit RGB pixels, HWC. */
export interface RgbImage {
  data: Uint8Array;
  width: number;
  height: number;
}

/** The part of the resized image to compute (all of it by default). */
export interface OutputWindow {
  left: number;
  top: number;
  width: number;
  height: number;
}

const PRECISION_BITS = 32 - 8 - 2;
const ONE = 1 << PRECISION_BITS;
const HALF = 1 << (PRECISION_BITS - 1);

interface Coefficients {
  /** Per output index: first input index used. */
  start: Int32Array;
  /** Per output index: how many input indices are used. */
  count: Int32Array;
  /** ksize fixed-point weights per output index. */
  weights: Int32Array;
  ksize: number;
}

// Pillow's precompute_coeffs + normalize_coeffs_8bpc for the bilinear filter (support 1).
function coefficients(inSize: number, outSize: number): Coefficients {
  const scale = inSize / outSize;
  const filterScale = Math.max(1, scale);
  const support = filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const start = new Int32Array(outSize);
  const count = new Int32Array(outSize);
  const weights = new Int32Array(outSize * ksize);
  const k = new Float64Array(ksize);
  const ss = 1 / filterScale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = (xx + 0.5) * scale;
    // C's (int) cast truncates towards zero.
    const xmin = Math.max(0, Math.trunc(center - support + 0.5));
    const xmax = Math.min(inSize, Math.trunc(center + support + 0.5)) - xmin;
    let ww = 0;
    for (let x = 0; x < xmax; x++) {
      const d = Math.abs((x + xmin - center + 0.5) * ss);
      const w = d < 1 ? 1 - d : 0;
      k[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const w = ww !== 0 ? k[x]! / ww : k[x]!;
      weights[xx * ksize + x] = w < 0 ? Math.trunc(-0.5 + w * ONE) : Math.trunc(0.5 + w * ONE);
    }
    start[xx] = xmin;
    count[xx] = xmax;
  }
  return { start, count, weights, ksize };
}

function clip8(acc: number): number {
  const v = acc >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/**
 * Resize `src` to outWidth x outHeight with Pillow's bilinear filter and return the `window` of the
 * result (for a centre crop this skips the pixels that would be cut away; values are the same).
 */
export function resizeBilinear(src: RgbImage, outWidth: number, outHeight: number, window?: OutputWindow): RgbImage {
  const win = window ?? { left: 0, top: 0, width: outWidth, height: outHeight };
  const needHorizontal = outWidth !== src.width;
  const needVertical = outHeight !== src.height;
  const horiz = needHorizontal ? coefficients(src.width, outWidth) : undefined;
  const vert = needVertical ? coefficients(src.height, outHeight) : undefined;

  // Source rows the vertical pass will read for the window's rows.
  const rowFirst = vert ? vert.start[win.top]! : win.top;
  const rowEnd = vert
    ? vert.start[win.top + win.height - 1]! + vert.count[win.top + win.height - 1]!
    : win.top + win.height;
  const rows = rowEnd - rowFirst;

  // Horizontal pass: source rows [rowFirst, rowEnd) -> window columns.
  const tmp = new Uint8Array(rows * win.width * 3);
  const sw = src.width;
  const sdata = src.data;
  for (let y = 0; y < rows; y++) {
    const srcRow = (y + rowFirst) * sw * 3;
    const outRow = y * win.width * 3;
    for (let xx = 0; xx < win.width; xx++) {
      const ox = xx + win.left;
      if (!horiz) {
        const s = srcRow + ox * 3;
        tmp[outRow + xx * 3] = sdata[s]!;
        tmp[outRow + xx * 3 + 1] = sdata[s + 1]!;
        tmp[outRow + xx * 3 + 2] = sdata[s + 2]!;
        continue;
      }
      const xmin = horiz.start[ox]!;
      const n = horiz.count[ox]!;
      const kBase = ox * horiz.ksize;
      let r = HALF;
      let g = HALF;
      let b = HALF;
      for (let x = 0; x < n; x++) {
        const w = horiz.weights[kBase + x]!;
        const s = srcRow + (x + xmin) * 3;
        r += sdata[s]! * w;
        g += sdata[s + 1]! * w;
        b += sdata[s + 2]! * w;
      }
      tmp[outRow + xx * 3] = clip8(r);
      tmp[outRow + xx * 3 + 1] = clip8(g);
      tmp[outRow + xx * 3 + 2] = clip8(b);
    }
  }
  if (!vert) return { data: tmp, width: win.width, height: win.height };

  // Vertical pass over the intermediate rows.
  const out = new Uint8Array(win.width * win.height * 3);
  const stride = win.width * 3;
  for (let yy = 0; yy < win.height; yy++) {
    const oy = yy + win.top;
    const ymin = vert.start[oy]! - rowFirst;
    const n = vert.count[oy]!;
    const kBase = oy * vert.ksize;
    const outRow = yy * stride;
    for (let i = 0; i < stride; i++) {
      let acc = HALF;
      for (let y = 0; y < n; y++) acc += tmp[(y + ymin) * stride + i]! * vert.weights[kBase + y]!;
      out[outRow + i] = clip8(acc);
    }
  }
  return { data: out, width: win.width, height: win.height };
}
