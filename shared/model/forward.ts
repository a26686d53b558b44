// The ResNet-50 v1.5 forward pass in TF.js ops (NHWC), written out rather than built with tfjs-layers
// so that padding, BatchNorm and the parameter set are exactly those of the reference frameworks:
//  - mindspore: TensorFlow-style SAME padding on every conv and on the stem max-pool (the extra row
//    and column go to the bottom/right), BatchNorm eps 1e-4;
//  - torchvision: symmetric padding (7x7 pad 3, 3x3 pad 1, max-pool pad 1), eps 1e-5.
// In training mode BatchNorm normalises with the batch's biased variance and reports the batch mean
// and unbiased variance, from which the caller updates the moving statistics (as PyTorch does).
// Each BatchNorm carries what follows it (a ReLU; in a block's last one the shortcut addition, then
// the ReLU) as a post-op, so that a backend may run the three as one fused kernel (ForwardKernels:
// shared/model/webgpu/resnet-kernels.ts on webgpu); without one, TF.js ops compute them one after another.
import { tf } from '../backend/tf.js';
import type { BnSpec, ConvSpec, NetworkSpec } from './spec.js';

export type Lookup = (name: string) => tf.Tensor;
export type BatchStatsSink = (bn: BnSpec, mean: tf.Tensor1D, unbiasedVariance: tf.Tensor1D) => void;

/** What follows a BatchNorm: y = relu?(bn(x) (+ residual)). */
export interface BnPost {
  /** Apply ReLU to the result. */
  relu?: boolean;
  /** Add this tensor (same shape as x) before the ReLU: a ResNet block's shortcut. */
  residual?: tf.Tensor4D;
}

/** The statistics a BatchNorm normalises with: the batch's (reported to onStats) or the moving ones. */
export type BnStats =
  | { train: true; onStats: (mean: tf.Tensor1D, unbiasedVariance: tf.Tensor1D) => void }
  | { train: false; mean: tf.Tensor1D; variance: tf.Tensor1D };

/**
 * Fused implementations a backend may supply. Each returns undefined for an input it cannot take
 * (then, as when it is absent, the TF.js ops below run); it must compute what those ops compute, with
 * a gradient, and in training mode call stats.onStats exactly once (and only when it returns a tensor).
 */
export interface ForwardKernels {
  /** relu?(BatchNorm(x) (+ post.residual)), NHWC, normalising over N, H, W. */
  batchNorm?(
    x: tf.Tensor4D,
    gamma: tf.Tensor1D,
    beta: tf.Tensor1D,
    eps: number,
    post: BnPost,
    stats: BnStats,
  ): tf.Tensor4D | undefined;
  /** Mean over height and width, [N, H, W, C] -> [N, C]. */
  globalAvgPool?(x: tf.Tensor4D): tf.Tensor2D | undefined;
}

export interface ForwardOptions {
  /** Use batch statistics (training) rather than the moving ones (evaluation). */
  bnTrain: boolean;
  /** Receives each BatchNorm's batch statistics in training mode. */
  onBatchStats?: BatchStatsSink;
  /** A backend's fused kernels (default: TF.js ops only). */
  kernels?: ForwardKernels;
}

function conv(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, c: ConvSpec): tf.Tensor4D {
  const w = get(c.weight) as tf.Tensor4D;
  if (net.config.flavour === 'mindspore') return tf.conv2d(x, w, c.stride, 'same');
  const p = (c.kernel - 1) / 2;
  return tf.conv2d(
    x,
    w,
    c.stride,
    p === 0
      ? 'valid'
      : [
          [0, 0],
          [p, p],
          [p, p],
          [0, 0],
        ],
  );
}

/** relu?(BatchNorm(x) (+ post.residual)): the backend's fused kernel where it takes x, else TF.js ops. */
function batchNorm(
  net: NetworkSpec,
  get: Lookup,
  x: tf.Tensor4D,
  bn: BnSpec,
  opts: ForwardOptions,
  post: BnPost,
): tf.Tensor4D {
  const gamma = get(bn.gamma) as tf.Tensor1D;
  const beta = get(bn.beta) as tf.Tensor1D;
  const stats: BnStats = opts.bnTrain
    ? { train: true, onStats: (mean, unbiased) => opts.onBatchStats?.(bn, mean, unbiased) }
    : { train: false, mean: get(bn.mean) as tf.Tensor1D, variance: get(bn.variance) as tf.Tensor1D };
  const fused = opts.kernels?.batchNorm?.(x, gamma, beta, net.eps, post, stats);
  if (fused) return fused;
  let y = stats.train
    ? batchNormTrain(x, gamma, beta, net.eps, stats.onStats)
    : tf.batchNorm4d(x, stats.mean, stats.variance, beta, gamma, net.eps);
  if (post.residual) y = tf.add(y, post.residual);
  if (post.relu) y = tf.relu(y);
  return y;
}

