// One training step of the simulated cluster (`wolfpack bench cluster`), as each rank runs it: a timed
// model of a GPU's compute around the real gradient all-reduce.
//
// Compute is modelled, not done: a step of T ms is a forward pass of T/3 (a wait: the real work would
// be on a GPU, so it takes no CPU here), then a backward pass of 2T/3 that releases each layer's
// gradients in reverse layer order, layer i at the moment the backward has covered its share of the
// parameters (release times proportional to the cumulative size). The gradient schedule decides what
// the ring does with them:
//
//   none     today's design: one ring all-reduce of the whole float32 buffer after the last layer
//            is released (nothing overlaps the backward pass).
//   overlap  DDP-style buckets of about --bucket-mb MiB (default 25, DDP's bucket_cap_mb) in release
//            order: reverseBuckets over the buffer with the layer boundaries as cuts
//            (shared/allreduce/buckets.ts), each all-reduced by bucketedAllReduce as soon as the backward
//            pass has released every layer in it, while the backward pass goes on. begin() starts the
//            bucketed all-reduce, whose ready(k) waits for bucket k's last layer; ready(i) marks layer i
//            released; finish() awaits the last bucket. Buckets run one after another on the link
//            (the ring's receiver is ordered and they share the receive slots); each bucket's segments are
//            the whole buffer's cut to it, so the result is the bits of --schedule none's all-reduce.
//   --wire   what the gradient all-reduce sends: fp32, or bf16/fp16 (shared/allreduce/wire.ts), half the bytes.
//
// The step records when each phase ended, so that the caller can report the all-reduce time the
// backward pass did not hide (exposed) beside the whole step.
import { bucketElemsOfMb, reverseBuckets, type Bucket } from '../shared/allreduce/buckets.js';
import { MAX_CHUNK_KIB, type RingStats } from '../shared/allreduce/ring.js';
import { WolfpackError } from '../shared/errors.js';
import { MAX_SLOT_PAIRS } from '../shared/allreduce/simd-add.js';

export const SCHEDULES = ['none', 'overlap'] as const;
export type GradScheduleKind = (typeof SCHEDULES)[number];
/** DDP's default bucket size, MiB. */
export const DEFAULT_BUCKET_MB = 25;
export { WIRE_FORMATS, type WireFormat } from '../shared/allreduce/wire.js';
import { WIRE_FORMATS, type WireFormat } from '../shared/allreduce/wire.js';

export interface ScheduleOptions {
  schedule: GradScheduleKind;
  /**
   * Bucket size in MiB (2^20 bytes of float32, as DDP's bucket_cap_mb), for --schedule overlap
   * (default DEFAULT_BUCKET_MB).
   */
  bucketMb?: number;
  /** --inflight: buckets all-reduced at once (bucketedAllReduce's inflight): 1 (default: one after another) to 4. */
  inflight?: number;
  /**
   * --chunk-kib: the most KiB of float32 in one ring message (RingOptions.chunkElems = 256 x this; default
   * DEFAULT_CHUNK_ELEMS, 4096 KiB). Each hop forwards a whole message, so on a slow link a big one adds its
   * transfer time to every one of a bucket's 2(N-1) hops.
   */
  chunkKib?: number;
  wire: WireFormat;
}

