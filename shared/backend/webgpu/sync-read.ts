// Synchronous reads (dataSync) on TF.js's webgpu backend under Node. TF.js reads synchronously through
// an OffscreenCanvas, which Node lacks, so dataSync() throws there. Dawn's Node bindings complete a
// buffer mapping only when their event tick runs, and they schedule that tick with the global
// setImmediate. Capturing those tick callbacks lets a read run them in a loop until the mapping is
// done: a blocking read without returning to the event loop. Each tick runs at most once, whoever runs
// it first (this loop or Node's event loop).
import { tf } from '../tf.js';
import { dispatchStats } from './raw.js';
import { BufferUsage, isGpuBuffer, MapMode, type GpuBuffer, type WebGpuBackend } from './types.js';
import { WolfpackError } from '../../errors.js';

type Immediate = ReturnType<typeof setImmediate>;
type SetImmediate = (cb: (...args: unknown[]) => void, ...args: unknown[]) => Immediate;

/** A captured Dawn tick: runs at most once, from spinDawn or from Node's event loop. */
class Tick {
  ran = false;
  constructor(private readonly cb: () => void) {}
  run(): void {
    if (this.ran) return;
    this.ran = true;
    pendingTicks.delete(this);
    inTick = true;
    try {
      this.cb();
    } finally {
      inTick = false;
    }
  }
}

const pendingTicks = new Set<Tick>();
/** True while a Dawn tick runs: a tick it schedules is Dawn polling again for work still pending. */
let inTick = false;
/** Dawn ticks scheduled in a row, each from the one before. */
let pollStreak = 0;
/**
 * Polls on the event loop's immediate queue before backing off: a wait shorter than this many ticks (a few
 * ms) is noticed at once. After them Dawn polls every POLL_BACKOFF_MS: on the immediate queue it ticked
 * ~56,000 times a second, which kept a core busy and allocated ~70 MB/s (the tick's own objects), so a
 * GPU read-back of seconds on lavapipe left ~160 MB of garbage that a mark-compact then collected during
 * the next step's launch. A blocking read (spinDawn) runs the pending tick itself and is not slowed.
 */
const BUSY_POLLS = 200;
const POLL_BACKOFF_MS = 1;
let captureInstalled = false;
const NATIVE_ANON = 'function () { [native code] }';
const runTick = (t: Tick): void => t.run();

/**
 * Wraps the global setImmediate so that Dawn's tick callbacks (anonymous native functions; nothing
 * else in the process schedules those) can also be run from a blocking read. Install it before the
 * Dawn instance is created. Idempotent.
 */
export function installTickCapture(): void {
  if (captureInstalled) return;
  captureInstalled = true;
  const real = globalThis.setImmediate as unknown as SetImmediate;
  const toText = Function.prototype.toString;
  function wrapped(cb: (...args: unknown[]) => void, ...args: unknown[]): Immediate {
    // Cheap tests first: Dawn's tick is a nameless, parameterless native function.
    if (
      args.length === 0 &&
      typeof cb === 'function' &&
      cb.name === '' &&
      cb.length === 0 &&
      toText.call(cb) === NATIVE_ANON
    ) {
      const tick = new Tick(cb);
      pendingTicks.add(tick);
      pollStreak = inTick ? pollStreak + 1 : 0;
      if (pollStreak < BUSY_POLLS) return real(runTick as (...a: unknown[]) => void, tick);
      // Dawn keeps no handle to clear: a timer in place of the immediate is safe to hand back.
      return setTimeout(runTick, POLL_BACKOFF_MS, tick) as unknown as Immediate;
    }
    return real(cb, ...args);
  }
  Object.assign(wrapped, real); // keeps util.promisify.custom and friends
  globalThis.setImmediate = wrapped as unknown as typeof globalThis.setImmediate;
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));

/**
 * Runs Dawn's pending ticks until `done()` or `timeoutMs`. Sleeps 50 us between rounds after the
 * first few, so that a CPU Vulkan driver (lavapipe) keeps its cores.
 */
export function spinDawn(done: () => boolean, timeoutMs = 300_000, what = 'a GPU read'): void {
  const t0 = performance.now();
  let rounds = 0;
  while (!done()) {
    for (const tick of [...pendingTicks]) tick.run();
    if (done()) return;
    if (++rounds > 20) Atomics.wait(sleeper, 0, 0, 0.05);
    if (performance.now() - t0 > timeoutMs) {
      throw new WolfpackError(
        'E_BACKEND',
        `webgpu: ${what} did not complete within ${timeoutMs / 1000} s ` +
          `(${pendingTicks.size} Dawn tick(s) pending; ` +
          `is installTickCapture() installed before the device was created?)`,
      );
    }
  }
}

