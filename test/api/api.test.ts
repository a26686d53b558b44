// wolfpack as a library, imported by its package name as a user's program would (`import ... from
// 'wolfpack'` resolves through package.json "exports" to the built dist/index.js): train() runs a tiny
// real job (two worker processes) with typed options and events and writes nothing to stdout; an epoch
// callback that returns a promise holds the run until it settles, and one that never settles only for
// holdTimeoutMs; predict() matches PyTorch's eval logits for .npy, NCHW Float32Array and image-file
// inputs; bad options are E_USAGE errors naming the option.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { copyFile, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { pino } from 'pino';
import t from 'tap';
import { readNpy } from '../../shared/data/npy.js';
import { packageRoot } from '../../shared/paths.js';
import { ensureBuilt } from '../helpers/build.js';
import { maxRelToScale } from '../helpers/numerics.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob } from '../helpers/tiny-job.js';
import type * as Wolfpack from '../../index.js';

const PACKAGE = 'wolfpack';
const FIX = join(packageRoot, 'test', 'fixtures');
const ENTRY = join(packageRoot, 'dist', 'index.js');

ensureBuilt(ENTRY);
const api = (await import(PACKAGE)) as typeof Wolfpack;

t.test('the package name resolves to the built entry, with its types', async (t) => {
  t.equal(import.meta.resolve(PACKAGE), pathToFileURL(ENTRY).href, `'${PACKAGE}' -> dist/index.js`);
  const pkg = JSON.parse(readFileSync(join(packageRoot, 'package.json'), 'utf8')) as Record<string, unknown>;
  t.same(pkg.exports, { '.': { types: './dist/index.d.ts', default: './dist/index.js' } });
  t.equal(pkg.main, './dist/index.js');
  t.equal(pkg.types, './dist/index.d.ts');
  const dts = readFileSync(join(packageRoot, 'dist', 'index.d.ts'), 'utf8');
  t.match(dts, /export \{ train,[^}]*type TrainOptions, type TrainResult \}/);
  t.match(dts, /export declare function predict\(options: PredictOptions\): Promise<Prediction\[\]>/);
  for (const name of ['train', 'predict', 'WolfpackError', 'isWolfpackError', 'DashboardServer'] as const)
    t.type(api[name], 'function', name);
});

t.test('train(): a tiny run with typed options, events and a result', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out');
  const steps: Wolfpack.StepEvent[] = [];
  const epochs: Wolfpack.EpochMetrics[] = [];
  const rings: { members: Wolfpack.MemberInfo[]; generation: number }[] = [];
  const kinds: string[] = [];
  const lines: string[] = [];
  const options: Wolfpack.TrainOptions = {
    data: job.data,
    weights: job.weights,
    workers: 2,
    epochs: 2,
    batchSize: 6,
    imageSize: 32,
    lr: 0.05,
    out,
    backend: 'wasm',
    timeoutMs: 60_000,
    tensorboard: join(job.dir, 'tb'),
    print: (line) => lines.push(line),
    events: {
      step: (s) => steps.push(s),
      epoch: (m) => epochs.push(m),
      members: (members, generation) => {
        rings.push({ members, generation });
        throw new Error('a callback that throws does not stop the run');
      },
      event: (e) => kinds.push(e.kind),
    },
  };
  const r = await api.train(options);
  t.equal(r.epochs.length, 2);
  t.ok(r.bestEpoch >= 1 && r.bestEpoch <= 2, `best epoch ${r.bestEpoch}`);
  t.ok(r.bestAccuracy >= 0 && r.bestAccuracy <= 1);
  t.equal(r.out, out);
  for (const f of [r.best, r.last, r.metrics, r.steps]) t.ok(existsSync(f), `${f} written`);
  t.equal(readFileSync(r.steps, 'utf8').trim().split('\n').length, 8, 'steps.jsonl: a line per step');
  t.equal(
    readdirSync(join(job.dir, 'tb')).filter((f) => f.startsWith('events.out.tfevents.')).length,
    1,
    'options.tensorboard: an event file',
  );
  t.same(
    steps.map((s) => [s.epoch, s.step, s.global_step]),
    [
      [1, 1, 1],
      [1, 2, 2],
      [1, 3, 3],
      [1, 4, 4],
      [2, 1, 5],
      [2, 2, 6],
      [2, 3, 7],
      [2, 4, 8],
    ],
  );
  t.ok(
    steps.every((s) => Number.isFinite(s.loss) && s.images_per_s > 0 && s.ranks.length === 2),
    'loss, images/s and both ranks on each step',
  );
  t.same(epochs, r.epochs, "the epoch events are the result's epochs");
  t.equal(rings.length, 1);
  t.same(
    rings[0]!.members.map((m) => [m.rank, m.backend]),
    [
      [0, 'wasm'],
      [1, 'wasm'],
    ],
  );
  t.ok(kinds.includes('joined') && kinds.includes('best'), `events: ${kinds.join(', ')}`);
  t.match(
    lines.join('\n'),
    /End training, the best Accuracy is: [\d.]+, the best Accuracy epoch is \d/,
    "print gets the lab's lines",
  );
});

