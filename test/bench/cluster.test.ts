// The simulated cluster benchmark (`wolfpack bench cluster`): the modelled step's timeline, the figure
// on paper, the overlap schedule's buckets, the options that are not implemented yet; then, where network
// namespaces can be made (root, iproute2), a real N=2 run on shaped links with a tiny layout whose JSON is
// checked against the ring's exact byte count, the same with --schedule none,overlap (same bytes, same
// bits), and a run interrupted with SIGINT that must leave no namespace and no rank behind.
import t from 'tap';
import { efficiencyOnPaper, overlapOnPaper, resnet50GradientSizes } from '../../bench/cluster.js';
import {
  bucketReadyAfter,
  checkScheduleOptions,
  createSchedule,
  gradBuckets,
  releaseOrder,
  stepTimeline,
} from '../../bench/cluster-step.js';
import { listNamespaces, netlabUnavailable } from '../../bench/netlab.js';
import { distPath } from '../../shared/paths.js';
import { ensureBuilt } from '../helpers/build.js';
import { exited, Output, runCli, startCli } from '../helpers/processes.js';

t.test("the layout is ResNet-50's gradients, released last layer first", async (t) => {
  const sizes = resnet50GradientSizes();
  t.equal(sizes.length, 161);
  t.equal(
    sizes.reduce((a, b) => a + b, 0),
    25_557_032,
  );
  t.same(sizes.slice(-2), [2048 * 1000, 1000], 'the head (fc weight and bias) is last in the buffer');
  const layers = releaseOrder([3, 5, 2]);
  t.same(layers, [
    { offset: 8, size: 2 },
    { offset: 3, size: 5 },
    { offset: 0, size: 3 },
  ]);
  const tl = stepTimeline(layers, 300);
  t.equal(tl.forwardMs, 100);
  t.same(tl.releaseMs, [100 + 200 * 0.2, 100 + 200 * 0.7, 300], 'each layer at its share of the 2T/3 backward');
  t.ok(resnet50GradientSizes(0.001).every((s) => s >= 1));
});

t.test('on paper: T / (T + 2(N-1)/N * 4L bytes / rate)', async (t) => {
  // 8 ranks, 102.2 MB, 500 Mbit/s: 1.75 * 1.6355 s = 2.862 s of all-reduce after 2.4 s of compute.
  t.ok(
    Math.abs(efficiencyOnPaper(8, 25_557_032, 2400, 500) - 2.4 / (2.4 + (1.75 * (25_557_032 * 32)) / 500e6)) < 1e-12,
  );
  t.equal(Math.round(efficiencyOnPaper(8, 25_557_032, 2400, 500) * 100), 46);
  t.equal(efficiencyOnPaper(1, 25_557_032, 2400, 500), 1);
});

