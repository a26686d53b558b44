// The coordinator's job: scan the data, load the pretrained weights and drop their head (or resume
// a saved run), admit workers, form the ring (the weights go to rank 0 only, which relays them), then
// drive the epochs: each step's global batch is split over the ranks and the image bytes they lack
// are sent with it; at each epoch end the validation set is split over the workers, the replicas'
// checksums are compared, and best/last checkpoints and metrics are written.
//
// Faults: a worker that dies, freezes or is cut off is lost (coordinator/cluster.ts). The step in
// flight is aborted on the survivors, the ring is re-formed without the lost worker (the survivor
// that got furthest relays its state to the others), the global batch is re-split over the new ring,
// and training goes on from the last completed step: no sample of the epoch is lost. Workers that
// join later are admitted at a step boundary and get the current state from a peer.
//
// This file drives the epochs; the parts live beside it: ./prepare.ts (data, weights, resume),
// ./job-run.ts (the running job's shared state), ./steps.ts (ring formation and the step loop),
// ./epoch-end.ts (evaluation, state fetch, checkpoints), ./recovery.ts (lost workers, stopping).
import { join } from 'node:path';
import { mutableRanges } from '../shared/model/state.js';
import type { CoordinatorSecurity } from '../shared/auth/config.js';
import type { Logger } from '../shared/log.js';
import { renderCurves } from '../shared/report/curves.js';
import { RunOutput, type EpochMetrics } from './checkpoints.js';
import { Cluster, describe, MemberLost } from './cluster.js';
import { endEpoch } from './epoch-end.js';
import { JobRun } from './job-run.js';
import { prepare, type Prepared } from './prepare.js';
import { recover, stopRun } from './recovery.js';
import { CoordinatorServer } from './server.js';
import { formRing, runSteps } from './steps.js';
import { StopRequested, stopReason, whenStopped, type StopOutcome } from './stop.js';
import { joinedEvent, type JobEvents } from './dashboard/events.js';

export interface JobOptions {
  data: string;
  weights?: string;
  workers: number;
  /** Below this many workers, wait for replacements before going on (default 1). */
  minWorkers?: number;
  epochs: number;
  batchSize: number;
  lr: number;
  momentum: number;
  freeze: 'none' | 'backbone';
  bn: 'train' | 'frozen';
  imageSize: number;
  seed: number;
  out: string;
  /** Continue the run saved in this directory (last.ckpt + train-state.json). */
  resume?: string;
  host: string;
  port: number;
  /** A worker silent this long (no heartbeat, no reply) is lost (ms). */
  timeoutMs: number;
  /** Longest wait for a step, an evaluation or a state transfer (ms; default 10 x timeoutMs). */
  stepTimeoutMs?: number;
  /** Longest wait for workers to join (ms; default 10 minutes). */
  joinTimeoutMs?: number;
  /** Longest wait for replacements once fewer than --min-workers are left (ms; default joinTimeoutMs). */
  rejoinTimeoutMs?: number;
  /** Stop after this many non-finite steps in a row (default 5). */
  maxBadSteps?: number;
  /** Steps sent ahead of the one being computed, so workers decode while they compute. */
  lookahead?: number;
  security?: CoordinatorSecurity;
  // feature cache (JobConfig fields, worker/feature-cache.ts); absent: augment train, views 0, no cache
  augment?: 'train' | 'none';
  views?: number;
  cacheFeatures?: boolean;
  featureCacheMb?: number;
  /** What the gradient all-reduce sends between workers (default fp32). */
  wire?: 'fp32' | 'bf16' | 'fp16';
  /** KiB of float32 values in one all-reduce message (default 4096, the ring's DEFAULT_CHUNK_ELEMS). */
  chunkKib?: number;
  /** MiB of gradients in one all-reduce bucket; 0 or unset: the whole buffer at once. */
  bucketMb?: number;
  logger: Logger;
  /** The lab's human-readable lines (stdout). */
  print: (line: string) => void;
  /** A transient progress line (a terminal's status line); undefined when not on a terminal. */
  progress?: (line: string) => void;
  /** Called once the server listens (single-node mode starts its workers then). */
  onListening?: (port: number) => void | Promise<void>;
  /** Live progress for a dashboard or a program (coordinator/dashboard/events.ts); must not throw. */
  events?: JobEvents;
  /** Longest a `step` or `epoch` callback's promise holds the run (ms; default 10 minutes), then it goes on. */
  holdTimeoutMs?: number;
  /**
   * Aborting it stops the job at once (./stop.ts): the step in flight is aborted, the state after the last
   * completed step is saved in last.ckpt, the workers are told to stop, and runJob resolves with `stopped`.
   */
  stop?: AbortSignal;
  /** Longest a stop waits for the workers' answers and their state (ms; default 5 s). */
  stopTimeoutMs?: number;
}

export interface JobResult {
  bestAccuracy: number;
  bestEpoch: number;
  epochs: EpochMetrics[];
  /** Set when the job ended on a stop request rather than after its last epoch. */
  stopped?: StopOutcome;
}