t.test('train(): an epoch callback that returns a promise holds the run until it settles', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out');
  const classes = readdirSync(join(job.data, 'val')).sort();
  const image = join(job.data, 'val', classes[0]!, readdirSync(join(job.data, 'val', classes[0]!)).sort()[0]!);
  const order: string[] = [];
  const atHold: { lines: number; stateEpoch: number; predicted: number }[] = [];
  await api.train({
    data: job.data,
    weights: job.weights,
    workers: 2,
    epochs: 2,
    batchSize: 6,
    imageSize: 32,
    lr: 0.05,
    out,
    backend: 'wasm',
    timeoutMs: 60_000,
    events: {
      step: (s) => order.push(`${s.epoch}.${s.step}`),
      // An epoch-end callback with real asynchronous work, as a Keras or Lightning callback would do:
      // keep a copy of the epoch's checkpoint and classify an image with it in another process (seconds,
      // with this process's loop free: a run that did not wait would go on meanwhile) while the run waits.
      epoch: async (m) => {
        if (m.epoch !== 1) return;
        order.push('held');
        const lines = (await readFile(join(out, 'metrics.jsonl'), 'utf8')).trim().split('\n').length;
        const state = JSON.parse(await readFile(join(out, 'train-state.json'), 'utf8')) as { epoch: number };
        const copy = join(job.dir, 'epoch-1.ckpt');
        await copyFile(join(out, 'last.ckpt'), copy);
        const p = await runCli(
          [
            'predict',
            '--weights',
            copy,
            image,
            '--classes',
            classes.join(','),
            '--image-size',
            '32',
            '--backend',
            'wasm',
            '--json',
          ],
          120_000,
        );
        atHold.push({
          lines,
          stateEpoch: state.epoch,
          predicted: p.code === 0 ? p.stdout.trim().split('\n').length : -1,
        });
        order.push('released');
      },
    },
  });
  t.same(
    order,
    ['1.1', '1.2', '1.3', '1.4', 'held', 'released', '2.1', '2.2', '2.3', '2.4'],
    'no step of epoch 2 before the callback settled',
  );
  t.same(
    atHold,
    [{ lines: 1, stateEpoch: 1, predicted: 1 }],
    'during the hold the run folder held epoch 1, complete, and its checkpoint was usable',
  );
});