t.test(
  'overlap: 25 MiB buckets from the end on layer boundaries, each ready once its layers are released',
  async (t) => {
    const sizes = resnet50GradientSizes();
    const buckets = gradBuckets(sizes);
    t.equal(buckets[0]!.end, 25_557_032, 'the first bucket ends the buffer (the head, released first)');
    t.equal(buckets[buckets.length - 1]!.begin, 0);
    t.ok(
      buckets.every((b) => b.end - b.begin <= (25 * 1024 * 1024) / 4),
      'none over 25 MiB',
    );
    t.ok(buckets.length >= 4 && buckets.length <= 6, `${buckets.length} buckets`);
    const layers = releaseOrder([3, 5, 2]);
    const small = gradBuckets([3, 5, 2], (6 * 4) / (1024 * 1024));
    t.same(small, [
      { begin: 8, end: 10 },
      { begin: 3, end: 8 },
      { begin: 0, end: 3 },
    ]);
    t.same(bucketReadyAfter(small, layers), [0, 1, 2]);
    // The schedule releases bucket k only after ready(its last layer), and reduces the whole buffer.
    const buf = new Float32Array(10);
    const seen: number[] = [];
    const s = createSchedule(
      { schedule: 'overlap', wire: 'fp32', bucketMb: (6 * 4) / (1024 * 1024) },
      buf,
      layers,
      async () => {
        throw new Error('unused');
      },
      async (bs, ready) => {
        for (let k = 0; k < bs.length; k++) {
          await ready(k);
          seen.push(k);
        }
        return { bytesSent: 7, bytesReceived: 7, messagesSent: 1, messagesReceived: 1 };
      },
    );
    s.begin();
    await new Promise((r) => setImmediate(r));
    t.same(seen, [], 'nothing before the first layer is released');
    s.ready(0);
    await new Promise((r) => setImmediate(r));
    t.same(seen, [0]);
    s.ready(1);
    s.ready(2);
    t.equal((await s.finish()).bytesSent, 7);
    t.same(seen, [0, 1, 2]);
    // On paper at the point (N=8, 500 Mbit/s, T=2.4 s): the 66% hides the whole 2T/3 backward,
    // T / (T + comm - 2T/3); bucket by bucket the ring can only start once the first 25 MiB bucket is released
    // (a quarter of the backward), so 59% (none: 46%).
    const comm = (1.75 * (25_557_032 * 32)) / 500e6;
    t.equal(Math.round((2.4 / (2.4 + comm - 1.6)) * 100), 66);
    t.equal(Math.round(overlapOnPaper(8, sizes, 2400, 500) * 100), 59);
    t.ok(overlapOnPaper(8, sizes, 2400, 500) > efficiencyOnPaper(8, 25_557_032, 2400, 500));
  },
);

t.test('schedule options the ring cannot run are refused, saying why', async (t) => {
  t.doesNotThrow(() => checkScheduleOptions({ schedule: 'none', wire: 'fp32' }));
  t.doesNotThrow(() => checkScheduleOptions({ schedule: 'overlap', wire: 'fp32', bucketMb: 25 }));
  t.doesNotThrow(() => checkScheduleOptions({ schedule: 'none', wire: 'bf16' }));
  t.doesNotThrow(() => checkScheduleOptions({ schedule: 'overlap', wire: 'fp16' }));
  t.throws(
    () => checkScheduleOptions({ schedule: 'none', wire: 'fp8' as 'fp32' }),
    /--wire: expected one of fp32, bf16, fp16, got 'fp8'/,
  );
  t.throws(
    () => checkScheduleOptions({ schedule: 'none', wire: 'fp32', bucketMb: 25 }),
    /--bucket-mb applies to --schedule overlap/,
  );
  ensureBuilt(distPath('bench/cluster-rank.js'));
  const r = await runCli(['bench', 'cluster', '--workers', '2', '--schedule', 'none', '--bucket-mb', '25'], 30_000);
  t.equal(r.code, 2, 'a usage error');
  t.match(r.stderr, /--bucket-mb applies to --schedule overlap only/);
  const w = await runCli(['bench', 'cluster', '--workers', '2', '--schedule', 'none', '--wire', 'fp8'], 30_000);
  t.equal(w.code, 2, 'a usage error');
  t.match(w.stderr, /--wire: expected one of fp32, bf16, fp16, got 'fp8'/);
});

const why = netlabUnavailable();

