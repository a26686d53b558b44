// safetensors reading and writing, against fixtures hand-written by the Python generator
// (test/fixtures/weights/gen_weights_fixtures.py), plus round trips and every validation error.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { fromFloat32, type HostTensor, type TensorMap } from '../../shared/weights/host-tensor.js';
import {
  parseSafetensors,
  readSafetensors,
  serializeSafetensors,
  writeSafetensors,
} from '../../shared/weights/safetensors.js';
import {
  assertMatchesExpected,
  assertSameTensors,
  assertWolfpackError,
  expected,
  fixturePath,
  hex,
  rawSafetensors,
  rejectionOf,
  thrownBy,
} from './fixtures.js';

t.test('reads the Python-made fixture: data order, dtypes, shapes, exact bytes and values, metadata', async (t) => {
  const { tensors, metadata } = await readSafetensors(fixturePath('tiny.safetensors'));
  const want = expected.safetensors;
  t.same([...tensors.keys()], want.order, 'ordered by position in the data, not by header key order');
  assertMatchesExpected(t, tensors, want);
  t.same(tensors.get('step')!.shape, [], 'I64 scalar');
  t.same(metadata, want.metadata);
});

t.test(
  'writes byte for byte what the reference writer would (metadata first, compact JSON, space padding)',
  async (t) => {
    const { tensors, metadata } = await readSafetensors(fixturePath('tiny.safetensors'));
    const out = serializeSafetensors(tensors, metadata);
    t.equal(hex(out), hex(readFileSync(fixturePath('canonical.safetensors'))));
    const headerLength = Number(Buffer.from(out).readBigUInt64LE(0));
    t.equal(headerLength % 8, 0, 'header padded to a multiple of 8');
  },
);

function sampleMap(): TensorMap {
  const f16 = Uint8Array.from([0x00, 0x3c, 0x01, 0x00, 0x00, 0x80, 0x00, 0xfe]);
  const bf16 = Uint8Array.from([0x80, 0x3f, 0xc0, 0x7f, 0x01, 0x80]);
  const i64 = new Uint8Array(new BigInt64Array([123456789012345n]).buffer);
  const entries: [string, HostTensor][] = [
    ['conv.weight', fromFloat32([2, 1, 1, 2], new Float32Array([1, -2, 3.5, 1e-42]))],
    ['half', { dtype: 'float16', shape: [4], bytes: f16 }],
    ['brain', { dtype: 'bfloat16', shape: [3, 1], bytes: bf16 }],
    ['step', { dtype: 'int64', shape: [], bytes: i64 }],
    ['lr', fromFloat32([], new Float32Array([0.125]))],
    ['empty', { dtype: 'float32', shape: [0, 3], bytes: new Uint8Array(0) }],
    // Integer-like names: a plain JS object would move these first; the writer must keep map order.
    ['10', fromFloat32([1], new Float32Array([10]))],
    ['2', fromFloat32([1], new Float32Array([2]))],
  ];
  return new Map(entries);
}

t.test('round trip through a file: f32, f16, bf16, int64 scalar, [] scalar, empty tensor, metadata', async (t) => {
  const path = join(t.testdir(), 'model.safetensors');
  const map = sampleMap();
  await writeSafetensors(path, map, { format: 'pt', note: 'ünïcode' });
  const back = await readSafetensors(path);
  assertSameTensors(t, back.tensors, map);
  t.same(back.metadata, { format: 'pt', note: 'ünïcode' });
  const noMeta = parseSafetensors(serializeSafetensors(map), 'mem.safetensors');
  assertSameTensors(t, noMeta.tensors, map);
  t.same(noMeta.metadata, {});
});

