// Two failure branches end to end, with real processes: replicas that really differ stop the run
// with E_REPLICA before anything of theirs is saved, and a coordinator whose workers are all killed
// stops with E_WORKER after --rejoin-timeout, leaving a run folder that --resume continues to the
// uninterrupted result.
//
// How the replicas are made to differ. Workers on different backends do not: each computes its own
// gradient (wasm and cpu kernels may round differently), but the ring sums those once and every
// replica applies the same sum with the same JavaScript Momentum loop, so a wasm + cpu ring stays
// identical bit for bit, with --bn frozen and with --bn train (both checked by hand: exit 0, no
// E_REPLICA). What the checksum exists to catch is memory going bad under a replica (a flipped bit
// in a faulty DIMM or GPU), so that is what the test does: with the backbone frozen (so nothing
// rewrites it), one worker is stopped, one bit of a backbone weight is flipped in its memory through
// /proc/PID/mem (test/helpers/memory-fault.ts), and it is let go. Its parameters now differ from
// its peers' in one ulp of one weight, and nothing else about the run changes.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { mutableRanges } from '../../shared/model/state.js';
import { modelFromTensors } from '../../shared/model/weights.js';
import { readWeightsFile } from '../../shared/weights/read.js';
import { readCkptFloats } from '../helpers/checkpoints.js';
import { flipBitEverywhere, memoryFaultUnavailable } from '../helpers/memory-fault.js';
import { worstTensorRelDiff } from '../helpers/numerics.js';
import { exited, Output, runCli, startCluster } from '../helpers/processes.js';
import { makeTinyJob, type TinyJob } from '../helpers/tiny-job.js';

// Five training runs in all: on a loaded machine they may take longer than tap's 300 s a file.
t.setTimeout(900_000);

function jobArgs(job: TinyJob, out: string, extra: string[] = []): string[] {
  return [
    '--data',
    job.data,
    '--weights',
    job.weights,
    '--batch-size',
    '6',
    '--image-size',
    '32',
    '--out',
    out,
    '--backend',
    'wasm',
    '--lr',
    '0.01',
    '--bn',
    'frozen',
    '--log-level',
    'debug',
    ...extra,
  ];
}

/**
 * The coordinator's final error: `wolfpack coordinator: CODE: message` as a text line, or as the `msg`
 * of a JSON record (with `code`) when logs are JSON.
 */
function finalError(text: string): { code: string; jsonCode?: string; message: string } | undefined {
  for (const line of text.split('\n').reverse()) {
    let msg = line;
    let jsonCode: string | undefined;
    if (line.startsWith('{')) {
      try {
        const rec = JSON.parse(line) as { msg?: unknown; code?: unknown };
        if (typeof rec.msg === 'string') msg = rec.msg;
        if (typeof rec.code === 'string') jsonCode = rec.code;
      } catch {
        /* not a record */
      }
    }
    const m = /^wolfpack coordinator: (E_[A-Z]+): (.*)$/.exec(msg);
    if (m) return { code: m[1]!, jsonCode, message: m[2]! };
  }
  return undefined;
}

/** 64 floats of a frozen backbone weight as the replicas hold them (the coordinator's layout of the tiny job). */
async function frozenBackboneBytes(job: TinyJob): Promise<Uint8Array> {
  const classes = readdirSync(join(job.data, 'train')).length;
  const { tensors } = await readWeightsFile(job.weights);
  const { state } = modelFromTensors(tensors, job.weights, { dropHead: true, numClasses: classes, seed: 0 });
  const head = mutableRanges(state.layout, 'backbone', 'frozen').params;
  const at = Math.floor(head.begin / 2);
  const slice = state.params.slice(at, at + 64);
  if (head.begin < 128 || new Set(slice).size < 48)
    throw new Error(`no distinctive frozen weights at ${at} (head begins at ${head.begin})`);
  return new Uint8Array(slice.buffer);
}