t.test('N=2 on shaped links: the JSON figures are sane and the namespaces are gone', { skip: why }, async (t) => {
  ensureBuilt(distPath('bench/cluster-rank.js'));
  const before = new Set(listNamespaces());
  const computeMs = 150;
  const r = await runCli(
    [
      'bench',
      'cluster',
      '--workers',
      '2',
      '--layout-scale',
      '0.001',
      '--compute-ms',
      String(computeMs),
      '--steps',
      '2',
      '--warmup',
      '1',
      '--link-mbit',
      '200',
      '--json',
    ],
    50_000,
  );
  t.equal(r.code, 0, r.stderr.slice(-1000));
  const lines = r.stdout.trim().split('\n');
  const j = JSON.parse(lines[lines.length - 1]!) as {
    workers: number;
    elements: number;
    compute: string;
    efficiency: number;
    step_s: number;
    exposed_allreduce_s: number;
    bytes_per_rank: number[];
    wire_tx_bytes_per_rank: number[];
    verified: boolean;
    link_mbit: number;
  };
  t.equal(j.workers, 2);
  t.equal(j.compute, 'modelled', 'the output says compute is modelled');
  t.ok(j.verified, 'the first all-reduce was exact and the ranks ended identical');
  t.equal(
    j.elements,
    resnet50GradientSizes(0.001).reduce((a, b) => a + b, 0),
  );
  // The ring's exact count (shared/allreduce/ring.ts), computed here from the segment lengths.
  const N = 2;
  const L = j.elements;
  const len = (s: number): number => Math.floor(L / N) + (s < L % N ? 1 : 0);
  for (let rank = 0; rank < N; rank++) {
    t.equal(j.bytes_per_rank[rank], 4 * (2 * L - len((rank + 1) % N) - len((rank + 2) % N)), `rank ${rank}'s bytes`);
    t.ok(
      j.wire_tx_bytes_per_rank[rank]! > j.bytes_per_rank[rank]!,
      `rank ${rank}'s link carried the payload plus headers`,
    );
  }
  t.ok(j.efficiency > 0 && j.efficiency <= 1, `efficiency ${j.efficiency} in (0, 1]`);
  t.ok(Math.abs(j.efficiency - computeMs / 1000 / j.step_s) < 1e-9, 'efficiency = T / step time');
  t.ok(j.exposed_allreduce_s > 0 && j.exposed_allreduce_s < j.step_s, 'exposed all-reduce time within the step');
  t.same(
    listNamespaces().filter((n) => !before.has(n)),
    [],
    'no namespace left',
  );
});

t.test(
  'N=2 --schedule none,overlap: the same bytes per rank and the same bits, bucket by bucket',
  { skip: why },
  async (t) => {
    ensureBuilt(distPath('bench/cluster-rank.js'));
    const before = new Set(listNamespaces());
    const r = await runCli(
      [
        'bench',
        'cluster',
        '--workers',
        '2',
        '--layout-scale',
        '0.001',
        '--compute-ms',
        '150',
        '--steps',
        '2',
        '--warmup',
        '1',
        '--link-mbit',
        '200',
        '--schedule',
        'none,overlap',
        '--bucket-mb',
        '0.01',
        '--json',
      ],
      90_000,
    );
    t.equal(r.code, 0, r.stderr.slice(-1000));
    type Run = {
      schedule: string;
      workers: number;
      buckets: number | null;
      bucket_mb: number | null;
      bytes_per_rank: number[];
      verified: boolean;
      final_sha256: string;
      mixed_sha256: string;
      same_bits_as_none?: boolean;
      exposed_allreduce_s: number;
      step_s: number;
    };
    const runs = r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Run);
    t.same(
      runs.map((x) => x.schedule),
      ['none', 'overlap'],
      'both schedules, at the same N',
    );
    const [none, overlap] = runs;
    if (!none || !overlap) {
      t.fail(`expected a none and an overlap run, got ${runs.length}`);
      return;
    }
    t.equal(none.buckets, null);
    t.equal(overlap.bucket_mb, 0.01);
    t.ok((overlap.buckets ?? 0) > 3, `${overlap.buckets} buckets`);
    t.ok(none.verified && overlap.verified, 'both verified (first all-reduce exact, ranks identical)');
    t.same(overlap.bytes_per_rank, none.bytes_per_rank, 'buckets send exactly the bytes of the whole-buffer ring');
    t.equal(overlap.final_sha256, none.final_sha256, 'the same final buffer');
    t.equal(
      overlap.mixed_sha256,
      none.mixed_sha256,
      'mixed-magnitude values: the same bits as one whole-buffer all-reduce',
    );
    t.equal(overlap.same_bits_as_none, true);
    t.ok(overlap.exposed_allreduce_s >= 0 && overlap.exposed_allreduce_s < overlap.step_s);
    t.same(
      listNamespaces().filter((n) => !before.has(n)),
      [],
      'no namespace left',
    );
  },
);

