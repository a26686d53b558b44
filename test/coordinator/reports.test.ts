// steps.jsonl and the TensorBoard scalars (coordinator/reports.ts), fed the job's events as runJob
// makes them (stepEvent from the workers' stepDone replies), with a fixed clock. The event file is read
// back by TensorBoard's own protos (test/helpers/tensorboard-reader.ts).
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { EpochMetrics } from '../../coordinator/checkpoints.js';
import { stepEvent } from '../../coordinator/dashboard/events.js';
import { reportEvents } from '../../coordinator/reports.js';
import { silentLogger } from '../../shared/log.js';
import type { MessageOf } from '../../shared/protocol/messages.js';
import { eventFiles, eventReader, readerUnavailable } from '../helpers/tensorboard-reader.js';

/**
 * Rank `rank`'s reply to a step of a global batch of `samples` with `correct` right: the counts are all-reduced,
 * so every rank reports the global ones.
 */
function reply(
  rank: number,
  o: { samples: number; correct: number; loss: number; skipped?: boolean; ms: [number, number, number, number] },
): MessageOf<'stepDone'> {
  const [data, compute, allreduce, update] = o.ms;
  return {
    type: 'stepDone',
    rank,
    generation: 0,
    step: 0,
    loss: o.loss,
    correct: o.correct,
    samples: o.samples,
    skipped: o.skipped ?? false,
    nonFinite: o.skipped ?? false,
    timings: { data, compute, allreduce, update },
  };
}

t.test("stepEvent: global counts from any reply, each rank's share of the batch, the all-reduce share", async (t) => {
  const at = { epoch: 1, step: 2, steps: 4, global_step: 2 };
  // 7 images over 2 ranks: shares 4 and 3; rank 1 is the slowest (400 ms)
  const s = stepEvent(at, [
    reply(1, { samples: 7, correct: 5, loss: 0.5, ms: [10, 250, 100, 40] }),
    reply(0, { samples: 7, correct: 5, loss: 0.5, ms: [10, 200, 60, 30] }),
  ]);
  t.equal(s.accuracy, 5 / 7);
  t.equal(s.images_per_s, 7 / 0.4, "the global batch over the slowest rank's step");
  t.equal(s.allreduce_share, (100 + 60) / (400 + 300));
  t.same(s.ranks, [
    { rank: 0, samples: 4, step_ms: 300, allreduce_ms: 60, images_per_s: 4 / 0.3 },
    { rank: 1, samples: 3, step_ms: 400, allreduce_ms: 100, images_per_s: 3 / 0.4 },
  ]);
  const skipped = stepEvent(at, [reply(0, { samples: 7, correct: 0, loss: 9, skipped: true, ms: [1, 1, 1, 1] })]);
  t.ok(Number.isNaN(skipped.loss) && Number.isNaN(skipped.accuracy), 'a skipped step has no loss or accuracy');
});

const metrics = (epoch: number, o: Partial<EpochMetrics> = {}): EpochMetrics => ({
  epoch,
  train_loss: 0.6,
  last_loss: 0.55,
  val_accuracy: 0.75,
  images_per_s: 40,
  step_time_s: 0.15,
  allreduce_share: 0.2,
  skipped_steps: 1,
  epoch_time_s: 0.6,
  workers: 2,
  ...o,
});

