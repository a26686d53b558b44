// An epoch's end: the validation set split over the workers, their replicas' checksums compared, the
// state fetched from rank 0 (only what training can change) and checked against them, best/last
// checkpoints and the metrics line written, the lab's lines printed.
import { WolfpackError } from '../shared/errors.js';
import { receiveState } from '../shared/protocol/state-transfer.js';
import { stateChecksum } from '../shared/train/checksum.js';
import type { EpochMetrics } from './checkpoints.js';
import { describe } from './cluster.js';
import { rankShare } from './data-plan.js';
import { EpochAccumulator } from './epoch-figures.js';
import { settleWithin } from './hold.js';
import type { JobRun } from './job-run.js';

async function evaluate(run: JobRun): Promise<{ accuracy: number; checksum: string }> {
  const { cluster, p, stepTimeout } = run;
  const world = cluster.members.length;
  const g = cluster.generation;
  const evals = await Promise.all(
    cluster.members.map(async (m, rank) => {
      const samples = rankShare(
        p.valRefs.map((_, i) => i),
        world,
        rank,
      ).map((i) => p.valRefs[i]!);
      await run.sendBlobs(
        m,
        samples.map((x) => x.h),
      );
      await cluster.send(m, { type: 'eval', generation: g, epoch: run.epoch, samples });
      return (await cluster.expect(m, 'evalResult', stepTimeout)).msg;
    }),
  );
  const sums = new Set(evals.map((e) => e.checksum));
  if (sums.size > 1) {
    const byRank = evals.map((e) => `rank ${e.rank}: ${e.checksum}`).join(', ');
    throw new WolfpackError('E_REPLICA', `replicas diverged at the end of epoch ${run.epoch + 1}: ${byRank}`, {
      epoch: run.epoch,
    });
  }
  const correct = evals.reduce((a, e) => a + e.correct, 0);
  const total = evals.reduce((a, e) => a + e.total, 0);
  return { accuracy: total > 0 ? correct / total : 0, checksum: evals[0]!.checksum };
}

// Only what training can have changed travels (`ranges`: the head alone with --freeze backbone
// --bn frozen, ~16 KB instead of ~200 MB); the rest of `state` and `accum` is what the job started with.
export async function fetchState(run: JobRun, m = run.cluster.members[0]!, timeoutMs = run.stepTimeout): Promise<void> {
  const { cluster, state, accum, ranges } = run;
  await cluster.send(m, { type: 'stateRequest', epoch: run.epoch });
  await receiveState(
    { params: state.params, stats: state.stats, accum },
    ranges,
    async () => {
      const { msg, payload } = await cluster.expect(m, 'statePart', timeoutMs);
      return { part: msg, payload };
    },
    `worker ${describe(m)}`,
  );
}

export async function endEpoch(run: JobRun): Promise<void> {
  const { opts, log, cluster, state, accum, output, S, holdTimeout, untilStop, result } = run;
  const tEval = performance.now();
  const { accuracy, checksum } = await evaluate(run);
  const tFetch = performance.now();
  await fetchState(run);
  // What the checkpoints will hold must be what the replicas hold (the fetch carries only the changed
  // ranges; this proves the rest was right too).
  const held = stateChecksum(state);
  if (held !== checksum) {
    throw new WolfpackError(
      'E_REPLICA',
      `the state fetched from rank 0 at the end of epoch ${run.epoch + 1} (checksum ${held}) ` +
        `is not the replicas' state (${checksum})`,
      { epoch: run.epoch },
    );
  }
  const tEnd = performance.now();
  const trainTime = (tEnd - run.acc.t0 - run.acc.heldMs) / 1000;
  const metrics: EpochMetrics = {
    epoch: run.epoch + 1,
    train_loss: run.acc.steps > 0 ? run.acc.lossSum / run.acc.steps : NaN,
    last_loss: run.acc.lastLoss,
    val_accuracy: accuracy,
    images_per_s: (S * opts.batchSize) / trainTime,
    step_time_s: trainTime / S,
    allreduce_share: run.acc.totalMs > 0 ? run.acc.allreduceMs / run.acc.totalMs : 0,
    skipped_steps: run.acc.skipped,
    epoch_time_s: trainTime,
    workers: cluster.members.length,
    samples: run.acc.samples,
    eval_s: (tFetch - tEval) / 1000,
    state_fetch_s: (tEnd - tFetch) / 1000,
  };
  const improved = accuracy >= result.bestAccuracy;
  if (improved) {
    result.bestAccuracy = accuracy;
    result.bestEpoch = run.epoch + 1;
    await output.saveBest(state);
  }
  await output.saveLast(state, accum, run.trainState(run.epoch + 1));
  metrics.checkpoint_s = (performance.now() - tEnd) / 1000;
  result.epochs.push(metrics);
  await output.appendMetrics(metrics);
  opts.print('-'.repeat(20));
  opts.print(
    `Epoch: ${run.epoch + 1}/${opts.epochs}, train Loss: ${metrics.train_loss.toFixed(4)} ` +
      `(last step ${run.acc.lastLoss.toFixed(4)}), ` +
      `val Acc: ${accuracy.toFixed(4)}${improved ? ' (best, saved best.ckpt)' : ''}`,
  );
  opts.print(
    `epoch time: ${trainTime.toFixed(1)} s, per step time: ${metrics.step_time_s.toFixed(2)} s, ` +
      `images/s: ${metrics.images_per_s.toFixed(1)}, ` +
      `all-reduce share: ${(metrics.allreduce_share * 100).toFixed(1)}%, workers: ${cluster.members.length}`,
  );
  // The epoch is on disk (checkpoints, metrics line) and printed: a callback may read it, and may hold the run here.
  const hold = opts.events?.epoch?.(metrics);
  if (improved)
    opts.events?.event?.({
      kind: 'best',
      text: `epoch ${run.epoch + 1}: val accuracy ${accuracy.toFixed(4)}, saved best.ckpt`,
    });
  await untilStop(settleWithin(hold, holdTimeout, log, `the end of epoch ${run.epoch + 1}`));
  run.epoch++;
  run.acc = new EpochAccumulator();
}
