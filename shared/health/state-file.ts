// A process's health, told by the process itself: a small JSON file that a worker or coordinator
// rewrites (atomically: temp file + rename) whenever its state changes, and again every few seconds
// while it is alive, so that a container health check asks the process, not the host's sockets
// (`wolfpack health --file PATH`, cli/commands/health.ts). What counts as healthy is decided here, by the
// writer, for each role and state; the reader only checks that verdict and the file's age.
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import type { Logger } from '../log.js';

export type HealthRole = 'worker' | 'coordinator';

/**
 * A worker's states, in the order it goes through them. `done` and `failed` are final; `lost` (the
 * coordinator's connection closed) may still become `done` when the closing frame was the order to stop.
 */
export const WORKER_STATES = [
  'starting',
  'connecting',
  'connected',
  'admitted',
  'training',
  'done',
  'lost',
  'failed',
] as const;
/** A coordinator's states (`train` and `demo` write the coordinator's); `done` and `failed` are final. */
export const COORDINATOR_STATES = ['starting', 'listening', 'training', 'done', 'failed'] as const;
export type WorkerState = (typeof WORKER_STATES)[number];
export type CoordinatorState = (typeof COORDINATOR_STATES)[number];
export type HealthState = WorkerState | CoordinatorState;

/**
 * Healthy means: doing its job now. A worker is healthy while it holds its connection to the coordinator
 * (connected, admitted, training); a coordinator while it accepts workers or runs the job (listening,
 * training). Starting up, retrying a connection, finished, lost or failed are not healthy.
 */
export const HEALTHY: Record<HealthRole, readonly HealthState[]> = {
  worker: ['connected', 'admitted', 'training'],
  coordinator: ['listening', 'training'],
};
const FINAL: readonly HealthState[] = ['done', 'failed'];

/** How often a live process rewrites its file when its state does not change (ms). */
export const HEALTH_REFRESH_MS = 5000;
/**
 * The default --max-age of `wolfpack health` (s). The file is refreshed from the process's main thread,
 * which a training step on a slow backend holds for seconds at a time (ResNet-50 at 224x224 on wasm:
 * ~1.5 s an image), so the bound is generous; lower it where steps are short.
 */
export const DEFAULT_MAX_AGE_S = 120;

/** The file's content. */
export interface HealthRecord {
  role: HealthRole;
  state: HealthState;
  healthy: boolean;
  pid: number;
  /** When this state was entered (ISO 8601). */
  since: string;
  /** When the file was last written (ISO 8601). */
  updated: string;
  /** Why, for the states that need one (lost, failed), or what (a rank, a port). */
  detail?: string;
}

/** Writes a process's health file; every write is atomic, and a failing write is logged once, never thrown. */
export class HealthFile {
  private record: HealthRecord | undefined;
  private readonly timer: NodeJS.Timeout;
  private warned = false;

  constructor(
    readonly path: string,
    readonly role: HealthRole,
    private readonly log?: Logger,
    refreshMs = HEALTH_REFRESH_MS,
    private readonly now: () => number = Date.now,
  ) {
    // unref: the refresh alone must not keep a finished process alive.
    this.timer = setInterval(() => this.write(), refreshMs).unref();
  }

  get state(): HealthState | undefined {
    return this.record?.state;
  }

  /** Enters `state` (a no-op once a final state was entered, or when it is the state already). */
  set(state: HealthState, detail?: string): void {
    const cur = this.record;
    if (cur && (FINAL.includes(cur.state) || (cur.state === state && cur.detail === detail))) return;
    const at = new Date(this.now()).toISOString();
    this.record = {
      role: this.role,
      state,
      healthy: HEALTHY[this.role].includes(state),
      pid: process.pid,
      since: at,
      updated: at,
      ...(detail !== undefined ? { detail } : {}),
    };
    this.write();
    if (FINAL.includes(state)) clearInterval(this.timer);
  }

  /** Stops refreshing (the file stays, with its last state). */
  close(): void {
    clearInterval(this.timer);
  }

  private write(): void {
    if (!this.record) return;
    this.record.updated = new Date(this.now()).toISOString();
    const tmp = join(dirname(this.path), `.${basename(this.path)}.${process.pid}.tmp`);
    try {
      writeFileSync(tmp, JSON.stringify(this.record) + '\n');
      renameSync(tmp, this.path);
    } catch (e) {
      try {
        unlinkSync(tmp);
      } catch {
        /* not there */
      }
      if (!this.warned)
        this.log?.warn({ file: this.path, reason: (e as Error).message }, 'cannot write the health file');
      this.warned = true;
    }
  }
}

/** What `wolfpack health` concludes from a file. */
export interface HealthVerdict {
  ok: boolean;
  /** One line for a person: the state, since when, how old the file is, and why not healthy. */
  reason: string;
  record?: HealthRecord;
}

/** Reads `path` and judges it: healthy only if the writer said so and the file is at most `maxAgeS` old. */
export function checkHealth(path: string, maxAgeS: number, now: number = Date.now()): HealthVerdict {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    return {
      ok: false,
      reason:
        code === 'ENOENT'
          ? `${path} does not exist (the process has not started, or has no --health-file ${path})`
          : `cannot read ${path}: ${(e as Error).message}`,
    };
  }
  let record: HealthRecord;
  try {
    record = JSON.parse(text) as HealthRecord;
  } catch {
    return { ok: false, reason: `${path} is not JSON` };
  }
  const updated = Date.parse(String(record?.updated));
  if (typeof record?.state !== 'string' || typeof record.healthy !== 'boolean' || !Number.isFinite(updated)) {
    return { ok: false, reason: `${path} is not a wolfpack health file (no state, healthy and updated)` };
  }
  const age = Math.max(0, (now - updated) / 1000);
  const what =
    `${record.role} ${record.state}${record.detail ? ` (${record.detail})` : ''} since ${record.since}, ` +
    `pid ${record.pid}, updated ${age.toFixed(1)} s ago`;
  if (!record.healthy) return { ok: false, reason: `unhealthy: ${what}`, record };
  if (age > maxAgeS)
    return { ok: false, reason: `stale: ${what}, more than ${maxAgeS} s (the process is gone or stuck)`, record };
  return { ok: true, reason: `healthy: ${what}`, record };
}