t.test(
  'train(): a callback that never settles holds the run for holdTimeoutMs only; one that rejects is logged',
  async (t) => {
    const job = await makeTinyJob();
    t.teardown(job.cleanup);
    const chunks: string[] = [];
    const logger = pino(
      { level: 'warn' },
      new Writable({
        write(chunk: Buffer, _enc, cb) {
          chunks.push(chunk.toString());
          cb();
        },
      }),
    ) as unknown as Wolfpack.Logger;
    const r = await api.train({
      data: job.data,
      weights: job.weights,
      workers: 2,
      epochs: 1,
      batchSize: 6,
      imageSize: 32,
      lr: 0.05,
      out: join(job.dir, 'out'),
      backend: 'wasm',
      timeoutMs: 60_000,
      holdTimeoutMs: 2000,
      logger,
      events: {
        step: (s) => (s.step === 2 ? new Promise<void>(() => undefined) : undefined),
        epoch: () => Promise.reject(new Error('an epoch callback that fails')),
      },
    });
    t.same(
      r.epochs.map((e) => e.epoch),
      [1],
      'the run finished',
    );
    const log = chunks.join('');
    t.match(log, /"msg":"the events callback at epoch 1 step 2 still holds the run after 2 s; the job goes on"/);
    t.match(log, /"err":"an epoch callback that fails"[^\n]*"msg":"events.epoch threw; the job goes on"/);
  },
);

t.test('train() in a program: nothing on stdout, a dashboard when asked', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const options = {
    data: job.data,
    weights: job.weights,
    workers: 2,
    epochs: 1,
    batchSize: 6,
    imageSize: 32,
    lr: 0.05,
    out: join(job.dir, 'out'),
    backend: 'wasm',
    timeoutMs: 60_000,
    dashboardPort: 0,
  };
  const program =
    `import { train } from '${PACKAGE}';
const r = await train({ ...JSON.parse(process.env.OPTIONS), ` +
    `onDashboard: (url) => process.stderr.write('DASHBOARD ' + url + '\\n') });
process.stderr.write('RESULT ' + JSON.stringify({ epochs: r.epochs.length, dashboardUrl: r.dashboardUrl }) + '\\n');`;
  const run = await new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
    execFile(
      process.execPath,
      ['--input-type=module', '-e', program],
      { cwd: packageRoot, timeout: 90_000, env: { ...process.env, OPTIONS: JSON.stringify(options) } },
      (err, stdout, stderr) =>
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, stdout, stderr }),
    );
  });
  t.equal(run.code, 0, run.stderr.slice(-2000));
  t.equal(run.stdout, '', 'nothing on stdout, from the coordinator or its workers');
  const result = JSON.parse(/RESULT (.*)/.exec(run.stderr)![1]!) as { epochs: number; dashboardUrl: string };
  t.equal(result.epochs, 1);
  t.match(result.dashboardUrl, /^http:\/\/127\.0\.0\.1:\d+\/$/);
  t.match(run.stderr, `DASHBOARD ${result.dashboardUrl}`, 'onDashboard got the URL during the run');
});

t.test('train(): options.stop stops at once with the last step saved; resume: out finishes the run', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out');
  const controller = new AbortController();
  const base = {
    data: job.data,
    weights: job.weights,
    workers: 2,
    epochs: 2,
    batchSize: 6,
    imageSize: 32,
    lr: 0.05,
    out,
    backend: 'wasm' as const,
    timeoutMs: 60_000,
  };
  // 24 images / 6 = 4 steps an epoch; the stop is asked for while the step callback holds the run after
  // epoch 2's step 2 (global step 6), so nothing races the trainer.
  const stopped = await api.train({
    ...base,
    stop: controller.signal,
    events: {
      step: (s) => {
        if (s.global_step !== 6) return undefined;
        controller.abort('test');
        return new Promise<void>(() => undefined); // holds; the stop ends the hold
      },
    },
  });
  t.same(
    stopped.stopped && { ...stopped.stopped, dir: stopped.stopped.dir === out },
    { why: 'test', epoch: 1, step: 6, stepsPerEpoch: 4, saved: 'step', dir: true },
    'resolved with the stop: epoch 1 done, global step 6 saved in out',
  );
  const state = JSON.parse(readFileSync(join(out, 'train-state.json'), 'utf8')) as { epoch: number; step: number };
  t.same([state.epoch, state.step], [1, 6], 'train-state.json names the step');
  const resumed = await api.train({ ...base, resume: out });
  t.notOk(resumed.stopped, 'the resumed run ends normally');
  const lines = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { epoch: number; samples: number });
  t.same(
    lines.map((m) => [m.epoch, m.samples]),
    [
      [1, 24],
      [2, 24],
    ],
    'both epochs, each sample counted once',
  );
  await t.rejects(api.train({ ...base, stop: 'now' as unknown as AbortSignal }), {
    code: 'E_USAGE',
    message: /options\.stop: expected an AbortSignal/,
  });
});

