// Parity with the reference frameworks: logits and one training step of a width-4 ResNet-50 in both
// flavours against PyTorch (fixtures from test/fixtures/resnet/gen_resnet_fixtures.py).
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import t from 'tap';
import { selectBackend } from '../../shared/backend/select.js';
import { tf } from '../../shared/backend/tf.js';
import { readNpy } from '../../shared/data/npy.js';
import { FLAVOURS } from '../../shared/model/spec.js';
import { modelFromTensors, tensorsFromModel } from '../../shared/model/weights.js';
import { Replica, type Batch } from '../../shared/train/replica.js';
import { toFloat32 } from '../../shared/weights/host-tensor.js';
import { readSafetensors } from '../../shared/weights/safetensors.js';
import { maxRelToScale, relL2 } from '../helpers/numerics.js';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'resnet');

async function nchwToBatch(file: string, labels?: Int32Array): Promise<Batch> {
  const x = await readNpy(file);
  const [n, c, h, w] = x.shape;
  if (n === undefined || c === undefined || h === undefined || w === undefined)
    throw new Error(`${file}: shape [${x.shape.join(', ')}] is not NCHW`);
  const src = x.data as Float32Array;
  const images = new Float32Array(n * h * w * c);
  for (let i = 0; i < n; i++)
    for (let y = 0; y < h; y++)
      for (let xx = 0; xx < w; xx++)
        for (let k = 0; k < c; k++) {
          images[((i * h + y) * w + xx) * c + k] = src[((i * c + k) * h + y) * w + xx]!;
        }
  return { images, labels: labels ?? new Int32Array(n), count: n, size: h };
}

async function labelsOf(dir: string): Promise<Int32Array> {
  const l = await readNpy(join(dir, 'labels.npy'));
  return Int32Array.from(l.data as BigInt64Array, (v) => Number(v));
}

