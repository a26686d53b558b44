// GPU time per kernel on the webgpu backend, from timestamp queries: while `activeTimers` is set,
// TF.js (and raw.ts) give every dispatch its own timed compute pass. This serialises the GPU
// work and adds a submit per dispatch, so it measures kernels, not the wall time of a step.
import { tf } from '../tf.js';
import type { WebGpuBackend } from './types.js';
import { WolfpackError } from '../../errors.js';

export interface KernelTime {
  name: string;
  count: number;
  ms: number;
}
export interface GpuProfile {
  supported: boolean;
  dispatches: number;
  totalMs: number;
  byKernel: KernelTime[];
}

/** Runs `work` once with per-dispatch GPU timing and sums the times by program name. */
export async function profileGpu(work: () => Promise<void>): Promise<GpuProfile> {
  const b = tf.backend() as WebGpuBackend;
  if (tf.getBackend() !== 'webgpu') throw new WolfpackError('E_BACKEND', 'profileGpu needs the webgpu backend');
  const timers: { name: string; query: Promise<number> }[] = [];
  b.activeTimers = timers;
  try {
    await work();
  } finally {
    b.activeTimers = null;
  }
  const ms = await Promise.all(timers.map((t) => t.query));
  const by = new Map<string, KernelTime>();
  timers.forEach((t, i) => {
    const k = by.get(t.name) ?? { name: t.name, count: 0, ms: 0 };
    k.count++;
    k.ms += ms[i]!;
    by.set(t.name, k);
  });
  const byKernel = [...by.values()].sort((a, c) => c.ms - a.ms);
  return {
    supported: b.supportTimestampQuery,
    dispatches: timers.length,
    totalMs: byKernel.reduce((s, k) => s + k.ms, 0),
    byKernel,
  };
}
