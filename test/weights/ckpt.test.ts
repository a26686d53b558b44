// MindSpore .ckpt reading and writing, against fixtures made by an independent Python encoder
// (test/fixtures/weights/gen_weights_fixtures.py), plus round trips and every error path.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { parseCkpt, readCkpt, serializeCkpt, writeCkpt } from '../../shared/weights/ckpt.js';
import { fromFloat32, toFloat32, type HostTensor, type TensorMap } from '../../shared/weights/host-tensor.js';
import {
  assertMatchesExpected,
  assertSameTensors,
  assertWolfpackError,
  expected,
  fixturePath,
  hex,
  pbValue,
  rejectionOf,
  thrownBy,
} from './fixtures.js';

const F32 = (values: number[]): Uint8Array => new Uint8Array(new Float32Array(values).buffer);

t.test('reads the Python-made fixture: order, dtypes, shapes, exact bytes and values', async (t) => {
  const file = fixturePath('tiny.ckpt');
  const map = await readCkpt(file);
  const want = expected.ckpt;
  t.same([...map.keys()], want.order, 'file order; the str entry "note" is skipped');
  assertMatchesExpected(t, map, want);
  t.same(map.get('learning_rate')!.shape, [], 'dims [0] is a scalar');
  t.equal(toFloat32(map.get('global_step')!)[0], 1234);
  t.equal(map.get('fc.weight')!.bytes.byteLength, 48, 'both pieces of the split tensor are joined');
  t.ok(map.has('moments.conv1.weight'));
});

t.test('reads a checkpoint with MindSpore crc_num trailer, and rejects a wrong CRC', async (t) => {
  const file = fixturePath('tiny_crc.ckpt');
  const buf = readFileSync(file);
  const map = parseCkpt(buf, file);
  t.same([...map.keys()], ['w']);
  t.same(Array.from(toFloat32(map.get('w')!)), [0.5, -0.25]);
  const damaged = Buffer.from(buf);
  const last = damaged.length - 1;
  damaged[last] = damaged[last]! ^ 1;
  assertWolfpackError(
    t,
    thrownBy(() => parseCkpt(damaged, file)),
    'E_CORRUPT',
    file,
    'crc_num',
  );
});

t.test(
  'writes byte for byte what MindSpore writes (one Value per tensor, unpacked dims, scalar dims [0])',
  async (t) => {
    const map = await readCkpt(fixturePath('tiny.ckpt'));
    const canonical = readFileSync(fixturePath('canonical.ckpt'));
    t.equal(hex(serializeCkpt(map)), hex(canonical));
  },
);

function sampleMap(): TensorMap {
  const f16 = Uint8Array.from([0x00, 0x3c, 0x01, 0x00, 0x00, 0x80, 0x00, 0x7c]); // 1, subnormal, -0, inf
  const bf16 = Uint8Array.from([0x80, 0x3f, 0xc0, 0x7f, 0x01, 0x00]); // 1, nan, subnormal
  const i64 = new Uint8Array(new BigInt64Array([-(2n ** 62n)]).buffer);
  const entries: [string, HostTensor][] = [
    ['conv.weight', fromFloat32([2, 1, 1, 2], new Float32Array([1, -2, 3.5, 1e-42]))],
    ['half', { dtype: 'float16', shape: [2, 2], bytes: f16 }],
    ['brain', { dtype: 'bfloat16', shape: [3], bytes: bf16 }],
    ['global_step', { dtype: 'int64', shape: [], bytes: i64 }],
    ['lr', fromFloat32([], new Float32Array([0.125]))],
    ['empty', { dtype: 'float32', shape: [0], bytes: new Uint8Array(0) }],
    ['2', fromFloat32([1], new Float32Array([2]))],
  ];
  return new Map(entries);
}

t.test('round trip through a file: f32, f16, bf16, int64 scalar, [] scalar, empty tensor', async (t) => {
  const dir = t.testdir();
  const path = join(dir, 'model.ckpt');
  const map = sampleMap();
  await writeCkpt(path, map);
  assertSameTensors(t, await readCkpt(path), map);
  // In memory too.
  assertSameTensors(t, parseCkpt(serializeCkpt(map), 'mem.ckpt'), map);
});

