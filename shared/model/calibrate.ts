// Sets a network's BatchNorm moving statistics to the batch statistics of a set of images (one
// forward pass in training mode). A randomly initialised ResNet with calibrated statistics gives
// well-scaled features in evaluation mode, as a pretrained one does: the demo's starting checkpoint
// is made this way, since no pretrained weights can be downloaded where it must run.
import { tf } from '../backend/tf.js';
import { backbone } from './forward.js';
import type { ModelState } from './state.js';
import { ParamTensors } from './tensors.js';

export async function calibrateBatchNorm(
  state: ModelState,
  images: Float32Array,
  count: number,
  size: number,
): Promise<void> {
  const tensors = new ParamTensors(state);
  const stats: { name: string; t: tf.Tensor }[] = [];
  const x = tf.tensor4d(images.subarray(0, count * size * size * 3), [count, size, size, 3]);
  try {
    tf.tidy(() => {
      backbone(state.layout.net, tensors.lookup, x, {
        bnTrain: true,
        onBatchStats: (bn, mean, variance) => {
          stats.push({ name: bn.mean, t: tf.keep(mean) }, { name: bn.variance, t: tf.keep(variance) });
        },
      });
    });
    for (const { name, t } of stats) {
      const slot = state.layout.find(name)!.slot;
      state.stats.set((await t.data()) as Float32Array, slot.offset);
    }
  } finally {
    x.dispose();
    for (const s of stats) s.t.dispose();
    tensors.dispose();
  }
}
