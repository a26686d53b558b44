// The wasm backend's Conv2DBackpropFilter (ours, shared/backend/wasm/conv2d-backprop-filter.ts) and the
// whole conv2d gradient (dx through wasm's own Conv2DBackpropInput, dW through ours) against the pure-JS
// cpu backend, which has both kernels natively: strides, kernel sizes, every padding form, odd sizes.
import t from 'tap';
import '@tensorflow/tfjs-backend-wasm';
import { tf } from '../../shared/backend/tf.js';
import { selectBackend } from '../../shared/backend/select.js';
import { conv2dBackpropFilterWasm } from '../../shared/backend/wasm/conv2d-backprop-filter.js';
import { maxRelToScale } from '../helpers/numerics.js';

type Pad = 'same' | 'valid' | number | [[number, number], [number, number], [number, number], [number, number]];

interface Case {
  n: number;
  h: number;
  w: number;
  ci: number;
  co: number;
  k: number;
  stride: number;
  pad: Pad;
}

// Deterministic values in [-1, 1) (an LCG), so both backends see the same numbers.
function values(count: number, seed: number): Float32Array {
  const out = new Float32Array(count);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2147483648 - 1;
  }
  return out;
}

/** dx and dW of sum(conv2d(x, w) * r) on the active backend (r fixes a non-uniform upstream gradient). */
function gradients(c: Case, seed: number): { dx: Float32Array; dw: Float32Array; y: number[] } {
  return tf.tidy(() => {
    const x = tf.tensor4d(values(c.n * c.h * c.w * c.ci, seed), [c.n, c.h, c.w, c.ci]);
    const w = tf.tensor4d(values(c.k * c.k * c.ci * c.co, seed + 1), [c.k, c.k, c.ci, c.co]);
    const yShape = tf.conv2d(x, w, c.stride, c.pad).shape;
    const r = tf.tensor(
      values(
        yShape.reduce((a, b) => a * b, 1),
        seed + 2,
      ),
      yShape,
    );
    const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
      tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.stride, c.pad), r)),
    )([x, w]);
    return { dx: dx!.dataSync() as Float32Array, dw: dw!.dataSync() as Float32Array, y: yShape };
  });
}

const explicit = (top: number, bottom: number, left: number, right: number): Pad => [
  [0, 0],
  [top, bottom],
  [left, right],
  [0, 0],
];

const CASES: Case[] = [];
for (const k of [1, 3, 7]) {
  for (const stride of [1, 2]) {
    const pads: Pad[] = ['same', 'valid', explicit(k >> 1, k >> 1, k >> 1, k >> 1), explicit(0, 1, 2, 0), k >> 1];
    pads.forEach((pad, p) => {
      const n = 1 + ((k + stride + p) % 3);
      CASES.push({
        n,
        h: 9 + 2 * p,
        w: 11 + ((k + p) % 4),
        ci: 3 + (p % 3),
        co: 2 + ((k + stride) % 4),
        k,
        stride,
        pad,
      });
    });
  }
}
// The ResNet shapes themselves, at a small width: stem 7x7/2 on an odd image, 1x1/2 downsample.
CASES.push({ n: 2, h: 33, w: 31, ci: 3, co: 4, k: 7, stride: 2, pad: 'same' });
CASES.push({ n: 3, h: 15, w: 15, ci: 8, co: 16, k: 1, stride: 2, pad: 'same' });
CASES.push({ n: 2, h: 8, w: 8, ci: 16, co: 4, k: 1, stride: 1, pad: 'valid' });

t.test('wasm lacks Conv2DBackpropFilter natively; ours is what selectBackend registers', async (t) => {
  const before = tf.getKernel('Conv2DBackpropFilter', 'wasm');
  await selectBackend('wasm');
  const after = tf.getKernel('Conv2DBackpropFilter', 'wasm');
  t.ok(after, 'a kernel is registered after selectBackend(wasm)');
  if (before === undefined) {
    t.pass('TF.js 4.22 wasm has no Conv2DBackpropFilter of its own (tfjs issue 8474)');
    t.equal(after!.kernelFunc, conv2dBackpropFilterWasm as unknown as tf.KernelFunc, 'the registered kernel is ours');
  } else {
    t.equal(after!.kernelFunc, before.kernelFunc, 'a native kernel exists and was left in place');
  }
});

t.test('conv2d gradients on wasm match the cpu backend', async (t) => {
  let seed = 1;
  for (const c of CASES) {
    const s = seed;
    seed += 10;
    await tf.setBackend('cpu');
    const ref = gradients(c, s);
    await tf.setBackend('wasm');
    const got = gradients(c, s);
    const name =
      `n${c.n} ${c.h}x${c.w}x${c.ci}->${c.co} k${c.k} s${c.stride} ` +
      `pad ${JSON.stringify(c.pad)} (out ${ref.y.join('x')})`;
    const ex = maxRelToScale(got.dx, ref.dx);
    const ew = maxRelToScale(got.dw, ref.dw);
    t.ok(ex < 1e-4, `${name}: dx max rel ${ex.toExponential(2)}`);
    t.ok(ew < 1e-4, `${name}: dW max rel ${ew.toExponential(2)}`);
  }
  t.equal(CASES.length, 33);
});

t.test('the kernel called directly frees its temporaries', async (t) => {
  await tf.setBackend('wasm');
  const x = tf.tensor4d(values(2 * 9 * 9 * 3, 7), [2, 9, 9, 3]);
  const dy = tf.tensor4d(values(2 * 5 * 5 * 4, 8), [2, 5, 5, 4]);
  const before = tf.memory().numBytes;
  const dw = tf.conv2d(x, tf.zeros([3, 3, 3, 4]), 2, 'same'); // warm shapes
  dw.dispose();
  const start = tf.engine().backend.numDataIds();
  const out = tf.engine().runKernel('Conv2DBackpropFilter', { x, dy }, {
    strides: 2,
    pad: 'same',
    dataFormat: 'NHWC',
    filterShape: [3, 3, 3, 4],
  } as unknown as tf.NamedAttrMap) as tf.Tensor;
  t.same(out.shape, [3, 3, 3, 4]);
  t.equal(tf.engine().backend.numDataIds(), start + 1, 'only the output buffer remains');
  out.dispose();
  x.dispose();
  dy.dispose();
  t.ok(tf.memory().numBytes <= before, 'no bytes held afterwards');
});
