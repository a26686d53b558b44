// The training-curves PNG: its size, that each series is drawn as a line across the plot (not just
// its legend or markers), that the lines go the way the numbers go, and the errors for a bad metrics file.
import t from 'tap';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { niceTicks, readMetrics, renderCurves, SERIES_COLORS } from '../../shared/report/curves.js';

interface Pixels {
  data: Buffer;
  width: number;
  height: number;
}

async function pixels(png: string): Promise<Pixels> {
  const { data, info } = await sharp(png).removeAlpha().raw().toBuffer({ resolveWithObject: true });
  return { data, width: info.width, height: info.height };
}

const byte = (hex: string, at: number) => parseInt(hex.slice(at, at + 2), 16);
const rgb = (hex: string): [number, number, number] => [byte(hex, 1), byte(hex, 3), byte(hex, 5)];

/** For each column, the lowest row (largest y) holding `hex` (within a small tolerance), or -1. */
function lowestPerColumn(p: Pixels, hex: string): number[] {
  const [r, g, b] = rgb(hex);
  const out = new Array<number>(p.width).fill(-1);
  for (let y = 0; y < p.height; y++) {
    for (let x = 0; x < p.width; x++) {
      const i = (y * p.width + x) * 3;
      if (Math.abs(p.data[i]! - r) <= 12 && Math.abs(p.data[i + 1]! - g) <= 12 && Math.abs(p.data[i + 2]! - b) <= 12)
        out[x] = y;
    }
  }
  return out;
}

/** Mean of the lowest rows over the first / last `share` of the columns that have the colour. */
function ends(cols: number[], share = 0.1): { left: number; right: number; columns: number } {
  const xs = cols.map((y, x): [number, number] => [x, y]).filter(([, y]) => y >= 0);
  const n = Math.max(1, Math.floor(xs.length * share));
  const mean = (a: [number, number][]) => a.reduce((s, [, y]) => s + y, 0) / a.length;
  return { left: mean(xs.slice(0, n)), right: mean(xs.slice(-n)), columns: xs.length };
}

function metricsFile(dir: string, lines: object[] | string): string {
  const path = join(dir, 'metrics.jsonl');
  writeFileSync(path, typeof lines === 'string' ? lines : lines.map((l) => JSON.stringify(l)).join('\n') + '\n');
  return path;
}

// Loss falls and accuracy rises, the way the coordinator writes them (extra fields included).
const run = Array.from({ length: 12 }, (_, i) => ({
  epoch: i + 1,
  train_loss: 0.7 - 0.05 * i,
  last_loss: 0.75 - 0.05 * i + (i % 2 ? 0.04 : -0.04),
  val_accuracy: 0.3 + 0.05 * i,
  images_per_s: 40,
  step_time_s: 0.4,
  allreduce_share: 0.2,
  skipped_steps: 0,
  epoch_time_s: 10,
  workers: 2,
}));

t.test('draws loss and accuracy as lines, in the right direction', async (t) => {
  const dir = t.testdir({});
  const out = join(dir, 'curves.png');
  const r = await renderCurves(metricsFile(dir, run), out);
  t.same(r, { epochs: 12, width: 800, height: 600 });
  const p = await pixels(out);
  t.same([p.width, p.height], [800, 600], 'PNG dimensions');
  const meta = await sharp(out).metadata();
  t.equal(meta.format, 'png');

  const plotWidth = 800 - 80 - 24 - 20; // the plot area less its padding: a line spans most of it
  for (const [name, hex] of Object.entries(SERIES_COLORS)) {
    const e = ends(lowestPerColumn(p, hex));
    const share = name === 'last_loss' ? 0.5 : 0.8; // last_loss is dashed (7 on, 4 off)
    t.ok(
      e.columns > share * plotWidth,
      `${name}: drawn across ${e.columns} columns (a line, not only markers or a legend)`,
    );
  }
  // Screen y grows downwards: a falling loss ends lower on screen than it starts, a rising accuracy higher.
  const loss = ends(lowestPerColumn(p, SERIES_COLORS.train_loss));
  t.ok(
    loss.right > loss.left + 50,
    `train_loss falls (left y ${loss.left.toFixed(0)}, right y ${loss.right.toFixed(0)})`,
  );
  const acc = ends(lowestPerColumn(p, SERIES_COLORS.val_accuracy));
  t.ok(
    acc.right < acc.left - 50,
    `val_accuracy rises (left y ${acc.left.toFixed(0)}, right y ${acc.right.toFixed(0)})`,
  );
  // The accuracy panel is below the loss panel.
  t.ok(acc.left > loss.left, 'accuracy is drawn below loss');

  // The background is white and the picture is not one colour.
  t.same([...p.data.subarray(0, 3)], [255, 255, 255]);
});

