// modelFromTensors at the edge: every way a weights file can fail to be a ResNet-50 must say which file,
// which tensors and why, all at once; dropping the head must give a fresh one and ignore the file's
// head momentum; and model -> .ckpt -> model must give back the same bits.
import { join } from 'node:path';
import t from 'tap';
import { isWolfpackError, type WolfpackError } from '../../shared/errors.js';
import { FLAVOURS, headPrefix, resnet50Spec } from '../../shared/model/spec.js';
import { ParamLayout } from '../../shared/model/state.js';
import { initModel, modelFromTensors, MOMENTS_PREFIX, tensorsFromModel } from '../../shared/model/weights.js';
import { parseCkpt, serializeCkpt } from '../../shared/weights/ckpt.js';
import { fromFloat32, toFloat32, type TensorMap } from '../../shared/weights/host-tensor.js';
import { readSafetensors } from '../../shared/weights/safetensors.js';

const FIX = join(import.meta.dirname, '..', 'fixtures', 'resnet');

async function fixture(flavour: string): Promise<TensorMap> {
  return (await readSafetensors(join(FIX, flavour, 'weights.safetensors'))).tensors;
}

function catchError(f: () => unknown): WolfpackError {
  try {
    f();
  } catch (e) {
    if (isWolfpackError(e)) return e;
    throw e;
  }
  throw new Error('expected a WolfpackError');
}

