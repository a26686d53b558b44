// The ResNet-50 forward pass of shared/model/forward.ts with each BatchNorm fused with what follows it
// (ReLU; in a block's last BatchNorm the shortcut addition and ReLU) through webgpu-batchnorm.ts: the
// same network, padding and parameters, in fewer dispatches. Used on the webgpu backend only.
// (Until forward.ts takes BatchNorm post-ops itself, this mirrors its structure; keep them in step.)
import { tf } from './tf.js';
import type { ForwardOptions, Lookup } from '../model/forward.js';
import { head } from '../model/forward.js';
import type { BnSpec, ConvSpec, NetworkSpec } from '../model/spec.js';
import { batchNormInferWebGpu, batchNormTrainWebGpu, canFuseBatchNorm, type BnPost } from './webgpu-batchnorm.js';
import { grid } from './webgpu-kernels.js';
import { bindingDecls, runRaw, type RawKernel } from './webgpu-raw.js';

function avgPoolKernel(n: number, hw: number, cv: number): RawKernel {
  const g = grid(Math.ceil((n * cv) / 256));
  return {
    name: 'GlobalAvgPool', key: `wp_gap_${n}_${hw}_${cv}_${g[0]}`, workgroups: g,
    code: () => `${bindingDecls(['y'], ['x'], () => 'vec4<f32>')}
const UNITS = ${n * cv}; const HW = ${hw}; const CV = ${cv}; const GX = ${g[0]}; const INV = ${(1 / hw).toExponential(9)};
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = i32(gid.y) * GX * 256 + i32(gid.x);
  if (i >= UNITS) { return; }
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
    name: 'GlobalAvgPoolGrad', key: `wp_gapg_${n}_${hw}_${cv}_${g[0]}`, workgroups: g,
    code: () => `${bindingDecls(['dx'], ['dy'], () => 'vec4<f32>')}
const UNITS = ${units}; const HW = ${hw}; const CV = ${cv}; const GX = ${g[0]}; const INV = ${(1 / hw).toExponential(9)};
@compute @workgroup_size(256, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = i32(gid.y) * GX * 256 + i32(gid.x);
  if (i >= UNITS) { return; }
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

function conv(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, c: ConvSpec): tf.Tensor4D {
  const w = get(c.weight) as tf.Tensor4D;
  if (net.config.flavour === 'mindspore') return tf.conv2d(x, w, c.stride, 'same');
  const p = (c.kernel - 1) / 2;
  return tf.conv2d(x, w, c.stride, p === 0 ? 'valid' : [[0, 0], [p, p], [p, p], [0, 0]]);
}

/** BatchNorm + post-ops: fused on webgpu; TF.js ops otherwise (C % 4 != 0), as forward.ts computes. */
function batchNorm(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, bn: BnSpec, opts: ForwardOptions, post: BnPost): tf.Tensor4D {
  const gamma = get(bn.gamma) as tf.Tensor1D;
  const beta = get(bn.beta) as tf.Tensor1D;
  if (!canFuseBatchNorm(x)) throw new Error(`fused ResNet: BatchNorm ${bn.gamma} on ${x.shape} cannot be fused (webgpu, C % 4 == 0)`);
  if (!opts.bnTrain) {
    return batchNormInferWebGpu(x, get(bn.mean) as tf.Tensor1D, get(bn.variance) as tf.Tensor1D, gamma, beta, net.eps, post);
  }
  return batchNormTrainWebGpu(x, gamma, beta, net.eps, (mean, unbiased) => opts.onBatchStats?.(bn, mean, unbiased), post);
}

function maxPool(net: NetworkSpec, x: tf.Tensor4D): tf.Tensor4D {
  return net.config.flavour === 'mindspore' ? tf.maxPool(x, 3, 2, 'same') : tf.maxPool(x, 3, 2, 1);
}

/** Image batch [N, H, W, 3] -> pooled features [N, C], as forward.ts's backbone. */
export function backboneWebGpu(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, opts: ForwardOptions): tf.Tensor2D {
  let h = batchNorm(net, get, conv(net, get, x, net.stem.conv), net.stem.bn, opts, { relu: true });
  h = maxPool(net, h);
  for (const b of net.blocks) {
    let y = batchNorm(net, get, conv(net, get, h, b.conv1), b.bn1, opts, { relu: true });
    y = batchNorm(net, get, conv(net, get, y, b.conv2), b.bn2, opts, { relu: true });
    const shortcut = b.downsample ? batchNorm(net, get, conv(net, get, h, b.downsample.conv), b.downsample.bn, opts, {}) : h;
    h = batchNorm(net, get, conv(net, get, y, b.conv3), b.bn3, opts, { relu: true, residual: shortcut });
  }
  return globalAvgPoolWebGpu(h);
}

export function forwardWebGpu(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, opts: ForwardOptions): tf.Tensor2D {
  return head(net, get, backboneWebGpu(net, get, x, opts));
}

/** Whether every BatchNorm of the network can be fused (all channel counts multiples of 4). */
export function fusableNetwork(net: NetworkSpec): boolean {
  const bns = [net.stem.bn, ...net.blocks.flatMap((b) => [b.bn1, b.bn2, b.bn3, ...(b.downsample ? [b.downsample.bn] : [])])];
  return bns.every((bn) => bn.channels % 4 === 0);
}
