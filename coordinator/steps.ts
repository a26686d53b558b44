// The ring and the step loop: (re)forming the ring (the weights go to rank 0 only, which relays them), then
// sending each step's share of the global batch to every rank with the images it lacks, one step ahead of
// the one being computed, and counting the replies.
import { WolfpackError } from '../shared/errors.js';
import { sendState, wholeRanges } from '../shared/protocol/state-transfer.js';
import { describe } from './cluster.js';
import { epochBatches, rankShare } from './data-plan.js';
import { progressLine } from './epoch-figures.js';
import { settleWithin } from './hold.js';
import type { JobRun } from './job-run.js';
import { isPromise, memberInfos, stepEvent } from './dashboard/events.js';

export async function formRing(run: JobRun): Promise<void> {
  const { opts, log, cluster, state, accum, stepTimeout } = run;
  const world = cluster.members.length;
  const g = cluster.generation;
  await Promise.all(
    cluster.members.map((m, rank) => {
      const left = cluster.members[(rank + world - 1) % world]!.hello;
      // A left neighbour that serves TLS is reached with wss://, pinned to the certificate it announced.
      const leftUrl = `${left.ringCert !== undefined ? 'wss' : 'ws'}://${left.ringHost}:${left.ringPort}`;
      return cluster.send(m, {
        type: 'ring',
        generation: g,
        rank,
        world,
        leftUrl,
        rightRank: (rank + 1) % world,
        source: run.source,
        lastStep: run.done - 1,
        ...(left.ringCert !== undefined ? { leftCert: left.ringCert } : {}),
      });
    }),
  );
  if (run.source === 'coordinator') {
    const m0 = cluster.members[0]!;
    const bufs = { params: state.params, stats: state.stats, accum };
    await sendState(bufs, wholeRanges(bufs), (part, payload) =>
      cluster.send(m0, { type: 'weightsPart', ...part }, payload),
    );
  }
  await cluster.all('ready', stepTimeout);
  log.info(
    {
      generation: g,
      ring: cluster.members.map((m, r) => ({ rank: r, worker: describe(m) })),
      from: run.source === 'coordinator' ? 'coordinator' : 'rank 0 (a peer)',
    },
    'ring formed',
  );
  opts.events?.members?.(memberInfos(cluster.members), g);
  run.source = 'peer';
}

/** Runs the rest of the epoch's steps; returns early (false) when joiners wait at a boundary. */
export async function runSteps(run: JobRun): Promise<boolean> {
  const { opts, log, server, cluster, p, S, stepTimeout, maxBadSteps, holdTimeout, untilStop, clock, uncounted } = run;
  const batches = epochBatches(p.trainRefs.length, opts.batchSize, opts.seed, run.epoch);
  const world = cluster.members.length;
  const g = cluster.generation;
  let sent = run.done;
  const sendStep = async (global: number) => {
    const s = global - run.epoch * S;
    await Promise.all(
      cluster.members.map(async (m, rank) => {
        const samples = rankShare(batches[s]!, world, rank).map((i) => p.trainRefs[i]!);
        await run.sendBlobs(
          m,
          samples.map((x) => x.h),
        );
        await cluster.send(m, { type: 'step', generation: g, epoch: run.epoch, step: global, samples });
      }),
    );
    sent = global + 1;
  };
  const end = (run.epoch + 1) * S;
  const lookahead = opts.lookahead ?? 1;
  while (sent < Math.min(end, run.done + lookahead + 1)) await sendStep(sent);
  while (run.done < end) {
    const replies = await Promise.all(
      cluster.members.map(async (m) => {
        const r = await cluster.expect(m, 'stepDone', stepTimeout);
        uncounted.set(m, r.msg);
        return r;
      }),
    );
    uncounted.clear();
    for (const r of replies) {
      if (r.msg.step !== run.done || r.msg.generation !== g)
        throw new WolfpackError(
          'E_PROTOCOL',
          `rank ${r.msg.rank} finished step ${r.msg.step} (generation ${r.msg.generation}), ` +
            `expected ${run.done} (${g})`,
        );
      run.acc.allreduceMs += r.msg.timings.allreduce;
      run.acc.totalMs += r.msg.timings.data + r.msg.timings.compute + r.msg.timings.allreduce + r.msg.timings.update;
    }
    const d = replies[0]!.msg;
    run.done++;
    run.acc.add(d);
    if (d.skipped) {
      run.badInARow++;
      const ranks = replies.filter((r) => r.msg.nonFinite).map((r) => r.msg.rank);
      log.warn(
        { step: d.step, ranks },
        `non-finite loss or gradient on rank(s) ${ranks.join(', ')}: step skipped on every replica`,
      );
      if (run.badInARow >= maxBadSteps) {
        throw new WolfpackError(
          'E_DIVERGED',
          `training diverged: ${run.badInARow} steps in a row had a non-finite loss or gradient ` +
            `(last on rank(s) ${ranks.join(', ')}); ` +
            'lower --lr or check the data',
          { step: d.step, ranks },
        );
      }
    } else {
      run.badInARow = 0;
    }
    if (opts.progress) opts.progress(progressLine(run.epoch, opts.epochs, run.done, S, d.loss, clock));
    const hold = opts.events?.step?.(
      stepEvent(
        { epoch: run.epoch + 1, step: run.done - run.epoch * S, steps: S, global_step: run.done },
        replies.map((r) => r.msg),
      ),
    );
    if (isPromise(hold)) {
      const t0 = performance.now();
      await untilStop(settleWithin(hold, holdTimeout, log, `epoch ${run.epoch + 1} step ${run.done - run.epoch * S}`));
      run.acc.heldMs += performance.now() - t0;
    }
    log.debug({ epoch: run.epoch + 1, step: run.done - run.epoch * S, of: S, loss: d.loss }, 'step');
    // Joiners are admitted at a step boundary: stop sending, let the steps in flight finish.
    if (server.waiting > 0) {
      if (sent === run.done) return false;
      continue;
    }
    if (sent < end) await sendStep(sent);
  }
  return true;
}