t.test('train(): bad options are E_USAGE errors naming the option', async (t) => {
  const base = { data: '/nonexistent', weights: '/nonexistent.ckpt' };
  const cases: [Partial<Wolfpack.TrainOptions>, RegExp][] = [
    [{ workers: 0 }, /options\.workers: expected an integer >= 1 <= 256, got 0/],
    [{ workers: 3, batchSize: 2 }, /options\.batchSize: expected at least options\.workers \(3\)/],
    [{ backend: 'gpu' as Wolfpack.BackendChoice }, /options\.backend: expected one of auto, /],
    [{ lr: Number.NaN }, /options\.lr: expected a number >= 0, got NaN/],
    [{ weights: undefined }, /options\.weights is required \(or options\.resume\)/],
    [{ dashboardPort: 70000 }, /options\.dashboardPort: expected an integer >= 0 <= 65535/],
  ];
  for (const [change, message] of cases) {
    const e = await api.train({ ...base, ...change } as Wolfpack.TrainOptions).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.ok(e instanceof api.WolfpackError && api.isWolfpackError(e, 'E_USAGE'), `${JSON.stringify(change)}: E_USAGE`);
    t.match((e as Error).message, message);
  }
  const missing = await api.train({ ...base, workers: 1, batchSize: 1 }).then(
    () => undefined,
    (x: unknown) => x,
  );
  t.ok(api.isWolfpackError(missing), `a missing data directory is a WolfpackError: ${(missing as Error).message}`);
  t.match((missing as Error).message, '/nonexistent');
});