for (const backend of ['wasm', 'cpu'] as const) {
  t.test(`ResNet-50 parity with PyTorch on ${backend}`, async (t) => {
    await selectBackend(backend);
    for (const flavour of FLAVOURS) {
      const dir = join(FIX, flavour);
      const weights = (await readSafetensors(join(dir, 'weights.safetensors'))).tensors;
      const labels = await labelsOf(dir);
      const batch = await nchwToBatch(join(dir, 'x.npy'), labels);

      t.test(`${flavour}: eval logits`, async (t) => {
        const { state, config } = modelFromTensors(weights, 'weights.safetensors');
        t.equal(config.flavour, flavour);
        t.equal(config.width, 4);
        const r = new Replica(state, { lr: 0.1, momentum: 0.9, freeze: 'none', bn: 'train' });
        const logits = await r.predict(batch);
        const ref = (await readNpy(join(dir, 'logits_eval.npy'))).data as Float32Array;
        t.ok(maxRelToScale(logits, ref) < 1e-4, `logits max rel ${maxRelToScale(logits, ref).toExponential(2)}`);
        if (flavour === 'mindspore') {
          const b40 = await nchwToBatch(join(dir, 'x40.npy'));
          const ref40 = (await readNpy(join(dir, 'logits_eval40.npy'))).data as Float32Array;
          const l40 = await r.predict(b40);
          t.ok(
            maxRelToScale(l40, ref40) < 1e-4,
            `40x40 (asymmetric SAME) max rel ${maxRelToScale(l40, ref40).toExponential(2)}`,
          );
        }
        r.dispose();
      });

      t.test(`${flavour}: one full fine-tuning step (BN train)`, async (t) => {
        const momentum = (await readSafetensors(join(dir, 'momentum.safetensors'))).tensors;
        const merged = new Map(weights);
        for (const [k, v] of momentum) merged.set(`moments.${k}`, v);
        const { state, accum } = modelFromTensors(merged, 'weights+momentum', { withMomentum: true });
        const step = JSON.parse(await readFile(join(dir, 'step.json'), 'utf8')) as {
          loss: number;
          lr: number;
          momentum: number;
        };
        const r = new Replica(state, { lr: step.lr, momentum: step.momentum, freeze: 'none', bn: 'train' }, accum);
        await r.computeGradients(batch, batch.count);
        const got = tensorsFromModel(state); // before the update: check gradients through the buffer
        const grads = (await readSafetensors(join(dir, 'grads.safetensors'))).tensors;
        const metrics = r.applyReduced();
        t.ok(Math.abs(metrics.loss - step.loss) / step.loss < 1e-4, `loss ${metrics.loss} vs ${step.loss}`);
        t.equal(metrics.samples, 8);
        // gradients: recover from accum_after = 0.9*accum_before + grad
        const after = tensorsFromModel(state, r.accum);
        let worstGrad = 0;
        for (const [name, g] of grads) {
          const before = toFloat32(momentum.get(name)!);
          const acc = toFloat32(after.get(`moments.${name}`)!);
          const mine = acc.map((a, i) => a - Math.fround(0.9 * before[i]!));
          worstGrad = Math.max(worstGrad, relL2(mine, toFloat32(g)));
        }
        const updated = (await readSafetensors(join(dir, 'updated.safetensors'))).tensors;
        let worstW = 0;
        let worstStat = 0;
        for (const [name, u] of updated) {
          const e = relL2(toFloat32(after.get(name)!), toFloat32(u));
          if (/running|moving/.test(name)) worstStat = Math.max(worstStat, e);
          else worstW = Math.max(worstW, e);
        }
        t.ok(got.size > 0);
        t.ok(worstGrad < 1e-4, `gradients worst rel-L2 ${worstGrad.toExponential(2)}`);
        t.ok(worstW < 1e-4, `updated weights worst rel-L2 ${worstW.toExponential(2)}`);
        t.ok(worstStat < 1e-4, `moving statistics worst rel-L2 ${worstStat.toExponential(2)}`);
        r.dispose();
      });

      t.test(`${flavour}: frozen-backbone step`, async (t) => {
        const momentum = (await readSafetensors(join(dir, 'momentum.safetensors'))).tensors;
        const merged = new Map(weights);
        for (const [k, v] of momentum) merged.set(`moments.${k}`, v);
        const { state, accum } = modelFromTensors(merged, 'weights+momentum', { withMomentum: true });
        const before = Float32Array.from(state.params);
        const statsBefore = Float32Array.from(state.stats);
        const step = JSON.parse(await readFile(join(dir, 'frozen_step.json'), 'utf8')) as {
          loss: number;
          lr: number;
          momentum: number;
        };
        const r = new Replica(state, { lr: step.lr, momentum: step.momentum, freeze: 'backbone', bn: 'frozen' }, accum);
        await r.computeGradients(batch, batch.count);
        t.equal(r.buffer.length, 128 * 2 + 2 + 4, 'reduce buffer holds only the head (+ 4 metrics)');
        const metrics = r.applyReduced();
        t.ok(Math.abs(metrics.loss - step.loss) / step.loss < 1e-4, `loss ${metrics.loss} vs ${step.loss}`);
        const after = tensorsFromModel(state, r.accum);
        const upd = (await readSafetensors(join(dir, 'frozen_updated.safetensors'))).tensors;
        for (const [name, u] of upd) {
          const e = relL2(toFloat32(after.get(name)!), toFloat32(u));
          t.ok(e < 1e-4, `${name} rel-L2 ${e.toExponential(2)}`);
        }
        const head = state.layout.trainableRange('backbone');
        t.same(state.params.subarray(0, head.begin), before.subarray(0, head.begin), 'backbone unchanged');
        t.same(state.stats, statsBefore, 'moving statistics unchanged with --bn frozen');
        r.dispose();
      });
    }
    t.equal(tf.memory().numTensors >= 0, true);
  });
}
