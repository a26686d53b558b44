// Our port of Pillow's bilinear resize must give Pillow's bytes: shrinking, enlarging, both at once
// (one axis each way) and windows of the result.
import t from 'tap';
import { fileURLToPath } from 'node:url';
import sharp from 'sharp';
import { readNpy } from '../../shared/data/npy.js';
import { resizeBilinear, type RgbImage } from '../../shared/data/resample.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/data/${name}`, import.meta.url));

async function loadInput(): Promise<RgbImage> {
  const { data, info } = await sharp(fixture('eval_input.png')).raw().toBuffer({ resolveWithObject: true });
  return { data: new Uint8Array(data), width: info.width, height: info.height };
}

t.test('resizeBilinear equals Pillow Image.resize(BILINEAR) byte for byte', async (t) => {
  const input = await loadInput();
  t.same([input.width, input.height], [75, 53]);
  for (const [w, h] of [
    [31, 77],
    [150, 20],
    [40, 40],
    [83, 59],
    [7, 5],
  ] as const) {
    const expected = (await readNpy(fixture(`resize_${w}x${h}.npy`))).data as Float32Array;
    const got = resizeBilinear(input, w, h);
    t.same([got.width, got.height], [w, h]);
    let wrong = 0;
    for (let i = 0; i < expected.length; i++) if (got.data[i] !== expected[i]) wrong++;
    t.equal(wrong, 0, `${w}x${h}: all ${expected.length} values equal Pillow's`);
  }
});

t.test('a window of the resize is the same as cropping the full resize', async (t) => {
  const input = await loadInput();
  const full = resizeBilinear(input, 90, 64);
  const win = { left: 13, top: 9, width: 40, height: 33 };
  const part = resizeBilinear(input, 90, 64, win);
  let wrong = 0;
  for (let y = 0; y < win.height; y++) {
    for (let i = 0; i < win.width * 3; i++) {
      if (part.data[y * win.width * 3 + i] !== full.data[((y + win.top) * 90 + win.left) * 3 + i]) wrong++;
    }
  }
  t.equal(wrong, 0);
  const same = resizeBilinear(input, 75, 53);
  t.same(same.data, input.data, 'same size is a copy');
});
