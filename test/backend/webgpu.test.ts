// The webgpu backend (Dawn through the npm package `webgpu`) against the pure-JS cpu backend, on Mesa's
// CPU Vulkan driver (lavapipe, scripts/ci/install-lavapipe.sh): wolfpack's kernels (convolution
// gradients, fused BatchNorm, the flat Momentum update), a width-4 ResNet-50 forward pass, and one
// training step of Replica (TF.js ops) and of WebGpuReplica (fused, flat buffers). Skipped, saying
// why, where `webgpu` or a Vulkan adapter is missing. GPU-free parts (adapter choice by index, the
// missing-driver message) always run.
import t from 'tap';
import { tf } from '../../shared/backend/tf.js';
import { activateWebGpu, diagnoseVulkan, selectGpuByIndex } from '../../shared/backend/webgpu/activate.js';
import { batchNormTrainWebGpu } from '../../shared/model/webgpu/batchnorm.js';
import { inputGradGemm, splitK } from '../../shared/backend/webgpu/kernels.js';
import { checkKernelErrors, dispatchStats, resetDispatchStats } from '../../shared/backend/webgpu/raw.js';
import { captureStep } from '../../shared/backend/webgpu/capture.js';
import { readBuffersSync } from '../../shared/backend/webgpu/sync-read.js';
import { BufferUsage, type GpuBuffer, type WebGpuBackend } from '../../shared/backend/webgpu/types.js';
import { MappedUpload, RangeReader } from '../../shared/backend/webgpu/staging.js';
import { WebGpuReplica } from '../../shared/train/webgpu-replica.js';
import { FlatGpuParams } from '../../shared/train/webgpu-flat-params.js';
import { globalAvgPoolWebGpu, webGpuForwardKernels } from '../../shared/model/webgpu/resnet-kernels.js';
import { forward } from '../../shared/model/forward.js';
import type { ModelState } from '../../shared/model/state.js';
import { initModel } from '../../shared/model/weights.js';
import { momentumStep } from '../../shared/train/momentum.js';
import { Replica, type Batch } from '../../shared/train/replica.js';
import { maxRelToScale, relL2 } from '../helpers/numerics.js';
import { webGpuUnavailable } from '../helpers/webgpu.js';

const TOL = 1e-4;

/** Whether two float arrays hold the same bits. */
function sameBits(a: Float32Array, b: Float32Array): boolean {
  return (
    a.length === b.length &&
    Buffer.compare(
      Buffer.from(a.buffer, a.byteOffset, a.byteLength),
      Buffer.from(b.buffer, b.byteOffset, b.byteLength),
    ) === 0
  );
}

function values(count: number, seed: number, scale = 1, offset = 0): Float32Array {
  const out = new Float32Array(count);
  let s = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < count; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = (s / 2147483648 - 1) * scale + offset;
  }
  return out;
}