t.test(
  'every prefix of the fixture either throws E_CORRUPT naming the file or is a whole earlier prefix',
  async (t) => {
    const file = fixturePath('tiny.ckpt');
    const full = readFileSync(file);
    const complete = parseCkpt(full, file);
    let threw = 0;
    let parsed = 0;
    for (let n = 1; n < full.length; n++) {
      let map: TensorMap;
      try {
        map = parseCkpt(full.subarray(0, n), file);
      } catch (e) {
        const err = e as { code?: string; message: string };
        if (err.code !== 'E_CORRUPT' || !err.message.includes(file)) {
          t.fail(`prefix ${n}: ${err.code} ${err.message}`);
          return;
        }
        threw++;
        continue;
      }
      parsed++;
      const names = [...map.keys()];
      if (names.join() !== [...complete.keys()].slice(0, names.length).join()) t.fail(`prefix ${n}: ${names}`);
      for (const name of names) {
        if (hex(map.get(name)!.bytes) !== hex(complete.get(name)!.bytes)) t.fail(`prefix ${n}: ${name} differs`);
      }
    }
    t.ok(threw > full.length * 0.9, `${threw} prefixes rejected`);
    t.ok(parsed > 0, `${parsed} prefixes end on a Value boundary and parse`);
  },
);

t.test('errors', async (t) => {
  const file = '/data/pretrained/resnet50.ckpt';
  const good = pbValue('conv1.weight', [2], 'Float32', F32([1, 2]));

  t.test('truncated in the middle of a tensor', async (t) => {
    const e = thrownBy(() => parseCkpt(good.subarray(0, good.length - 3), file));
    assertWolfpackError(t, e, 'E_CORRUPT', file, 'corrupt or truncated MindSpore checkpoint');
  });

  t.test('garbage', async (t) => {
    const e = thrownBy(() => parseCkpt(Buffer.from('this is plain text, not a checkpoint at all\n'), file));
    assertWolfpackError(t, e, 'E_CORRUPT', file);
    const png = Buffer.from('89504e470d0a1a0a0000000d49484452000000100000001008060000001ff3ff61', 'hex');
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(png, file)),
      'E_CORRUPT',
      file,
    );
  });

  t.test('content size does not match dims', async (t) => {
    const buf = pbValue('layer1.0.conv1.weight', [2, 3], 'Float32', F32([1, 2, 3, 4, 5]));
    const e = thrownBy(() => parseCkpt(buf, file));
    assertWolfpackError(t, e, 'E_CORRUPT', file, 'layer1.0.conv1.weight', '24 bytes', 'found 20');
  });

  t.test('split pieces that add up wrong', async (t) => {
    const buf = Buffer.concat([
      pbValue('fc.weight', [2, 2], 'Float32', F32([1, 2])),
      pbValue('fc.weight', [2, 2], 'Float32', F32([3])),
    ]);
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(buf, file)),
      'E_CORRUPT',
      'fc.weight',
      '16 bytes',
      'found 12',
    );
  });

  t.test('split pieces that disagree on dims', async (t) => {
    const buf = Buffer.concat([
      pbValue('fc.weight', [2, 2], 'Float32', F32([1, 2])),
      pbValue('fc.weight', [4], 'Float32', F32([3, 4])),
    ]);
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(buf, file)),
      'E_CORRUPT',
      file,
      'fc.weight',
    );
  });

  t.test('unknown tensor_type', async (t) => {
    const buf = Buffer.concat([good, pbValue('bn.mean', [2], 'Complex64', new Uint8Array(16))]);
    const e = thrownBy(() => parseCkpt(buf, file));
    assertWolfpackError(t, e, 'E_WEIGHTS', file, 'bn.mean', 'Complex64');
  });

  t.test('the same tag twice, apart', async (t) => {
    const buf = Buffer.concat([good, pbValue('b', [1], 'Float32', F32([1])), good]);
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(buf, file)),
      'E_CORRUPT',
      file,
      'conv1.weight',
      'twice',
    );
  });

  t.test('empty file, and a checkpoint holding no tensors', async (t) => {
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(new Uint8Array(0), file)),
      'E_CORRUPT',
      file,
      'empty',
    );
    const onlyString = pbValue('note', [0], 'str', Buffer.from('h\0\0\0'));
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(onlyString, file)),
      'E_CORRUPT',
      file,
      'no tensors',
    );
    const onlyUnknownField = Uint8Array.from([0x48, 0x01]); // field 9, varint 1
    assertWolfpackError(
      t,
      thrownBy(() => parseCkpt(onlyUnknownField, file)),
      'E_CORRUPT',
      file,
      'no tensors',
    );
  });

  t.test('missing file', async (t) => {
    const missing = join(t.testdir(), 'nope.ckpt');
    assertWolfpackError(t, await rejectionOf(readCkpt(missing)), 'E_IO', missing, 'no such file');
  });

  t.test('writer refuses what it cannot write faithfully', async (t) => {
    const path = join(t.testdir(), 'out.ckpt');
    const bad: TensorMap = new Map([['fc.bias', { dtype: 'float32', shape: [3], bytes: new Uint8Array(8) }]]);
    assertWolfpackError(t, await rejectionOf(writeCkpt(path, bad)), 'E_WEIGHTS', 'fc.bias', '12 bytes');
    assertWolfpackError(
      t,
      thrownBy(() => serializeCkpt(new Map())),
      'E_WEIGHTS',
      'no tensors',
    );
  });
});
