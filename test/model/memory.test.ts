// Tensor leaks: a training step or a prediction that leaves even one tensor behind grows memory every
// step until the worker dies hours into a run. tf.memory().numTensors must be flat across steps for
// every training mode (full fine-tuning or frozen backbone, BatchNorm trained or frozen) and predictions.
import t from 'tap';
import { selectBackend } from '../../shared/backend/select.js';
import { tf } from '../../shared/backend/tf.js';
import { FLAVOURS } from '../../shared/model/spec.js';
import type { Freeze } from '../../shared/model/state.js';
import { initModel } from '../../shared/model/weights.js';
import { Replica, type Batch } from '../../shared/train/replica.js';
import type { BnMode } from '../../shared/train/reduce-buffer.js';

const SIZE = 32;
const STEPS = 10;

function batch(count: number, seed: number): Batch {
  const images = new Float32Array(count * SIZE * SIZE * 3);
  let s = seed >>> 0;
  for (let i = 0; i < images.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    images[i] = s / 2147483648 - 1;
  }
  const labels = Int32Array.from({ length: count }, (_, i) => (i + seed) % 2);
  return { images, labels, count, size: SIZE };
}

t.before(async () => {
  await selectBackend('wasm');
});

for (const freeze of ['none', 'backbone'] as Freeze[]) {
  for (const bn of ['train', 'frozen'] as BnMode[]) {
    t.test(`numTensors is flat over ${STEPS} steps: freeze ${freeze}, bn ${bn}`, async (t) => {
      const start = tf.memory().numTensors;
      const state = initModel({ flavour: FLAVOURS[freeze === 'none' ? 0 : 1]!, width: 4, numClasses: 2 }, 3);
      const replica = new Replica(state, { lr: 0.01, momentum: 0.9, freeze, bn });
      const afterInit = tf.memory().numTensors;
      t.equal(afterInit - start, state.layout.net.params.length, 'one tensor per parameter and statistic');
      const counts: number[] = [];
      for (let step = 0; step < STEPS; step++) {
        // A short last batch too: a worker's share can be smaller than its usual batch.
        await replica.computeGradients(batch(step === STEPS - 1 ? 1 : 3, step), 3);
        counts.push(tf.memory().numTensors);
        const m = replica.applyReduced();
        t.notOk(m.skipped, `step ${step} applied`);
        counts.push(tf.memory().numTensors);
      }
      t.same(counts, new Array(counts.length).fill(afterInit), 'no tensor is created or lost by a step');
      await replica.computeGradients({ ...batch(2, 99), count: 0 }, 3);
      t.equal(tf.memory().numTensors, afterInit, 'an empty share makes no tensors');
      replica.dispose();
      t.equal(tf.memory().numTensors, start, 'dispose() frees every tensor');
    });
  }
}

t.test('numTensors is flat across predict calls', async (t) => {
  const start = tf.memory().numTensors;
  const replica = new Replica(initModel({ flavour: 'torchvision', width: 4, numClasses: 3 }, 5), {
    lr: 0.01,
    momentum: 0.9,
    freeze: 'none',
    bn: 'train',
  });
  const afterInit = tf.memory().numTensors;
  const bytes = tf.memory().numBytes;
  for (let i = 0; i < 10; i++) {
    const logits = await replica.predict(batch(1 + (i % 3), i));
    t.equal(logits.length, (1 + (i % 3)) * 3);
    t.equal(tf.memory().numTensors, afterInit, `after predict ${i}`);
  }
  t.equal(tf.memory().numBytes, bytes, 'and no bytes');
  replica.reload();
  t.equal(tf.memory().numTensors, afterInit, 'reload() replaces tensors one for one');
  replica.dispose();
  t.equal(tf.memory().numTensors, start);
});
