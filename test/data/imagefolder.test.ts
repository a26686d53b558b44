// ImageFolder scanning: sorted classes and files, which files count as images, unreadable images
// reported and skipped, and the data errors a user can act on (missing folder, empty class,
// train/val mismatch).
import t from 'tap';
import { join } from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import { scanImageFolder, scanSplit } from '../../shared/data/imagefolder.js';
import type { Logger } from '../../shared/log.js';

const solid = (format: 'jpeg' | 'png' | 'webp', r = 120): Promise<Buffer> =>
  sharp({ create: { width: 12, height: 9, channels: 3, background: { r, g: 80, b: 40 } } })
    .toFormat(format)
    .toBuffer();

// A pino logger whose warnings land in an array.
function capture(): { logger: Logger; warnings: Record<string, unknown>[] } {
  const warnings: Record<string, unknown>[] = [];
  const logger = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        warnings.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { logger, warnings };
}

t.test('classes sorted, files sorted, only visible image files', async (t) => {
  const jpg = await solid('jpeg');
  const root = t.testdir({
    wolves: { 'b.JPG': jpg, 'a.jpeg': jpg, 'notes.txt': 'x', '.hidden.jpg': jpg, 'c.webp': await solid('webp') },
    dogs: { 'z.png': await solid('png'), 'y.jpg': jpg, nested: { 'x.jpg': jpg }, '.cache': { 'w.jpg': jpg } },
    '.git': { 'q.jpg': jpg },
    'README.md': 'not a class',
  });
  const ds = await scanImageFolder(root);
  t.equal(ds.root, root);
  t.same(ds.classes, ['dogs', 'wolves']);
  t.same(
    ds.samples.map((s) => [s.path.slice(root.length + 1), s.label]),
    [
      [join('dogs', 'y.jpg'), 0],
      [join('dogs', 'z.png'), 0],
      [join('dogs', 'nested', 'x.jpg'), 0],
      [join('wolves', 'a.jpeg'), 1],
      [join('wolves', 'b.JPG'), 1],
      [join('wolves', 'c.webp'), 1],
    ],
  );
  t.same(ds.skipped, []);
});

t.test('a corrupt image is reported by path and skipped', async (t) => {
  const jpg = await solid('jpeg');
  const root = t.testdir({
    dogs: { 'ok.jpg': jpg, 'broken.jpg': Buffer.from('this is not a jpeg at all'), 'empty.png': Buffer.alloc(0) },
    wolves: { 'ok.jpg': jpg },
  });
  const { logger, warnings } = capture();
  const ds = await scanImageFolder(root, { logger });
  t.same(
    ds.samples.map((s) => s.path),
    [join(root, 'dogs', 'ok.jpg'), join(root, 'wolves', 'ok.jpg')],
  );
  t.same(
    ds.skipped.map((s) => s.path),
    [join(root, 'dogs', 'broken.jpg'), join(root, 'dogs', 'empty.png')],
  );
  t.ok(
    ds.skipped.every((s) => s.reason.length > 0),
    'each skip says why',
  );
  t.same(
    warnings.map((w) => w.path),
    ds.skipped.map((s) => s.path),
    'one warning per skipped file, naming it',
  );
});

t.test('an empty class is an E_DATA error naming the class folder', async (t) => {
  const jpg = await solid('jpeg');
  const root = t.testdir({ dogs: { 'a.jpg': jpg }, wolves: { 'readme.txt': 'no images' } });
  await t.rejects(scanImageFolder(root), {
    code: 'E_DATA',
    message: new RegExp(`class folder ${join(root, 'wolves')} has no readable images`),
  });
  const onlyBroken = t.testdir({ dogs: { 'a.jpg': jpg }, wolves: { 'bad.jpg': 'garbage' } });
  await t.rejects(scanImageFolder(onlyBroken), {
    code: 'E_DATA',
    message: /wolves has no readable images .*1 unreadable file\(s\) skipped/,
  });
});

t.test('a missing root or one without class folders is an E_DATA error naming it', async (t) => {
  const root = t.testdir({ 'a.jpg': await solid('jpeg') });
  await t.rejects(scanImageFolder(join(root, 'nope')), {
    code: 'E_DATA',
    message: new RegExp(`${join(root, 'nope')} does not exist`),
  });
  await t.rejects(scanImageFolder(root), { code: 'E_DATA', message: new RegExp(`${root} has no class sub-folders`) });
  await t.rejects(scanImageFolder(join(root, 'a.jpg')), { code: 'E_DATA', message: /is not a folder/ });
});

t.test('scanSplit reads train and val and insists on the same classes', async (t) => {
  const jpg = await solid('jpeg');
  const good = t.testdir({
    train: { dogs: { '1.jpg': jpg, '2.jpg': jpg }, wolves: { '1.jpg': jpg } },
    val: { dogs: { '1.jpg': jpg }, wolves: { '1.jpg': jpg } },
  });
  const split = await scanSplit(good);
  t.same(split.classes, ['dogs', 'wolves']);
  t.equal(split.train.samples.length, 3);
  t.equal(split.val.samples.length, 2);
  t.equal(split.val.root, join(good, 'val'));

  const bad = t.testdir({
    train: { dogs: { '1.jpg': jpg }, wolves: { '1.jpg': jpg }, foxes: { '1.jpg': jpg } },
    val: { dogs: { '1.jpg': jpg }, wolfs: { '1.jpg': jpg } },
  });
  await t.rejects(scanSplit(bad), {
    code: 'E_DATA',
    message: /train and val class folders differ \(only in .*train: foxes, wolves; only in .*val: wolfs\)/,
  });
  const noVal = t.testdir({ train: { dogs: { '1.jpg': jpg } } });
  await t.rejects(scanSplit(noVal), { code: 'E_DATA', message: new RegExp(`${join(noVal, 'val')} does not exist`) });
});
