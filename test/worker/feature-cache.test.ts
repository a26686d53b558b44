// The feature cache (--cache-features): the cache's bound and LRU eviction, the view a step's samples
// are keyed by, that a head step on cached features is the step computeGradients takes on the images,
// and, end to end, that training with the cache gives the same weights as without it.
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import t from 'tap';
import { selectBackend } from '../../shared/backend/select.js';
import { tf } from '../../shared/backend/tf.js';
import { initModel } from '../../shared/model/weights.js';
import { Replica, type Batch } from '../../shared/train/replica.js';
import type { JobConfig } from '../../shared/protocol/messages.js';
import { ImageCache } from '../../worker/batch-loader.js';
import {
  exchangeSize,
  FeatureCache,
  featureKey,
  StepFeatureCache,
  stepLoadOptions,
  viewPlan,
} from '../../worker/feature-cache.js';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

t.test('FeatureCache: bounded, least recently used evicted, rows copied in', async (t) => {
  const c = new FeatureCache(4, 3 * 4 * 4); // room for 3 rows
  t.equal(c.capacity, 3);
  const row = (v: number) => Float32Array.from([v, v + 1, v + 2, v + 3]);
  const src = row(10);
  c.put('a', src);
  src.fill(0);
  t.same([...c.get('a')!], [10, 11, 12, 13], 'put copies the row');
  c.put('b', row(20));
  c.put('c', row(30));
  t.ok(c.get('a'), 'a is now the most recently used');
  c.put('d', row(40));
  t.equal(c.size, 3, 'never more than capacity');
  t.notOk(c.has('b'), 'the least recently used entry (b) was evicted');
  t.ok(c.has('a') && c.has('c') && c.has('d'));
  t.same([...c.get('d')!], [40, 41, 42, 43], 'the evicted slot holds the new row');
  c.put('c', row(50));
  t.same([...c.get('c')!], [50, 51, 52, 53], 'put on an existing key replaces the row');
  t.equal(c.stats().evictions, 1);
  t.equal(c.get('zz'), undefined);
  t.ok(c.bytes <= 256 * 4 * 4, 'storage is allocated by page, not for the whole bound');
  t.throws(() => new FeatureCache(2048, 100), /hold no/);
});

t.test("the exchange buffer carries each rank's new rows, keyed by hash and index, to every rank", async (t) => {
  const config: JobConfig = {
    jobId: 'j',
    flavour: 'mindspore',
    width: 4,
    numClasses: 2,
    classes: ['a', 'b'],
    imageSize: 32,
    freeze: 'backbone',
    bn: 'frozen',
    lr: 0.1,
    momentum: 0.9,
    seed: 0,
    globalBatch: 5,
    chunkElems: 1024,
    augment: 'none',
    cacheFeatures: true,
  };
  const images = new ImageCache();
  const a = new StepFeatureCache({ ...config }, images, 3);
  const b = new StepFeatureCache({ ...config }, images, 3);
  const hash = (c: string) => c.repeat(64);
  const sa = [
    { h: hash('a'), l: 0, i: 0 },
    { h: hash('b'), l: 1, i: 1 },
    { h: 'c'.repeat(32), l: 0, i: 2 },
  ];
  const sb = [
    { h: hash('d'), l: 1, i: 3 },
    { h: 'e'.repeat(40), l: 0, i: 16777215 },
  ];
  const fa = {
    features: Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9]),
    labels: Int32Array.from([0, 1, 0]),
    cached: 1,
    computed: 2,
    computedAt: [0, 2],
  };
  const fb = {
    features: Float32Array.from([-1, -2, -3, 0.5, 1e-30, 3e38]),
    labels: Int32Array.from([1, 0]),
    cached: 0,
    computed: 2,
    computedAt: [0, 1],
  };
  const ea = Float32Array.from(a.packExchange(0, 2, sa, fa));
  const eb = b.packExchange(1, 2, sb, fb);
  t.equal(ea.length, exchangeSize(3, 5, 2));
  for (let i = 0; i < ea.length; i++) eb[i] = eb[i]! + ea[i]!; // what the ring's SUM does
  t.equal(a.unpackExchange(eb, 0), 4, 'all four new rows stored on rank 0');
  const get = (c: StepFeatureCache, s: { h: string }) => [
    ...(c.cache.get(featureKey({ ...s, l: 0, i: 0 }, viewPlan(config, 0))) ?? []),
  ];
  t.same(get(a, sa[2]!), [7, 8, 9]);
  t.same(get(a, sb[0]!), [-1, -2, -3]);
  t.same(
    get(a, sb[1]!),
    [Math.fround(0.5), Math.fround(1e-30), Math.fround(3e38)],
    'values pass the sum exactly; short hashes round-trip',
  );
  t.notOk(a.cache.has(sa[1]!.h), 'a cached (not computed) row is not sent again');
});

