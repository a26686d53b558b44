// What a real run leaves beside its checkpoints: `wolfpack train --tensorboard DIR` of the tiny job
// writes steps.jsonl (a line per step) in --out and an event file in DIR that TensorBoard's own protos
// parse (test/helpers/tensorboard-reader.ts), whose scalars are the run's: each step's loss is its
// steps.jsonl loss, each epoch's validation accuracy and loss are its metrics.jsonl figures.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/processes.js';
import { eventFiles, eventReader, readerUnavailable, type ReadEvent } from '../helpers/tensorboard-reader.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

const readJsonl = (path: string) =>
  readFileSync(path, 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as Record<string, unknown>);

t.test("train --tensorboard: steps.jsonl and an event file with the run's scalars", async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'out');
  const tb = join(job.dir, 'tb');
  const r = await runCli(
    ['train', '--workers', '2', ...tinyTrainArgs(job, out, ['--epochs', '2', '--tensorboard', tb])],
    180_000,
  );
  t.equal(r.code, 0, `exits 0${r.code ? `: ${r.stderr.slice(-2000)}` : ''}`);

  // 24 training images, batch 6: 4 steps an epoch, 2 epochs
  const steps = readJsonl(join(out, 'steps.jsonl'));
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
    'one line per step',
  );
  t.ok(
    steps.every(
      (s) =>
        s.workers === 2 &&
        typeof s.loss === 'number' &&
        typeof s.accuracy === 'number' &&
        (s.images_per_s as number) > 0 &&
        (s.allreduce_share as number) > 0 &&
        (s.allreduce_share as number) < 1 &&
        typeof s.wall_time === 'number',
    ),
    'loss, accuracy, images/s, all-reduce share, workers, time on each',
  );
  const metrics = readJsonl(join(out, 'metrics.jsonl'));
  t.equal(metrics.length, 2, 'metrics.jsonl keeps its line per epoch');

  await t.test(
    "the event file, read back by TensorBoard's protos",
    { skip: readerUnavailable() ?? false },
    async (t) => {
      const reader = eventReader();
      t.teardown(() => reader.dispose());
      const files = eventFiles(tb);
      t.equal(files.length, 1, 'one event file in --tensorboard DIR');
      const read = reader.read(files[0]!);
      if (!read.ok) return t.fail(read.error);
      const events = read.events;
      t.equal(events[0]!.file_version, 'brain.Event:2', 'the first event is the file version');
      const scalar = (e: ReadEvent, tag: string) => e.values?.find((v) => v.tag === tag)?.value;
      const stepEvents = events.filter((e) => scalar(e, 'step/images_per_s') !== undefined);
      t.same(
        stepEvents.map((e) => e.step),
        steps.map((s) => s.global_step),
        'a step event at each global step',
      );
      t.same(
        stepEvents.map((e) => scalar(e, 'step/loss')),
        steps.map((s) => Math.fround(s.loss as number)),
        'the step losses of steps.jsonl',
      );
      t.same(
        stepEvents.map((e) => scalar(e, 'step/workers')),
        steps.map(() => 2),
        'two workers at each step',
      );
      const epochEvents = events.filter((e) => scalar(e, 'epoch/val_accuracy') !== undefined);
      t.same(
        epochEvents.map((e) => e.step),
        [1, 2],
        'an epoch event at each epoch',
      );
      t.same(
        epochEvents.map((e) => scalar(e, 'epoch/val_accuracy')),
        metrics.map((m) => Math.fround(m.val_accuracy as number)),
        'validation accuracy of metrics.jsonl',
      );
      t.same(
        epochEvents.map((e) => scalar(e, 'epoch/train_loss')),
        metrics.map((m) => Math.fround(m.train_loss as number)),
        'train loss of metrics.jsonl',
      );
      t.ok(
        epochEvents.every((e) => typeof scalar(e, 'epoch/train_accuracy') === 'number'),
        'a train accuracy for each epoch',
      );
    },
  );
});
