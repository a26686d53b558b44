// When the pack changes against the job's will: a worker lost (the step in flight is aborted, the ring
// re-formed with the survivors, the one that got furthest relaying its state; replacements awaited when
// fewer than --min-workers are left), and a stop request (the step in flight aborted, the last completed
// step's state saved, the workers told to stop).
import { WolfpackError } from '../shared/errors.js';
import { describe, type MemberLost } from './cluster.js';
import { fetchState } from './epoch-end.js';
import { EpochAccumulator } from './epoch-figures.js';
import type { JobRun } from './job-run.js';
import type { StopOutcome } from './stop.js';
import { joinedEvent, lostEvent } from './dashboard/events.js';

type AbortReport = Awaited<ReturnType<JobRun['cluster']['abort']>>[number];

/**
 * The abort's reports of the members still in the pack, the one that applied the most steps first (ties in
 * ring order): a member that answered the abort and was lost after it is no survivor, its steps are not kept.
 */
function byProgress(run: JobRun, reports: AbortReport[]): AbortReport[] {
  const { members } = run.cluster;
  return reports
    .filter((r) => members.includes(r.member))
    .sort((a, b) => b.lastStep - a.lastStep || members.indexOf(a.member) - members.indexOf(b.member));
}

/**
 * Counts in the epoch's figures the steps `lead` applied beyond the last one counted here, from its own
 * replies (a loss or a stop cut the coordinator's wait for them short).
 */
function countLateSteps(run: JobRun, lead: AbortReport): void {
  const first = run.uncounted.get(lead.member);
  for (const d of [...(first ? [first] : []), ...lead.late])
    if (d.step >= run.done && d.step <= lead.lastStep) run.acc.add(d);
}

export async function recover(run: JobRun, e: MemberLost): Promise<void> {
  const { opts, log, server, cluster, S, stepTimeout, joinTimeout, minWorkers, untilStop, result, uncounted } = run;
  for (const m of cluster.prune()) {
    log.warn({ worker: describe(m), reason: e.message }, 'worker lost');
    opts.events?.event?.(lostEvent(m, e));
  }
  const reports = await cluster.abort(e.message, stepTimeout);
  for (const m of cluster.prune()) {
    log.warn({ worker: describe(m) }, 'worker lost while aborting');
    opts.events?.event?.(lostEvent(m, 'while the step in flight was aborted'));
  }
  // The survivor that applied the most steps is the new rank 0 and relays its state to the others.
  const kept = byProgress(run, reports);
  cluster.reorder(kept.map((r) => r.member));
  const lead = kept[0];
  if (lead !== undefined) {
    countLateSteps(run, lead);
    run.done = Math.max(lead.lastStep + 1, run.epoch * S);
  }
  uncounted.clear();
  if (kept.length === 0) {
    // Nobody holds the epoch's progress any more: it starts over from the coordinator's copy (the last epoch end).
    run.source = 'coordinator';
    run.done = run.epoch * S;
    run.acc = new EpochAccumulator();
  }
  while (cluster.members.length < Math.max(1, minWorkers)) {
    log.warn({ have: cluster.members.length, need: Math.max(1, minWorkers) }, 'waiting for workers to (re)join');
    const rejoin = opts.rejoinTimeoutMs ?? joinTimeout;
    if (server.waiting === 0) await untilStop(server.arrival(rejoin));
    if (server.waiting === 0) {
      const saved = result.epochs.length > 0 ? opts.out : opts.resume; // where the last completed epoch is
      throw new WolfpackError(
        'E_WORKER',
        `only ${cluster.members.length} worker(s) left and none joined within ${rejoin / 1000} s ` +
          `(--min-workers ${minWorkers}); ` +
          (saved
            ? `the last completed epoch (${run.epoch}) is saved in ${saved}: ` +
              `start workers and run the same command with --resume ${saved}`
            : 'no epoch was completed, so there is nothing to resume'),
        { epoch: run.epoch, saved },
      );
    }
    const joiners = server.takeArrivals();
    await cluster.join(joiners);
    opts.events?.event?.(joinedEvent(joiners));
  }
  cluster.nextGeneration();
  run.needRing = true;
  log.warn(
    { workers: cluster.members.length, resumeAtStep: run.done, epoch: run.epoch + 1 },
    'ring will be re-formed; training continues from the last completed step',
  );
}

/**
 * The stop: abort the step in flight, fetch the state after the last completed step from the replica
 * that got furthest, save it as last.ckpt (train-state.json names the step and keeps the epoch's figures
 * so far), tell the workers to stop. Waits are bounded by stopTimeout; whatever fails leaves last.ckpt
 * at the last epoch end, and says so.
 */
export async function stopRun(run: JobRun, why: string): Promise<StopOutcome> {
  const { opts, log, cluster, state, accum, output, S, stopTimeout, result } = run;
  log.warn(
    { reason: why, epoch: run.epoch + 1, step: run.done - run.epoch * S, workers: cluster.members.length },
    'stopping: the step in flight is aborted, the last completed step saved',
  );
  let saved: StopOutcome['saved'] = result.epochs.length > 0 || opts.resume ? 'epoch' : 'none';
  let dir = result.epochs.length > 0 ? opts.out : opts.resume;
  cluster.prune();
  if (cluster.members.length > 0) {
    try {
      const reports = await cluster.abort(`stopping (${why})`, stopTimeout);
      cluster.prune();
      const lead = byProgress(run, reports)[0];
      if (lead !== undefined && lead.lastStep + 1 > run.epoch * S && lead.lastStep + 1 >= run.done) {
        countLateSteps(run, lead);
        run.done = lead.lastStep + 1;
        await fetchState(run, lead.member, stopTimeout);
        await output.saveLast(state, accum, run.trainState(run.epoch, run.acc.partial()));
        saved = 'step';
        dir = opts.out;
      }
    } catch (e) {
      log.warn(
        { reason: (e as Error).message },
        'the state after the last step could not be fetched; ' +
          `last.ckpt is ${saved === 'none' ? 'not written' : 'the last epoch end'}`,
      );
    }
    await Promise.all(
      cluster.members.map((m) =>
        m.channel.send({ type: 'shutdown', reason: `stopped (${why})` }).catch(() => undefined),
      ),
    );
  }
  log.info({ saved, dir, epoch: run.epoch, step: run.done }, 'stopped');
  return { why, epoch: run.epoch, step: run.done, stepsPerEpoch: S, saved, ...(dir !== undefined ? { dir } : {}) };
}