t.test('views: --augment none is one eval view per content; --views K repeats every K epochs', async (t) => {
  const s = { h: 'ab'.repeat(16), l: 1, i: 7 };
  const none = viewPlan({ augment: 'none' }, 5);
  t.same(none, { train: false, drawEpoch: 5, view: 'eval' });
  t.equal(featureKey(s, none), s.h, 'eval view: keyed by content alone');
  const k3 = (e: number) => featureKey(s, viewPlan({ augment: 'train', views: 3 }, e));
  t.equal(k3(1), k3(4), 'epoch 1 and 4 share a view with K=3');
  t.not(k3(1), k3(2));
  t.not(
    k3(1),
    featureKey({ ...s, i: 8 }, viewPlan({ augment: 'train', views: 3 }, 1)),
    'the draw depends on the sample index, so the key does',
  );
  t.same(stepLoadOptions({ augment: 'train', views: 3, imageSize: 32, seed: 2 }, 7), {
    size: 32,
    seed: 2,
    epoch: 1,
    train: true,
  });
  t.same(
    stepLoadOptions({ imageSize: 32, seed: 2 }, 7),
    { size: 32, seed: 2, epoch: 7, train: true },
    'defaults: a new draw every epoch',
  );
});

function batch(count: number, size: number, seed: number): Batch {
  const images = new Float32Array(count * size * size * 3);
  let s = seed >>> 0;
  for (let i = 0; i < images.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    images[i] = s / 2147483648 - 1;
  }
  return { images, labels: Int32Array.from({ length: count }, (_, i) => (i + seed) % 2), count, size };
}

t.test('Replica.computeHeadGradients on computeFeatures = computeGradients on the images', async (t) => {
  await selectBackend('wasm');
  const start = tf.memory().numTensors;
  const state = initModel({ flavour: 'mindspore', width: 4, numClasses: 2 }, 4);
  const replica = new Replica(state, { lr: 0.01, momentum: 0.9, freeze: 'backbone', bn: 'frozen' });
  const base = tf.memory().numTensors;
  const b = batch(5, 32, 3);
  await replica.computeGradients(b, 8);
  const want = Float32Array.from(replica.buffer);
  // features computed in two parts (as a cache fills them), then one head step on all of them
  const f1 = await replica.computeFeatures({ ...b, count: 2 });
  const rest = { ...b, images: b.images.subarray(2 * 32 * 32 * 3), labels: b.labels.subarray(2), count: 3 };
  const f2 = await replica.computeFeatures(rest);
  t.equal(f1.length, 2 * replica.featureDim);
  const features = new Float32Array(5 * replica.featureDim);
  features.set(f1);
  features.set(f2, f1.length);
  await replica.computeHeadGradients(features, b.labels, 5, 8);
  let worst = 0;
  for (let i = 0; i < want.length; i++)
    worst = Math.max(worst, Math.abs(want[i]! - replica.buffer[i]!) / Math.max(1e-6, Math.abs(want[i]!)));
  t.ok(worst <= 1e-5, `same gradients, loss and metrics (max rel diff ${worst.toExponential(2)})`);
  t.equal(replica.buffer[replica.buffer.length - 2], 5, 'samples');
  t.equal(tf.memory().numTensors, base, 'no tensor left behind');
  const full = new Replica(state, { lr: 0.01, momentum: 0.9, freeze: 'none', bn: 'frozen' });
  await t.rejects(full.computeFeatures(b), /--freeze backbone and --bn frozen/);
  full.dispose();
  replica.dispose();
  t.equal(tf.memory().numTensors, start);
});

