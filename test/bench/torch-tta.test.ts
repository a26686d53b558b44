// The PyTorch time-to-accuracy peer (bench/peers/torch_tta.py): the checkpoint it is given survives the
// conversion to safetensors bit for bit, its MindSpore-flavoured ResNet-50 computes the same logits as
// wolfpack's for the same image (--check), and a short run prints epoch lines and a final line that
// torchTta assembles. A reduced-width network keeps it quick; skipped without Debian's python3-torch.
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import t from 'tap';
import sharp from 'sharp';
import { PEER_PYTHON, peerUnavailable } from '../../bench/model.js';
import { benchPeerScript } from '../../bench/peers.js';
import { ckptToSafetensors, torchTta } from '../../bench/time-to-accuracy.js';
import { predictLogits, readImages, readInputTensor } from '../../api/inference.js';
import { selectBackend } from '../../shared/backend/select.js';
import { generateSyntheticCanidae } from '../../shared/data/synthetic.js';
import { initModel, modelFromTensors, tensorsFromModel } from '../../shared/model/weights.js';
import { readCkpt, writeCkpt } from '../../shared/weights/ckpt.js';
import { fromFloat32, toFloat32, type TensorMap } from '../../shared/weights/host-tensor.js';
import { readSafetensors } from '../../shared/weights/safetensors.js';

const why = await peerUnavailable(benchPeerScript('torch_tta.py'));
const dir = mkdtempSync(join(tmpdir(), 'wolfpack-torch-tta-'));
t.teardown(() => rmSync(dir, { recursive: true, force: true }));

/**
 * A width-4 MindSpore-flavoured ResNet-50 with a 10-class head and no zero or unit BatchNorm tensor, so a misnamed
 * one shows.
 */
function weights(): TensorMap {
  const map = tensorsFromModel(initModel({ flavour: 'mindspore', width: 4, numClasses: 10 }, 3));
  let s = 12345;
  const rand = (): number => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32;
  for (const [name, h] of map) {
    const x = toFloat32(h);
    const fill = (f: () => number): void => {
      for (let i = 0; i < x.length; i++) x[i] = f();
    };
    if (/\.(beta|moving_mean)$|^end_point\.bias$/.test(name)) fill(() => (rand() - 0.5) * 0.2);
    else if (/\.(gamma|moving_variance)$/.test(name)) fill(() => 0.5 + rand());
    else continue;
    map.set(name, fromFloat32([...h.shape], x));
  }
  return map;
}

function python(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((res) => {
    execFile(PEER_PYTHON, [benchPeerScript('torch_tta.py'), ...args], { timeout: 120_000 }, (err, stdout, stderr) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

const ckpt = join(dir, 'w.ckpt');
const st = join(dir, 'w.safetensors');

t.test('ckptToSafetensors keeps every tensor: names, order, dtype, shape and bytes', async (t) => {
  await writeCkpt(ckpt, weights());
  await ckptToSafetensors(ckpt, st);
  const a = await readCkpt(ckpt);
  const b = (await readSafetensors(st)).tensors;
  t.equal(a.size, 267);
  t.same([...b.keys()], [...a.keys()]);
  const differ = [...a]
    .filter(([name, x]) => {
      const y = b.get(name)!;
      return (
        y.dtype !== x.dtype || y.shape.join() !== x.shape.join() || !Buffer.from(y.bytes).equals(Buffer.from(x.bytes))
      );
    })
    .map(([name]) => name);
  t.same(differ, [], 'no tensor differs');
});

t.test("--check: the peer's logits and input agree with wolfpack's", { skip: why }, async (t) => {
  const size = 32;
  // A non-square image: the eval transform's resize and crop, and SAME's asymmetric pads, all take part.
  const w = 45,
    h = 38;
  const px = Buffer.alloc(w * h * 3);
  for (let i = 0; i < px.length; i++) px[i] = (i * 37 + ((i / 3) | 0) * 11) % 256;
  const image = join(dir, 'x.png');
  writeFileSync(
    image,
    await sharp(px, { raw: { width: w, height: h, channels: 3 } })
      .png()
      .toBuffer(),
  );
  const npy = join(dir, 'x.npy');
  const r = await python([
    '--check',
    '--weights',
    st,
    '--image',
    image,
    '--size',
    String(size),
    '--check-npy',
    npy,
    '--threads',
    '1',
  ]);
  t.equal(r.code, 0, r.stderr.slice(-1000));
  const torchLogits = (JSON.parse(r.stdout.trim().split('\n').pop()!) as { logits: number[] }).logits;
  t.equal(torchLogits.length, 10);

  await selectBackend('cpu');
  const { state } = modelFromTensors(await readCkpt(ckpt), ckpt);
  const fromNpy = await readInputTensor(npy);
  const fromImage = await readImages([image], size);
  let inputDiff = 0;
  for (let i = 0; i < fromImage.images.length; i++)
    inputDiff = Math.max(inputDiff, Math.abs(fromImage.images[i]! - fromNpy.images[i]!));
  t.ok(inputDiff < 1e-5, `torchvision's eval transform = wolfpack's (max |d| ${inputDiff})`);
  const ours = await predictLogits(state, fromNpy, 1);
  const scale = Math.max(...Array.from(ours, Math.abs));
  const diff = Math.max(...torchLogits.map((v, i) => Math.abs(v - ours[i]!)));
  t.ok(
    scale > 0 && diff / scale < 1e-4,
    `logits agree: max |d| ${diff.toExponential(2)}, max |logit| ${scale.toExponential(2)}`,
  );
});

t.test('torchTta runs the recipe and returns its epochs and final line', { skip: why }, async (t) => {
  const data = join(dir, 'data');
  await generateSyntheticCanidae(data, { trainPerClass: 6, valPerClass: 3, seed: 0 });
  const r = await torchTta({
    fixture: { data, weights: ckpt },
    target: 1.01,
    maxEpochs: 2,
    threads: 1,
    batch: 5,
    size: 32,
    dir: join(dir, 'peer'),
    timeoutMs: 120_000,
  });
  if (!r.ok) throw new Error(r.skipped);
  t.match(r.command, /torch_tta\.py .*--target 1\.01 --epochs 2 --lr 0\.0002 --batch 5 --size 32 --threads 1/);
  const p = r.result;
  t.equal(p.bench, 'torch_time_to_accuracy');
  t.equal(p.reached, false, 'accuracy above 1 cannot be reached');
  t.equal(p.epoch, null);
  t.equal(p.wall_s, null);
  t.same(
    p.epochs.map((e) => [e.epoch, e.steps]),
    [
      [1, 2],
      [2, 2],
    ],
    '12 images in batches of 5: the partial third is dropped',
  );
  for (const e of p.epochs)
    t.ok(
      e.val_accuracy >= 0 &&
        e.val_accuracy <= 1 &&
        e.epoch_s > 0 &&
        e.wall_s >= e.epoch_s &&
        Number.isFinite(e.train_loss),
    );
  t.ok(p.epochs[1]!.wall_s > p.epochs[0]!.wall_s && p.total_wall_s >= p.epochs[1]!.wall_s && p.setup_s > 0);
  const converted = (await readSafetensors(join(dir, 'peer', 'resnet50.safetensors'))).tensors;
  t.ok(converted.has('end_point.weight'), "the converted weights sit in the peer's folder");
  t.ok(existsSync(join(dir, 'peer', 'best.pt')), 'and its best state_dict beside them');
});
