// Backend selection. On a machine without tfjs-node(-gpu) or a WebGPU adapter (the test machines)
// `auto` falls through to wasm and says why each faster backend was passed over; a named backend that
// cannot start is an E_BACKEND error naming it; cpu always works. tensorflow-gpu and webgpu are checked
// on every machine: taken where they can start, refused with the reason where they cannot.
import { createRequire } from 'node:module';
import { pino } from 'pino';
import t from 'tap';
import { AUTO_ORDER, reservedGpu, selectBackend, tensorflowLoadError } from '../../shared/backend/select.js';
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
  const logger = pino(
    { level: 'debug' },
    {
      write: (line: string) => {
        records.push(JSON.parse(line) as Record<string, unknown>);
      },
    },
  );
  return { logger, records };
}

t.test(
  'auto takes wasm here and records why the faster backends were skipped',
  { skip: nativeInstalled.length > 0 ? `installed here: ${nativeInstalled.join(', ')}` : false },
  async (t) => {
    const { logger, records } = memoryLogger();
    const sel = await selectBackend('auto', logger);
    t.equal(
      sel.backend,
      'wasm',
      `auto takes wasm on a machine without a GPU (took ${sel.backend}; skipped ${JSON.stringify(sel.skipped)})`,
    );
    t.equal(sel.tfName, 'wasm');
    t.equal(tf.getBackend(), 'wasm');
    t.same(
      sel.skipped.map((s) => s.backend),
      ['tensorflow-gpu', 'webgpu', 'tensorflow'],
      'skipped in AUTO_ORDER, before wasm',
    );
    t.same(AUTO_ORDER.slice(0, 4), ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm']);
    for (const s of sel.skipped) t.ok(s.reason.length > 0, `${s.backend}: ${s.reason}`);
    t.match(sel.skipped[0]!.reason, /tfjs-node-gpu/, 'tensorflow-gpu: says the package is missing');
    t.match(
      sel.skipped[1]!.reason,
      /webgpu|adapter/i,
      'webgpu: says why (package missing, no adapter, or only a software one)',
    );
    t.match(sel.skipped[2]!.reason, /tfjs-node/, 'tensorflow: says the package is missing');

    const chosen = records.find((r) => r.msg === 'backend: wasm');
    t.ok(chosen, 'the choice is logged at info');
    t.equal(chosen!.level, 30);
    t.same(
      (chosen!.skipped as { backend: string }[]).map((s) => s.backend),
      ['tensorflow-gpu', 'webgpu', 'tensorflow'],
      'with the skipped list',
    );
    t.equal(records.filter((r) => r.msg === 'backend unavailable').length, 3, 'each skip logged at debug');

    const y = tf.tidy(() =>
      tf.conv2d(tf.ones([1, 5, 5, 2]) as tf.Tensor4D, tf.ones([3, 3, 2, 1]) as tf.Tensor4D, 1, 'same').dataSync(),
    );
    t.equal(y[6], 18, 'wasm computes (with its Conv2DBackpropFilter registered)');
    t.ok(tf.getKernel('Conv2DBackpropFilter', 'wasm'));
  },
);

t.test(
  "selectBackend('tensorflow') fails with E_BACKEND naming it",
  { skip: installed('@tensorflow/tfjs-node') ? 'tfjs-node is installed here' : false },
  async (t) => {
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
  },
);

t.test(
  "selectBackend('tensorflow-gpu'): taken where tfjs-node-gpu is installed, else E_BACKEND naming the missing package",
  async (t) => {
    const { logger, records } = memoryLogger();
    const active = tf.getBackend();
    if (installed('@tensorflow/tfjs-node-gpu')) {
      const sel = await selectBackend('tensorflow-gpu', logger);
      t.same(sel, { backend: 'tensorflow-gpu', tfName: 'tensorflow', skipped: [] }, 'installed here: taken');
      t.equal(tf.getBackend(), 'tensorflow');
      t.ok(
        records.some((r) => r.level === 30 && r.msg === 'backend: tensorflow-gpu'),
        'the choice is logged at info',
      );
    } else {
      await t.rejects(
        selectBackend('tensorflow-gpu', logger),
        {
          code: 'E_BACKEND',
          details: { backend: 'tensorflow-gpu' },
          message: /^backend tensorflow-gpu is not available: Cannot find module '@tensorflow\/tfjs-node-gpu'/,
        },
        'not installed here: E_BACKEND saying the package cannot be found',
      );
      t.equal(tf.getBackend(), active, 'the active backend is unchanged');
      t.notOk(
        records.some((r) => r.msg === 'backend: tensorflow-gpu'),
        'nothing is logged as chosen',
      );
    }
  },
);

t.test(
  'auto: tensorflow-gpu first where installed, else the next backend in AUTO_ORDER, with the reason logged',
  async (t) => {
    const { logger, records } = memoryLogger();
    const sel = await selectBackend('auto', logger);
    const chosen = records.filter((r) => r.level === 30 && typeof r.msg === 'string' && r.msg.startsWith('backend: '));
    t.equal(chosen.length, 1, 'one choice logged at info');
    t.equal(chosen[0]?.msg, `backend: ${sel.backend}`, 'naming the backend taken');
    t.same(chosen[0]?.skipped, sel.skipped, 'with the skipped list');
    if (installed('@tensorflow/tfjs-node-gpu')) {
      t.same(
        sel,
        { backend: 'tensorflow-gpu', tfName: 'tensorflow', skipped: [] },
        'installed here: auto takes it first',
      );
    } else {
      const reason = "Cannot find module '@tensorflow/tfjs-node-gpu'";
      t.same(
        sel.skipped[0],
        { backend: 'tensorflow-gpu', reason },
        'not installed here: skipped first, with the reason',
      );
      t.has(
        records.find((r) => r.msg === 'backend unavailable' && r.backend === 'tensorflow-gpu'),
        { level: 20, backend: 'tensorflow-gpu', reason },
        'and that reason logged at debug',
      );
      t.same(
        sel.skipped.map((s) => s.backend),
        AUTO_ORDER.slice(0, sel.skipped.length),
        'every skip in AUTO_ORDER',
      );
      t.equal(sel.backend, AUTO_ORDER[sel.skipped.length], 'the fallback is the first backend after the skipped ones');
      if (installed('@tensorflow/tfjs-node'))
        t.ok(
          ['webgpu', 'tensorflow'].includes(sel.backend),
          `tfjs-node is installed: taken at the latest (${sel.backend})`,
        );
      else t.ok(['webgpu', 'wasm'].includes(sel.backend), `no tfjs-node: webgpu on a GPU, else wasm (${sel.backend})`);
    }
  },
);

t.test("selectBackend('webgpu'): taken where an adapter exists, else E_BACKEND saying why", async (t) => {
  if (!installed('webgpu')) {
    await t.rejects(
      selectBackend('webgpu'),
      {
        code: 'E_BACKEND',
        details: { backend: 'webgpu' },
        message: /^backend webgpu is not available: the optional package 'webgpu' .* is not installed or cannot load/,
      },
      'the webgpu package is not installed here',
    );
    return;
  }
  // An explicit 'webgpu' takes any adapter, a software one (llvmpipe) too; whether there is one depends on the machine.
  const outcome = await selectBackend('webgpu').then(
    (sel) => ({ sel }),
    (e: unknown) => ({ error: e as Error & { code?: string; details?: Record<string, unknown> } }),
  );
  if ('sel' in outcome) {
    t.same(outcome.sel, { backend: 'webgpu', tfName: 'webgpu', skipped: [] }, 'an adapter here: taken');
    t.equal(tf.getBackend(), 'webgpu', 'and active');
  } else {
    t.equal(outcome.error.code, 'E_BACKEND', `no usable adapter here: E_BACKEND (${outcome.error.message})`);
    t.same(outcome.error.details, { backend: 'webgpu' });
    t.match(
      outcome.error.message,
      /^backend webgpu is not available: (no WebGPU adapter found|requesting a WebGPU adapter failed)/,
      'saying no adapter was found',
    );
  }
});

t.test(
  'auto with a GPU reserved for the process (NVIDIA_VISIBLE_DEVICES) warns when it ends up on a CPU backend',
  async (t) => {
    for (const v of [undefined, '', 'void', 'none'])
      t.equal(
        reservedGpu(v === undefined ? {} : { NVIDIA_VISIBLE_DEVICES: v }),
        undefined,
        `NVIDIA_VISIBLE_DEVICES=${v}: none reserved`,
      );
    t.equal(reservedGpu({ NVIDIA_VISIBLE_DEVICES: 'all' }), 'all');
    t.equal(reservedGpu({ NVIDIA_VISIBLE_DEVICES: '0,1' }), '0,1');
    const saved = process.env.NVIDIA_VISIBLE_DEVICES;
    t.teardown(() => {
      if (saved === undefined) delete process.env.NVIDIA_VISIBLE_DEVICES;
      else process.env.NVIDIA_VISIBLE_DEVICES = saved;
    });
    process.env.NVIDIA_VISIBLE_DEVICES = 'all';
    const { logger, records } = memoryLogger();
    const sel = await selectBackend('auto', logger);
    const warnings = records.filter((r) => r.level === 40);
    if (sel.backend === 'tensorflow-gpu' || sel.backend === 'webgpu') {
      t.same(warnings, [], `on ${sel.backend}: no warning`);
    } else {
      t.equal(warnings.length, 1, `on ${sel.backend}: one warning`);
      t.match(
        warnings[0]?.msg,
        new RegExp(
          `^a GPU is reserved for this process \\(NVIDIA_VISIBLE_DEVICES=all\\) but no GPU backend started, ` +
            `so it trains on ${sel.backend}, far slower: tensorflow-gpu: `,
        ),
      );
      t.equal(warnings[0]?.NVIDIA_VISIBLE_DEVICES, 'all');
    }
    delete process.env.NVIDIA_VISIBLE_DEVICES;
    const quiet = memoryLogger();
    await selectBackend('auto', quiet.logger);
    t.same(
      quiet.records.filter((r) => r.level === 40),
      [],
      'no GPU reserved: no warning',
    );
  },
);

t.test("selectBackend('cpu') works", async (t) => {
  const sel = await selectBackend('cpu');
  t.same(sel, { backend: 'cpu', tfName: 'cpu', skipped: [] });
  t.equal(tf.getBackend(), 'cpu');
  const s = tf.tidy(() => tf.sum(tf.tensor1d([1, 2, 3.5])).dataSync()[0]);
  t.equal(s, 6.5);
  t.equal(tf.env().getBool('PROD'), true, 'PROD mode is set');
});

t.test(
  'tfjs-node installed without its native library (install script blocked): the reason says how to allow it',
  async (t) => {
    // What requiring tfjs-node 4.22 throws after `npm install --ignore-scripts @tensorflow/tfjs-node@4.22.0`
    // (the state npm 11 leaves it in when allowScripts does not name it), recorded from that command.
    const blocked = new Error(
      'The Node.js native addon module (tfjs_binding.node) can not be found at path: ' +
        '/p/node_modules/@tensorflow/tfjs-node/lib/napi-v8/tfjs_binding.node. \n' +
        "Please run command 'npm rebuild @tensorflow/tfjs-node --build-addon-from-source' " +
        'to rebuild the native addon module.',
    );
    const hint = tensorflowLoadError('@tensorflow/tfjs-node-gpu', blocked, true);
    t.match(hint, /installed without its native library/);
    t.match(hint, /"allowScripts": \{"@tensorflow\/tfjs-node-gpu": true\}/, 'names the allowScripts entry');
    t.match(hint, /npm install --allow-scripts=@tensorflow\/tfjs-node-gpu/, 'and the install flag');
    t.match(
      hint,
      /tfjs_binding\.node can not be found|tfjs_binding\.node\) can not be found/,
      "keeps tfjs-node's own first line",
    );
    const missing = new Error("Cannot find module '@tensorflow/tfjs-node-gpu'");
    t.equal(
      tensorflowLoadError('@tensorflow/tfjs-node-gpu', missing, false),
      "Cannot find module '@tensorflow/tfjs-node-gpu'",
      'not installed: the plain reason',
    );
    const other = new Error('libcuda.so.1: cannot open shared object file');
    t.equal(
      tensorflowLoadError('@tensorflow/tfjs-node-gpu', other, true),
      other.message,
      'another load failure: unchanged',
    );
  },
);
