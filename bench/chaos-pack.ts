// The processes of one chaos run (bench/chaos.ts): a `wolfpack coordinator` and `wolfpack worker`s in host
// slots, either all on loopback or each slot a network namespace of its own on a bridge
// (bench/netns-lab.ts, token-authenticated), with every process's output written to a log file and the
// coordinator's JSON log read as it comes into what a fault schedule waits on: steps completed, the
// ring (which pids, in which generation, who is new in it), evictions ("worker lost").
// Every wait is bounded and fails with what it waited for; `stop()` kills every process started here
// by pid (SIGCONT first, for a stopped one).
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { cliPath } from '../shared/paths.js';
import type { Lab } from './netns-lab.js';

/** A process started by the pack: its pid, its log file, and how it ended. */
export interface PackProcess {
  readonly name: string;
  readonly pid: number;
  readonly child: ChildProcess;
  /** Resolves with the exit code (null after a signal) when the process has exited. */
  readonly exit: Promise<number | null>;
}

/** What the coordinator's log said a worker lost, and when (ms since the pack started). */
export interface Eviction {
  pid: number;
  reason: string;
  at_ms: number;
  /** "worker lost" (its connection or heartbeats) or "worker lost while aborting". */
  during_abort: boolean;
}

interface Waiter {
  check: () => boolean;
  resolve: () => void;
  reject: (e: Error) => void;
}

export interface PackOptions {
  /** Folder for the log files. */
  logDir: string;
  /** Network namespaces for the coordinator (host 'c') and each slot; none: everything on loopback. */
  lab?: Lab;
  /** Token file, needed beyond loopback. */
  tokenFile?: string;
}

const PID_IN_DESCRIPTION = /\/pid (\d+) /;

/** The coordinator and workers of one run, and what the coordinator's log says about them. */
export class Pack {
  readonly t0 = performance.now();
  private readonly opts: PackOptions;
  private readonly procs = new Set<PackProcess>();
  private readonly logs = new Set<WriteStream>();
  private waiters: Waiter[] = [];
  private coordinator: PackProcess | undefined;
  private port = 0;
  private workerCount = 0;
  /** Every pid started here, in order. */
  readonly started: number[] = [];
  private stopped = false;
  private trained = false;

  // --- what the coordinator's log said ---
  /** Steps completed ('step' lines), and the last one's epoch and step (1-based). */
  steps = 0;
  epoch = 0;
  stepInEpoch = 0;
  lastStepAt = 0;
  /** When the last few steps were completed (ms since the pack started). */
  readonly stepTimes: number[] = [];
  /** The pids of the latest ring formed, in rank order, and its generation. */
  ring: number[] = [];
  generation = -1;
  readonly evictions: Eviction[] = [];
  /** Workers that entered a ring after the first one formed (at a step boundary, or while the run waited for them). */
  joins = 0;
  private readonly inRing = new Set<number>();
  readonly connected = new Set<number>();
  /** Lines at level error or above, and the last lines seen (for a report of what went wrong). */
  readonly errors: string[] = [];
  readonly tail: string[] = [];
  /** Time of the last line that shows the run moving (a step, a ring, an eviction, a join), ms since start. */
  lastProgressAt = 0;

  constructor(opts: PackOptions) {
    this.opts = opts;
  }

  now(): number {
    return performance.now() - this.t0;
  }

  private host(slot: string): { addr: string } | undefined {
    return this.opts.lab?.host(slot);
  }

  private start(name: string, host: string | undefined, args: string[], onLine?: (line: string) => void): PackProcess {
    const env = { WOLFPACK_LOG_FORMAT: 'json' };
    const child =
      host !== undefined && this.opts.lab
        ? this.opts.lab.startCli(host, args, env)
        : spawn(process.execPath, [cliPath, ...args], {
            env: { ...process.env, ...env },
            stdio: ['ignore', 'pipe', 'pipe'],
          });
    if (child.pid === undefined) throw new Error(`could not start ${name}: wolfpack ${args.join(' ')}`);
    const log = createWriteStream(join(this.opts.logDir, `${name}-${child.pid}.log`));
    this.logs.add(log);
    log.write(`$ wolfpack ${args.join(' ')}\n`);
    let partial = '';
    const onData = (d: Buffer) => {
      log.write(d);
      if (!onLine) return;
      const lines = (partial + d.toString()).split('\n');
      partial = lines.pop() ?? '';
      for (const l of lines) onLine(l);
    };
    child.stdout?.on('data', onData);
    child.stderr?.on('data', onData);
    const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    const p: PackProcess = { name, pid: child.pid, child, exit };
    this.procs.add(p);
    this.started.push(child.pid);
    void exit.then(() => {
      this.procs.delete(p);
      this.wake();
    });
    return p;
  }

  /** Starts the coordinator with `args` (the job's flags) and resolves once it listens. */
  async startCoordinator(args: string[], timeoutMs: number): Promise<PackProcess> {
    const where = this.host('c');
    const net = where ? ['--host', where.addr, '--token-file', this.opts.tokenFile ?? ''] : [];
    this.coordinator = this.start(
      'coordinator',
      where ? 'c' : undefined,
      ['coordinator', '--port', '0', ...net, ...args],
      (l) => this.onCoordinatorLine(l),
    );
    await this.until(() => this.port > 0, timeoutMs, 'the coordinator to listen');
    return this.coordinator;
  }

