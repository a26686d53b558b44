// What the dashboard knows about a run, built from the job's events (./events.ts): the loss per step,
// the figures per epoch, the workers and the ring, and a list of events. It is a JobEvents sink; every
// change is also handed to the subscribers (the server's Server-Sent Events streams) as one update, and
// a new subscriber first gets the whole state as a snapshot. Nothing here touches the network.
import type { EpochMetrics } from '../checkpoints.js';
import type { HeartbeatProbe, JobEvent, JobEvents, MemberInfo, StepEvent } from './events.js';

/** Step points kept; past this the older half is thinned to every other point (default). */
export const MAX_STEP_POINTS = 20_000;
/** Events kept (the newest). */
export const MAX_EVENTS = 500;
/** How often heartbeats are read from the coordinator and pushed when they changed, ms. */
export const HEARTBEAT_PUSH_MS = 1000;

export type RunStatus = 'starting' | 'waiting for workers' | 'training' | 'finished' | 'failed';

/** The run's settings, shown in the page's header. */
export interface JobSummary {
  epochs?: number;
  batchSize?: number;
  workers?: number;
  lr?: number;
  momentum?: number;
  imageSize?: number;
  freeze?: string;
  bn?: string;
  out?: string;
  data?: string;
}

/** The settings the dashboard shows, picked from a job's options (and nothing else of them). */
export function jobSummary(o: JobSummary): JobSummary {
  const { epochs, batchSize, workers, lr, momentum, imageSize, freeze, bn, out, data } = o;
  return { epochs, batchSize, workers, lr, momentum, imageSize, freeze, bn, out, data };
}

/** One plotted step: [global step, epoch, step in epoch, loss (null when skipped), images/s, time ms]. */
export type StepPoint = [number, number, number, number | null, number, number];

export type WorkerState = 'in ring' | 'lost' | 'left';

export interface WorkerRow extends MemberInfo {
  state: WorkerState;
  /** Epoch ms of its last heartbeat, if the coordinator saw one. */
  lastHeartbeat: number | null;
  images_per_s: number | null;
}

/** An events-list line: the job's events, plus the dashboard's own 'ring' (formed) and 'status' (run state) lines. */
export interface EventRow {
  at: number;
  kind: JobEvent['kind'] | 'ring' | 'status';
  text: string;
  memberIds?: string[];
}

export interface Snapshot {
  now: number;
  status: RunStatus;
  message: string;
  job: JobSummary;
  generation: number | null;
  /** memberIds in rank order. */
  ring: string[];
  workers: WorkerRow[];
  steps: StepPoint[];
  /** Steps per epoch (0 before the first step). */
  stepsPerEpoch: number;
  epochs: EpochMetrics[];
  events: EventRow[];
  best: { epoch: number; accuracy: number } | null;
}

/** The updates a subscriber receives after its snapshot (SSE event name -> data). */
export type Update =
  | { type: 'step'; data: { point: StepPoint; steps: number; ranks: { memberId: string; images_per_s: number }[] } }
  | { type: 'epoch'; data: EpochMetrics }
  | { type: 'members'; data: { generation: number; ring: string[]; workers: WorkerRow[] } }
  | { type: 'event'; data: EventRow }
  | { type: 'heartbeats'; data: { now: number; beats: Record<string, number> } }
  | { type: 'status'; data: { status: RunStatus; message: string; best: Snapshot['best'] } };

const finite = (v: number): number | null => (Number.isFinite(v) ? v : null);

export class DashboardState implements JobEvents {
  private status: RunStatus = 'starting';
  private message = '';
  private readonly job: JobSummary;
  private generation: number | null = null;
  private ring: string[] = [];
  private readonly workers = new Map<string, WorkerRow>();
  private steps: StepPoint[] = [];
  private stepsPerEpoch = 0;
  private readonly epochs: EpochMetrics[] = [];
  private readonly events: EventRow[] = [];
  private best: Snapshot['best'] = null;
  private probe: HeartbeatProbe | undefined;
  private readonly subscribers = new Set<(u: Update) => void>();
  private readonly timer: NodeJS.Timeout;
  private readonly maxStepPoints: number;

  constructor(job: JobSummary = {}, opts: { maxStepPoints?: number; heartbeatPushMs?: number } = {}) {
    this.job = { ...job };
    this.maxStepPoints = opts.maxStepPoints ?? MAX_STEP_POINTS;
    this.timer = setInterval(() => this.readHeartbeats(), opts.heartbeatPushMs ?? HEARTBEAT_PUSH_MS);
    this.timer.unref();
  }

  /** Calls `fn` with every update from now on; returns the function that stops it. */
  subscribe(fn: (u: Update) => void): () => void {
    this.subscribers.add(fn);
    return () => {
      this.subscribers.delete(fn);
    };
  }

  snapshot(): Snapshot {
    return {
      now: Date.now(),
      status: this.status,
      message: this.message,
      job: this.job,
      generation: this.generation,
      ring: this.ring,
      workers: [...this.workers.values()],
      steps: this.steps,
      stepsPerEpoch: this.stepsPerEpoch,
      epochs: this.epochs,
      events: this.events,
      best: this.best,
    };
  }

