// `wolfpack predict` as a user runs it: the built CLI in its own process. Its --json logits must match
// PyTorch's eval-mode logits for the fixture batch, stdout must hold nothing but the JSON lines, and a
// bad input must fail with a non-zero exit code and a message naming the file.
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { readNpy } from '../../shared/data/npy.js';
import { cliPath, packageRoot } from '../../shared/paths.js';
import { serializeSafetensors, readSafetensors } from '../../shared/weights/safetensors.js';
import { ensureBuilt } from '../helpers/build.js';
import { maxRelToScale } from '../helpers/numerics.js';

const FIX = join(packageRoot, 'test', 'fixtures', 'resnet');

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function wolfpack(args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [cliPath, ...args],
      {
        cwd: packageRoot,
        env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json' },
        maxBuffer: 16 << 20,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

interface Line {
  index: number;
  logits: number[];
  probabilities: number[];
  class: string;
  path?: string;
}

t.before(() => ensureBuilt(join(packageRoot, 'dist', 'cli', 'commands', 'predict.js')));

for (const flavour of ['mindspore', 'torchvision']) {
  t.test(`predict --input-tensor --json (${flavour}) matches PyTorch's eval logits`, async (t) => {
    const dir = join('test', 'fixtures', 'resnet', flavour);
    const r = await wolfpack([
      'predict',
      '--weights',
      join(dir, 'weights.safetensors'),
      '--input-tensor',
      join(dir, 'x.npy'),
      '--json',
      '--classes',
      'dogs,wolves',
      '--backend',
      'wasm',
    ]);
    t.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    const rows = lines.map((l) => JSON.parse(l) as Line); // throws if stdout holds anything else
    const ref = await readNpy(join(FIX, flavour, 'logits_eval.npy'));
    const [n, k] = [ref.shape[0]!, ref.shape[1]!];
    t.equal(rows.length, n, `one line per image (${n})`);
    t.same(
      rows.map((row) => row.index),
      Array.from({ length: n }, (_, i) => i),
    );
    const got = Float32Array.from(rows.flatMap((row) => row.logits));
    t.equal(got.length, n * k);
    const err = maxRelToScale(got, ref.data as Float32Array);
    t.ok(err < 1e-4, `logits max rel ${err.toExponential(2)}`);
    for (const row of rows) {
      t.same(Object.keys(row), ['index', 'logits', 'probabilities', 'class'], 'no path for tensor input');
      const sum = row.probabilities.reduce((a, b) => a + b, 0);
      t.ok(Math.abs(sum - 1) < 1e-6, `row ${row.index}: probabilities sum to 1`);
      const best = row.logits.indexOf(Math.max(...row.logits));
      t.equal(row.class, ['dogs', 'wolves'][best], `row ${row.index}: class is the argmax, by name`);
      const p1 = 1 / (1 + Math.exp(row.logits[0]! - row.logits[1]!));
      t.ok(Math.abs(row.probabilities[1]! - p1) < 1e-7, 'probabilities are the softmax');
    }
    t.ok(
      r.stderr
        .split('\n')
        .filter(Boolean)
        .every((l) => JSON.parse(l).level !== undefined),
      'stderr holds the logs',
    );
  });
}

t.test('predict on image files: table and JSON with paths', async (t) => {
  const img = join('test', 'fixtures', 'data', 'eval_input.png');
  const w = join('test', 'fixtures', 'resnet', 'torchvision', 'weights.safetensors');
  const j = await wolfpack(['predict', '--weights', w, img, img, '--image-size', '40', '--json', '--backend', 'wasm']);
  t.equal(j.code, 0, j.stderr);
  const rows = j.stdout
    .trimEnd()
    .split('\n')
    .map((l) => JSON.parse(l) as Line);
  t.equal(rows.length, 2);
  t.equal(rows[0]!.path, img);
  t.match(rows[0]!.class, /^[01]$/, 'without --classes the class is the index');
  t.same(rows[0]!.logits, rows[1]!.logits, 'the same image gives the same logits');
  const table = await wolfpack(['predict', '--weights', w, img, '--image-size', '40', '--backend', 'wasm']);
  t.equal(table.code, 0);
  t.match(table.stdout, /^#\s+class\s+p\s+logits\s+input\n0\s+[01]\s+0\.\d{4}\s/);
  t.match(table.stdout, img);
});

t.test('bad inputs fail with a non-zero exit code and name the file', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'wolfpack-predict-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const w = join('test', 'fixtures', 'resnet', 'mindspore', 'weights.safetensors');

  const missing = join(tmp, 'missing.npy');
  const r1 = await wolfpack(['predict', '--weights', w, '--input-tensor', missing, '--json']);
  t.not(r1.code, 0, 'missing input tensor');
  t.match(r1.stderr, missing);
  t.equal(r1.stdout, '', 'nothing on stdout');

  const garbage = join(tmp, 'garbage.npy');
  writeFileSync(garbage, 'this is not numpy');
  const r2 = await wolfpack(['predict', '--weights', w, '--input-tensor', garbage, '--json']);
  t.not(r2.code, 0, 'corrupt input tensor');
  t.match(r2.stderr, garbage);

  const labels = join(FIX, 'mindspore', 'labels.npy');
  const r3 = await wolfpack(['predict', '--weights', w, '--input-tensor', labels]);
  t.not(r3.code, 0, 'an int64 tensor');
  t.match(r3.stderr, labels);
  t.match(r3.stderr, /expected float32/);

  const notImage = join(tmp, 'photo.jpg');
  writeFileSync(notImage, 'not a jpeg');
  const r4 = await wolfpack(['predict', '--weights', w, notImage]);
  t.not(r4.code, 0, 'an unreadable image');
  t.match(r4.stderr, notImage);

  const r5 = await wolfpack(['predict', '--weights', join(tmp, 'nope.ckpt'), '--input-tensor', labels]);
  t.not(r5.code, 0, 'missing weights file');
  t.match(r5.stderr, join(tmp, 'nope.ckpt'));

  const full = (await readSafetensors(join(FIX, 'mindspore', 'weights.safetensors'))).tensors;
  const headless = join(tmp, 'backbone.safetensors');
  writeFileSync(headless, serializeSafetensors(new Map([...full].filter(([k]) => !k.startsWith('end_point.')))));
  const r6 = await wolfpack(['predict', '--weights', headless, '--input-tensor', join(FIX, 'mindspore', 'x.npy')]);
  t.equal(r6.code, 1, 'a weights file without a head');
  t.match(r6.stderr, headless);
  t.match(r6.stderr, /no classification head/);

  const r7 = await wolfpack([
    'predict',
    '--weights',
    w,
    '--input-tensor',
    join(FIX, 'mindspore', 'x.npy'),
    '--classes',
    'a,b,c',
  ]);
  t.equal(r7.code, 2, '--classes of the wrong length is a usage error');
  t.match(r7.stderr, /--classes names 3 class\(es\) but .* has a 2-class head/);

  const r8 = await wolfpack(['predict', '--weights', w]);
  t.equal(r8.code, 2, 'no inputs is a usage error');
});