t.test('training with --cache-features gives the weights training without it gives', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const common = ['--freeze', 'backbone', '--bn', 'frozen', '--epochs', '3'];
  for (const view of [
    ['--augment', 'none'],
    ['--views', '2'],
  ]) {
    const runs: Map<string, Float32Array>[] = [];
    let cachedSteps = 0;
    let repeatMisses = 0; // samples computed again in an epoch whose view was seen before (shared over the ring: none)
    let evalMisses = 0; // validation samples whose features were not cached after the first evaluation
    let evalCached = 0;
    const accuracies: number[][] = [];
    const firstRepeat = view.includes('none') ? 1 : 2;
    for (const [n, cache] of [
      [1, false],
      [2, true],
    ] as const) {
      const out = join(job.dir, `out-${view.join('')}-${n}-${String(cache)}`);
      const r = await runCli(
        [
          'train',
          '--workers',
          String(n),
          ...tinyTrainArgs(job, out, [...common, ...view, ...(cache ? ['--cache-features'] : [])]),
        ],
        120_000,
        { WOLFPACK_LOG_LEVEL: 'debug' },
      );
      t.equal(
        r.code,
        0,
        `${view.join(' ')} ${cache ? 'with' : 'without'} the cache exits 0` +
          `${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`,
      );
      if (cache) {
        for (const line of r.stderr.split('\n')) {
          if (!line.includes('"step timings"')) continue;
          const rec = JSON.parse(line) as { cached: number; samples: number; epoch: number };
          cachedSteps += rec.cached > 0 ? 1 : 0;
          if (rec.epoch >= firstRepeat) repeatMisses += rec.samples - rec.cached;
        }
        for (const line of r.stderr.split('\n')) {
          if (!line.includes('"eval timings"')) continue;
          const rec = JSON.parse(line) as { cached: number; samples: number; epoch: number };
          if (rec.epoch >= 1) {
            evalMisses += rec.samples - rec.cached;
            evalCached += rec.cached;
          }
        }
      }
      runs.push(await readCkptFloats(join(out, 'last.ckpt')));
      accuracies.push(
        readFileSync(join(out, 'metrics.jsonl'), 'utf8')
          .trim()
          .split('\n')
          .map((l) => (JSON.parse(l) as { val_accuracy: number }).val_accuracy),
      );
    }
    t.ok(cachedSteps > 0, `${view.join(' ')}: later epochs ran on cached features (${cachedSteps} worker-steps)`);
    t.equal(
      repeatMisses,
      0,
      `${view.join(' ')}: from epoch ${firstRepeat + 1} on, ` +
        "every sample's features were cached on whichever worker got it",
    );
    const worst = worstTensorRelDiff(runs[1]!, runs[0]!);
    t.ok(
      worst <= 1e-5,
      `${view.join(' ')}: same weights with and without the cache (max rel diff ${worst.toExponential(2)})`,
    );
    t.same(accuracies[1], accuracies[0], `${view.join(' ')}: same validation accuracy every epoch with the cache`);
    t.ok(
      evalCached > 0 && evalMisses === 0,
      `${view.join(' ')}: from the second evaluation on, validation ran on cached features ` +
        `(${evalCached} samples, ${evalMisses} misses)`,
    );
  }
  // Only the head (and its Momentum) travels to the coordinator at an epoch end with a frozen backbone and
  // BatchNorm; the checkpoint still holds the whole model: the backbone exactly as it started.
  const start = await readCkptFloats(job.weights);
  const last = await readCkptFloats(join(job.dir, 'out---augmentnone-1-false', 'last.ckpt'));
  let backbone = 0;
  let changed = 0;
  for (const [name, w] of last) {
    if (name.startsWith('moments.') || name.startsWith('end_point')) continue;
    const s0 = start.get(name);
    if (s0 === undefined) continue;
    backbone++;
    if (s0.length !== w.length || s0.some((v, i) => v !== w[i])) changed++;
  }
  t.ok(backbone > 100, `${backbone} backbone tensors compared`);
  t.equal(changed, 0, "the checkpoint's backbone is the starting one, bit for bit");
  t.ok(
    [...last].some(([n, w]) => n === 'moments.end_point.weight' && w.some((v) => v !== 0)),
    "the head's Momentum was fetched",
  );
});

t.test('--cache-features is refused where features change or never repeat', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out-refused');
  const a = await runCli(
    ['train', '--workers', '1', ...tinyTrainArgs(job, out, ['--cache-features', '--augment', 'none'])],
    60_000,
  );
  t.not(a.code, 0);
  t.match(a.stderr, /--cache-features needs --freeze backbone and --bn frozen/);
  const b = await runCli(
    [
      'train',
      '--workers',
      '1',
      ...tinyTrainArgs(job, out, ['--cache-features', '--freeze', 'backbone', '--bn', 'frozen']),
    ],
    60_000,
  );
  t.not(b.code, 0);
  t.match(b.stderr, /needs --views K .* or --augment none/);
});