t.test('predict(): .npy, NCHW Float32Array and image inputs match the reference logits', async (t) => {
  const dir = join(FIX, 'resnet', 'mindspore');
  const ref = await readNpy(join(dir, 'logits_eval.npy'));
  const n = ref.shape[0]!;
  const weights = join(dir, 'weights.safetensors');
  const fromPath = await api.predict({
    weights,
    inputs: [join(dir, 'x.npy')],
    classes: ['dogs', 'wolves'],
    backend: 'wasm',
  });
  t.equal(fromPath.length, n, 'one prediction per image of the batch');
  const got = Float32Array.from(fromPath.flatMap((p) => p.logits));
  const err = maxRelToScale(got, ref.data as Float32Array);
  t.ok(err < 1e-4, `logits match PyTorch's eval logits: max rel ${err.toExponential(2)}`);
  for (const p of fromPath) {
    t.equal(p.input, 0);
    t.equal(p.path, join(dir, 'x.npy'));
    t.equal(p.class, ['dogs', 'wolves'][p.classIndex]);
    t.equal(p.classIndex, p.logits.indexOf(Math.max(...p.logits)));
    t.ok(Math.abs(p.probabilities.reduce((a, b) => a + b, 0) - 1) < 1e-9, 'probabilities sum to 1');
  }
  t.same(
    fromPath.map((p) => [p.index, p.item]),
    Array.from({ length: n }, (_, i) => [i, i]),
  );

  const x = await readNpy(join(dir, 'x.npy'));
  const [c, h, w] = [x.shape[1]!, x.shape[2]!, x.shape[3]!];
  const data = x.data as Float32Array;
  const batch = await api.predict({ weights, inputs: [{ data, shape: [n, c, h, w] }], backend: 'wasm' });
  t.same(
    batch.map((p) => p.logits),
    fromPath.map((p) => p.logits),
    '{ data, shape } gives the same logits',
  );
  t.notOk('path' in batch[0]!, 'no path for a tensor');
  t.equal(batch[0]!.class, String(batch[0]!.classIndex), 'without classes, the class is its index');
  const per = c * h * w;
  const singles = await api.predict({
    weights,
    inputs: Array.from({ length: n }, (_, i) => data.slice(i * per, (i + 1) * per)),
    imageSize: h,
    backend: 'wasm',
  });
  t.same(
    singles.map((p) => p.logits),
    fromPath.map((p) => p.logits),
    'one [3,S,S] Float32Array per image gives the same logits',
  );
  t.same(
    singles.map((p) => p.input),
    Array.from({ length: n }, (_, i) => i),
  );

  // An image file, against torchvision's own eval transform of it (HWC in the fixture).
  const tv = join(FIX, 'resnet', 'torchvision', 'weights.safetensors');
  const img = join(FIX, 'data', 'eval_input.png');
  const hwc = await readNpy(join(FIX, 'data', 'eval_s40.npy'));
  const s = hwc.shape[0]!;
  const chw = new Float32Array(3 * s * s);
  for (let p = 0; p < s * s; p++)
    for (let ch = 0; ch < 3; ch++) chw[ch * s * s + p] = (hwc.data as Float32Array)[p * 3 + ch]!;
  const [fromImage, fromRef] = await api.predict({ weights: tv, inputs: [img, chw], imageSize: s, backend: 'wasm' });
  t.equal(fromImage!.path, img);
  const e2 = maxRelToScale(Float32Array.from(fromImage!.logits), Float32Array.from(fromRef!.logits));
  t.ok(e2 < 1e-3, `an image file gives the logits of torchvision's transform of it: max rel ${e2.toExponential(2)}`);
});

t.test('predict(): bad inputs are errors naming the input', async (t) => {
  const weights = join(FIX, 'resnet', 'mindspore', 'weights.safetensors');
  const cases: [Partial<Wolfpack.PredictOptions>, string, RegExp][] = [
    [{ inputs: [] }, 'E_USAGE', /options\.inputs: expected a non-empty array/],
    [
      { inputs: [new Float32Array(10)] },
      'E_USAGE',
      /options\.inputs\[0\]: a Float32Array of 10 floats is not one \[3,224,224\] image/,
    ],
    [
      {
        inputs: [
          { data: new Float32Array(18), shape: [1, 3, 2, 3] },
          { data: new Float32Array(12), shape: [1, 1, 3, 4] },
        ],
      },
      'E_USAGE',
      /options\.inputs\[1\]: shape \[1,1,3,4\], expected NCHW/,
    ],
    [
      { inputs: [join(FIX, 'resnet', 'mindspore', 'labels.npy')] },
      'E_DATA',
      /labels\.npy: dtype <i8, expected float32/,
    ],
    [{ inputs: ['/nonexistent/photo.jpg'] }, 'E_IO', /\/nonexistent\/photo\.jpg/],
    [
      { inputs: [new Float32Array(3 * 224 * 224)], classes: ['a', 'b', 'c'] },
      'E_USAGE',
      /options\.classes names 3 class\(es\) but .* has a 2-class head/,
    ],
    [{ weights: '/nonexistent.ckpt', inputs: [new Float32Array(3 * 224 * 224)] }, '', /\/nonexistent\.ckpt/],
  ];
  for (const [change, code, message] of cases) {
    const e = await api.predict({ weights, inputs: [], backend: 'wasm', ...change }).then(
      () => undefined,
      (x: unknown) => x,
    );
    t.ok(api.isWolfpackError(e), `${message}: a WolfpackError`);
    if (code) t.equal((e as Wolfpack.WolfpackError).code, code);
    t.match((e as Error).message, message);
  }
});
