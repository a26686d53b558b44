// The webgpu backend's kernels for shared/model/forward.ts (ForwardOptions.kernels): each BatchNorm
// fused with its post-op (ReLU; in a block's last BatchNorm the shortcut addition and ReLU) through
// batchnorm.ts beside this file, and a one-dispatch global average pool. forward.ts is the only forward pass;
// this module supplies the fused pieces, and forward.ts's TF.js ops run wherever they do not apply.
// Used on the webgpu backend only (shared/train/webgpu-replica.ts).
import { tf } from '../../backend/tf.js';
import type { ForwardKernels } from '../forward.js';
import type { NetworkSpec } from '../spec.js';
import { batchNormInferWebGpu, batchNormTrainWebGpu, canFuseBatchNorm } from './batchnorm.js';
import { grid } from '../../backend/webgpu/kernels.js';
import { PER_ELEMENT_MAIN, bindingDecls, runRaw, type RawKernel } from '../../backend/webgpu/raw.js';

function avgPoolKernel(n: number, hw: number, cv: number): RawKernel {
  const g = grid(Math.ceil((n * cv) / 256));
  return {
    name: 'GlobalAvgPool',
    key: `wp_gap_${n}_${hw}_${cv}_${g[0]}`,
    workgroups: g,
    code: () =>
      `${bindingDecls(['y'], ['x'], () => 'vec4<f32>')}
const UNITS = ${n * cv}; const HW = ${hw}; const CV = ${cv}; const GX = ${g[0]}; ` +
      `const INV = ${(1 / hw).toExponential(9)};
${PER_ELEMENT_MAIN}
  let b = i / CV; let c = i % CV;
  var s = vec4<f32>(0.0);
  for (var p = 0; p < HW; p = p + 1) { s = s + x[(b * HW + p) * CV + c]; }
  y[i] = s * INV;
}`,
  };
}

function avgPoolGradKernel(n: number, hw: number, cv: number): RawKernel {
  const units = n * hw * cv;
  const g = grid(Math.ceil(units / 256));
  return {
    name: 'GlobalAvgPoolGrad',
    key: `wp_gapg_${n}_${hw}_${cv}_${g[0]}`,
    workgroups: g,
    code: () =>
      `${bindingDecls(['dx'], ['dy'], () => 'vec4<f32>')}
const UNITS = ${units}; const HW = ${hw}; const CV = ${cv}; const GX = ${g[0]}; ` +
      `const INV = ${(1 / hw).toExponential(9)};
${PER_ELEMENT_MAIN}
  dx[i] = dy[(i / (HW * CV)) * CV + i % CV] * INV;
}`,
  };
}

/**
 * Mean over height and width, [N, H, W, C] -> [N, C], one dispatch each way. TF.js's mean costs two
 * dispatches forward, and its gradient builds a ones tensor of x's shape on the CPU and uploads it
 * (13 MB a step for ResNet-50 at batch 32).
 */
export function globalAvgPoolWebGpu(x: tf.Tensor4D): tf.Tensor2D {
  const [n, h, w, c] = x.shape;
  if (c % 4 !== 0) return tf.mean(x, [1, 2]) as tf.Tensor2D;
  const fn = (...args: unknown[]) => {
    const save = args.pop() as tf.GradSaveFunc;
    const xIn = args[0] as tf.Tensor;
    save([]);
    const [y] = runRaw(tf.backend(), avgPoolKernel(n, h * w, c / 4), [xIn], [{ shape: [n, c] }]);
    return {
      value: tf.engine().makeTensorFromTensorInfo(y),
      gradFunc: (dy: tf.Tensor) => {
        const [dx] = runRaw(tf.backend(), avgPoolGradKernel(n, h * w, c / 4), [dy], [{ shape: [n, h, w, c] }]);
        return [tf.engine().makeTensorFromTensorInfo(dx)];
      },
    };
  };
  return tf.customGrad(fn as unknown as Parameters<typeof tf.customGrad>[0])(x) as tf.Tensor2D;
}

/**
 * forward.ts's kernels on webgpu: fused BatchNorm + post-ops where canFuseBatchNorm (C % 4 == 0), and
 * globalAvgPoolWebGpu; undefined (forward.ts's TF.js ops) elsewhere.
 */
export const webGpuForwardKernels: ForwardKernels = {
  batchNorm(x, gamma, beta, eps, post, stats) {
    if (!canFuseBatchNorm(x)) return undefined;
    return stats.train
      ? batchNormTrainWebGpu(x, gamma, beta, eps, stats.onStats, post)
      : batchNormInferWebGpu(x, stats.mean, stats.variance, gamma, beta, eps, post);
  },
  globalAvgPool(x) {
    return tf.getBackend() === 'webgpu' ? globalAvgPoolWebGpu(x) : undefined;
  },
};

/** Whether every BatchNorm of the network can be fused (all channel counts multiples of 4). */
export function fusableNetwork(net: NetworkSpec): boolean {
  const bns = [
    net.stem.bn,
    ...net.blocks.flatMap((b) => [b.bn1, b.bn2, b.bn3, ...(b.downsample ? [b.downsample.bn] : [])]),
  ];
  return bns.every((bn) => bn.channels % 4 === 0);
}