  private emit(u: Update): void {
    for (const fn of this.subscribers) fn(u);
  }

  private setStatus(status: RunStatus, message = ''): void {
    this.status = status;
    this.message = message;
    this.addEvent({ at: Date.now(), kind: 'status', text: message ? `${status}: ${message}` : status });
    this.emit({ type: 'status', data: { status, message, best: this.best } });
  }

  private addEvent(row: EventRow): void {
    this.events.push(row);
    if (this.events.length > MAX_EVENTS) this.events.splice(0, this.events.length - MAX_EVENTS);
    this.emit({ type: 'event', data: row });
  }

  // --- JobEvents ---

  listening(info: { port: number; heartbeat: HeartbeatProbe }): void {
    this.probe = info.heartbeat;
    this.setStatus('waiting for workers', `coordinator on port ${info.port}`);
  }

  step(s: StepEvent): void {
    if (this.status !== 'training') this.setStatus('training');
    this.stepsPerEpoch = s.steps;
    const point: StepPoint = [
      s.global_step,
      s.epoch,
      s.step,
      s.skipped ? null : finite(s.loss),
      s.images_per_s,
      Date.now(),
    ];
    this.steps.push(point);
    if (this.steps.length > this.maxStepPoints) {
      const half = this.steps.length >> 1;
      this.steps = [...this.steps.slice(0, half).filter((_, i) => i % 2 === 1), ...this.steps.slice(half)];
    }
    const ranks: { memberId: string; images_per_s: number }[] = [];
    for (const r of s.ranks) {
      const id = this.ring[r.rank];
      if (id === undefined) continue;
      const row = this.workers.get(id);
      if (!row) continue;
      row.images_per_s = r.images_per_s;
      ranks.push({ memberId: id, images_per_s: r.images_per_s });
    }
    this.emit({ type: 'step', data: { point, steps: s.steps, ranks } });
  }

  epoch(m: EpochMetrics): void {
    this.epochs.push(m);
    this.emit({ type: 'epoch', data: m });
  }

  members(members: MemberInfo[], generation: number): void {
    const ring = members.map((m) => m.memberId);
    for (const row of this.workers.values()) {
      if (row.state === 'in ring' && !ring.includes(row.memberId)) row.state = 'left';
    }
    for (const m of members) {
      const old = this.workers.get(m.memberId);
      this.workers.set(m.memberId, {
        ...m,
        state: 'in ring',
        lastHeartbeat: old?.lastHeartbeat ?? null,
        images_per_s: old?.images_per_s ?? null,
      });
    }
    this.generation = generation;
    this.ring = ring;
    this.readHeartbeats(false);
    this.emit({ type: 'members', data: { generation, ring, workers: [...this.workers.values()] } });
    const order = members.map((m) => `${m.rank}: ${m.host}/pid ${m.pid}`).join(' -> ');
    this.addEvent({
      at: Date.now(),
      kind: 'ring',
      text: `ring formed, generation ${generation}, ${members.length} worker(s): ${order}`,
    });
  }

  event(e: JobEvent): void {
    if (e.kind === 'lost') {
      for (const id of e.memberIds ?? []) {
        const row = this.workers.get(id);
        if (row) row.state = 'lost';
      }
      this.emit({
        type: 'members',
        data: { generation: this.generation ?? 0, ring: this.ring, workers: [...this.workers.values()] },
      });
    }
    if (e.kind === 'best') {
      const last = this.epochs.at(-1);
      if (last) this.best = { epoch: last.epoch, accuracy: last.val_accuracy };
    }
    this.addEvent({ at: Date.now(), kind: e.kind, text: e.text, ...(e.memberIds ? { memberIds: e.memberIds } : {}) });
  }

  // --- the run's end, from whoever ran the job ---

  finish(result: { bestAccuracy: number; bestEpoch: number }): void {
    if (result.bestEpoch > 0) this.best = { epoch: result.bestEpoch, accuracy: result.bestAccuracy };
    this.setStatus('finished', `best accuracy ${result.bestAccuracy.toFixed(4)} at epoch ${result.bestEpoch}`);
  }

  fail(e: Error): void {
    this.setStatus('failed', e.message);
  }

  /** Reads the ring members' heartbeats; pushes them when any changed (or always with `push`). */
  private readHeartbeats(push = true): void {
    if (!this.probe || this.ring.length === 0) return;
    const beats: Record<string, number> = {};
    let changed = false;
    for (const id of this.ring) {
      const last = this.probe(id)?.last;
      const row = this.workers.get(id);
      if (last === undefined || !row) continue;
      if (row.lastHeartbeat !== last) changed = true;
      row.lastHeartbeat = last;
      beats[id] = last;
    }
    if (changed && push) this.emit({ type: 'heartbeats', data: { now: Date.now(), beats } });
  }

  /** Stops the heartbeat timer and drops the subscribers. */
  close(): void {
    clearInterval(this.timer);
    this.subscribers.clear();
  }
}