t.test('steps.jsonl has a line per step; the event file has the step and epoch scalars', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-reports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  let clock = 1_700_000_000_000;
  const out = join(dir, 'out');
  const tb = join(dir, 'tb');
  const sink = reportEvents({ out, tensorboard: tb, logger: silentLogger(), now: () => clock });
  const ms: [number, number, number, number] = [10, 70, 15, 5];
  const steps = [
    stepEvent(
      { epoch: 1, step: 1, steps: 3, global_step: 1 },
      [0, 1].map((r) => reply(r, { samples: 6, correct: 3, loss: 0.7, ms })),
    ),
    stepEvent(
      { epoch: 1, step: 2, steps: 3, global_step: 2 },
      [0, 1].map((r) => reply(r, { samples: 6, correct: 0, loss: 1, skipped: true, ms })),
    ),
    stepEvent(
      { epoch: 1, step: 3, steps: 3, global_step: 3 },
      [0, 1].map((r) => reply(r, { samples: 6, correct: 5, loss: 0.5, ms })),
    ),
    stepEvent(
      { epoch: 2, step: 1, steps: 3, global_step: 4 },
      [0].map((r) => reply(r, { samples: 6, correct: 6, loss: 0.25, ms })),
    ),
  ];
  const times: number[] = [];
  for (const [i, s] of steps.entries()) {
    clock += 1000;
    times.push(clock / 1000);
    t.equal(sink.step!(s), undefined, 'never holds the run');
    if (i === 2) sink.epoch!(metrics(1));
  }
  const lines = readFileSync(join(out, 'steps.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l));
  t.same(lines, [
    {
      epoch: 1,
      step: 1,
      global_step: 1,
      loss: 0.7,
      accuracy: 0.5,
      skipped: false,
      images_per_s: 60,
      allreduce_share: 0.15,
      workers: 2,
      wall_time: times[0],
    },
    {
      epoch: 1,
      step: 2,
      global_step: 2,
      loss: null,
      accuracy: null,
      skipped: true,
      images_per_s: 60,
      allreduce_share: 0.15,
      workers: 2,
      wall_time: times[1],
    },
    {
      epoch: 1,
      step: 3,
      global_step: 3,
      loss: 0.5,
      accuracy: 5 / 6,
      skipped: false,
      images_per_s: 60,
      allreduce_share: 0.15,
      workers: 2,
      wall_time: times[2],
    },
    {
      epoch: 2,
      step: 1,
      global_step: 4,
      loss: 0.25,
      accuracy: 1,
      skipped: false,
      images_per_s: 60,
      allreduce_share: 0.15,
      workers: 1,
      wall_time: times[3],
    },
  ]);

  await t.test(
    "the event file, read back by TensorBoard's protos",
    { skip: readerUnavailable() ?? false },
    async (t) => {
      const reader = eventReader();
      t.teardown(() => reader.dispose());
      const files = eventFiles(tb);
      t.equal(files.length, 1, 'one event file');
      const r = reader.read(files[0]!);
      if (!r.ok) return t.fail(r.error);
      const f = Math.fround;
      const stepValues = (loss: number | null, accuracy: number | null, workers: number) => [
        ...(loss === null ? [] : [{ tag: 'step/loss', kind: 'simple_value', value: f(loss) }]),
        ...(accuracy === null ? [] : [{ tag: 'step/accuracy', kind: 'simple_value', value: f(accuracy) }]),
        { tag: 'step/images_per_s', kind: 'simple_value', value: 60 },
        { tag: 'step/allreduce_share', kind: 'simple_value', value: f(0.15) },
        { tag: 'step/workers', kind: 'simple_value', value: workers },
      ];
      t.same(
        r.events.map((e) => [e.what, e.step, e.values ?? e.file_version]),
        [
          ['file_version', 0, 'brain.Event:2'],
          ['summary', 1, stepValues(0.7, 0.5, 2)],
          ['summary', 2, stepValues(null, null, 2)],
          ['summary', 3, stepValues(0.5, 5 / 6, 2)],
          [
            'summary',
            1,
            [
              { tag: 'epoch/train_loss', kind: 'simple_value', value: f(0.6) },
              { tag: 'epoch/last_loss', kind: 'simple_value', value: f(0.55) },
              // the two counted steps: (3 + 5) / 12
              { tag: 'epoch/train_accuracy', kind: 'simple_value', value: f(8 / 12) },
              { tag: 'epoch/val_accuracy', kind: 'simple_value', value: f(0.75) },
              { tag: 'epoch/images_per_s', kind: 'simple_value', value: 40 },
              { tag: 'epoch/allreduce_share', kind: 'simple_value', value: f(0.2) },
              { tag: 'epoch/workers', kind: 'simple_value', value: 2 },
            ],
          ],
          ['summary', 4, stepValues(0.25, 1, 1)],
        ],
      );
      t.same(
        r.events.filter((e) => e.what === 'summary' && e.values![0]!.tag.startsWith('step/')).map((e) => e.wall_time),
        times,
        "a step's wall_time is its line's",
      );
    },
  );
});

t.test('a folder that cannot hold the event file fails before the run', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-reports-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'a-file');
  writeFileSync(file, '');
  t.throws(() => reportEvents({ out: join(dir, 'out'), tensorboard: join(file, 'tb'), logger: silentLogger() }), {
    code: 'E_IO',
    message: /cannot write TensorBoard events in/,
  });
});
