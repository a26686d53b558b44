// readWeightsFile: picks the format by content, then by extension, and reports anything else clearly.
import { copyFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { readWeightsFile } from '../../shared/weights/read.js';
import { assertWolfpackError, expected, fixturePath, rejectionOf } from './fixtures.js';

t.test('reads both formats by extension', async (t) => {
  const ckpt = await readWeightsFile(fixturePath('tiny.ckpt'));
  t.equal(ckpt.format, 'ckpt');
  t.same([...ckpt.tensors.keys()], expected.ckpt.order);
  const st = await readWeightsFile(fixturePath('tiny.safetensors'));
  t.equal(st.format, 'safetensors');
  t.same([...st.tensors.keys()], expected.safetensors.order);
});

t.test('recognises content whatever the file is called', async (t) => {
  const dir = t.testdir();
  copyFileSync(fixturePath('tiny.ckpt'), join(dir, 'weights.bin'));
  copyFileSync(fixturePath('tiny.safetensors'), join(dir, 'model.ckpt'));
  t.equal((await readWeightsFile(join(dir, 'weights.bin'))).format, 'ckpt');
  t.equal((await readWeightsFile(join(dir, 'model.ckpt'))).format, 'safetensors', 'content beats the extension');
});

t.test('errors', async (t) => {
  const dir = t.testdir({
    'notes.txt': 'just some text, not weights\n',
    'broken.safetensors': 'xx',
    'empty.ckpt': '',
    'empty.bin': '',
    sub: {},
  });
  const path = (name: string): string => join(dir, name);
  assertWolfpackError(t, await rejectionOf(readWeightsFile(path('notes.txt'))), 'E_WEIGHTS', path('notes.txt'), '.txt');
  assertWolfpackError(t, await rejectionOf(readWeightsFile(path('empty.bin'))), 'E_WEIGHTS', path('empty.bin'));
  assertWolfpackError(
    t,
    await rejectionOf(readWeightsFile(path('broken.safetensors'))),
    'E_CORRUPT',
    path('broken.safetensors'),
  );
  assertWolfpackError(
    t,
    await rejectionOf(readWeightsFile(path('empty.ckpt'))),
    'E_CORRUPT',
    path('empty.ckpt'),
    'empty',
  );
  assertWolfpackError(
    t,
    await rejectionOf(readWeightsFile(path('missing.ckpt'))),
    'E_IO',
    path('missing.ckpt'),
    'no such file',
  );
  assertWolfpackError(t, await rejectionOf(readWeightsFile(path('sub'))), 'E_IO', path('sub'), 'directory');
  // A damaged .ckpt under its own name gets the ckpt parser's precise error.
  writeFileSync(path('cut.ckpt'), Buffer.from([0x0a, 0x50, 0x0a, 0x03, 0x61]));
  assertWolfpackError(t, await rejectionOf(readWeightsFile(path('cut.ckpt'))), 'E_CORRUPT', 'truncated');
});