t.test('errors', async (t) => {
  const file = '/models/resnet50.safetensors';
  const parse = (buf: Uint8Array) => (): unknown => parseSafetensors(buf, file);
  const f32x2 = new Uint8Array(8);

  t.test('too short for the length prefix', async (t) => {
    assertWolfpackError(t, thrownBy(parse(new Uint8Array(5))), 'E_CORRUPT', file, '5 bytes');
  });

  t.test('header length beyond the file', async (t) => {
    const buf = Buffer.concat([rawSafetensors({}), Buffer.alloc(0)]);
    buf.writeBigUInt64LE(1000n, 0);
    assertWolfpackError(t, thrownBy(parse(buf)), 'E_CORRUPT', file, 'header length 1000');
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(2n ** 63n, 0);
    assertWolfpackError(t, thrownBy(parse(huge)), 'E_CORRUPT', file, 'runs past the end');
  });

  t.test('invalid JSON, not an object, not UTF-8', async (t) => {
    assertWolfpackError(t, thrownBy(parse(rawSafetensors('{"a": '))), 'E_CORRUPT', file, 'not valid JSON');
    assertWolfpackError(t, thrownBy(parse(rawSafetensors('[1,2]'))), 'E_CORRUPT', file, 'not a JSON object');
    const notUtf8 = rawSafetensors('{"\u00ff":1}');
    notUtf8[10] = 0xff; // break the UTF-8 of the name
    assertWolfpackError(t, thrownBy(parse(notUtf8)), 'E_CORRUPT', file, 'UTF-8');
  });

  t.test('unknown dtype', async (t) => {
    const buf = rawSafetensors(
      { 'fc.weight': { dtype: 'F8_E4M3', shape: [2], data_offsets: [0, 2] } },
      new Uint8Array(2),
    );
    assertWolfpackError(t, thrownBy(parse(buf)), 'E_WEIGHTS', file, 'fc.weight', 'F8_E4M3');
  });

  t.test('offsets beyond the data', async (t) => {
    const buf = rawSafetensors({ 'fc.bias': { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4));
    assertWolfpackError(t, thrownBy(parse(buf)), 'E_CORRUPT', file, 'fc.bias', 'run past the end');
  });

  t.test('offsets that do not match shape x dtype', async (t) => {
    const buf = rawSafetensors({ 'conv1.weight': { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, f32x2);
    assertWolfpackError(t, thrownBy(parse(buf)), 'E_CORRUPT', file, 'conv1.weight', 'needs 12 bytes', 'hold 8');
  });

  t.test('overlapping tensors', async (t) => {
    const buf = rawSafetensors(
      {
        a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] },
        b: { dtype: 'F32', shape: [2], data_offsets: [4, 12] },
      },
      new Uint8Array(12),
    );
    assertWolfpackError(t, thrownBy(parse(buf)), 'E_CORRUPT', file, "'a'", "'b'", 'overlap');
  });

  t.test('gaps and trailing bytes', async (t) => {
    const gap = rawSafetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, f32x2);
    assertWolfpackError(t, thrownBy(parse(gap)), 'E_CORRUPT', file, "'a'", 'belong to no tensor');
    const trailing = rawSafetensors({ a: { dtype: 'F32', shape: [1], data_offsets: [0, 4] } }, f32x2);
    assertWolfpackError(t, thrownBy(parse(trailing)), 'E_CORRUPT', file, '[4,8)');
  });

  t.test('malformed entries', async (t) => {
    const cases: [object, string][] = [
      [{ w: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, 'shape'],
      [{ w: { dtype: 'F32', shape: [1], data_offsets: [4, 0] } }, 'data_offsets'],
      [{ w: { dtype: 'F32', shape: [1] } }, 'data_offsets'],
      [{ w: { shape: [1], data_offsets: [0, 4] } }, 'dtype'],
      [{ w: 7 }, 'not an object'],
    ];
    for (const [header, what] of cases) {
      assertWolfpackError(
        t,
        thrownBy(parse(rawSafetensors(header, new Uint8Array(4)))),
        'E_CORRUPT',
        file,
        "'w'",
        what,
      );
    }
    const badMeta = rawSafetensors({ __metadata__: { epoch: 3 } });
    assertWolfpackError(t, thrownBy(parse(badMeta)), 'E_CORRUPT', file, '__metadata__.epoch');
  });

  t.test('missing file', async (t) => {
    const missing = join(t.testdir(), 'nope.safetensors');
    assertWolfpackError(t, await rejectionOf(readSafetensors(missing)), 'E_IO', missing, 'no such file');
  });

  t.test('writer refuses what it cannot write faithfully', async (t) => {
    const wrongSize: TensorMap = new Map([['fc.bias', { dtype: 'float16', shape: [3], bytes: new Uint8Array(4) }]]);
    assertWolfpackError(
      t,
      thrownBy(() => serializeSafetensors(wrongSize)),
      'E_WEIGHTS',
      'fc.bias',
      '6 bytes',
    );
    const reserved: TensorMap = new Map([['__metadata__', fromFloat32([1], new Float32Array(1))]]);
    assertWolfpackError(
      t,
      thrownBy(() => serializeSafetensors(reserved)),
      'E_WEIGHTS',
      '__metadata__',
    );
  });
});