function bytesEqual(a: Float32Array, b: Float32Array): boolean {
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

t.test('missing tensors: every one is listed, in the message and in details', async (t) => {
  const tensors = new Map(await fixture('mindspore'));
  const gone = [
    'layer1.0.conv2.weight',
    'layer2.1.bn3.moving_variance',
    'layer4.2.bn1.gamma',
    'layer3.0.down_sample_layer.1.beta',
  ];
  for (const name of gone) t.ok(tensors.delete(name), `fixture has ${name}`);
  const e = catchError(() => modelFromTensors(tensors, 'pretrained.safetensors'));
  t.equal(e.code, 'E_WEIGHTS');
  t.match(e.message, /^pretrained\.safetensors \(mindspore ResNet-50, width 4\): 4 missing tensor\(s\): /);
  for (const name of gone) t.ok(e.message.includes(name), `message names ${name}`);
  t.same([...(e.details.missing as string[])].sort(), [...gone].sort(), 'details.missing lists exactly those');
  t.equal(e.details.file, 'pretrained.safetensors');
  t.same(e.details.mismatched, []);
});

t.test('missing momentum is reported when resuming with it', async (t) => {
  const e = catchError(() => modelFromTensors(new Map(), 'x'));
  t.equal(e.code, 'E_WEIGHTS', 'an empty map is not a ResNet-50');
  const tensors = await fixture('torchvision');
  const m = catchError(() => modelFromTensors(tensors, 'resume.ckpt', { withMomentum: true }));
  const layout = new ParamLayout(resnet50Spec({ flavour: 'torchvision', width: 4, numClasses: 2 }));
  t.equal((m.details.missing as string[]).length, layout.trainable.length, 'one per trainable parameter');
  t.ok((m.details.missing as string[]).every((n) => n.startsWith(MOMENTS_PREFIX)));
  t.match(m.message, new RegExp(`${layout.trainable.length} missing tensor\\(s\\): moments\\.conv1\\.weight, `));
});

t.test('shape mismatch: expected vs found, for each tensor, with missing ones too', async (t) => {
  const tensors = new Map(await fixture('torchvision'));
  const spec = resnet50Spec({ flavour: 'torchvision', width: 4, numClasses: 2 }).params;
  const fileShape = (name: string): string => spec.find((p) => p.name === name)!.fileShape.join(',');
  t.equal(fileShape('layer1.0.conv1.weight'), '4,4,1,1');
  t.equal(fileShape('layer1.0.conv2.weight'), '4,4,3,3');
  tensors.set('layer1.0.conv1.weight', fromFloat32([4, 16, 1, 1], new Float32Array(64)));
  tensors.set('layer1.0.conv2.weight', fromFloat32([4, 4, 1, 3], new Float32Array(48))); // same size, wrong shape
  tensors.set('bn1.running_var', fromFloat32([5], new Float32Array(5)));
  tensors.delete('layer4.2.conv3.weight');
  const e = catchError(() => modelFromTensors(tensors, 'w.safetensors'));
  t.equal(e.code, 'E_WEIGHTS');
  t.match(e.message, 'layer1.0.conv1.weight: expected [4,4,1,1], found [4,16,1,1]');
  t.match(e.message, 'layer1.0.conv2.weight: expected [4,4,3,3], found [4,4,1,3]');
  t.match(e.message, 'bn1.running_var: expected [4], found [5]');
  t.match(e.message, '1 missing tensor(s): layer4.2.conv3.weight');
  t.equal((e.details.mismatched as string[]).length, 3, 'every mismatch listed');
  t.same(e.details.missing, ['layer4.2.conv3.weight']);
});

t.test('a head of the wrong size is a mismatch unless the head is dropped', async (t) => {
  const tensors = new Map(await fixture('mindspore'));
  tensors.set('end_point.bias', fromFloat32([3], new Float32Array(3)));
  const e = catchError(() => modelFromTensors(tensors, 'h.ckpt'));
  t.match(e.message, 'end_point.bias: expected [2], found [3]');
  const ok = modelFromTensors(tensors, 'h.ckpt', { dropHead: true, numClasses: 2 });
  t.equal(ok.headFromFile, false);
});

t.test('not a ResNet-50 file', async (t) => {
  const other = new Map([
    ['encoder.layers.0.attn.q_proj.weight', fromFloat32([8, 8], new Float32Array(64))],
    ['encoder.layers.0.attn.k_proj.weight', fromFloat32([8, 8], new Float32Array(64))],
  ]);
  const e = catchError(() => modelFromTensors(other, 'bert.safetensors'));
  t.equal(e.code, 'E_WEIGHTS');
  t.match(e.message, /^bert\.safetensors: not a ResNet-50 weights file/);
  t.equal(e.details.file, 'bert.safetensors');

  const wrongStem = new Map(await fixture('mindspore'));
  wrongStem.set('conv1.weight', fromFloat32([4, 3, 3, 3], new Float32Array(108)));
  const s = catchError(() => modelFromTensors(wrongStem, 'resnet18ish.ckpt'));
  t.match(s.message, 'resnet18ish.ckpt: tensor conv1.weight: expected shape [W,3,7,7], found [4,3,3,3]');

  const noStem = new Map(await fixture('torchvision'));
  noStem.delete('conv1.weight');
  t.match(catchError(() => modelFromTensors(noStem, 'f')).message, 'f: missing tensor conv1.weight');
});

for (const flavour of FLAVOURS) {
  t.test(
    `${flavour}: a dropped head is fresh with numClasses outputs; moments of the old head are ignored`,
    async (t) => {
      const weights = await fixture(flavour);
      const momentum = (await readSafetensors(join(FIX, flavour, 'momentum.safetensors'))).tensors;
      const merged = new Map(weights);
      for (const [k, v] of momentum) merged.set(MOMENTS_PREFIX + k, v);
      const head = headPrefix(flavour);
      t.ok(merged.has(`${MOMENTS_PREFIX}${head}weight`), `the file has ${MOMENTS_PREFIX}${head}weight`);
      const kept = modelFromTensors(merged, 'f', { withMomentum: true });
      // The old head's momentum has the old class count: once the head is dropped it must not matter.
      merged.set(`${MOMENTS_PREFIX}${head}bias`, fromFloat32([7], new Float32Array(7).fill(1)));
      const { config, state, headFromFile, accum } = modelFromTensors(merged, 'f', {
        dropHead: true,
        numClasses: 5,
        withMomentum: true,
        seed: 1,
      });
      t.same(config, { flavour, width: 4, numClasses: 5 });
      t.equal(headFromFile, false);
      const fc = state.layout.net.fc;
      t.same([fc.inF, fc.outF], [128, 5]);
      const range = state.layout.trainableRange('backbone');
      t.equal(range.end - range.begin, 128 * 5 + 5, 'head of 128x5 + 5');
      t.equal(range.end, state.layout.paramCount, 'the head is last');
      const w = state.params.subarray(range.begin, range.end - 5);
      const b = state.params.subarray(range.end - 5, range.end);
      t.ok(
        b.every((v) => v === 0),
        'fresh bias is zero',
      );
      let sum = 0;
      let sq = 0;
      for (const v of w) {
        sum += v;
        sq += v * v;
      }
      const std = Math.sqrt(sq / w.length - (sum / w.length) ** 2);
      t.ok(std > 0.007 && std < 0.013, `fresh weights ~ N(0, 0.01): std ${std.toFixed(4)}`);
      t.ok(
        accum!.subarray(range.begin).every((v) => v === 0),
        'the fresh head starts with zero momentum',
      );
      t.ok(
        bytesEqual(accum!.subarray(0, range.begin), kept.accum!.subarray(0, range.begin)),
        'backbone momentum is read',
      );
      t.ok(
        bytesEqual(state.params.subarray(0, range.begin), kept.state.params.subarray(0, range.begin)),
        'backbone weights are read',
      );
      t.ok(bytesEqual(state.stats, kept.state.stats), 'moving statistics are read');

      const again = modelFromTensors(merged, 'f', { dropHead: true, numClasses: 5, seed: 1 });
      t.ok(bytesEqual(again.state.params, state.params), 'the fresh head depends only on the seed');
      const other = modelFromTensors(merged, 'f', { dropHead: true, numClasses: 5, seed: 2 });
      t.notOk(
        bytesEqual(other.state.params.subarray(range.begin), state.params.subarray(range.begin)),
        'another seed, another head',
      );
      const noHead = new Map([...weights].filter(([k]) => !k.startsWith(head)));
      const defaulted = modelFromTensors(noHead, 'backbone-only');
      t.equal(defaulted.headFromFile, false, 'a file without a head gets a fresh one');
      t.equal(defaulted.config.numClasses, 2, 'of 2 classes by default');
    },
  );

  t.test(`${flavour}: model -> tensorsFromModel -> .ckpt -> modelFromTensors is byte-exact`, async (t) => {
    const loaded = modelFromTensors(await fixture(flavour), 'weights.safetensors');
    const accum = new Float32Array(loaded.state.layout.paramCount);
    for (let i = 0; i < accum.length; i++) accum[i] = Math.fround(Math.sin(i) * 1e-3);
    const sources = [
      { name: 'fixture', state: loaded.state, accum },
      {
        name: 'initModel width 8, 3 classes',
        state: initModel({ flavour, width: 8, numClasses: 3 }, 11),
        accum: undefined,
      },
    ];
    for (const src of sources) {
      const map = tensorsFromModel(src.state, src.accum);
      const bytes = serializeCkpt(map);
      const parsed = parseCkpt(bytes, 'roundtrip.ckpt');
      t.same([...parsed.keys()], [...map.keys()], `${src.name}: same tensor names in the same order`);
      for (const [k, v] of map) {
        const p = parsed.get(k)!;
        if (p.dtype !== 'float32' || p.shape.join() !== v.shape.join() || !bytesEqual(toFloat32(p), toFloat32(v))) {
          t.fail(`${src.name}: tensor ${k} changed in the .ckpt`);
        }
      }
      const back = modelFromTensors(parsed, 'roundtrip.ckpt', { withMomentum: src.accum !== undefined });
      t.equal(back.headFromFile, true);
      t.same(back.config, src.state.layout.net.config);
      t.ok(
        bytesEqual(back.state.params, src.state.params),
        `${src.name}: params identical (${src.state.params.length} floats)`,
      );
      t.ok(bytesEqual(back.state.stats, src.state.stats), `${src.name}: moving statistics identical`);
      if (src.accum) t.ok(bytesEqual(back.accum!, src.accum), `${src.name}: momentum identical`);
    }
  });
}
