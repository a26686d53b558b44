// Weight layout conversions, and the only place they happen. Checkpoints (MindSpore, PyTorch) store a
// convolution kernel as [out, in, kh, kw] (OIHW) and a dense weight as [out, in]; tfjs wants HWIO and
// [in, out]. Each function returns a new array and leaves its input alone.
import { WolfpackError } from '../errors.js';

/** OIHW -> HWIO: out[h][w][i][o] = data[o][i][h][w]. */
export function oihwToHwio(data: Float32Array, shape: readonly [number, number, number, number]): Float32Array {
  const [O, I, H, W] = shape;
  checkLength('oihwToHwio', data, shape);
  const out = new Float32Array(data.length);
  let src = 0;
  for (let o = 0; o < O; o++) {
    for (let i = 0; i < I; i++) {
      for (let h = 0; h < H; h++) {
        for (let w = 0; w < W; w++) out[((h * W + w) * I + i) * O + o] = data[src++]!;
      }
    }
  }
  return out;
}

/** HWIO -> OIHW: out[o][i][h][w] = data[h][w][i][o]. */
export function hwioToOihw(data: Float32Array, shape: readonly [number, number, number, number]): Float32Array {
  const [H, W, I, O] = shape;
  checkLength('hwioToOihw', data, shape);
  const out = new Float32Array(data.length);
  let src = 0;
  for (let h = 0; h < H; h++) {
    for (let w = 0; w < W; w++) {
      for (let i = 0; i < I; i++) {
        for (let o = 0; o < O; o++) out[((o * I + i) * H + h) * W + w] = data[src++]!;
      }
    }
  }
  return out;
}

/** [rows, cols] -> [cols, rows]; a dense weight [out, in] becomes [in, out] and back. */
export function transpose2d(data: Float32Array, shape: readonly [number, number]): Float32Array {
  const [rows, cols] = shape;
  checkLength('transpose2d', data, shape);
  const out = new Float32Array(data.length);
  let src = 0;
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = data[src++]!;
  }
  return out;
}

function checkLength(fn: string, data: Float32Array, shape: readonly number[]): void {
  const n = shape.reduce((a, b) => a * b, 1);
  if (!shape.every((d) => Number.isSafeInteger(d) && d >= 0) || data.length !== n) {
    throw new WolfpackError(
      'E_WEIGHTS',
      `${fn}: shape [${shape.join(',')}] needs ${n} elements, the array has ${data.length}`,
    );
  }
}