t.test(
  "a bit flipped in one replica's memory: E_REPLICA names every rank's checksum and nothing of that epoch is saved",
  async (t) => {
    const job = await makeTinyJob({ trainPerClass: 30 });
    t.teardown(job.cleanup);
    const out = join(job.dir, 'diverged');
    const pattern = await frozenBackboneBytes(job);
    // --timeout 120: the stopped worker must not be evicted while its memory is searched.
    const { coord, co, workers } = await startCluster(
      t,
      jobArgs(job, out, ['--epochs', '2', '--freeze', 'backbone', '--timeout', '120']),
      3,
    );
    const victim = workers[2]!;
    const why = memoryFaultUnavailable(victim.pid!);
    if (why) {
      t.pass("a bit flipped in a worker's memory", { skip: why });
      return;
    }
    await new Output(victim).waitFor(/ring formed; state in place/, 120_000);
    victim.kill('SIGSTOP');
    const flipped = flipBitEverywhere(victim.pid!, pattern);
    victim.kill('SIGCONT');
    t.ok(
      flipped.addresses.length >= 1,
      `flipped the lowest bit of a frozen weight in ${flipped.addresses.length} cop(ies) in worker pid ${victim.pid} ` +
        `(${(flipped.searched / 2 ** 20).toFixed(0)} MiB searched)`,
    );

    t.equal(await exited(coord, 240_000), 1, 'the coordinator stops with an error');
    const err = finalError(co.text);
    t.ok(err, err ? 'an error line on stderr' : `no error line; output tail:\n${co.text.slice(-1500)}`);
    t.equal(err?.code, 'E_REPLICA', 'the error code is E_REPLICA');
    if (err?.jsonCode !== undefined) t.equal(err.jsonCode, 'E_REPLICA', "and so is the JSON record's code");
    t.equal(
      /^replicas diverged at the end of epoch (\d+): /.exec(err?.message ?? '')?.[1],
      '1',
      'the replicas diverged at the end of the epoch in which the bit flipped',
    );
    const sums = new Map(
      [...(err?.message ?? '').matchAll(/rank (\d+): ([0-9a-f]{32})/g)].map((m) => [Number(m[1]), m[2]]),
    );
    t.same([...sums.keys()], [0, 1, 2], 'every rank is named with its checksum');
    const ring = co.text.match(/"ring":(\[[^\]]*\]).*"msg":"ring formed"/)![1]!;
    const victimRank = Number(new RegExp(`"rank":(\\d),"worker":"[^"]*/pid ${victim.pid} `).exec(ring)![1]);
    const others = [...sums].filter(([r]) => r !== victimRank).map(([, s]) => s);
    t.equal(others[0], others[1], 'the two untouched replicas agree');
    t.not(sums.get(victimRank), others[0], `rank ${victimRank}, the worker with the flipped bit, is the odd one out`);

    // evaluate() throws before the state is fetched: no checkpoint, state or metrics of the diverged epoch.
    t.ok(existsSync(out), 'the run folder was made');
    // steps.jsonl records the steps that ran; nothing of the epoch's end may be there.
    t.same(
      readdirSync(out).filter((f) => f !== 'steps.jsonl'),
      [],
      'nothing of the epoch end was written: no best.ckpt, last.ckpt, train-state.json or metrics.jsonl',
    );
  },
);

t.test(
  'every worker killed after epoch 1 is saved: E_WORKER after --rejoin-timeout, the run folder intact, ' +
    '--resume reaches the uninterrupted result',
  async (t) => {
    const job = await makeTinyJob({ trainPerClass: 30 });
    t.teardown(job.cleanup);
    const ref = join(job.dir, 'uninterrupted');
    const a = await runCli(['train', '--workers', '2', ...jobArgs(job, ref, ['--epochs', '2'])], 300_000);
    t.equal(a.code, 0, `the uninterrupted run finishes${a.code ? `: ${a.stderr.slice(-1500)}` : ''}`);

    const out = join(job.dir, 'lost');
    const first = await startCluster(t, jobArgs(job, out, ['--epochs', '2', '--rejoin-timeout', '3']), 2);
    // printed once last.ckpt, train-state.json and metrics.jsonl are written
    await first.co.waitFor(/Epoch: 1\/2/, 240_000);
    for (const w of first.workers) w.kill('SIGKILL');
    t.equal(
      await exited(first.coord, 120_000),
      1,
      'the coordinator stops with an error once no worker joined within --rejoin-timeout',
    );
    t.match(first.co.text, /"msg":"worker lost"/, 'the losses are logged');
    t.match(first.co.text, /"have":0,"need":1,"msg":"waiting for workers to \(re\)join"/, 'it waited for replacements');
    const err = finalError(first.co.text);
    t.ok(err, err ? 'an error line on stderr' : `no error line; output tail:\n${first.co.text.slice(-1500)}`);
    t.equal(err?.code, 'E_WORKER', 'the error code is E_WORKER');
    if (err?.jsonCode !== undefined) t.equal(err.jsonCode, 'E_WORKER', "and so is the JSON record's code");
    t.equal(
      err?.message,
      'only 0 worker(s) left and none joined within 3 s (--min-workers 1); ' +
        `the last completed epoch (1) is saved in ${out}: ` +
        `start workers and run the same command with --resume ${out}`,
      'the message says what happened and how to go on',
    );

    const state = JSON.parse(readFileSync(join(out, 'train-state.json'), 'utf8')) as { epoch: number; step: number };
    t.equal(state.epoch, 1, 'train-state.json: epoch 1 completed');
    t.equal(state.step, 10, 'train-state.json: its 10 steps');
    t.same(
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { epoch: number }).epoch),
      [1],
      'metrics.jsonl: epoch 1 only',
    );
    const saved = await readCkptFloats(join(out, 'last.ckpt'));
    t.ok(
      [...saved.keys()].some((k) => k.startsWith('moments.')) && saved.size > 100,
      `last.ckpt reads whole: ${saved.size} tensors with the Momentum accumulators`,
    );

    const second = await startCluster(t, jobArgs(job, out, ['--epochs', '2', '--resume', out]), 2);
    t.equal(
      await exited(second.coord, 240_000),
      0,
      `the resumed run with fresh workers finishes${second.coord.exitCode ? `: ${second.co.text.slice(-1500)}` : ''}`,
    );
    t.match(second.co.text, /"msg":"resuming"/, 'from the run folder');
    t.same(
      readFileSync(join(out, 'metrics.jsonl'), 'utf8')
        .trim()
        .split('\n')
        .map((l) => (JSON.parse(l) as { epoch: number }).epoch),
      [1, 2],
      'metrics.jsonl: both epochs',
    );
    const worst = worstTensorRelDiff(
      await readCkptFloats(join(out, 'last.ckpt')),
      await readCkptFloats(join(ref, 'last.ckpt')),
    );
    t.ok(
      worst <= 1e-5,
      `resumed vs uninterrupted weights and momentum: max rel diff ${worst.toExponential(2)} <= 1e-5`,
    );
  },
);