t.test('other sizes, one epoch, and missing values', async (t) => {
  const dir = t.testdir({});
  const small = join(dir, 'small.png');
  await renderCurves(metricsFile(dir, run), small, { width: 640, height: 480, title: 'a <run> & more' });
  const p = await pixels(small);
  t.same([p.width, p.height], [640, 480]);

  const one = join(dir, 'one.png');
  await renderCurves(metricsFile(dir, [{ epoch: 1, train_loss: 0.6, last_loss: 0.5, val_accuracy: 0.7 }]), one);
  const p1 = await pixels(one);
  t.ok(
    lowestPerColumn(p1, SERIES_COLORS.val_accuracy).some((y) => y >= 0),
    'a single epoch is drawn as a point',
  );

  // NaN losses are written to JSON as null; a resumed run repeats epochs (the last line wins).
  const gaps = [
    ...run.slice(0, 6),
    { ...run[6], train_loss: null, last_loss: null },
    ...run.slice(7),
    { ...run[2], val_accuracy: 0.99 },
  ];
  const path = metricsFile(dir, gaps);
  const points = await readMetrics(path);
  t.equal(points.length, 12);
  t.equal(points[6]!.train_loss, null);
  t.equal(points[2]!.val_accuracy, 0.99);
  await renderCurves(path, join(dir, 'gaps.png'));
  const pg = await pixels(join(dir, 'gaps.png'));
  t.ok(ends(lowestPerColumn(pg, SERIES_COLORS.train_loss)).columns > 500, 'lines on both sides of the gap');
});

t.test('bad metrics files', async (t) => {
  const dir = t.testdir({
    'bad.jsonl': '{"epoch":1,"train_loss":1}\nnot json\n',
    'noepoch.jsonl': '{"train_loss":1}\n',
    'empty.jsonl': '\n',
  });
  await t.rejects(renderCurves(join(dir, 'bad.jsonl'), join(dir, 'x.png')), {
    code: 'E_CORRUPT',
    message: /bad\.jsonl line 2: not a JSON object/,
  });
  await t.rejects(renderCurves(join(dir, 'noepoch.jsonl'), join(dir, 'x.png')), {
    code: 'E_CORRUPT',
    message: /noepoch\.jsonl line 1: no integer 'epoch'/,
  });
  await t.rejects(renderCurves(join(dir, 'empty.jsonl'), join(dir, 'x.png')), {
    code: 'E_DATA',
    message: /empty\.jsonl has no epochs/,
  });
  await t.rejects(renderCurves(join(dir, 'missing.jsonl'), join(dir, 'x.png')), {
    code: 'E_IO',
    message: /cannot read .*missing\.jsonl/,
  });
});

t.test('tick values', async (t) => {
  t.same(niceTicks(0, 0.76), [0, 0.2, 0.4, 0.6, 0.8]);
  t.same(niceTicks(0, 1), [0, 0.2, 0.4, 0.6, 0.8, 1]);
  t.same(niceTicks(1, 20, 10), [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20]);
  t.same(niceTicks(3, 3), [3, 3.2, 3.4, 3.6, 3.8, 4]);
});
