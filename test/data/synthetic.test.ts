// The synthetic dogs-vs-wolves set: byte-identical for a seed, the promised layout and counts, and
// classes that differ in colour the way the generator says (warm dogs, grey wolves).
import t from 'tap';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import sharp from 'sharp';
import { scanSplit } from '../../shared/data/imagefolder.js';
import { generateSyntheticCanidae } from '../../shared/data/synthetic.js';

function digest(root: string, files: string[]): string {
  const h = createHash('sha256');
  for (const f of files) h.update(relative(root, f)).update(readFileSync(f));
  return h.digest('hex');
}

t.test('same seed, same bytes; another seed, other bytes', async (t) => {
  const opts = { trainPerClass: 4, valPerClass: 2, size: 48, seed: 5 };
  const root = t.testdir();
  const a = await generateSyntheticCanidae(join(root, 'a'), opts);
  const b = await generateSyntheticCanidae(join(root, 'b'), opts);
  const c = await generateSyntheticCanidae(join(root, 'c'), { ...opts, seed: 6 });
  t.equal(a.files.length, 12);
  t.equal(digest(a.root, a.files), digest(b.root, b.files), 'identical files for the same seed');
  t.not(digest(a.root, a.files), digest(c.root, c.files), 'a new seed draws new pictures');
  t.notOk(readFileSync(a.files[0]!).equals(readFileSync(a.files[1]!)), 'pictures differ from each other');
  t.notOk(readFileSync(a.files[0]!).equals(readFileSync(c.files[0]!)), 'the same file name under another seed differs');
});

t.test('default set: layout, counts, sizes, speed, and learnable colour', async (t) => {
  const dir = t.testdir();
  const start = performance.now();
  const summary = await generateSyntheticCanidae(dir);
  const ms = performance.now() - start;
  t.ok(ms < 5000, `160 images in ${ms.toFixed(0)} ms`);
  t.same(summary.counts, { train: { dogs: 60, wolves: 60 }, val: { dogs: 20, wolves: 20 } });
  for (const split of ['train', 'val']) {
    for (const cls of ['dogs', 'wolves']) {
      const files = readdirSync(join(dir, split, cls));
      t.equal(files.length, split === 'train' ? 60 : 20, `${split}/${cls}`);
      t.ok(files.every((f) => f.endsWith('.jpg')));
    }
  }
  const split = await scanSplit(dir);
  t.same(split.classes, ['dogs', 'wolves']);
  t.equal(split.train.skipped.length + split.val.skipped.length, 0, 'every file decodes');

  // Mean "warmth" (R - B) per class over the val set: dogs warmer than wolves, but not every image.
  const warmth: [number[], number[]] = [[], []];
  const shapes = new Set<string>();
  for (const s of split.val.samples) {
    const stats = await sharp(s.path).stats();
    const meta = await sharp(s.path).metadata();
    shapes.add(`${meta.width}x${meta.height}`);
    warmth[s.label]!.push(stats.channels[0]!.mean - stats.channels[2]!.mean);
  }
  const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
  t.ok(
    mean(warmth[0]) > mean(warmth[1]) + 15,
    `dogs R-B ${mean(warmth[0]).toFixed(1)} > wolves ${mean(warmth[1]).toFixed(1)}`,
  );
  t.ok(
    Math.min(...warmth[0]) < Math.max(...warmth[1]),
    'the classes overlap in colour: colour alone is not a perfect rule',
  );
  t.ok(
    [...shapes].every((s) => ['96x72', '72x96', '96x96'].includes(s)),
    `sizes ${[...shapes].join(', ')}`,
  );
  t.ok(shapes.size >= 2, 'not all the same shape');
});

// The two looks, told apart by what a network with no training keeps best: an image's mean colour. A
// nearest-class-mean rule on mean RGB (class means from train/, scored on val/) must be right on every
// 'distinct' image (the demo's set: it must visibly learn on a random backbone) and wrong on some 'mixed'
// ones (the benchmarks' set: colour alone is not the rule there).
t.test('distinct look: mean colour alone separates the classes; mixed look: it does not', async (t) => {
  const root = t.testdir();
  const accuracy: Record<string, number> = {};
  for (const look of ['mixed', 'distinct'] as const) {
    const split = await scanSplit((await generateSyntheticCanidae(join(root, look), { look })).root);
    const rgb = async (path: string) => (await sharp(path).stats()).channels.map((c) => c.mean);
    const means: [number[], number[]] = [
      [0, 0, 0],
      [0, 0, 0],
    ];
    const counts: [number, number] = [0, 0];
    for (const x of split.train.samples) {
      const sum = means[x.label]!;
      (await rgb(x.path)).forEach((v, k) => {
        sum[k] = sum[k]! + v;
      });
      counts[x.label] = counts[x.label]! + 1;
    }
    for (const l of [0, 1] as const) for (let k = 0; k < 3; k++) means[l][k] = means[l][k]! / counts[l];
    const d2 = (a: number[], b: number[]) => a.reduce((s, v, i) => s + (v - b[i]!) ** 2, 0);
    let right = 0;
    for (const x of split.val.samples) {
      const f = await rgb(x.path);
      if ((d2(f, means[0]) < d2(f, means[1]) ? 0 : 1) === x.label) right++;
    }
    accuracy[look] = right / split.val.samples.length;
  }
  t.equal(accuracy.distinct, 1, 'distinct: every val image on the side of its class mean');
  t.ok(accuracy.mixed! < 0.9, `mixed: ${accuracy.mixed} of val only`);
});

t.test('bad options are usage errors', async (t) => {
  const root = t.testdir();
  await t.rejects(generateSyntheticCanidae(root, { size: 8 }), { code: 'E_USAGE', message: /size/ });
  await t.rejects(generateSyntheticCanidae(root, { trainPerClass: 0 }), { code: 'E_USAGE', message: /trainPerClass/ });
});