t.test('--gpu INDEX picks a PCI device through the device-select layer', async (t) => {
  const gpus = ['0000:18:00.0', '0000:3b:00.0', '0000:86:00.0'];
  t.same(selectGpuByIndex(1, gpus, true), {
    pci: '0000:3b:00.0',
    env: { DRI_PRIME: 'pci-0000_3b_00_0', MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' },
  });
  t.same(selectGpuByIndex(0, ['0000:18:00.0'], false), { pci: '0000:18:00.0', env: {} }, 'one GPU: nothing to select');
  t.same(selectGpuByIndex(0, [], false), { pci: undefined, env: {} }, 'no PCI GPU (software driver): index 0 is fine');
  t.throws(() => selectGpuByIndex(3, gpus, true), /--gpu 3: this host has 3 GPU\(s\).*valid indices are 0\.\.2/);
  t.throws(() => selectGpuByIndex(1, gpus, false), /device-select layer/);
  t.throws(() => selectGpuByIndex(-1, gpus, true), /integer >= 0/);
});

t.test('a missing driver is explained', async (t) => {
  const saved = { ...process.env };
  try {
    process.env.VK_ICD_FILENAMES = '/nonexistent/nvidia_icd.json';
    process.env.LD_LIBRARY_PATH = '';
    const msg = diagnoseVulkan();
    t.match(msg, /ICD file\(s\) not found: \/nonexistent\/nvidia_icd.json/);
    t.match(msg, /vulkaninfo --summary/);
  } finally {
    process.env.VK_ICD_FILENAMES = saved.VK_ICD_FILENAMES;
    process.env.LD_LIBRARY_PATH = saved.LD_LIBRARY_PATH;
    if (saved.VK_ICD_FILENAMES === undefined) delete process.env.VK_ICD_FILENAMES;
    if (saved.LD_LIBRARY_PATH === undefined) delete process.env.LD_LIBRARY_PATH;
  }
});

t.test('split-k plan covers k exactly', async (t) => {
  for (const [m, n, k] of [
    [147, 64, 401408],
    [576, 64, 100352],
    [4608, 512, 1568],
    [4, 4, 5],
  ] as const) {
    const { splits, chunk } = splitK(m, n, k);
    t.ok(chunk % 16 === 0 && splits * chunk >= k && (splits - 1) * chunk < k, `${m}x${n}x${k}: ${splits} x ${chunk}`);
  }
});

const why = await webGpuUnavailable();

t.test('webgpu backend against cpu', { skip: why ?? false }, async (t) => {
  t.equal(tf.getBackend(), 'webgpu');
  const on = async <T>(backend: 'cpu' | 'webgpu', f: () => T | Promise<T>): Promise<T> => {
    await tf.setBackend(backend);
    return f();
  };

  t.test('activation refuses a software adapter unless asked', async (t) => {
    await t.rejects(activateWebGpu({ allowSoftwareGpu: false }), /only a software WebGPU adapter .* was found/);
    await activateWebGpu({ allowSoftwareGpu: true });
  });

  t.test('dataSync reads GPU-resident data (no OffscreenCanvas in Node)', async (t) => {
    await tf.setBackend('webgpu');
    const a = tf.tensor2d(values(64 * 48, 1), [64, 48]);
    const b = tf.tensor2d(values(48 * 40, 2), [48, 40]);
    const prod = tf.matMul(a, b);
    const sync = Float32Array.from(prod.dataSync());
    const ref = await on('cpu', () =>
      tf.tidy(() =>
        tf.matMul(tf.tensor2d(values(64 * 48, 1), [64, 48]), tf.tensor2d(values(48 * 40, 2), [48, 40])).dataSync(),
      ),
    );
    t.ok(maxRelToScale(sync, ref) < 1e-5, 'matches cpu');
    await tf.setBackend('webgpu');
    tf.dispose([a, b, prod]);
  });

  t.test('conv2d gradients (wolfpack Conv2DBackpropFilter / Input)', async (t) => {
    type Pad = 'same' | 'valid' | [[number, number], [number, number], [number, number], [number, number]];
    const cases: { x: [number, number, number, number]; w: [number, number, number, number]; s: number; pad: Pad }[] = [
      { x: [2, 9, 9, 8], w: [3, 3, 8, 12], s: 1, pad: 'same' },
      { x: [2, 9, 9, 8], w: [3, 3, 8, 12], s: 2, pad: 'same' },
      { x: [2, 8, 8, 16], w: [1, 1, 16, 8], s: 1, pad: 'valid' },
      { x: [2, 8, 8, 16], w: [1, 1, 16, 8], s: 2, pad: 'valid' },
      {
        x: [2, 15, 15, 3],
        w: [7, 7, 3, 8],
        s: 2,
        pad: [
          [0, 0],
          [3, 3],
          [3, 3],
          [0, 0],
        ],
      },
      {
        x: [3, 10, 11, 5],
        w: [3, 3, 5, 6],
        s: 1,
        pad: [
          [0, 0],
          [1, 1],
          [1, 1],
          [0, 0],
        ],
      },
      {
        x: [2, 8, 8, 8],
        w: [3, 3, 8, 12],
        s: 2,
        pad: [
          [0, 0],
          [1, 1],
          [1, 1],
          [0, 0],
        ],
      }, // ResNet-50 v1.5's downsampling 3x3 (MindSpore pads explicitly)
      { x: [4, 32, 32, 8], w: [3, 3, 8, 16], s: 1, pad: 'same' }, // k = 4096: split over workgroups
      { x: [4, 32, 32, 12], w: [1, 1, 12, 20], s: 1, pad: 'valid' },
    ];
    for (const c of cases) {
      const run = (): Float32Array[] =>
        tf.tidy(() => {
          const x = tf.tensor4d(
            values(
              c.x.reduce((a, b) => a * b),
              3,
            ),
            c.x,
          );
          const w = tf.tensor4d(
            values(
              c.w.reduce((a, b) => a * b),
              4,
            ),
            c.w,
          );
          const yShape = tf.conv2d(x, w, c.s, c.pad).shape;
          const r = tf.tensor(
            values(
              yShape.reduce((a, b) => a * b),
              5,
            ),
            yShape,
          );
          const [dx, dw] = tf.grads((a: tf.Tensor, b: tf.Tensor) =>
            tf.sum(tf.mul(tf.conv2d(a as tf.Tensor4D, b as tf.Tensor4D, c.s, c.pad), r)),
          )([x, w]);
          return [dx!.dataSync() as Float32Array, dw!.dataSync() as Float32Array];
        });
      const ref = await on('cpu', run);
      const got = await on('webgpu', run);
      const label = `x ${c.x} w ${c.w} stride ${c.s} pad ${JSON.stringify(c.pad)}`;
      t.ok(maxRelToScale(got[0]!, ref[0]!) < TOL, `dx ${label}: ${maxRelToScale(got[0]!, ref[0]!).toExponential(2)}`);
      t.ok(maxRelToScale(got[1]!, ref[1]!) < TOL, `dW ${label}: ${maxRelToScale(got[1]!, ref[1]!).toExponential(2)}`);
      // wolfpack's implicit-GEMM input gradient (--dx-gemm), where it applies: not a plain matrix product
      if (c.w[0] === 1 && c.s === 1) continue;
      inputGradGemm.enabled = true;
      resetDispatchStats();
      const gemm = await on('webgpu', run).finally(() => {
        inputGradGemm.enabled = false;
        dispatchStats.enabled = false;
      });
      t.equal(dispatchStats.byName.get('ConvInputGradGemm'), 1, `dx ${label}: one implicit-GEMM dispatch`);
      t.ok(
        maxRelToScale(gemm[0]!, ref[0]!) < TOL,
        `dx ${label}, implicit GEMM: ${maxRelToScale(gemm[0]!, ref[0]!).toExponential(2)}`,
      );
    }
  });

  t.test('fused BatchNorm (+ReLU, +residual) forward and gradients', async (t) => {
    const shape: [number, number, number, number] = [3, 5, 7, 12];
    const size = shape.reduce((a, b) => a * b);
    // A channel mean far from zero next to its spread: the case a naive E[x^2]-E[x]^2 gets wrong.
    const xv = values(size, 7, 0.05, 3);
    const gv = values(12, 8, 0.5, 1);
    const bv = values(12, 9, 0.2);
    const rv = values(size, 10);
    const uv = values(size, 11);
    const eps = 1e-5;
    for (const post of [{}, { relu: true }, { relu: true, residual: true }]) {
      const reference = (): Float32Array[] =>
        tf.tidy(() => {
          // Independent: autodiff through explicit ops on cpu, in float32.
          const x = tf.tensor4d(xv, shape);
          const g = tf.tensor1d(gv);
          const b = tf.tensor1d(bv);
          const r = tf.tensor4d(rv, shape);
          const f = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor, ri: tf.Tensor): tf.Tensor => {
            const mean = tf.mean(xi, [0, 1, 2]);
            const centered = tf.sub(xi, mean);
            const v = tf.mean(tf.square(centered), [0, 1, 2]);
            let y = tf.add(tf.mul(tf.mul(centered, tf.rsqrt(tf.add(v, eps))), gi), bi);
            if ('residual' in post) y = tf.add(y, ri);
            if ('relu' in post) y = tf.relu(y);
            return y;
          };
          const u = tf.tensor4d(uv, shape);
          const y = f(x, g, b, r);
          const grads =
            'residual' in post
              ? tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor, e: tf.Tensor) => tf.sum(tf.mul(f(a, c, d, e), u)))([
                  x,
                  g,
                  b,
                  r,
                ])
              : tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(f(a, c, d, r), u)))([x, g, b]);
          return [y, ...grads].map((z) => z.dataSync() as Float32Array);
        });
      const fused = (): Float32Array[] =>
        tf.tidy(() => {
          const x = tf.tensor4d(xv, shape);
          const g = tf.tensor1d(gv);
          const b = tf.tensor1d(bv);
          const r = tf.tensor4d(rv, shape);
          const u = tf.tensor4d(uv, shape);
          const stats: tf.Tensor[] = [];
          const f = (xi: tf.Tensor, gi: tf.Tensor, bi: tf.Tensor, ri: tf.Tensor): tf.Tensor =>
            batchNormTrainWebGpu(
              xi as tf.Tensor4D,
              gi as tf.Tensor1D,
              bi as tf.Tensor1D,
              eps,
              (m, v) => stats.push(tf.keep(m), tf.keep(v)),
              { relu: 'relu' in post, residual: 'residual' in post ? (ri as tf.Tensor4D) : undefined },
            );
          const y = f(x, g, b, r);
          const grads =
            'residual' in post
              ? tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor, e: tf.Tensor) => tf.sum(tf.mul(f(a, c, d, e), u)))([
                  x,
                  g,
                  b,
                  r,
                ])
              : [
                  ...tf.grads((a: tf.Tensor, c: tf.Tensor, d: tf.Tensor) => tf.sum(tf.mul(f(a, c, d, r), u)))([
                    x,
                    g,
                    b,
                  ]),
                  tf.zeros([1]),
                ];
          const out = [y, ...grads, stats[0]!, stats[1]!].map((z) => z.dataSync() as Float32Array);
          tf.dispose(stats);
          return out;
        });
      const ref = await on('cpu', reference);
      const got = await on('webgpu', fused);
      const names = ['y', 'dx', 'dgamma', 'dbeta', 'dresidual'];
      names.forEach((n, i) => {
        if (n === 'dresidual' && !('residual' in post)) return;
        const e = maxRelToScale(got[i]!, ref[i]!);
        t.ok(e < TOL, `${JSON.stringify(post)} ${n}: ${e.toExponential(2)}`);
      });
      // Batch statistics against a float64 computation.
      const count = shape[0] * shape[1] * shape[2];
      for (let c = 0; c < 12; c++) {
        let s = 0;
        for (let i = c; i < size; i += 12) s += xv[i]!;
        const mean = s / count;
        let q = 0;
        for (let i = c; i < size; i += 12) q += (xv[i]! - mean) ** 2;
        t.ok(Math.abs(got[5]![c]! - mean) < 1e-6 * Math.abs(mean) + 1e-7, `mean[${c}]`);
        t.ok(
          Math.abs(got[6]![c]! - q / (count - 1)) < 1e-4 * (q / (count - 1)),
          `unbiased variance[${c}] ${got[6]![c]} vs ${q / (count - 1)}`,
        );
      }
    }
  });

  t.test('global average pool and its gradient', async (t) => {
    const shape: [number, number, number, number] = [3, 5, 6, 8];
    const xv = values(3 * 5 * 6 * 8, 31);
    const uv = values(3 * 8, 32);
    const run = (pool: (x: tf.Tensor4D) => tf.Tensor): Float32Array[] =>
      tf.tidy(() => {
        const x = tf.tensor4d(xv, shape);
        const u = tf.tensor2d(uv, [3, 8]);
        const [dx] = tf.grads((a: tf.Tensor) => tf.sum(tf.mul(pool(a as tf.Tensor4D), u)))([x]);
        return [pool(x).dataSync() as Float32Array, dx!.dataSync() as Float32Array];
      });
    const ref = await on('cpu', () => run((x) => tf.mean(x, [1, 2])));
    const got = await on('webgpu', () => run(globalAvgPoolWebGpu));
    t.ok(maxRelToScale(got[0]!, ref[0]!) < TOL, 'forward');
    t.ok(maxRelToScale(got[1]!, ref[1]!) < TOL, 'gradient');
  });

  t.test('the flat Momentum update against the host loop', async (t) => {
    await tf.setBackend('webgpu');
    const n = 10_000;
    const slots = [
      { name: 'a', shape: [4000], offset: 0, size: 4000 },
      { name: 'b', shape: [60, 100], offset: 4000, size: 6000 },
    ];
    const params = values(n, 41, 0.5);
    const accum = values(n, 42, 0.1);
    const grads = values(n, 43, 0.01);
    const flat = new FlatGpuParams(slots, params, accum);
    flat.writeGrads(grads);
    flat.momentumStep(0.05, 0.9);
    flat.scatter();
    const gw = new Float32Array(n);
    const ga = new Float32Array(n);
    flat.download(gw, ga);
    const b = flat.get('b')!.dataSync();
    const hw = Float32Array.from(params);
    const ha = Float32Array.from(accum);
    momentumStep(hw, ha, grads, 0, n, { lr: 0.05, momentum: 0.9 });
    let differ = 0;
    for (let i = 0; i < n; i++) if (gw[i] !== hw[i] || ga[i] !== ha[i]) differ++;
    t.ok(
      maxRelToScale(gw, hw) < 1e-6 && maxRelToScale(ga, ha) < 1e-6,
      `params and accumulators match; ${differ} of ${n} differ in the last bit (fused multiply-add)`,
    );
    t.same(
      Array.from(b.slice(0, 5)),
      Array.from(gw.subarray(4000, 4005)),
      'the parameter tensors are refreshed from the flat buffer',
    );
    flat.dispose();
  });

  const config = { flavour: 'torchvision' as const, width: 4, numClasses: 3 };
  // 4 images of 64x64: the last stage's BatchNorms still see 16 values a channel (with 2, BatchNorm's
  // gradient is all cancellation noise and no two backends agree).
  const batch: Batch = {
    images: values(4 * 64 * 64 * 3, 21),
    labels: Int32Array.from([0, 2, 1, 2]),
    count: 4,
    size: 64,
  };
  const opts = { lr: 0.05, momentum: 0.9, freeze: 'none' as const, bn: 'train' as const };
  const fresh = (width = config.width): ModelState => {
    const s = initModel({ ...config, width }, 3);
    // Non-trivial moving statistics, so evaluation mode is tested too.
    s.stats.set(
      values(s.stats.length, 22, 0.1, 1).map((v, i) =>
        s.layout.stats.find((sl) => i >= sl.offset && i < sl.offset + sl.size)!.spec.role === 'bn.var'
          ? Math.abs(v)
          : v - 1,
      ),
    );
    return s;
  };

  t.test('width-4 ResNet-50 forward, eval and train mode (fused on webgpu)', async (t) => {
    const state = fresh();
    const x = (): tf.Tensor4D => tf.tensor4d(batch.images, [4, 64, 64, 3]);
    const lookupOf = (): ((n: string) => tf.Tensor) => {
      const m = new Map<string, tf.Tensor>();
      for (const slot of state.layout.trainable)
        m.set(slot.spec.name, tf.tensor(state.params.subarray(slot.offset, slot.offset + slot.size), slot.spec.shape));
      for (const slot of state.layout.stats)
        m.set(slot.spec.name, tf.tensor(state.stats.subarray(slot.offset, slot.offset + slot.size), slot.spec.shape));
      return (n) => m.get(n)!;
    };
    for (const bnTrain of [false, true]) {
      const ref = await on('cpu', () =>
        tf.tidy(() => forward(state.layout.net, lookupOf(), x(), { bnTrain }).dataSync() as Float32Array),
      );
      const got = await on('webgpu', () =>
        tf.tidy(
          () =>
            forward(state.layout.net, lookupOf(), x(), {
              bnTrain,
              kernels: webGpuForwardKernels,
            }).dataSync() as Float32Array,
        ),
      );
      const stock = await on('webgpu', () =>
        tf.tidy(() => forward(state.layout.net, lookupOf(), x(), { bnTrain }).dataSync() as Float32Array),
      );
      t.ok(
        maxRelToScale(got, ref) < TOL,
        `fused, ${bnTrain ? 'train' : 'eval'} mode: ${maxRelToScale(got, ref).toExponential(2)}`,
      );
      t.ok(
        maxRelToScale(stock, ref) < TOL,
        `TF.js ops, ${bnTrain ? 'train' : 'eval'} mode: ${maxRelToScale(stock, ref).toExponential(2)}`,
      );
    }
  });

  t.test('forward kernels fall back to TF.js ops where they do not apply (C % 4 != 0, other backends)', async (t) => {
    // Width 2: the stem's and the first stage's 2-channel BatchNorms cannot be fused, the rest can.
    const state = fresh(2);
    const net = state.layout.net;
    const bns = [
      net.stem.bn,
      ...net.blocks.flatMap((b) => [b.bn1, b.bn2, b.bn3, ...(b.downsample ? [b.downsample.bn] : [])]),
    ];
    const fusable = bns.filter((bn) => bn.channels % 4 === 0).length;
    t.ok(fusable > 0 && fusable < bns.length, `${fusable} of ${bns.length} BatchNorms fusable`);
    const run = (bnTrain: boolean, kernels?: typeof webGpuForwardKernels): Float32Array =>
      tf.tidy(() => {
        const m = new Map<string, tf.Tensor>();
        for (const slot of state.layout.trainable)
          m.set(
            slot.spec.name,
            tf.tensor(state.params.subarray(slot.offset, slot.offset + slot.size), slot.spec.shape),
          );
        for (const slot of state.layout.stats)
          m.set(slot.spec.name, tf.tensor(state.stats.subarray(slot.offset, slot.offset + slot.size), slot.spec.shape));
        return forward(net, (n) => m.get(n)!, tf.tensor4d(batch.images, [4, 64, 64, 3]), {
          bnTrain,
          kernels,
        }).dataSync() as Float32Array;
      });
    for (const bnTrain of [false, true]) {
      const mode = bnTrain ? 'train' : 'eval';
      const ref = await on('cpu', () => run(bnTrain));
      t.strictSame(
        Array.from(await on('cpu', () => run(bnTrain, webGpuForwardKernels))),
        Array.from(ref),
        `${mode} mode on cpu: the kernels step aside (same bits)`,
      );
      const got = await on('webgpu', () => {
        resetDispatchStats();
        const out = run(bnTrain, webGpuForwardKernels);
        dispatchStats.enabled = false;
        return out;
      });
      t.equal(
        dispatchStats.byName.get(bnTrain ? 'BnApply' : 'BnInferApply') ?? 0,
        fusable,
        `${mode} mode on webgpu: ${fusable} fused BatchNorms`,
      );
      t.ok(
        maxRelToScale(got, ref) < TOL,
        `${mode} mode on webgpu, partly fused: ${maxRelToScale(got, ref).toExponential(2)}`,
      );
    }
  });

  t.test('one training step: Replica on cpu vs Replica and WebGpuReplica on webgpu', async (t) => {
    // One step from a fresh state: the reduce buffer it filled, the state and Momentum after the
    // update, and eval logits after it.
    const oneStep = async (make: (state: ModelState) => Replica | WebGpuReplica) => {
      const state = fresh();
      const r = make(state);
      await r.computeGradients(batch, 8);
      const buffer = Float32Array.from(r.buffer);
      r.applyReduced();
      if (r instanceof WebGpuReplica) r.syncHost();
      const logits = await r.predict(batch);
      r.dispose();
      return { buffer, params: state.params, stats: state.stats, accum: r.accum, logits };
    };
    const reference = await on('cpu', () => oneStep((state) => new Replica(state, opts)));
    // A whole network's gradients in float32 differ from the cpu's by ~1e-4 of their scale whatever
    // computes them (TF.js's own webgpu ops too): 53 BatchNorms over few values amplify rounding.
    const STEP_TOL = 3e-4;
    const compare = (label: string, got: typeof reference): void => {
      const g = (b: Float32Array) => b.subarray(0, reference.params.length);
      const eg = maxRelToScale(g(got.buffer), g(reference.buffer));
      t.ok(
        eg < STEP_TOL && relL2(g(got.buffer), g(reference.buffer)) < STEP_TOL,
        `${label}: gradients ${eg.toExponential(2)}`,
      );
      const rest = (b: Float32Array) => b.subarray(reference.params.length);
      t.ok(maxRelToScale(rest(got.buffer), rest(reference.buffer)) < TOL, `${label}: batch statistics and metrics`);
      t.ok(maxRelToScale(got.params, reference.params) < TOL, `${label}: params after the update`);
      t.ok(
        maxRelToScale(got.accum, reference.accum) < STEP_TOL,
        `${label}: Momentum accumulators (= gradients after one step)`,
      );
      t.ok(maxRelToScale(got.stats, reference.stats) < TOL, `${label}: moving statistics`);
      t.ok(
        maxRelToScale(got.logits, reference.logits) < TOL,
        `${label}: eval logits after the step ${maxRelToScale(got.logits, reference.logits).toExponential(2)}`,
      );
    };

    compare('Replica (TF.js ops) on webgpu', await on('webgpu', () => oneStep((state) => new Replica(state, opts))));

    for (const optimizer of ['gpu', 'host'] as const) {
      compare(
        `WebGpuReplica, optimizer ${optimizer}`,
        await on('webgpu', () => oneStep((state) => new WebGpuReplica(state, opts, undefined, { optimizer }))),
      );
    }
  });

  t.test('WebGpuReplica: no tensor leaks across steps; dispatches counted', async (t) => {
    await tf.setBackend('webgpu');
    const state = fresh();
    const r = new WebGpuReplica(state, opts, undefined, { hostGradients: false, capture: false });
    await r.computeGradients(batch, 4);
    r.applyReduced();
    const before = tf.memory().numTensors;
    resetDispatchStats();
    for (let i = 0; i < 2; i++) {
      await r.computeGradients(batch, 4);
      t.equal(r.applyReduced().skipped, false);
    }
    const perStep = dispatchStats.total / 2;
    dispatchStats.enabled = false;
    t.equal(tf.memory().numTensors, before, 'tensor count unchanged');
    t.ok(perStep > 100 && perStep < 800, `${perStep} dispatches a step`);
    t.ok((dispatchStats.byName.get('BnApply') ?? 0) === 2 * 53, '53 fused BatchNorms a step');
    r.dispose();
    await checkKernelErrors();
  });

  t.test(
    'step capture: a replay computes what TF.js computes, and its buffers are not handed out meanwhile',
    async (t) => {
      await tf.setBackend('webgpu');
      const b = tf.backend() as WebGpuBackend;
      const w = tf.keep(tf.tensor2d(values(48 * 40, 52), [48, 40]));
      // Matmul, bias, ReLU, a sum: TF.js kernels with uniforms, a host constant, and an int32 input
      // (one-hot) small enough that TF.js would compute on the CPU if it were not uploaded first.
      const step = (x: tf.Tensor, labels: tf.Tensor): tf.Tensor =>
        tf.tidy(() => {
          const h = tf.relu(tf.add(tf.matMul(x as tf.Tensor2D, w), 0.25));
          return tf.sum(tf.mul(h, tf.oneHot(labels as tf.Tensor1D, 40)), 1);
        });
      const plain = (seed: number): Float32Array =>
        tf.tidy(
          () =>
            step(
              tf.tensor2d(values(16 * 48, seed), [16, 48]),
              tf.tensor1d(
                Int32Array.from({ length: 16 }, (_, i) => (i * seed) % 40),
                'int32',
              ),
            ).dataSync() as Float32Array,
        );
      const x = tf.tensor2d(values(16 * 48, 1), [16, 48]);
      const labels = tf.tensor1d(
        Int32Array.from({ length: 16 }, (_, i) => i % 40),
        'int32',
      );
      const {
        result: out,
        step: captured,
        why,
      } = captureStep(
        b,
        [
          { name: 'x', tensor: x },
          { name: 'labels', tensor: labels },
        ],
        () => tf.keep(step(x, labels)),
      );
      t.equal(why, undefined, 'captured');
      const outBuffer = b.tensorMap.get(out.dataId)!.resource as GpuBuffer;
      const read = (): Float32Array =>
        readBuffersSync(b, [{ buffer: outBuffer, size: 16 * 4 }], (ab) => new Float32Array(ab.slice(0, 16 * 4)));
      t.ok(sameBits(read(), plain(1)), 'the recorded run');
      tf.dispose([x, labels, out]);
      // TF.js work between replays (the same shapes: the pool would hand out the step's buffers).
      const acquired: GpuBuffer[] = [];
      const acquire = b.bufferManager.acquireBuffer.bind(b.bufferManager);
      b.bufferManager.acquireBuffer = (...a) => {
        const buf = acquire(...a);
        acquired.push(buf);
        return buf;
      };
      const between = plain(5);
      delete (b.bufferManager as Partial<typeof b.bufferManager>).acquireBuffer;
      t.ok(
        acquired.length > 0 && acquired.every((buf) => !captured!.touches(buf)),
        `none of the ${acquired.length} buffers TF.js took meanwhile is the capture's`,
      );
      for (const seed of [3, 7]) {
        captured!.replay({
          x: values(16 * 48, seed),
          labels: Int32Array.from({ length: 16 }, (_, i) => (i * seed) % 40),
        });
        t.ok(sameBits(read(), plain(seed)), `replay with new inputs (seed ${seed}) equals the plain run`);
      }
      t.notOk(sameBits(read(), between), 'the replays computed something new');
      t.throws(
        () => captured!.replay({ x: values(8, 1), labels: new Int32Array(16) }),
        /input x has 32 bytes, the capture 3072/,
      );
      captured!.dispose();
      const { why: refused } = captureStep(b, [], () =>
        tf.tidy(() => tf.add(tf.tensor1d(values(4096, 9)), 1).dataSync()),
      );
      t.match(refused, /reads GPU data on the host/, 'a step that reads on the host is not captured, and says why');
      w.dispose();
      await checkKernelErrors();
    },
  );

  t.test('step capture: copies grouped by range, moved up to their sources, replayed in pieces', async (t) => {
    await tf.setBackend('webgpu');
    const b = tf.backend() as WebGpuBackend;
    const n = 64;
    const usage = BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST;
    const dst = b.device.createBuffer({ size: 2 * n * 4, usage });
    const other = b.device.createBuffer({ size: n * 4, usage });
    const bufferOf = (x: tf.Tensor): GpuBuffer => b.tensorMap.get(x.dataId)!.resource as GpuBuffer;
    const copy = (src: GpuBuffer, dstBuffer: GpuBuffer, srcOffset: number, dstOffset: number): void => {
      b.ensureCommandEncoderReady();
      b.endComputePassEncoder();
      b.commandEncoder!.copyBufferToBuffer(src, srcOffset, dstBuffer, dstOffset, n * 4);
    };
    const x = tf.tensor1d(values(n, 1));
    // a, its copy into range 0, a read of range 0 (which must stay after that copy), then c and its copy.
    const { result, step, why } = captureStep(b, [{ name: 'x', tensor: x }], () => {
      const a = tf.keep(tf.add(x, 1));
      copy(bufferOf(a), dst, 0, 0);
      copy(dst, other, 0, 0);
      const c = tf.keep(tf.tidy(() => tf.mul(tf.exp(tf.sqrt(tf.abs(x))), 3)));
      copy(bufferOf(c), dst, 0, n * 4);
      return [a, c];
    });
    t.equal(why, undefined, 'captured');
    const total = step!.dispatches + step!.copies;
    const ranges = [
      { begin: 0, end: n * 4 },
      { begin: n * 4, end: 2 * n * 4 },
    ];
    t.same(
      step!.groupCopiesInto(dst, [ranges[1]!, ranges[0]!]),
      [total, total],
      'range 1 first: range 0 cannot wait for it (its reader comes earlier), so nothing moves',
    );
    const cuts = step!.groupCopiesInto(dst, ranges);
    t.ok(cuts[0]! < total - 2 && cuts[1] === total, `range 0 is complete after ${cuts[0]} of ${total} commands`);
    const reader = new RangeReader(b, dst, ranges);
    const got: Float32Array[] = [];
    const order: number[] = [];
    const pieces = ranges.map((_, k) =>
      reader.cut(k, cuts[k]!, (bytes) => {
        got[k] = new Float32Array(bytes.slice(0));
        order.push(k);
      }),
    );
    const input = values(n, 2);
    step!.replay({ x: input }, [pieces[0]!.cut, pieces[1]!.cut]);
    await Promise.all(pieces.map((p) => p.read));
    const [wantA, wantC] = tf.tidy(() => {
      const y = tf.tensor1d(input);
      return [tf.add(y, 1), tf.mul(tf.exp(tf.sqrt(tf.abs(y))), 3)].map((v) => v.dataSync() as Float32Array);
    });
    t.same(order, [0, 1], 'read back range by range, in order');
    t.ok(sameBits(got[0]!, wantA!) && sameBits(got[1]!, wantC!), "each range read back holds the replay's values");
    const again = readBuffersSync(b, [{ buffer: other, size: n * 4 }], (ab) => new Float32Array(ab.slice(0)));
    t.ok(sameBits(again, wantA!), 'the read of range 0 still came after its copy');
    reader.dispose();
    step!.dispose();
    tf.dispose([x, ...result]);
    dst.destroy();
    other.destroy();
    await checkKernelErrors();
  });

  t.test(
    'WebGpuReplica with capture: the same bits as without, over steps, a partial batch and an evaluation',
    async (t) => {
      await tf.setBackend('webgpu');
      const full = (k: number): Batch => ({
        images: values(4 * 64 * 64 * 3, 60 + k),
        labels: Int32Array.from([k % 3, 2, 1, (k + 1) % 3]),
        count: 4,
        size: 64,
      });
      const partial: Batch = { ...full(9), count: 3 };
      const batches = [full(0), full(1), partial, full(2), full(3)];
      type Landing = { k: number; values: Float32Array };
      const run = async (capture: boolean, bucketElems?: number) => {
        const state = fresh();
        const r = new WebGpuReplica(state, opts, undefined, { capture });
        const steps: { buffer: Float32Array; mode: string; tensors: number; pooled: number; landings: Landing[] }[] =
          [];
        const pool = (tf.backend() as WebGpuBackend).bufferManager;
        let logits: Float32Array | undefined;
        // The worker's buckets (--bucket-mb): last layers first, cut at parameter boundaries.
        const buckets = bucketElems === undefined ? undefined : r.reduce.gradientBuckets(bucketElems);
        for (const [i, batch] of batches.entries()) {
          const landings: Landing[] = [];
          const stream = buckets && {
            buckets,
            // what the all-reduce would start on: the bucket's values at the moment it is handed over
            landed: (k: number) => landings.push({ k, values: r.buffer.slice(buckets[k]!.begin, buckets[k]!.end) }),
          };
          await r.computeGradients(batch, 8, stream);
          steps.push({
            buffer: Float32Array.from(r.buffer),
            mode: r.lastStep,
            tensors: tf.memory().numTensors,
            pooled: pool.numUsedBuffers + pool.numFreeBuffers,
            landings,
          });
          t.equal(r.applyReduced().skipped, false);
          if (i === 1) logits = await r.predict(batch);
        }
        r.syncHost();
        const result = {
          steps,
          logits: logits!,
          params: Float32Array.from(state.params),
          accum: Float32Array.from(r.accum),
          stats: Float32Array.from(state.stats),
          off: r.captureOff,
          capture: r.captureInfo,
          buckets,
        };
        r.dispose();
        return result;
      };
      const plain = await run(false);
      const captured = await run(true);
      t.equal(captured.off, undefined, 'capture did not fall back');
      t.same(
        captured.steps.map((s) => s.mode),
        ['recorded', 'replayed', 'plain', 'replayed', 'replayed'],
        'recorded once, replayed; the partial batch ran through TF.js and kept the capture',
      );
      t.same(
        plain.steps.map((s) => s.mode),
        ['plain', 'plain', 'plain', 'plain', 'plain'],
      );
      captured.steps.forEach((s, i) =>
        t.ok(
          sameBits(s.buffer, plain.steps[i]!.buffer),
          `step ${i} (${s.mode}): the reduce buffer (gradients, batch statistics, loss, correct) has the same bits`,
        ),
      );
      t.notOk(
        sameBits(captured.steps[3]!.buffer, captured.steps[4]!.buffer),
        'replayed steps differ from each other (new inputs)',
      );
      t.ok(sameBits(captured.logits, plain.logits), 'evaluation between steps: same logits');
      t.ok(
        sameBits(captured.params, plain.params) &&
          sameBits(captured.accum, plain.accum) &&
          sameBits(captured.stats, plain.stats),
        'parameters, Momentum accumulators and moving statistics: same bits',
      );
      t.equal(captured.steps[4]!.tensors, captured.steps[3]!.tensors, 'a replay makes no tensors');
      t.equal(captured.steps[4]!.pooled, captured.steps[3]!.pooled, 'nor GPU buffers');

      // Gradients streamed bucket by bucket (about 1/6 of the model each): the same bits, handed over in order.
      const streamed = await run(true, Math.ceil(fresh().layout.paramCount / 6));
      const buckets = streamed.buckets!;
      t.ok(buckets.length >= 4, `${buckets.length} buckets`);
      streamed.steps.forEach((s, i) => {
        t.ok(sameBits(s.buffer, plain.steps[i]!.buffer), `streamed step ${i} (${s.mode}): the same bits`);
        if (s.mode !== 'replayed') {
          t.same(
            s.landings,
            [],
            `step ${i} (${s.mode}) hands over nothing early: its buckets are final when it resolves`,
          );
          return;
        }
        t.same(
          s.landings.map((l) => l.k),
          buckets.map((_, k) => k),
          `replayed step ${i}: every bucket handed over once, in order`,
        );
        t.ok(
          s.landings.every((l) =>
            sameBits(l.values, plain.steps[i]!.buffer.subarray(buckets[l.k]!.begin, buckets[l.k]!.end)),
          ),
          `replayed step ${i}: each bucket held its final gradients when it was handed over`,
        );
      });
      // Where the replay submits each bucket's read-back: the last layers' gradients are final early in
      // the backward pass, once their gathering copies are moved up to the dispatches that finish them.
      const stream = streamed.capture!.stream!;
      const total = streamed.capture!.dispatches + streamed.capture!.copies;
      t.ok(
        stream.after.every((a, k) => a >= (stream.after[k - 1] ?? 0) && a <= total),
        `cuts in order: ${stream.after.join(', ')} of ${total} commands`,
      );
      t.ok(
        stream.after[0]! < 0.6 * total,
        `the first bucket is read back after ${stream.after[0]} of ${total} commands`,
      );
      t.ok(
        stream.after[buckets.length - 2]! < stream.after[buckets.length - 1]!,
        'the last bucket (the stem) is final later than the one before',
      );
      await checkKernelErrors();
    },
  );

  t.test('MappedUpload: uploads in turn through mapped staging buffers, each arriving whole', async (t) => {
    await tf.setBackend('webgpu');
    const b = tf.backend() as WebGpuBackend;
    const n = 1000;
    const dst = b.device.createBuffer({
      size: n * 4,
      usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST,
    });
    const up = new MappedUpload(b, n * 4, 2);
    // Five uploads through two staging buffers: the third waits for the first to be mapped again.
    for (let i = 0; i < 5; i++) {
      const data = values(n, 90 + i);
      up.write(dst, 0, data);
      const back = readBuffersSync(b, [{ buffer: dst, size: n * 4 }], (ab) => new Float32Array(ab.slice(0)));
      t.ok(sameBits(back, data), `upload ${i}: the same bits`);
    }
    up.write(dst, 400, values(100, 7));
    const back = readBuffersSync(b, [{ buffer: dst, size: n * 4 }], (ab) => new Float32Array(ab.slice(0)));
    t.ok(sameBits(back.subarray(100, 200), values(100, 7)), 'at an offset');
    t.ok(sameBits(back.subarray(0, 100), values(n, 94).subarray(0, 100)), 'the rest untouched');
    t.throws(() => up.write(dst, 0, new Float32Array(n + 1)), /4004 bytes for a 4000-byte staging buffer/);
    up.dispose();
    dst.destroy();
    await checkKernelErrors();
  });
});