  /** Starts a worker in `slot` (its namespace, or loopback). */
  startWorker(slot: string, timeoutS: number): PackProcess {
    const where = this.host(slot);
    const coord = this.host('c')?.addr ?? '127.0.0.1';
    const net = where
      ? ['--ring-bind', '0.0.0.0', '--advertise', where.addr, '--token-file', this.opts.tokenFile ?? '']
      : [];
    this.workerCount++;
    return this.start(`worker-${slot}`, where ? slot : undefined, [
      'worker',
      '--connect',
      `ws://${coord}:${this.port}`,
      ...net,
      '--backend',
      'wasm',
      '--timeout',
      String(timeoutS),
      '--log-level',
      'debug',
    ]);
  }

  get workersStarted(): number {
    return this.workerCount;
  }

  /** Whether `pid` was evicted (or lost while aborting). */
  evicted(pid: number): Eviction | undefined {
    return this.evictions.find((e) => e.pid === pid);
  }

  /** Members of the latest ring that were not lost since. */
  members(): number[] {
    return this.ring.filter((pid) => !this.evicted(pid));
  }

  get coordinatorExited(): boolean {
    return this.coordinator !== undefined && !this.procs.has(this.coordinator);
  }

  /** Training is over ('training finished' logged) or the coordinator is gone: workers leave now. */
  get finished(): boolean {
    return this.trained || this.coordinatorExited || this.stopped;
  }

  private onCoordinatorLine(line: string): void {
    this.tail.push(line);
    if (this.tail.length > 60) this.tail.shift();
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line) as Record<string, unknown>;
    } catch {
      return; // the human-readable lines (stdout)
    }
    const at = this.now();
    const msg = r.msg;
    if (typeof r.level === 'number' && r.level >= 50) this.errors.push(line);
    if (msg === 'listening for workers' && typeof r.port === 'number') this.port = r.port;
    else if (msg === 'step' && r.component === 'coordinator') {
      this.steps++;
      this.epoch = Number(r.epoch);
      this.stepInEpoch = Number(r.step);
      this.lastStepAt = at;
      this.lastProgressAt = at;
      this.stepTimes.push(at);
      if (this.stepTimes.length > 8) this.stepTimes.shift();
    } else if (msg === 'ring formed' && Array.isArray(r.ring)) {
      this.ring = (r.ring as { worker: string }[]).map((x) => Number(PID_IN_DESCRIPTION.exec(x.worker)?.[1] ?? NaN));
      const first = this.inRing.size === 0;
      for (const pid of this.ring) {
        if (!this.inRing.has(pid) && !first) this.joins++;
        this.inRing.add(pid);
      }
      this.generation = Number(r.generation);
      this.lastProgressAt = at;
    } else if ((msg === 'worker lost' || msg === 'worker lost while aborting') && typeof r.worker === 'string') {
      const pid = Number(PID_IN_DESCRIPTION.exec(r.worker)?.[1] ?? NaN);
      this.evictions.push({
        pid,
        reason: typeof r.reason === 'string' ? r.reason : msg,
        at_ms: at,
        during_abort: msg !== 'worker lost',
      });
      this.lastProgressAt = at;
    } else if (msg === 'workers joined at a step boundary') {
      this.lastProgressAt = at;
    } else if (msg === 'training finished') {
      this.trained = true;
    } else if (msg === 'worker connected' && typeof r.pid === 'number') {
      this.connected.add(r.pid);
    }
    this.wake();
  }

  private wake(): void {
    for (const w of [...this.waiters]) {
      if (w.check()) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve();
      }
    }
  }

  /**
   * Resolves when `cond` holds (checked at every coordinator line and process exit); rejects after
   * `timeoutMs` or when the coordinator has exited first, naming `what`.
   */
  until(cond: () => boolean, timeoutMs: number, what: string): Promise<void> {
    if (cond()) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const fail = (why: string) => {
        clearTimeout(timer);
        this.waiters = this.waiters.filter((x) => x !== w);
        reject(new Error(`${why} waiting for ${what}`));
      };
      const timer = setTimeout(
        () => fail(`timed out after ${(timeoutMs / 1000).toFixed(0)} s`),
        Math.max(0, timeoutMs),
      );
      const w: Waiter = {
        check: () => {
          if (cond()) return true;
          if (this.coordinatorExited || this.stopped) {
            queueMicrotask(() => fail(this.stopped ? 'the pack was stopped' : 'the coordinator exited'));
          }
          return false;
        },
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(w);
      w.check(); // the coordinator may be gone already
    });
  }

  /** Resolves when `p` has exited, or kills it (SIGKILL) after `timeoutMs`; true when it exited by itself. */
  async exitOrKill(p: PackProcess, timeoutMs: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const alone = await Promise.race([
      p.exit.then(() => true),
      new Promise<boolean>((resolve) => {
        timer = setTimeout(() => resolve(false), timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    if (!alone) {
      signal(p, 'SIGCONT');
      signal(p, 'SIGKILL');
      await p.exit;
    }
    return alone;
  }

  /** Kills every process started here (by pid) and closes the log files. */
  async stop(): Promise<void> {
    this.stopped = true;
    this.wake();
    for (const w of this.waiters.splice(0)) w.reject(new Error('the pack was stopped'));
    const left = [...this.procs];
    for (const p of left) {
      signal(p, 'SIGCONT');
      signal(p, 'SIGKILL');
    }
    await Promise.all(left.map((p) => p.exit));
    await Promise.all([...this.logs].map((l) => new Promise<void>((resolve) => l.end(() => resolve()))));
  }
}

/** Sends `sig` to a pack process if it still runs. */
export function signal(p: PackProcess, sig: NodeJS.Signals): void {
  if (p.child.exitCode !== null || p.child.signalCode !== null) return;
  try {
    process.kill(p.pid, sig);
  } catch {
    // gone meanwhile
  }
}
