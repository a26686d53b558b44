// Two webgpu workers (lavapipe here) train the tiny job with the gradients all-reduced in buckets
// (--bucket-mb): from the first replayed step on, each worker hands buckets to the ring while its GPU
// still computes (the workers' 'step timings' debug lines count them), and the weights are the same
// bits as with one all-reduce after the step. Skipped, saying why, without a Vulkan driver.
import { join } from 'node:path';
import t from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';
import { webGpuPrerequisitesMissing } from '../helpers/webgpu.js';

t.setTimeout(600_000);
const why = webGpuPrerequisitesMissing();

t.test(
  'webgpu workers stream gradient buckets to the ring: same bits as one all-reduce',
  { skip: why ?? false },
  async (t) => {
    const job = await makeTinyJob();
    t.teardown(job.cleanup);
    const run = async (extra: string[]) => {
      const out = join(job.dir, `run${extra.join('')}`);
      const r = await runCli(
        ['train', '--workers', '2', ...tinyTrainArgs(job, out, ['--backend', 'webgpu', '--epochs', '2', ...extra])],
        300_000,
        { WOLFPACK_LOG_LEVEL: 'debug' },
      );
      t.equal(
        r.code,
        0,
        `train ${extra.join(' ') || '(one all-reduce)'} finishes${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`,
      );
      const steps = r.stderr
        .split('\n')
        .filter((l) => l.includes('"step timings"'))
        .map((l) => JSON.parse(l) as { rank: number; step: number; bucketsEarly?: number });
      return { out, steps };
    };
    const whole = await run([]);
    const bucketed = await run(['--bucket-mb', '0.01']);
    t.ok(
      whole.steps.length > 0 && whole.steps.every((s) => s.bucketsEarly === undefined),
      `without --bucket-mb nothing is handed over early (${whole.steps.length} step lines)`,
    );
    // The first step of a shape runs through TF.js and is captured; the replays after it stream.
    const replayed = bucketed.steps.filter((s) => s.step > 0);
    t.ok(
      replayed.length >= 2 && replayed.every((s) => (s.bucketsEarly ?? 0) > 1),
      `every replayed step, on both ranks, handed buckets over during compute: ` +
        `${replayed.map((s) => s.bucketsEarly ?? 0).join(', ')}`,
    );
    const [a, b] = await Promise.all([whole.out, bucketed.out].map((o) => readCkptFloats(join(o, 'last.ckpt'))));
    const differ = [...a!.keys()].filter((k) => !Buffer.from(a!.get(k)!.buffer).equals(Buffer.from(b!.get(k)!.buffer)));
    t.same(differ, [], `all ${a!.size} tensors of last.ckpt: the same bits`);
  },
);