/**
 * Training-mode BatchNorm with PyTorch's closed-form backward pass,
 *   dx = gamma*invstd/N * (N*dy - sum(dy) - xhat*sum(dy*xhat)),
 * rather than autodiff through moments(): fewer kernels, and no cancellation error where a channel's
 * variance is small next to its mean (autodiff's error reached 1e-2 there; this matches PyTorch to 1e-4).
 */
function batchNormTrain(
  x: tf.Tensor4D,
  gamma: tf.Tensor1D,
  beta: tf.Tensor1D,
  eps: number,
  onStats: (mean: tf.Tensor1D, unbiasedVariance: tf.Tensor1D) => void,
): tf.Tensor4D {
  const count = x.shape[0] * x.shape[1] * x.shape[2];
  const fn = (xIn: tf.Tensor, gIn: tf.Tensor, bIn: tf.Tensor, save: tf.GradSaveFunc) => {
    const { mean, variance } = tf.moments(xIn, [0, 1, 2]);
    onStats(mean as tf.Tensor1D, tf.mul(variance, count > 1 ? count / (count - 1) : 1) as tf.Tensor1D);
    const invstd = tf.rsqrt(tf.add(variance, eps));
    const xhat = tf.mul(tf.sub(xIn, mean), invstd);
    save([xhat, invstd, gIn]);
    return {
      value: tf.add(tf.mul(xhat, gIn), bIn),
      gradFunc: (dy: tf.Tensor, saved: [tf.Tensor, tf.Tensor, tf.Tensor]) => {
        const [sxhat, sinvstd, sgamma] = saved;
        const dbeta = tf.sum(dy, [0, 1, 2]);
        const dgamma = tf.sum(tf.mul(dy, sxhat), [0, 1, 2]);
        const scale = tf.mul(sgamma, tf.div(sinvstd, count));
        const inner = tf.sub(tf.sub(tf.mul(dy, count), dbeta), tf.mul(sxhat, dgamma));
        return [tf.mul(inner, scale), dgamma, dbeta];
      },
    };
  };
  const op = tf.customGrad(fn as unknown as Parameters<typeof tf.customGrad>[0]);
  return op(x, gamma, beta) as tf.Tensor4D;
}

function maxPool(net: NetworkSpec, x: tf.Tensor4D): tf.Tensor4D {
  return net.config.flavour === 'mindspore' ? tf.maxPool(x, 3, 2, 'same') : tf.maxPool(x, 3, 2, 1);
}

/** Image batch [N, H, W, 3] -> pooled features [N, C]. */
export function backbone(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, opts: ForwardOptions): tf.Tensor2D {
  let h = batchNorm(net, get, conv(net, get, x, net.stem.conv), net.stem.bn, opts, { relu: true });
  h = maxPool(net, h);
  for (const b of net.blocks) {
    let y = batchNorm(net, get, conv(net, get, h, b.conv1), b.bn1, opts, { relu: true });
    y = batchNorm(net, get, conv(net, get, y, b.conv2), b.bn2, opts, { relu: true });
    // The shortcut first: it is bn3's post-op (relu(bn3(conv3(y)) + shortcut)).
    const shortcut = b.downsample
      ? batchNorm(net, get, conv(net, get, h, b.downsample.conv), b.downsample.bn, opts, {})
      : h;
    h = batchNorm(net, get, conv(net, get, y, b.conv3), b.bn3, opts, { relu: true, residual: shortcut });
  }
  return opts.kernels?.globalAvgPool?.(h) ?? (tf.mean(h, [1, 2]) as tf.Tensor2D);
}

/** Pooled features [N, C] -> logits [N, K]. */
export function head(net: NetworkSpec, get: Lookup, features: tf.Tensor2D): tf.Tensor2D {
  return tf.add(tf.matMul(features, get(net.fc.weight) as tf.Tensor2D), get(net.fc.bias)) as tf.Tensor2D;
}

export function forward(net: NetworkSpec, get: Lookup, x: tf.Tensor4D, opts: ForwardOptions): tf.Tensor2D {
  return head(net, get, backbone(net, get, x, opts));
}
