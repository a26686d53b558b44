// The machine a figure was measured on, and how busy it was: every benchmark records the CPU model and
// core count (from /proc/cpuinfo and os), and, because the machine may be shared, the CPU time other
// processes took just before it ran (from /proc/stat) and the load average. waitQuiet() holds a
// benchmark back until the CPUs are nearly idle (or a time limit passes, which the record then says).
import { readFileSync } from 'node:fs';
import os from 'node:os';

export interface MachineInfo {
  cpu_model: string;
  cores: number;
  memory_gib: number;
  node: string;
  platform: string;
}

export function machineInfo(): MachineInfo {
  let model = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) model = m[1]!.trim();
  } catch {
    // not Linux: os.cpus() it is
  }
  return {
    cpu_model: model,
    cores: os.cpus().length,
    memory_gib: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    node: process.version,
    platform: `${os.platform()} ${os.release()}`,
  };
}

/** Jiffies the CPUs were busy and in total, from /proc/stat's first line (undefined off Linux). */
function cpuJiffies(): { busy: number; total: number } | undefined {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n')[0]!;
    const v = line.trim().split(/\s+/).slice(1).map(Number);
    const idle = v[3]! + (v[4] ?? 0);
    const total = v.reduce((a, b) => a + b, 0);
    return { busy: total - idle, total };
  } catch {
    return undefined;
  }
}

/** Share of all CPUs busy (0..1) over the next `ms` milliseconds; NaN where /proc/stat is missing. */
export async function cpuBusy(ms = 1000): Promise<number> {
  const a = cpuJiffies();
  await new Promise((r) => setTimeout(r, ms));
  const b = cpuJiffies();
  if (a === undefined || b === undefined || b.total === a.total) return NaN;
  return (b.busy - a.busy) / (b.total - a.total);
}

export interface QuietRecord {
  /** CPU share busy (all cores, 0..1) in the last second before the benchmark started. */
  busy_before: number;
  /** 1-minute load average when it started. */
  load1: number;
  /** Seconds spent waiting for the machine to quieten. */
  waited_s: number;
  /** False when it started anyway after the time limit. */
  quiet: boolean;
}

/**
 * Waits until the CPUs were at most `maxBusy` busy over one second (default 0.25: half a core of
 * a 2-core machine), at most `limitMs`; returns how busy it was when the benchmark began.
 */
export async function waitQuiet(
  opts: { maxBusy?: number; limitMs?: number; onWait?: (busy: number) => void } = {},
): Promise<QuietRecord> {
  const maxBusy = opts.maxBusy ?? 0.25;
  const limit = opts.limitMs ?? 30_000;
  const t0 = performance.now();
  let busy = await cpuBusy(1000);
  let told = false;
  while (!(busy <= maxBusy) && performance.now() - t0 < limit && Number.isFinite(busy)) {
    if (!told) opts.onWait?.(busy);
    told = true;
    busy = await cpuBusy(1000);
  }
  return {
    busy_before: round(busy, 3),
    load1: round(os.loadavg()[0]!, 2),
    waited_s: round((performance.now() - t0) / 1000 - 1, 1),
    quiet: busy <= maxBusy,
  };
}

export function round(v: number, digits: number): number {
  const f = 10 ** digits;
  return Math.round(v * f) / f;
}

export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** Spread of repeated figures: (max - min) / median. */
export function spread(xs: readonly number[]): number {
  if (xs.length < 2) return 0;
  return (Math.max(...xs) - Math.min(...xs)) / median(xs);
}

/** Runs fn `warmup` times untimed, then `reps` times; returns the wall times in seconds. */
export async function timeRuns(fn: () => Promise<void>, reps: number, warmup = 1): Promise<number[]> {
  for (let i = 0; i < warmup; i++) await fn();
  const times: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = performance.now();
    await fn();
    times.push((performance.now() - t0) / 1000);
  }
  return times;
}
