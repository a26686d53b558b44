// A job with 16-bit values on the ring's wire (--wire bf16 / fp16): it trains to the end with every replica
// identical (the epoch-end checksums must agree, else E_REPLICA), the wire format is part of the job's saved
// config, and the weights stay close to a float32 run's over the whole model (each hop rounds, so a gradient
// whose ranks' parts nearly cancel can differ a lot relative to itself: a per-tensor bound would not hold).
// The head alone trains (--freeze backbone --bn frozen, a steady recipe): full fine-tuning of the tiny job at
// its lr is chaotic enough that any rounding sends runs apart, which would say nothing about the wire. Smaller
// messages (--chunk-kib) and buckets (--bucket-mb) give the same bits.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { maxRelToScale } from '../helpers/numerics.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

t.setTimeout(600_000);

t.test('--wire bf16 and fp16 train with identical replicas, close to float32', async (t) => {
  const job = await makeTinyJob();
  t.teardown(job.cleanup);
  const run = async (wire: string, workers: number, extra: string[] = []) => {
    const out = join(job.dir, `${wire}-${workers}${extra.join('')}`);
    const r = await runCli(
      [
        'train',
        '--workers',
        String(workers),
        ...tinyTrainArgs(job, out, [
          '--epochs',
          '2',
          '--freeze',
          'backbone',
          '--bn',
          'frozen',
          '--lr',
          '0.01',
          '--wire',
          wire,
          ...extra,
        ]),
      ],
      300_000,
    );
    t.equal(
      r.code,
      0,
      `--wire ${wire}, ${workers} workers: finishes, replicas agreeing at each epoch end` +
        `${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`,
    );
    return out;
  };
  // every parameter (not the Momentum accumulators) in one vector
  const weights = async (out: string) => {
    const m = await readCkptFloats(join(out, 'last.ckpt'));
    const names = [...m.keys()].filter((k) => !k.startsWith('moments.')).sort();
    const all = new Float32Array(names.reduce((a, k) => a + m.get(k)!.length, 0));
    let at = 0;
    for (const k of names) {
      all.set(m.get(k)!, at);
      at += m.get(k)!.length;
    }
    return all;
  };
  const loss = (out: string) =>
    readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as { train_loss: number })
      .at(-1)!.train_loss;
  const refOut = await run('fp32', 2);
  const ref = await weights(refOut);
  for (const [wire, workers] of [
    ['bf16', 2],
    ['fp16', 2],
  ] as const) {
    const out = await run(wire, workers);
    const saved = JSON.parse(readFileSync(join(out, 'train-state.json'), 'utf8')) as { config: { wire?: string } };
    t.equal(saved.config.wire, wire, 'the wire format is saved with the job');
    const rel = maxRelToScale(await weights(out), ref);
    t.ok(
      rel > 0 && rel < 1e-2,
      `every parameter vs the float32 run: max |diff| / max |w| = ${rel.toExponential(2)} (rounded, but close)`,
    );
    const [a, b] = [loss(out), loss(refOut)];
    t.ok(Math.abs(a - b) <= 0.05 * b, `last epoch's train loss ${a.toFixed(4)} vs float32's ${b.toFixed(4)}`);
    if (wire !== 'bf16') continue;
    // Smaller messages, and the gradients in buckets, change how the gradients travel, never their sums:
    // the same bits as the default size in one all-reduce.
    const small = await run(wire, workers, ['--chunk-kib', '1', '--bucket-mb', '0.005']);
    const smallState = JSON.parse(readFileSync(join(small, 'train-state.json'), 'utf8')) as {
      config: { chunkElems: number; bucketElems?: number };
    };
    t.equal(smallState.config.chunkElems, 256, '--chunk-kib 1: 256 values a message, in the job config');
    t.equal(smallState.config.bucketElems, 1311, '--bucket-mb 0.005: buckets of 1311 values, in the job config');
    const [w, ws] = [await weights(out), await weights(small)];
    t.ok(
      Buffer.from(ws.buffer).equals(Buffer.from(w.buffer)),
      `--chunk-kib 1 --bucket-mb 0.005: the same weights, bit for bit, as 4096 KiB messages in one all-reduce ` +
        `(${w.length} values)`,
    );
  }
});