export async function runJob(opts: JobOptions): Promise<JobResult> {
  const log = opts.logger.child({ component: 'coordinator' });
  // Listen, and let local workers start (onListening), before preparing the job: a worker boots (Node,
  // TF.js, wasm: ~1.3 s here) while the coordinator reads the weights and scans the data, and its hello
  // waits in the server until the job admits it. (Measured on the demo: the first step ~1.2 s sooner.)
  const server = await CoordinatorServer.listen(
    opts.host,
    opts.port,
    log,
    opts.security ? { security: opts.security } : undefined,
  );
  log.info({ host: opts.host, port: server.port, workers: opts.workers }, 'listening for workers');
  // A stop request ends the waits that are not on a member (those the cluster interrupts): joins, holds, the
  // preparation.
  const stopped = whenStopped(opts.stop);
  const untilStop = <T>(w: Promise<T>): Promise<T> => (stopped ? Promise.race([w, stopped]) : w);
  let p: Prepared;
  try {
    opts.events?.listening?.({ port: server.port, heartbeat: (id) => server.heartbeat(id) });
    await opts.onListening?.(server.port);
    p = await untilStop(prepare(opts, log));
  } catch (e) {
    await server.close();
    if (e instanceof StopRequested) {
      log.warn({ reason: e.why }, 'stopped before training started');
      return {
        bestAccuracy: -1,
        bestEpoch: -1,
        epochs: [],
        stopped: { why: e.why, epoch: 0, step: 0, stepsPerEpoch: 0, saved: 'none' },
      };
    }
    throw e;
  }
  // What training can change (the rest of state/accum is what the job started with): the epoch-end
  // state fetch carries only these ranges, and the checkpoints re-encode only the tensors in them.
  const ranges = mutableRanges(p.state.layout, p.config.freeze, p.config.bn);
  const output = new RunOutput(opts.out, ranges);
  await output.init().catch(async (e: unknown) => {
    await server.close();
    throw e;
  });

  const cluster = new Cluster(server, p.config, opts.timeoutMs, log);
  const interrupt = () => cluster.interrupt(new StopRequested(stopReason(opts.stop!)));
  opts.stop?.addEventListener('abort', interrupt, { once: true });
  const run = new JobRun(opts, log, server, cluster, p, ranges, output, untilStop);
  const { result } = run;
  try {
    try {
      await train(run);
    } catch (e) {
      if (!(e instanceof StopRequested)) throw e;
      result.stopped = await stopRun(run, e.why);
      return result;
    }
    opts.print('='.repeat(20));
    opts.print(
      `End training, the best Accuracy is: ${result.bestAccuracy.toFixed(4)}, ` +
        `the best Accuracy epoch is ${result.bestEpoch}`,
    );
    await renderCurves(join(opts.out, 'metrics.jsonl'), join(opts.out, 'curves.png')).catch((e: Error) =>
      log.warn({ reason: e.message }, 'curves.png not drawn'),
    );
    log.info({ out: opts.out, best: join(opts.out, 'best.ckpt') }, 'training finished');
    await Promise.all(
      cluster.members.map((m) =>
        m.channel.send({ type: 'shutdown', reason: 'training finished' }).catch(() => undefined),
      ),
    );
    return result;
  } finally {
    opts.stop?.removeEventListener('abort', interrupt);
    cluster.close();
    await server.close();
  }
}

/** Admits the first workers, then runs the epochs, recovering from lost workers, until the last epoch ends. */
async function train(run: JobRun): Promise<void> {
  const { opts, server, cluster } = run;
  run.log.info({ need: opts.workers, waiting: server.waiting }, 'waiting for the first workers to join');
  await run.untilStop(server.members(opts.workers, run.joinTimeout));
  const first = server.takeArrivals(opts.workers);
  await cluster.join(first);
  opts.events?.event?.(joinedEvent(first));
  while (run.epoch < opts.epochs) {
    // recover() may have begun a new generation after the stop was asked for (abort() ends an interruption)
    if (opts.stop?.aborted) throw new StopRequested(stopReason(opts.stop));
    try {
      await trainUntilBoundary(run);
    } catch (e) {
      if (!(e instanceof MemberLost)) throw e;
      await recover(run, e);
    }
  }
}

/** Admits joiners, (re)forms the ring, runs steps until the epoch ends or joiners wait; ends the epoch. */
async function trainUntilBoundary(run: JobRun): Promise<void> {
  const { opts, log, server, cluster } = run;
  if (server.waiting > 0) {
    const joiners = server.takeArrivals();
    await cluster.join(joiners);
    cluster.nextGeneration();
    run.needRing = true;
    log.info({ joined: joiners.map(describe) }, 'workers joined at a step boundary');
    opts.events?.event?.(joinedEvent(joiners));
  }
  if (run.needRing) {
    await formRing(run);
    run.needRing = false;
  }
  if (run.done < (run.epoch + 1) * run.S) {
    if (!(await runSteps(run))) return;
  }
  await endEpoch(run);
}
