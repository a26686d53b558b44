// writeFileAtomic: the target always holds either its old content or the complete new content, and
// no temp file is left behind when a write fails.
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { writeFileAtomic } from '../../shared/fs/atomic-write.js';
import { assertWolfpackError, rejectionOf } from './fixtures.js';

const OLD = 'previous checkpoint, complete';

t.test('creates and replaces, from one buffer or from chunks', async (t) => {
  const dir = t.testdir();
  const target = join(dir, 'ckpt.bin');
  await writeFileAtomic(target, Buffer.from('first'));
  t.equal(readFileSync(target, 'utf8'), 'first');
  await writeFileAtomic(target, [Buffer.from('sec'), new Uint8Array(0), Buffer.from('ond')]);
  t.equal(readFileSync(target, 'utf8'), 'second');
  async function* chunks(): AsyncGenerator<Uint8Array> {
    yield Buffer.from('th');
    yield Buffer.from('ird');
  }
  await writeFileAtomic(target, chunks());
  t.equal(readFileSync(target, 'utf8'), 'third');
  // A large write (several MiB, a view at an odd offset) arrives whole.
  const big = new Uint8Array(5 * 1024 * 1024 + 3).map((_, i) => i % 251).subarray(1);
  await writeFileAtomic(target, big);
  t.ok(readFileSync(target).equals(big));
  t.same(readdirSync(dir), ['ckpt.bin'], 'no temp files left');
});

t.test('when the data iterator throws midway, the old file is intact and no temp file remains', async (t) => {
  const dir = t.testdir({ 'ckpt.bin': OLD });
  const target = join(dir, 'ckpt.bin');
  const boom = new Error('serializer failed');
  function* failing(): Generator<Uint8Array> {
    yield Buffer.from('NEW DATA THAT MUST NOT LAND');
    throw boom;
  }
  const e = await rejectionOf(writeFileAtomic(target, failing()));
  t.equal(e, boom, "the caller's own error comes back unchanged");
  t.equal(readFileSync(target, 'utf8'), OLD);
  t.same(readdirSync(dir), ['ckpt.bin']);
});

t.test('when the rename fails, the target is untouched and the temp file is removed', async (t) => {
  // A non-empty directory in the target's place: everything up to the rename succeeds.
  const dir = t.testdir({ 'ckpt.bin': { 'keep.txt': OLD } });
  const target = join(dir, 'ckpt.bin');
  const e = await rejectionOf(writeFileAtomic(target, Buffer.from('new')));
  assertWolfpackError(t, e, 'E_IO', target);
  t.equal(readFileSync(join(target, 'keep.txt'), 'utf8'), OLD);
  t.same(readdirSync(dir), ['ckpt.bin']);
});

t.test('a missing directory is E_IO naming the path', async (t) => {
  const target = join(t.testdir(), 'no', 'such', 'dir', 'ckpt.bin');
  assertWolfpackError(t, await rejectionOf(writeFileAtomic(target, Buffer.from('x'))), 'E_IO', target);
});

const isRoot = process.getuid?.() === 0;
const rootSkip = { skip: isRoot ? 'running as root: permissions do not stop root from writing' : false };

t.test('a read-only directory: E_IO and the old file intact', rootSkip, async (t) => {
  const dir = t.testdir({ ro: { 'ckpt.bin': OLD } });
  const ro = join(dir, 'ro');
  const target = join(ro, 'ckpt.bin');
  chmodSync(ro, 0o555);
  t.teardown(() => chmodSync(ro, 0o755));
  assertWolfpackError(t, await rejectionOf(writeFileAtomic(target, Buffer.from('new'))), 'E_IO', target);
  t.equal(readFileSync(target, 'utf8'), OLD);
  t.same(readdirSync(ro), ['ckpt.bin']);
});

t.test('concurrent writers never interleave: the result is one complete version', async (t) => {
  const dir = t.testdir();
  mkdirSync(join(dir, 'd'));
  const target = join(dir, 'd', 'ckpt.bin');
  writeFileSync(target, OLD);
  const versions = Array.from({ length: 8 }, (_, k) => Buffer.alloc(256 * 1024, 65 + k));
  await Promise.all(versions.map((v) => writeFileAtomic(target, [v.subarray(0, 1000), v.subarray(1000)])));
  const final = readFileSync(target);
  t.ok(
    versions.some((v) => v.equals(final)),
    'exactly one writer’s full content',
  );
  t.same(readdirSync(join(dir, 'd')), ['ckpt.bin']);
});

t.test('a process killed mid-save leaves the previous file intact', async (t) => {
  const dir = t.testdir({ 'ckpt.bin': OLD });
  const target = join(dir, 'ckpt.bin');
  const moduleUrl = new URL('../../shared/fs/atomic-write.ts', import.meta.url).href;
  // The child writes half of the new content, then dies by SIGKILL: no cleanup code runs at all.
  const child = `
    const { writeFileAtomic } = await import(${JSON.stringify(moduleUrl)});
    async function* chunks() {
      yield Buffer.alloc(1 << 20, 0x4e);
      process.kill(process.pid, 'SIGKILL');
      await new Promise(() => {});
    }
    await writeFileAtomic(${JSON.stringify(target)}, chunks());
  `;
  const result = spawnSync(process.execPath, [...process.execArgv, '--input-type=module', '-e', child], {
    encoding: 'utf8',
    timeout: 20_000,
  });
  t.equal(result.signal, 'SIGKILL', `child was killed mid-write (stderr: ${result.stderr})`);
  t.equal(readFileSync(target, 'utf8'), OLD);
  const leftovers = readdirSync(dir).filter((f) => f !== 'ckpt.bin');
  t.equal(leftovers.length, 1, 'only the dead writer’s hidden temp file is left beside it');
  t.match(leftovers[0] ?? '', /^\.ckpt\.bin\..*\.tmp$/);
});
