// Backend selection on a machine without tfjs-node(-gpu) or a WebGPU adapter (the test machines):
// `auto` falls through to wasm and says why each faster backend was passed over; a named backend that
// cannot start is an E_BACKEND error naming it; cpu always works.
import { createRequire } from 'node:module';
import { pino } from 'pino';
import t from 'tap';
import { AUTO_ORDER, selectBackend } from '../../shared/backend/select.js';
import { tf } from '../../shared/backend/tf.js';
import { isWolfpackError } from '../../shared/errors.js';

const require = createRequire(import.meta.url);

function installed(pkg: string): boolean {
  try {
    require.resolve(pkg);
    return true;
  } catch {
    return false;
  }
}

// tfjs-node(-gpu) would rightly win `auto` wherever installed; the `webgpu` package may be installed
// here, but this machine has no GPU, only software Vulkan (llvmpipe), which `auto` must not take.
const nativeInstalled = ['@tensorflow/tfjs-node', '@tensorflow/tfjs-node-gpu'].filter(installed);

/** A pino logger that keeps its records in memory. */
function memoryLogger(): { logger: pino.Logger; records: Record<string, unknown>[] } {
  const records: Record<string, unknown>[] = [];
  const logger = pino({ level: 'debug' }, { write: (line: string) => { records.push(JSON.parse(line) as Record<string, unknown>); } });
  return { logger, records };
}

t.test('auto takes wasm here and records why the faster backends were skipped', { skip: nativeInstalled.length > 0 ? `installed here: ${nativeInstalled.join(', ')}` : false }, async (t) => {
  const { logger, records } = memoryLogger();
  const sel = await selectBackend('auto', logger);
  t.equal(sel.backend, 'wasm', `auto takes wasm on a machine without a GPU (took ${sel.backend}; skipped ${JSON.stringify(sel.skipped)})`);
  t.equal(sel.tfName, 'wasm');
  t.equal(tf.getBackend(), 'wasm');
  t.same(sel.skipped.map((s) => s.backend), ['tensorflow-gpu', 'webgpu', 'tensorflow'], 'skipped in AUTO_ORDER, before wasm');
  t.same(AUTO_ORDER.slice(0, 4), ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm']);
  for (const s of sel.skipped) t.ok(s.reason.length > 0, `${s.backend}: ${s.reason}`);
  t.match(sel.skipped[0].reason, /tfjs-node-gpu/, 'tensorflow-gpu: says the package is missing');
  t.match(sel.skipped[1].reason, /webgpu|adapter/i, 'webgpu: says why (package missing, no adapter, or only a software one)');
  t.match(sel.skipped[2].reason, /tfjs-node/, 'tensorflow: says the package is missing');

  const chosen = records.find((r) => r.msg === 'backend: wasm');
  t.ok(chosen, 'the choice is logged at info');
  t.equal(chosen!.level, 30);
  t.same((chosen!.skipped as { backend: string }[]).map((s) => s.backend), ['tensorflow-gpu', 'webgpu', 'tensorflow'], 'with the skipped list');
  t.equal(records.filter((r) => r.msg === 'backend unavailable').length, 3, 'each skip logged at debug');

  const y = tf.tidy(() => tf.conv2d(tf.ones([1, 5, 5, 2]) as tf.Tensor4D, tf.ones([3, 3, 2, 1]) as tf.Tensor4D, 1, 'same').dataSync());
  t.equal(y[6], 18, 'wasm computes (with its Conv2DBackpropFilter registered)');
  t.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
});

t.test("selectBackend('tensorflow') fails with E_BACKEND naming it", { skip: installed('@tensorflow/tfjs-node') ? 'tfjs-node is installed here' : false }, async (t) => {
  const active = tf.getBackend();
  try {
    await selectBackend('tensorflow');
    t.fail('expected E_BACKEND');
  } catch (e) {
    t.ok(isWolfpackError(e, 'E_BACKEND'), 'E_BACKEND');
    const err = e as Error & { details: Record<string, unknown> };
    t.match(err.message, /^backend tensorflow is not available: /);
    t.match(err.message, /tfjs-node/, 'says why (the package cannot be loaded)');
    t.equal(err.details.backend, 'tensorflow');
  }
  t.equal(tf.getBackend(), active, 'the active backend is unchanged');
});

t.test("selectBackend('tensorflow-gpu') and 'webgpu' fail the same way when their packages are missing", async (t) => {
  // An explicit 'webgpu' may take a software adapter (by design), so it is only checked without the package.
  const names = (['tensorflow-gpu', 'webgpu'] as const).filter((n) => !installed(n === 'webgpu' ? 'webgpu' : '@tensorflow/tfjs-node-gpu'));
  for (const name of names) {
    await t.rejects(selectBackend(name), { code: 'E_BACKEND', details: { backend: name } }, name);
  }
  t.pass(`checked: ${names.join(', ') || 'none (both installed)'}`);
});

t.test("selectBackend('cpu') works", async (t) => {
  const sel = await selectBackend('cpu');
  t.same(sel, { backend: 'cpu', tfName: 'cpu', skipped: [] });
  t.equal(tf.getBackend(), 'cpu');
  const s = tf.tidy(() => tf.sum(tf.tensor1d([1, 2, 3.5])).dataSync()[0]);
  t.equal(s, 6.5);
  t.equal(tf.env().getBool('PROD'), true, 'PROD mode is set');
});
