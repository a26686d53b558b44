// .npy reading and writing: files written by numpy itself (committed, see
// test/fixtures/data/gen_crop_fixtures.py), our writer's bytes against numpy's, and clear errors for
// broken files.
import t from 'tap';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeNpy, parseNpy, readNpy, writeNpy } from '../../shared/data/npy.js';

const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/data/${name}`, import.meta.url));

t.test('reads arrays written by numpy', async (t) => {
  const f4 = await readNpy(fixture('tiny_f4.npy'));
  t.equal(f4.dtype, '<f4');
  t.same(f4.shape, [2, 3]);
  t.same([...f4.data], [-1, -0.5, 0, 0.5, 1, 1.5]);
  t.ok(f4.data instanceof Float32Array);

  const f8 = await readNpy(fixture('tiny_f8.npy'));
  t.equal(f8.dtype, '<f4', 'float64 comes back as float32');
  t.same(f8.shape, [3]);
  t.same([...f8.data], [Math.fround(0.1), -2.5, Math.fround(1e10)]);

  const i8 = await readNpy(fixture('tiny_i8.npy'));
  t.equal(i8.dtype, '<i8');
  t.same(i8.shape, [2, 2]);
  t.same([...(i8.data as BigInt64Array)], [-3n, 2n ** 40n, 7n, 0n]);

  const i4 = await readNpy(fixture('tiny_i4_v2.npy'));
  t.equal(readFileSync(fixture('tiny_i4_v2.npy'))[6], 2, 'fixture has a version 2.0 header');
  t.equal(i4.dtype, '<i4');
  t.same([...i4.data], [1, -2, 2147483647, -2147483648]);

  const scalar = await readNpy(fixture('tiny_scalar_f4.npy'));
  t.same(scalar.shape, []);
  t.same([...scalar.data], [3.25]);
});

t.test('our writer produces the bytes numpy writes', async (t) => {
  const numpyBytes = readFileSync(fixture('tiny_f4.npy'));
  const ours = encodeNpy([2, 3], new Float32Array([-1, -0.5, 0, 0.5, 1, 1.5]));
  t.same(Buffer.from(ours), numpyBytes, '(2, 3) float32');
  const scalar = encodeNpy([], new Float32Array([3.25]));
  t.same(Buffer.from(scalar), readFileSync(fixture('tiny_scalar_f4.npy')), '() float32');
});

t.test('round trip through a file, any shape', async (t) => {
  const dir = t.testdir();
  const data = Float32Array.from({ length: 4 * 5 * 3 }, (_, i) => Math.sin(i) * 1e3);
  const path = join(dir, 'sub', 'x.npy');
  await writeNpy(path, [4, 5, 3], data);
  const back = await readNpy(path);
  t.same(back.shape, [4, 5, 3]);
  t.same(back.data, data);
  const bytes = readFileSync(path);
  t.equal((bytes.readUInt16LE(8) + 10) % 64, 0, 'data starts on a 64-byte boundary');

  await writeNpy(join(dir, 'v.npy'), [7], new Float32Array(7).fill(2));
  t.same((await readNpy(join(dir, 'v.npy'))).shape, [7]);
  await writeNpy(join(dir, 'i.npy'), [2], new Int32Array([5, -6]));
  t.same([...(await readNpy(join(dir, 'i.npy'))).data], [5, -6]);
  await writeNpy(join(dir, 'e.npy'), [0, 3], new Float32Array(0));
  t.same((await readNpy(join(dir, 'e.npy'))).shape, [0, 3]);

  // A long header (many dimensions) needs format 2.0.
  const shape = Array.from({ length: 30000 }, () => 1);
  const big = encodeNpy(shape, new Float32Array([9]));
  t.equal(big[6], 2);
  t.same(parseNpy(big, 'big.npy').shape, shape);

  t.throws(() => encodeNpy([2, 2], new Float32Array(3)), { code: 'E_USAGE', message: /4 values but data has 3/ });
});

t.test('broken files are E_CORRUPT errors naming the file', async (t) => {
  const dir = t.testdir();
  const good = Buffer.from(encodeNpy([2, 3], new Float32Array(6)));

  t.throws(() => parseNpy(Buffer.from('PK\x03\x04 not numpy'), 'a.npy'), {
    code: 'E_CORRUPT',
    message: /a\.npy.*bad magic/,
  });
  t.throws(() => parseNpy(good.subarray(0, good.length - 5), 'b.npy'), {
    code: 'E_CORRUPT',
    message: /b\.npy: truncated data.*needs 24 bytes, file has 19/,
  });
  t.throws(() => parseNpy(good.subarray(0, 40), 'c.npy'), {
    code: 'E_CORRUPT',
    message: /c\.npy: truncated \.npy header/,
  });
  t.throws(() => parseNpy(Buffer.concat([good, Buffer.from([0])]), 'd.npy'), {
    code: 'E_CORRUPT',
    message: /d\.npy: 1 unexpected bytes/,
  });

  const u2 = Buffer.from(good);
  u2.write("'<u2'", good.indexOf("'<f4'"), 'latin1');
  t.throws(() => parseNpy(u2, 'e.npy'), { code: 'E_CORRUPT', message: /e\.npy: unsupported dtype "<u2"/ });
  const be = Buffer.from(good);
  be.write("'>f4'", good.indexOf("'<f4'"), 'latin1');
  t.throws(() => parseNpy(be, 'f.npy'), { code: 'E_CORRUPT', message: /unsupported dtype ">f4"/ });

  const fortran = join(dir, 'fortran.npy');
  writeFileSync(fortran, readFileSync(fixture('tiny_fortran_f4.npy')));
  await t.rejects(readNpy(fortran), { code: 'E_CORRUPT', message: /fortran\.npy: fortran_order/ });
  await t.rejects(readNpy(join(dir, 'missing.npy')), { code: 'E_IO', message: /missing\.npy/ });
});
