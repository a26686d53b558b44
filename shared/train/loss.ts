// Sparse softmax cross-entropy, the lab's loss (MindSpore SoftmaxCrossEntropyWithLogits(sparse=True,
// reduction='mean')). Returned as a SUM divided by a caller-given count: a worker divides its part of
// a global batch by the global batch size, so the all-reduced sum is exactly the global mean.
import { tf } from '../backend/tf.js';

/** Sum over the rows of -log softmax(logits)[label], divided by `denominator`. */
export function sparseSoftmaxCrossEntropy(logits: tf.Tensor2D, labels: tf.Tensor1D, denominator: number): tf.Scalar {
  return tf.tidy(() => {
    const logp = tf.logSoftmax(logits);
    const onehot = tf.oneHot(tf.cast(labels, 'int32'), logits.shape[1]);
    return tf.div(tf.neg(tf.sum(tf.mul(onehot, logp))), denominator) as tf.Scalar;
  });
}

/** Per-row cross-entropy in float64 on the host, for reporting and for tests. */
export function crossEntropyRows(logits: Float32Array, labels: ArrayLike<number>, classes: number): Float64Array {
  const out = new Float64Array(labels.length);
  for (let i = 0; i < labels.length; i++) {
    let max = -Infinity;
    for (let k = 0; k < classes; k++) max = Math.max(max, logits[i * classes + k]!);
    let sum = 0;
    for (let k = 0; k < classes; k++) sum += Math.exp(logits[i * classes + k]! - max);
    out[i] = Math.log(sum) + max - logits[i * classes + labels[i]!]!;
  }
  return out;
}

/** Index of the largest logit in each row (first one on ties, as argmax does). */
export function argmaxRows(logits: Float32Array, classes: number): Int32Array {
  const n = logits.length / classes;
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    let best = 0;
    for (let k = 1; k < classes; k++) if (logits[i * classes + k]! > logits[i * classes + best]!) best = k;
    out[i] = best;
  }
  return out;
}
