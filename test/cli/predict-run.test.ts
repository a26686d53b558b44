// `wolfpack predict` knows the run it came from: class names and image size come from the run's
// train-state.json beside --weights; it takes folders; and --eval on the validation split scores the
// checkpoint exactly as the coordinator's epoch-end evaluation did (same transform, same model), so its
// accuracy must equal metrics.jsonl's val_accuracy of the epoch best.ckpt was saved at.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

t.test("predict --eval agrees with the run's own validation; names and size come from the run", async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const out = join(job.dir, 'run');
  const r = await runCli(
    ['train', '--workers', '2', ...tinyTrainArgs(job, out, ['--epochs', '2', '--freeze', 'backbone'])],
    300_000,
  );
  t.equal(r.code, 0, `the run finishes${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`);
  const epochs = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { epoch: number; val_accuracy: number });
  const best = Math.max(...epochs.map((e) => e.val_accuracy));

  const ev = await runCli(
    ['predict', '--weights', join(out, 'best.ckpt'), '--eval', join(job.data, 'val'), '--backend', 'wasm', '--json'],
    120_000,
  );
  t.equal(ev.code, 0, `predict --eval${ev.code ? `: ${ev.stderr.slice(-1500)}` : ''}`);
  const report = JSON.parse(ev.stdout) as {
    accuracy: number;
    correct: number;
    total: number;
    classes: string[];
    confusion: number[][];
  };
  t.same(report.classes, ['dogs', 'wolves'], 'the class names of the run');
  t.equal(report.total, 8, 'every validation image');
  t.equal(
    report.confusion.flat().reduce((a, b) => a + b, 0),
    report.total,
    'the matrix counts every image once',
  );
  t.equal(report.confusion[0]![0]! + report.confusion[1]![1]!, report.correct, 'its diagonal is the correct ones');
  t.equal(report.accuracy, best, `accuracy ${report.accuracy} = the best epoch's val_accuracy in metrics.jsonl`);
  t.match(
    ev.stderr,
    /"imageSize":32,[^\n]*"msg":"class names and image size of the run beside --weights"/,
    "the run's image size (32), not 224",
  );

  const text = await runCli(
    ['predict', '--weights', join(out, 'best.ckpt'), '--eval', join(job.data, 'val'), '--backend', 'wasm'],
    120_000,
  );
  t.match(
    text.stdout,
    /^accuracy: \d\.\d{4} \(\d+\/8\)\n\nconfusion matrix \(rows: true class, columns: predicted\):\n +dogs +wolves\ndogs +\d+ +\d+\nwolves +\d+ +\d+\n$/,
  );

  const folder = await runCli(
    ['predict', '--weights', join(out, 'best.ckpt'), join(job.data, 'val', 'wolves'), '--backend', 'wasm', '--json'],
    120_000,
  );
  t.equal(folder.code, 0, `a folder of images${folder.code ? `: ${folder.stderr.slice(-1500)}` : ''}`);
  const rows = folder.stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { class: string; path: string });
  t.equal(rows.length, 4, 'one prediction per image in the folder');
  t.ok(
    rows.every((x) => ['dogs', 'wolves'].includes(x.class) && x.path.startsWith(join(job.data, 'val', 'wolves'))),
    "named classes, the folder's files",
  );

  const wrong = await runCli(
    [
      'predict',
      '--weights',
      join(out, 'best.ckpt'),
      '--eval',
      join(job.data, 'val'),
      '--classes',
      'cats,dogs',
      '--backend',
      'wasm',
    ],
    120_000,
  );
  t.equal(wrong.code, 1, "--eval on a split whose classes are not the model's is refused");
  t.match(wrong.stderr, /its classes \(dogs, wolves\) are not the model's \(cats, dogs\)/);
});