/** Throws E_USAGE for schedule options the current ring cannot run, saying what is missing. */
export function checkScheduleOptions(o: ScheduleOptions): void {
  if (!SCHEDULES.includes(o.schedule))
    throw new WolfpackError(
      'E_USAGE',
      `--schedule: expected one of ${SCHEDULES.join(', ')}, got '${String(o.schedule)}'`,
    );
  if (!WIRE_FORMATS.includes(o.wire))
    throw new WolfpackError('E_USAGE', `--wire: expected one of ${WIRE_FORMATS.join(', ')}, got '${String(o.wire)}'`);
  if (o.bucketMb !== undefined && o.schedule !== 'overlap') {
    throw new WolfpackError('E_USAGE', '--bucket-mb applies to --schedule overlap only');
  }
  if (o.inflight !== undefined && o.schedule !== 'overlap')
    throw new WolfpackError('E_USAGE', '--inflight applies to --schedule overlap only');
  if (
    o.inflight !== undefined &&
    !(Number.isSafeInteger(o.inflight) && o.inflight >= 1 && o.inflight <= MAX_SLOT_PAIRS)
  )
    throw new WolfpackError(
      'E_USAGE',
      `--inflight must be an integer from 1 to ${MAX_SLOT_PAIRS}, got ${String(o.inflight)}`,
    );
  if (o.chunkKib !== undefined && !(Number.isSafeInteger(o.chunkKib) && o.chunkKib >= 1 && o.chunkKib <= MAX_CHUNK_KIB))
    throw new WolfpackError(
      'E_USAGE',
      `--chunk-kib must be an integer from 1 to ${MAX_CHUNK_KIB}, got ${String(o.chunkKib)}`,
    );
  if (o.bucketMb !== undefined && !(Number.isFinite(o.bucketMb) && o.bucketMb > 0)) {
    throw new WolfpackError('E_USAGE', `--bucket-mb must be a positive number, got ${o.bucketMb}`);
  }
}

/** A layer's gradients: a range of the flat gradient buffer. */
export interface GradLayer {
  offset: number;
  size: number;
}

/** Layers in the order the backward pass releases them: the reverse of their order in the buffer. */
export function releaseOrder(sizes: readonly number[]): GradLayer[] {
  const layers: GradLayer[] = [];
  let offset = 0;
  for (const size of sizes) {
    if (!Number.isSafeInteger(size) || size < 1)
      throw new WolfpackError('E_USAGE', `layer sizes must be positive integers, got ${size}`);
    layers.push({ offset, size });
    offset += size;
  }
  return layers.reverse();
}

export interface StepTimeline {
  /** End of the forward pass, ms from the step's start. */
  forwardMs: number;
  /** When layer i (release order) is released, ms from the step's start; the last is computeMs. */
  releaseMs: number[];
}

/** Forward T/3, then the layers released over 2T/3 in proportion to their sizes. */
export function stepTimeline(layers: readonly GradLayer[], computeMs: number): StepTimeline {
  if (!(Number.isFinite(computeMs) && computeMs >= 0))
    throw new WolfpackError('E_USAGE', `computeMs must be a number >= 0, got ${computeMs}`);
  const total = layers.reduce((a, l) => a + l.size, 0);
  const forwardMs = computeMs / 3;
  const backwardMs = computeMs - forwardMs;
  const releaseMs: number[] = [];
  let done = 0;
  for (const l of layers) {
    done += l.size;
    releaseMs.push(forwardMs + (total === 0 ? backwardMs : (backwardMs * done) / total));
  }
  return { forwardMs, releaseMs };
}

/** One all-reduce of `region` (a view of the gradient buffer) on the ring, with the next step number. */
export type Collective = (region: Float32Array) => Promise<RingStats>;
/** bucketedAllReduce of the whole gradient buffer over `buckets` on the ring, with the next step numbers. */
export type BucketedCollective = (
  buckets: readonly Bucket[],
  ready: (k: number) => Promise<void>,
) => Promise<RingStats>;

/** What a gradient schedule does with the released layers in one step. */
export interface GradSchedule {
  /** A new step begins (before the forward pass). */
  begin(): void;
  /** Layer i (release order) has its final gradients in the buffer. */
  ready(i: number): void;
  /** After the last ready(): resolves when every gradient is reduced. */
  finish(): Promise<{ bytesSent: number; commStart: number }>;
}

/** The overlap schedule's buckets over layers in buffer order: reverseBuckets with the layer boundaries as cuts. */
export function gradBuckets(layerSizes: readonly number[], bucketMb = DEFAULT_BUCKET_MB): Bucket[] {
  const cuts: number[] = [];
  let at = 0;
  for (const s of layerSizes) {
    cuts.push(at);
    at += s;
  }
  return reverseBuckets(at, bucketElemsOfMb(bucketMb), cuts);
}

