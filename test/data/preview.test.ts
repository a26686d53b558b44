// The preview grid: a PNG of the promised size with each tile's class bar in its class colour, and
// still a PNG (bars only) when text cannot be rendered.
import t from 'tap';
import { join } from 'node:path';
import { pino } from 'pino';
import sharp from 'sharp';
import { renderPreview, type PreviewSample } from '../../shared/data/preview.js';

async function samples(n: number): Promise<PreviewSample[]> {
  const out: PreviewSample[] = [];
  for (let i = 0; i < n; i++) {
    const dog = i % 2 === 0;
    const bytes = await sharp({
      create: {
        width: 80 + i,
        height: 60,
        channels: 3,
        background: dog ? { r: 180, g: 120, b: 60 } : { r: 120, g: 125, b: 135 },
      },
    })
      .jpeg()
      .toBuffer();
    out.push({ bytes, label: dog ? 'dogs' : 'wolves' });
  }
  return out;
}

async function pixel(path: string, x: number, y: number): Promise<[number, number, number]> {
  const { data, info } = await sharp(path).raw().toBuffer({ resolveWithObject: true });
  const i = (y * info.width + x) * info.channels;
  return [data[i]!, data[i + 1]!, data[i + 2]!];
}

t.test('a grid of the expected size, labelled by class colour', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'previews', 'batch.png');
  await renderPreview(await samples(8), out, { size: 64, columns: 3, seed: 1, epoch: 0 });
  const meta = await sharp(out).metadata();
  t.equal(meta.format, 'png');
  // 3 columns x 3 rows of 64x64 tiles with a 14 px bar under each, 4 px apart and around.
  t.equal(meta.width, 3 * (64 + 4) + 4);
  t.equal(meta.height, 3 * (64 + 14 + 4) + 4);
  // Right end of the first bar (clear of the text): dogs orange; second tile: wolves blue.
  t.same(await pixel(out, 4 + 62, 4 + 64 + 2), [214, 120, 30]);
  t.same(await pixel(out, 4 + 68 + 62, 4 + 64 + 2), [60, 100, 160]);
  // The tile shows the un-normalised picture: a dog tile is the dog colour (JPEG, so roughly).
  const [r, g, b] = await pixel(out, 4 + 32, 4 + 32);
  t.ok(Math.abs(r - 180) < 6 && Math.abs(g - 120) < 6 && Math.abs(b - 60) < 6, `tile colour ${r},${g},${b}`);

  const one = join(dir, 'one.png');
  await renderPreview(await samples(1), one, { size: 32 });
  const m1 = await sharp(one).metadata();
  t.same([m1.width, m1.height], [32 + 8, 32 + 14 + 8], 'a single sample makes a single tile');
  await t.rejects(renderPreview([], one), { code: 'E_USAGE' });
});

t.test('no text rendering: bars only, a warning, no crash', async (t) => {
  // A sharp whose SVG input fails, as it can on a host without fonts.
  const failingSvg = ((input?: unknown, ...rest: unknown[]) => {
    if (Buffer.isBuffer(input) && input.subarray(0, 4).toString() === '<svg') throw new Error('no fonts');
    return (sharp as unknown as (...a: unknown[]) => unknown)(input, ...rest);
  }) as unknown as typeof sharp;
  const { renderPreview: render } = await t.mockImport<typeof import('../../shared/data/preview.js')>(
    '../../shared/data/preview.js',
    { sharp: failingSvg },
  );
  const warnings: string[] = [];
  const logger = pino(
    { level: 'warn' },
    {
      write: (line: string) => {
        warnings.push(line);
      },
    },
  );
  const out = join(t.testdir(), 'nofont.png');
  await render(await samples(4), out, { size: 40, columns: 2, logger });
  const meta = await sharp(out).metadata();
  t.same([meta.width, meta.height], [2 * 44 + 4, 2 * (40 + 14 + 4) + 4]);
  t.same(await pixel(out, 4 + 20, 4 + 40 + 7), [214, 120, 30], 'the bar is there where the text would be');
  t.equal(warnings.length, 1);
  t.match(warnings[0], /cannot render label text/);
});
