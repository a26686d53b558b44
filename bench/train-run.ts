// Runs the real trainer (`wolfpack train`, a coordinator plus N local worker processes) for a benchmark
// and collects what it reports: each epoch's metrics.jsonl line with the wall time it appeared at, every
// worker's per-step timings and memory (the workers' 'step timings' debug lines: data, compute,
// all-reduce, update in ms, tf.memory().numTensors, RSS), and, sampled from /proc every 200 ms, each
// worker process's resident set (VmRSS) and peak (VmHWM). `stopWhen` ends the run early (the process
// tree is killed by pid), e.g. once a target accuracy is reached.
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { cliPath } from '../shared/paths.js';
import { WolfpackError } from '../shared/errors.js';

export interface EpochLine {
  epoch: number;
  train_loss: number;
  val_accuracy: number;
  images_per_s: number;
  step_time_s: number;
  allreduce_share: number;
  epoch_time_s: number;
  workers: number;
  /** Seconds from the start of `wolfpack train` until this line was written. */
  wall_s: number;
}

export interface StepRecord {
  pid: number;
  step: number;
  epoch: number;
  samples: number;
  cached: number;
  timings: { data: number; compute: number; allreduce: number; update: number };
  numTensors: number;
  rss: number;
}

export interface ProcMemory {
  pid: number;
  /** Largest VmRSS seen and the last VmHWM (the kernel's peak), bytes. */
  max_rss: number;
  hwm: number;
  samples: Array<{ t: number; rss: number }>;
}

export interface TrainRun {
  command: string;
  code: number | null;
  stopped: boolean;
  wall_s: number;
  epochs: EpochLine[];
  steps: StepRecord[];
  workers: ProcMemory[];
  /**
   * When the coordinator completed each step (its 'step' debug line; epoch 1-based, step within the epoch,
   * 1-based).
   */
  coordinatorSteps: Array<{ time_ms: number; epoch: number; step: number }>;
  stdout: string;
  stderrTail: string;
}

export interface TrainRunOptions {
  args: string[];
  out: string;
  timeoutMs: number;
  /** Called after each metrics line; true ends the run. */
  stopWhen?: (e: EpochLine) => boolean;
  /** End the run once the coordinator has completed this many steps (of any epoch). */
  stopAfterSteps?: number;
  env?: Record<string, string>;
}

function procStatus(pid: number): { rss: number; hwm: number } | undefined {
  try {
    const s = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? NaN) * 1024;
    const rss = kb('VmRSS');
    const hwm = kb('VmHWM');
    // A process that has exited but is not yet reaped (a zombie) has no Vm lines: no sample, rather than
    // a NaN that Math.max would carry into the peak.
    return Number.isNaN(rss) || Number.isNaN(hwm) ? undefined : { rss, hwm };
  } catch {
    return undefined;
  }
}