/** Maps `staging` for reading and waits for it, driving Dawn's ticks. */
export function mapReadSync(staging: GpuBuffer, what?: string): void {
  let failed: unknown;
  staging.mapAsync(MapMode.READ).catch((e: unknown) => {
    failed = e ?? new WolfpackError('E_BACKEND', 'mapAsync failed');
  });
  spinDawn(() => staging.mapState === 'mapped' || failed !== undefined, undefined, what);
  if (failed !== undefined)
    throw new WolfpackError(
      'E_BACKEND',
      `webgpu: reading a GPU buffer failed: ${(failed as Error).message ?? String(failed)}`,
    );
}

/** A range of a GPU buffer to read. */
export interface ReadPart {
  buffer: GpuBuffer;
  size: number;
  offset?: number;
}

/** Records copies of `parts` into a new staging buffer (back to back) and submits them. */
function stage(b: WebGpuBackend, parts: ReadPart[]): { staging: GpuBuffer; total: number } {
  const total = parts.reduce((s, p) => s + p.size, 0);
  const staging = b.bufferManager.acquireBuffer(Math.max(4, total), BufferUsage.MAP_READ | BufferUsage.COPY_DST);
  b.ensureCommandEncoderReady();
  b.endComputePassEncoder();
  let off = 0;
  for (const p of parts) {
    if (p.size > 0) b.commandEncoder!.copyBufferToBuffer(p.buffer, p.offset ?? 0, staging, off, p.size);
    off += p.size;
  }
  b.submitQueue();
  dispatchStats.syncReads++;
  return { staging, total };
}

function consume<T>(b: WebGpuBackend, staging: GpuBuffer, total: number, use: (bytes: ArrayBuffer) => T): T {
  try {
    return use(staging.getMappedRange(0, Math.max(4, total)));
  } finally {
    if (staging.mapState === 'mapped') staging.unmap();
    b.bufferManager.releaseBuffer(staging);
  }
}

/**
 * Copies byte ranges of GPU buffers into one staging buffer and hands the mapped bytes (valid only
 * during the call) to `use`. All copies go into one command encoder: N tensors, one GPU round trip.
 */
export function readBuffersSync<T>(b: WebGpuBackend, parts: ReadPart[], use: (bytes: ArrayBuffer) => T): T {
  const { staging, total } = stage(b, parts);
  try {
    mapReadSync(staging);
  } catch (e) {
    b.bufferManager.releaseBuffer(staging);
    throw e;
  }
  return consume(b, staging, total, use);
}

/** readBuffersSync's asynchronous twin (waits on the event loop instead of spinning). */
export async function readBuffersAsync<T>(
  b: WebGpuBackend,
  parts: ReadPart[],
  use: (bytes: ArrayBuffer) => T,
): Promise<T> {
  const { staging, total } = stage(b, parts);
  try {
    await staging.mapAsync(MapMode.READ);
  } catch (e) {
    b.bufferManager.releaseBuffer(staging);
    throw new WolfpackError('E_BACKEND', `webgpu: reading a GPU buffer failed: ${(e as Error).message}`);
  }
  return consume(b, staging, total, use);
}

const installed = new WeakSet<object>();

/** Replaces backend.readSync (OffscreenCanvas) with a staging-buffer read driven by spinDawn. */
export function installSyncRead(backend: tf.KernelBackend): void {
  if (installed.has(backend)) return;
  installed.add(backend);
  const b = backend as WebGpuBackend;
  const original = b.readSync.bind(b);
  b.readSync = (dataId: object): tf.backend_util.BackendValues => {
    const data = b.tensorMap.get(dataId);
    if (
      !data ||
      data.values != null ||
      data.dtype === 'string' ||
      data.dtype === 'complex64' ||
      !isGpuBuffer(data.resource)
    ) {
      return original(dataId);
    }
    const size = tf.util.sizeFromShape(data.shape) * 4;
    const bytes = readBuffersSync(b, [{ buffer: data.resource as GpuBuffer, size }], (ab) => ab.slice(0, size));
    const values = tf.util.convertBackendValuesAndArrayBuffer(bytes, data.dtype);
    return b.convertAndCacheOnCPU(dataId, values);
  };
}