t.test(
  'N=2 --wire bf16, 1 KiB messages: half the bytes, verified, and buckets give the same bits as the whole buffer',
  { skip: why },
  async (t) => {
    ensureBuilt(distPath('bench/cluster-rank.js'));
    const before = new Set(listNamespaces());
    const r = await runCli(
      [
        'bench',
        'cluster',
        '--workers',
        '2',
        '--layout-scale',
        '0.001',
        '--compute-ms',
        '150',
        '--steps',
        '2',
        '--warmup',
        '1',
        '--link-mbit',
        '200',
        '--schedule',
        'none,overlap',
        '--bucket-mb',
        '0.01',
        '--inflight',
        '2',
        // 256 values a message: about a hundred per all-reduce, through the send pool
        '--chunk-kib',
        '1',
        '--wire',
        'bf16',
        '--json',
      ],
      90_000,
    );
    t.equal(r.code, 0, r.stderr.slice(-1000));
    type Run = {
      schedule: string;
      elements: number;
      wire: string;
      chunk_kib: number;
      bytes_per_rank: number[];
      verified: boolean;
      mixed_sha256: string;
    };
    const runs = r.stdout
      .trim()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Run);
    t.same(
      runs.map((x) => [x.wire, x.chunk_kib]),
      [
        ['bf16', 1],
        ['bf16', 1],
      ],
    );
    const [none, overlap] = runs;
    if (!none || !overlap) {
      t.fail(`expected a none and an overlap run, got ${runs.length}`);
      return;
    }
    t.ok(none.verified && overlap.verified, 'both verified (first all-reduce exact, ranks identical)');
    const L = none.elements;
    const len = (s: number): number => Math.floor(L / 2) + (s < L % 2 ? 1 : 0);
    for (let rank = 0; rank < 2; rank++) {
      const fp32 = 4 * (2 * L - len((rank + 1) % 2) - len((rank + 2) % 2));
      // 16 bits a value, an odd count padded to a whole float32: at most 2 bytes more a message, and a rank sends
      // two segments' worth of 256-value messages
      const messages = 2 * Math.ceil(len(0) / 256);
      t.ok(
        none.bytes_per_rank[rank]! >= fp32 / 2 && none.bytes_per_rank[rank]! <= fp32 / 2 + 2 * messages,
        `rank ${rank}: ${none.bytes_per_rank[rank]} bytes, half of fp32's ${fp32}`,
      );
    }
    t.equal(overlap.mixed_sha256, none.mixed_sha256, 'bucket by bucket, the same bits as one whole-buffer all-reduce');
    t.same(
      listNamespaces().filter((n) => !before.has(n)),
      [],
      'no namespace left',
    );
  },
);

t.test('SIGINT in the middle of a run removes every namespace and rank it made', { skip: why }, async (t) => {
  ensureBuilt(distPath('bench/cluster-rank.js'));
  const p = startCli([
    'bench',
    'cluster',
    '--workers',
    '2',
    '--layout-scale',
    '0.01',
    '--compute-ms',
    '200',
    '--steps',
    '1000',
    '--link-mbit',
    '100',
  ]);
  const out = new Output(p);
  const pids = (await out.waitFor(/ring formed \(rank pids ([\d, ]+)\)/, 40_000))[1]!.split(', ').map(Number);
  t.equal(pids.length, 2);
  t.equal(listNamespaces(p.pid).length, 3, 'two hosts and the switch while it runs');
  p.kill('SIGINT');
  await exited(p, 20_000);
  t.same(listNamespaces(p.pid), [], 'no namespace left');
  for (const pid of pids) {
    t.throws(() => process.kill(pid, 0), { code: 'ESRCH' }, `rank process ${pid} is gone`);
  }
});