/**
 * For each bucket, the index (release order) of the layer whose release completes it: the first
 * released layer that starts at or below the bucket's start (the backward pass releases from the end).
 */
export function bucketReadyAfter(buckets: readonly Bucket[], layers: readonly GradLayer[]): number[] {
  return buckets.map((b) => {
    const i = layers.findIndex((l) => l.offset <= b.begin);
    if (i < 0) throw new WolfpackError('E_USAGE', `bucket [${b.begin}, ${b.end}) starts before every layer`);
    return i;
  });
}

/** The schedule for `opts` over `buf`, whose layers the backward pass releases in `layers`' order. */
export function createSchedule(
  opts: ScheduleOptions,
  buf: Float32Array,
  layers: readonly GradLayer[],
  allReduce: Collective,
  bucketed?: BucketedCollective,
): GradSchedule {
  checkScheduleOptions(opts);
  if (opts.schedule === 'overlap') {
    if (bucketed === undefined) throw new WolfpackError('E_USAGE', '--schedule overlap needs a bucketed collective');
    const sizesInBufferOrder = [...layers].sort((a, b) => a.offset - b.offset).map((l) => l.size);
    const buckets = gradBuckets(sizesInBufferOrder, opts.bucketMb ?? DEFAULT_BUCKET_MB);
    const after = bucketReadyAfter(buckets, layers);
    let released = -1;
    let waiters: Array<{ need: number; resolve: () => void }> = [];
    let commStart = 0;
    let running: Promise<RingStats> | null = null;
    return {
      begin: () => {
        released = -1;
        waiters = [];
        commStart = 0;
        const ready = (k: number): Promise<void> => {
          const need = after[k]!;
          const mark = (): void => {
            if (k === 0) commStart = performance.now();
          };
          if (released >= need) {
            mark();
            return Promise.resolve();
          }
          return new Promise<void>((resolve) => {
            waiters.push({
              need,
              resolve: () => {
                mark();
                resolve();
              },
            });
          });
        };
        running = bucketed(buckets, ready);
        running.catch(() => undefined); // awaited in finish(); never an unhandled rejection meanwhile
      },
      ready: (i: number) => {
        released = Math.max(released, i);
        const now = waiters.filter((w) => w.need <= released);
        waiters = waiters.filter((w) => w.need > released);
        for (const w of now) w.resolve();
      },
      finish: async () => {
        if (running === null) throw new WolfpackError('E_USAGE', 'finish() before begin()');
        const s = await running;
        running = null;
        return { bytesSent: s.bytesSent, commStart };
      },
    };
  }
  // --schedule none: nothing happens while the backward pass runs; one all-reduce of the whole buffer after it.
  return {
    begin: () => undefined,
    ready: () => undefined,
    finish: async () => {
      const commStart = performance.now();
      const s = await allReduce(buf);
      return { bytesSent: s.bytesSent, commStart };
    },
  };
}

/** Waits until performance.now() >= `t` (never returns early). */
export async function sleepUntil(t: number): Promise<void> {
  for (;;) {
    const d = t - performance.now();
    if (d <= 0) return;
    await new Promise((resolve) => setTimeout(resolve, Math.max(1, Math.ceil(d))));
  }
}

/** When each phase of one step ended, ms (performance.now). */
export interface StepMarks {
  start: number;
  forwardEnd: number;
  backwardEnd: number;
  commStart: number;
  end: number;
  bytesSent: number;
}

/** Runs one modelled step: forward wait, layer releases into `schedule`, then its finish(). */
export async function modelledStep(timeline: StepTimeline, schedule: GradSchedule): Promise<StepMarks> {
  const start = performance.now();
  schedule.begin();
  await sleepUntil(start + timeline.forwardMs);
  const forwardEnd = performance.now();
  for (let i = 0; i < timeline.releaseMs.length; i++) {
    await sleepUntil(start + timeline.releaseMs[i]!);
    schedule.ready(i);
  }
  const backwardEnd = performance.now();
  const { bytesSent, commStart } = await schedule.finish();
  return { start, forwardEnd, backwardEnd, commStart, end: performance.now(), bytesSent };
}
