// dtype conversions to float32, checked against numpy (float16) and torch (bfloat16) results committed
// in expected.json, including subnormals, infinities, -0 and NaN payloads.
import { createHash } from 'node:crypto';
import t from 'tap';
import {
  dtypeSize,
  fromFloat32,
  numElements,
  toFloat32,
  type DType,
  type HostTensor,
} from '../../shared/weights/host-tensor.js';
import { assertWolfpackError, atOddOffset, bitsOf, expected, thrownBy } from './fixtures.js';

function u16le(values: number[]): Uint8Array {
  const b = Buffer.alloc(values.length * 2);
  values.forEach((v, i) => b.writeUInt16LE(v, i * 2));
  return b;
}

t.test('dtypeSize and numElements', async (t) => {
  const sizes: [DType, number][] = [
    ['float32', 4],
    ['float16', 2],
    ['bfloat16', 2],
    ['float64', 8],
    ['int8', 1],
    ['int16', 2],
    ['int32', 4],
    ['int64', 8],
    ['uint8', 1],
    ['bool', 1],
  ];
  for (const [d, s] of sizes) t.equal(dtypeSize(d), s, d);
  t.equal(numElements([]), 1, 'scalar');
  t.equal(numElements([0]), 0);
  t.equal(numElements([64, 3, 7, 7]), 9408);
});

t.test(
  'float16 -> float32 matches numpy on specials (subnormal, inf, nan payload, -0) and random patterns',
  async (t) => {
    const cases = expected.f16_cases;
    t.ok(cases.length > 50);
    const input = atOddOffset({ dtype: 'float16', shape: [cases.length], bytes: u16le(cases.map((c) => c[0])) });
    const got = bitsOf(toFloat32(input));
    t.same(
      got,
      cases.map((c) => c[1]),
    );
    // Spot checks written out, so the meaning of the table is visible here.
    const one = (h: number): number => toFloat32({ dtype: 'float16', shape: [], bytes: u16le([h]) })[0]!;
    t.equal(one(0x0001), 2 ** -24, 'smallest subnormal');
    t.equal(one(0x03ff), 1023 * 2 ** -24, 'largest subnormal');
    t.equal(one(0x7bff), 65504, 'largest normal');
    t.equal(one(0x7c00), Infinity);
    t.equal(one(0xfc00), -Infinity);
    t.ok(Object.is(one(0x8000), -0), '-0 keeps its sign');
    t.ok(Number.isNaN(one(0x7e00)));
  },
);

t.test('float16 -> float32 over all 65536 patterns hashes to numpy table', async (t) => {
  const all = new Uint8Array(65536 * 2);
  for (let h = 0; h < 65536; h++) {
    all[2 * h] = h & 0xff;
    all[2 * h + 1] = h >> 8;
  }
  const f = toFloat32({ dtype: 'float16', shape: [65536], bytes: all });
  const digest = createHash('sha256').update(new Uint8Array(f.buffer)).digest('hex');
  t.equal(digest, expected.f16_table_sha256);
});

t.test('bfloat16 -> float32 matches torch', async (t) => {
  const cases = expected.bf16_cases;
  const input = atOddOffset({ dtype: 'bfloat16', shape: [cases.length], bytes: u16le(cases.map((c) => c[0])) });
  t.same(
    bitsOf(toFloat32(input)),
    cases.map((c) => c[1]),
  );
});

t.test('other dtypes -> float32, from unaligned views', async (t) => {
  const make = (dtype: DType, shape: number[], fill: (v: DataView) => void): HostTensor => {
    const bytes = new Uint8Array(numElements(shape) * dtypeSize(dtype));
    fill(new DataView(bytes.buffer));
    return atOddOffset({ dtype, shape, bytes });
  };
  const f32 = make('float32', [3], (v) => [1.5, -2.25, 3e-39].forEach((x, i) => v.setFloat32(i * 4, x, true)));
  t.same(Array.from(toFloat32(f32)), [1.5, -2.25, Math.fround(3e-39)]);
  const f64 = make('float64', [2], (v) => [0.1, 1e300].forEach((x, i) => v.setFloat64(i * 8, x, true)));
  t.same(Array.from(toFloat32(f64)), [Math.fround(0.1), Infinity]);
  const i8 = make('int8', [2], (v) => [-128, 127].forEach((x, i) => v.setInt8(i, x)));
  t.same(Array.from(toFloat32(i8)), [-128, 127]);
  const i16 = make('int16', [2], (v) => [-32768, 300].forEach((x, i) => v.setInt16(i * 2, x, true)));
  t.same(Array.from(toFloat32(i16)), [-32768, 300]);
  const i32 = make('int32', [2], (v) => [-5, 1 << 30].forEach((x, i) => v.setInt32(i * 4, x, true)));
  t.same(Array.from(toFloat32(i32)), [-5, 2 ** 30]);
  const i64 = make('int64', [], (v) => v.setBigInt64(0, -(2n ** 40n), true));
  t.same(Array.from(toFloat32(i64)), [-(2 ** 40)]);
  const u8 = make('uint8', [2], (v) => [0, 255].forEach((x, i) => v.setUint8(i, x)));
  t.same(Array.from(toFloat32(u8)), [0, 255]);
  const bool = make('bool', [3], (v) => [0, 1, 7].forEach((x, i) => v.setUint8(i, x)));
  t.same(Array.from(toFloat32(bool)), [0, 1, 1]);
});

t.test('toFloat32 returns a fresh array and rejects a size mismatch', async (t) => {
  const src: HostTensor = { dtype: 'float32', shape: [2], bytes: new Uint8Array(8) };
  const out = toFloat32(src);
  out[0] = 5;
  t.same(Array.from(src.bytes), [0, 0, 0, 0, 0, 0, 0, 0], 'writing the result leaves the tensor alone');
  const e = thrownBy(() => toFloat32({ dtype: 'float32', shape: [3], bytes: new Uint8Array(8) }));
  assertWolfpackError(t, e, 'E_WEIGHTS', '12 bytes, found 8');
});

t.test('fromFloat32 copies', async (t) => {
  const data = new Float32Array([1, -0, 2.5, NaN]);
  const tensor = fromFloat32([2, 2], data);
  data[0] = 99;
  t.equal(tensor.dtype, 'float32');
  t.same(tensor.shape, [2, 2]);
  t.equal(tensor.bytes.byteLength, 16);
  const back = toFloat32(tensor);
  t.equal(back[0], 1, 'later writes to the source do not reach the tensor');
  t.ok(Object.is(back[1], -0));
  t.equal(back[2], 2.5);
  t.ok(Number.isNaN(back[3]));
  // From a subarray of a bigger array: only the viewed part is taken.
  const part = fromFloat32([2], new Float32Array([7, 8, 9, 10]).subarray(1, 3));
  t.same(Array.from(toFloat32(part)), [8, 9]);
  assertWolfpackError(
    t,
    thrownBy(() => fromFloat32([3], new Float32Array(2))),
    'E_WEIGHTS',
    '[3] has 3 elements',
  );
});
