// Momentum SGD exactly as MindSpore's nn.Momentum and torch.optim.SGD(momentum, dampening=0) define
// it: accum = momentum*accum + grad; w -= lr*accum. Runs over flat Float32Arrays in one loop, so
// every replica that applies it to the same summed gradient ends with the same bits.

export interface MomentumConfig {
  lr: number;
  momentum: number;
}

/** Updates w[begin, end) and accum[begin, end) in place from grad[0, end-begin). */
export function momentumStep(
  w: Float32Array,
  accum: Float32Array,
  grad: Float32Array,
  begin: number,
  end: number,
  cfg: MomentumConfig,
): void {
  const { lr, momentum } = cfg;
  for (let i = begin, j = 0; i < end; i++, j++) {
    // Math.fround keeps the intermediate in float32, as the reference frameworks compute it.
    const a = Math.fround(Math.fround(momentum * accum[i]!) + grad[j]!);
    accum[i] = a;
    w[i] = Math.fround(w[i]! - Math.fround(lr * a));
  }
}

/** moving = m*moving + (1-m)*batch, for BatchNorm statistics. */
export function movingAverage(moving: Float32Array, batch: Float32Array, m: number): void {
  for (let i = 0; i < moving.length; i++) {
    moving[i] = Math.fround(Math.fround(m * moving[i]!) + Math.fround((1 - m) * batch[i]!));
  }
}