function childrenOf(ppid: number): number[] {
  const out: number[] = [];
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    try {
      const stat = readFileSync(`/proc/${n}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === ppid) out.push(Number(n));
    } catch {
      // gone
    }
  }
  return out;
}

function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Runs `wolfpack train ARGS --out OUT` and collects metrics, step timings and worker memory. */
export function runTrain(opts: TrainRunOptions): Promise<TrainRun> {
  const args = ['train', ...opts.args, '--out', opts.out];
  const command = ['wolfpack', ...args].join(' ');
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const p = spawn(process.execPath, [cliPath, ...args], {
      env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', WOLFPACK_LOG_LEVEL: 'debug', ...(opts.env ?? {}) },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const run: TrainRun = {
      command,
      code: null,
      stopped: false,
      wall_s: 0,
      epochs: [],
      steps: [],
      workers: [],
      coordinatorSteps: [],
      stdout: '',
      stderrTail: '',
    };
    const mem = new Map<number, ProcMemory>();
    let partial = '';
    p.stdout.setEncoding('utf8');
    p.stdout.on('data', (s: string) => {
      run.stdout += s;
    });
    p.stderr.setEncoding('utf8');
    p.stderr.on('data', (s: string) => {
      run.stderrTail = (run.stderrTail + s).slice(-6000);
      const lines = (partial + s).split('\n');
      partial = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('"msg":"step"') && line.includes('"component":"coordinator"')) {
          try {
            const r = JSON.parse(line) as { time: number; epoch: number; step: number };
            run.coordinatorSteps.push({ time_ms: r.time, epoch: r.epoch, step: r.step });
            if (opts.stopAfterSteps !== undefined && run.coordinatorSteps.length >= opts.stopAfterSteps) stop();
          } catch {
            // not one of ours
          }
          continue;
        }
        if (!line.includes('"step timings"')) continue;
        try {
          const r = JSON.parse(line) as StepRecord;
          run.steps.push({
            pid: r.pid,
            step: r.step,
            epoch: r.epoch,
            samples: r.samples,
            cached: r.cached,
            timings: r.timings,
            numTensors: r.numTensors,
            rss: r.rss,
          });
        } catch {
          // not one of ours
        }
      }
    });
    const metricsPath = join(opts.out, 'metrics.jsonl');
    let seen = 0;
    let workerPids: number[] = [];
    function stop(): void {
      if (run.stopped) return;
      run.stopped = true;
      if (p.pid !== undefined) workerPids = [...new Set([...workerPids, ...childrenOf(p.pid)])];
      for (const pid of workerPids) killPid(pid);
      if (p.pid !== undefined) killPid(p.pid);
    }
    const poll = setInterval(() => {
      const now = (performance.now() - t0) / 1000;
      if (p.pid !== undefined) {
        const kids = childrenOf(p.pid);
        if (kids.length > 0) workerPids = [...new Set([...workerPids, ...kids])];
      }
      for (const pid of workerPids) {
        const st = procStatus(pid);
        if (st === undefined) continue;
        let m = mem.get(pid);
        if (!m) mem.set(pid, (m = { pid, max_rss: 0, hwm: 0, samples: [] }));
        m.max_rss = Math.max(m.max_rss, st.rss);
        m.hwm = Math.max(m.hwm, st.hwm);
        if (m.samples.length === 0 || now - m.samples[m.samples.length - 1]!.t >= 1)
          m.samples.push({ t: Math.round(now * 10) / 10, rss: st.rss });
      }
      let text = '';
      try {
        text = readFileSync(metricsPath, 'utf8');
      } catch {
        return;
      }
      const lines = text.split('\n').filter((l) => l.trim() !== '');
      for (; seen < lines.length; seen++) {
        const e = { ...(JSON.parse(lines[seen]!) as Omit<EpochLine, 'wall_s'>), wall_s: now } as EpochLine;
        run.epochs.push(e);
        if (opts.stopWhen?.(e)) stop();
      }
    }, 200);
    const timer = setTimeout(() => {
      for (const pid of workerPids) killPid(pid);
      if (p.pid !== undefined) killPid(p.pid);
    }, opts.timeoutMs);
    p.on('error', (e) => {
      clearInterval(poll);
      clearTimeout(timer);
      reject(new WolfpackError('E_WORKER', `${command}: ${e.message}`));
    });
    p.on('exit', (code) => {
      clearInterval(poll);
      clearTimeout(timer);
      for (const pid of workerPids) killPid(pid);
      run.code = code;
      run.wall_s = (performance.now() - t0) / 1000;
      run.workers = [...mem.values()];
      // a metrics line written just before exit
      try {
        const lines = readFileSync(metricsPath, 'utf8')
          .split('\n')
          .filter((l) => l.trim() !== '');
        for (; seen < lines.length; seen++)
          run.epochs.push({
            ...(JSON.parse(lines[seen]!) as Omit<EpochLine, 'wall_s'>),
            wall_s: run.wall_s,
          } as EpochLine);
      } catch {
        // no metrics
      }
      if (code !== 0 && !run.stopped) {
        reject(
          new WolfpackError(
            'E_WORKER',
            `${command} exited with ${code === null ? 'a signal' : `code ${code}`}: ${run.stderrTail.slice(-1500)}`,
          ),
        );
        return;
      }
      resolve(run);
    });
  });
}
