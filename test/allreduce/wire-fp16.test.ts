// bench/fp16-cost.ts converts as IEEE 754 does: its float16 bits equal numpy's float16 for normal,
// subnormal, tie, overflow and special values, and the table maps every half back exactly.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { halfTable, toHalf } from '../../shared/allreduce/wire.js';

t.test('toHalf and halfTable agree with numpy float16', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-f16-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const special = [
    0,
    -0,
    1,
    -1,
    1 / 3,
    65504,
    65519.99,
    65520,
    1e6,
    -1e6,
    2 ** -14,
    2 ** -24,
    2 ** -25,
    2 ** -25 * 1.0001,
    3 * 2 ** -26,
    6e-8,
    5.96e-8,
    1e-10,
    1 + 2 ** -11,
    1 + 3 * 2 ** -11,
    Infinity,
    -Infinity,
    NaN,
  ];
  const xs = new Float32Array(special.length + 20000);
  xs.set(special);
  let s = 7;
  for (let i = special.length; i < xs.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    xs[i] = (s / 2 ** 32 - 0.5) * 10 ** ((i % 14) - 9); // 1e-9 .. 1e4
  }
  writeFileSync(join(dir, 'x.f32'), xs);
  execFileSync('/usr/bin/python3', [
    '-c',
    `import numpy as np; x = np.fromfile('${join(dir, 'x.f32')}', dtype='<f4'); ` +
      `x.astype('<f2').tofile('${join(dir, 'h.f16')}')`,
  ]);
  const b = readFileSync(join(dir, 'h.f16'));
  const want = new Uint16Array(b.buffer, b.byteOffset, b.byteLength / 2);
  const got = new Uint16Array(xs.length);
  toHalf(xs, got);
  const bad: string[] = [];
  for (let i = 0; i < xs.length; i++) {
    const nan = Number.isNaN(xs[i]);
    if (nan ? (got[i]! & 0x7c00) !== 0x7c00 || (got[i]! & 0x3ff) === 0 : got[i] !== want[i])
      bad.push(`${xs[i]}: ${got[i]!.toString(16)} vs ${want[i]!.toString(16)}`);
  }
  t.same(bad.slice(0, 5), [], `${xs.length} values, ${bad.length} differ from numpy`);
  const table = halfTable();
  const back = Float32Array.from(want, (h) => table[h]!);
  const ref = new Float32Array(xs.length);
  writeFileSync(join(dir, 'h2.f16'), b);
  execFileSync('/usr/bin/python3', [
    '-c',
    `import numpy as np; np.fromfile('${join(dir, 'h2.f16')}', dtype='<f2')` +
      `.astype('<f4').tofile('${join(dir, 'y.f32')}')`,
  ]);
  const y = readFileSync(join(dir, 'y.f32'));
  ref.set(new Float32Array(y.buffer, y.byteOffset, y.byteLength / 4));
  let mismatch = 0;
  for (let i = 0; i < ref.length; i++)
    if (!(Object.is(back[i], ref[i]) || (Number.isNaN(back[i]) && Number.isNaN(ref[i])))) mismatch++;
  t.equal(mismatch, 0, "every half maps back to numpy's float32");
});
