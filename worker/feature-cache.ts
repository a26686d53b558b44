// The feature cache (`--cache-features`): with the backbone frozen and BatchNorm frozen, the backbone's
// pooled output for a (sample, augmentation view) never changes, so a worker computes it once, keeps it,
// and later steps run only the head on it (FeatureTraining.computeHeadGradients) -- no decode, no backbone.
//
// What a view is (viewPlan):
//   --augment none      the eval transform (resize + centre crop) for training too: one view per sample,
//                       keyed by the image's content hash alone (the transform depends on nothing else);
//   --views K           the training augmentation drawn from (seed, epoch % K, sample index): K views,
//                       keyed by (content hash, sample index, epoch % K), since the draw depends on the index;
//   neither             a new draw every epoch (nothing repeats; the CLI refuses --cache-features then).
// Validation samples are cached too (evalFeatures: the eval transform, keyed by content hash), so from the
// second epoch the epoch-end evaluation runs the head alone.
// Memory is bounded: entries live in fixed-size pages of one Float32Array each, at most
// floor(maxBytes / (4 * dim)) entries, and the least recently used entry is evicted when full.
import { WolfpackError } from '../shared/errors.js';
import type { JobConfig, SampleRef } from '../shared/protocol/messages.js';
import type { Batch } from '../shared/train/replica.js';
import type { FeatureTraining } from '../shared/train/training-replica.js';
import { loadBatch, type ImageCache, type LoadOptions } from './batch-loader.js';

/** How a step's images are transformed and which cache view they are. */
export interface ViewPlan {
  /** Training augmentation (true) or the eval transform (false). */
  train: boolean;
  /** The epoch the augmentation is drawn from (epoch % K with --views K). */
  drawEpoch: number;
  /** The view's name in cache keys ('eval', or 'v' + drawEpoch). */
  view: string;
}

/** The eval transform's view: validation samples, and training ones with --augment none. */
const EVAL_VIEW = { train: false, view: 'eval' } as const;

export function viewPlan(config: Pick<JobConfig, 'augment' | 'views'>, epoch: number): ViewPlan {
  if (config.augment === 'none') return { ...EVAL_VIEW, drawEpoch: epoch };
  const k = config.views ?? 0;
  const drawEpoch = k > 0 ? epoch % k : epoch;
  return { train: true, drawEpoch, view: `v${drawEpoch}` };
}

/** loadBatch options for a training step of `epoch` under the job's --augment / --views. */
export function stepLoadOptions(
  config: Pick<JobConfig, 'augment' | 'views' | 'imageSize' | 'seed'>,
  epoch: number,
): LoadOptions {
  const plan = viewPlan(config, epoch);
  return { size: config.imageSize, seed: config.seed, epoch: plan.drawEpoch, train: plan.train };
}

/** The cache key of a sample in a view: content hash for the eval view, plus the sample index for drawn ones. */
export function featureKey(sample: SampleRef, plan: ViewPlan): string {
  return plan.train ? `${sample.h}/${sample.i}/${plan.view}` : sample.h;
}

export interface FeatureCacheStats {
  entries: number;
  capacity: number;
  bytes: number;
  hits: number;
  misses: number;
  evictions: number;
}

/** Entries per page (a page is one Float32Array of PAGE_ENTRIES * dim floats, allocated when first needed). */
const PAGE_ENTRIES = 256;

/** A bounded LRU map from key to a `dim`-float feature row, stored in pages of Float32Arrays. */
export class FeatureCache {
  readonly dim: number;
  readonly capacity: number;
  private readonly pages: Float32Array[] = [];
  /** key -> slot; Map iteration order is insertion order, kept as recency order (oldest first). */
  private readonly slots = new Map<string, number>();
  private readonly free: number[] = [];
  private used = 0;
  hits = 0;
  misses = 0;
  evictions = 0;

  constructor(dim: number, maxBytes: number) {
    if (!Number.isSafeInteger(dim) || dim < 1)
      throw new WolfpackError('E_USAGE', `FeatureCache: dim must be an integer >= 1, got ${dim}`);
    this.dim = dim;
    this.capacity = Math.floor(maxBytes / (4 * dim));
    if (this.capacity < 1)
      throw new WolfpackError(
        'E_USAGE',
        `FeatureCache: ${maxBytes} bytes hold no ${dim}-float feature row (${4 * dim} bytes)`,
      );
  }

  private row(slot: number): Float32Array {
    const p = Math.floor(slot / PAGE_ENTRIES);
    while (this.pages.length <= p) {
      const entries = Math.min(PAGE_ENTRIES, this.capacity - this.pages.length * PAGE_ENTRIES);
      this.pages.push(new Float32Array(entries * this.dim));
    }
    const o = (slot % PAGE_ENTRIES) * this.dim;
    return this.pages[p]!.subarray(o, o + this.dim);
  }

  /** The row of `key` (a view into the cache: copy it before the next put), marked most recently used. */
  get(key: string): Float32Array | undefined {
    const slot = this.slots.get(key);
    if (slot === undefined) {
      this.misses++;
      return undefined;
    }
    this.hits++;
    this.slots.delete(key);
    this.slots.set(key, slot);
    return this.row(slot);
  }

  has(key: string): boolean {
    return this.slots.has(key);
  }

  /** Stores a copy of `features[0 .. dim)` under `key`, evicting the least recently used entry when full. */
  put(key: string, features: Float32Array): void {
    if (features.length < this.dim)
      throw new WolfpackError('E_USAGE', `FeatureCache.put: ${features.length} floats, expected ${this.dim}`);
    let slot = this.slots.get(key);
    if (slot !== undefined) {
      this.slots.delete(key);
    } else if (this.free.length > 0) {
      slot = this.free.pop()!;
    } else if (this.used < this.capacity) {
      slot = this.used++;
    } else {
      const oldest = this.slots.keys().next().value as string;
      slot = this.slots.get(oldest)!;
      this.slots.delete(oldest);
      this.evictions++;
    }
    this.row(slot).set(features.subarray(0, this.dim));
    this.slots.set(key, slot);
  }

  get size(): number {
    return this.slots.size;
  }

  /** Bytes of feature storage allocated so far (at most capacity * dim * 4, rounded up to pages). */
  get bytes(): number {
    return this.pages.reduce((a, p) => a + p.byteLength, 0);
  }

  stats(): FeatureCacheStats {
    return {
      entries: this.slots.size,
      capacity: this.capacity,
      bytes: this.bytes,
      hits: this.hits,
      misses: this.misses,
      evictions: this.evictions,
    };
  }
}

/** A step's decoded images: all of the step's samples, or (`positions`) only those the cache lacked. */
export type StepBatch = Batch & { positions?: number[] };

/** What a cached step hands the head: every sample's features, in step order. */
export interface StepFeatures {
  features: Float32Array;
  labels: Int32Array;
  /** Samples whose features came from the cache. */
  cached: number;
  /** Samples the backbone ran on in this step. */
  computed: number;
  /** Step positions of the computed samples (their rows are in `features`). */
  computedAt: number[];
}

// ---- sharing new features over the ring ------------------------------------------------------------
// The coordinator deals each epoch's samples out afresh, so without sharing a worker would meet a
// sample it never computed about half the time in epoch 2 (with 2 workers), a quarter in epoch 3, ...
// Instead every rank puts the rows it computed this step into its own slots of an exchange buffer
// (zeros elsewhere) and the ring SUM all-reduces it: each slot has exactly one writer, so the sum
// hands every rank every new row exactly (x + 0 = x), and from the second epoch on every rank has them
// all. A slot is [1, sample index, hash length, hash in 24-bit pieces, features]; 24-bit integers are
// exact in float32.

const HASH_PIECES = 11; // 64 hex digits = 256 bits <= 11 * 24
const SLOT_HEADER = 3 + HASH_PIECES;

/** Float32s of the exchange buffer for a global batch over `world` ranks. */
export function exchangeSize(dim: number, globalBatch: number, world: number): number {
  return world * Math.ceil(globalBatch / world) * (SLOT_HEADER + dim);
}

function packHash(h: string, out: Float32Array, off: number): void {
  const hex = h.padEnd(HASH_PIECES * 6, '0');
  out[off] = h.length;
  for (let k = 0; k < HASH_PIECES; k++) out[off + 1 + k] = parseInt(hex.slice(k * 6, k * 6 + 6), 16);
}

function unpackHash(buf: Float32Array, off: number): string {
  let hex = '';
  for (let k = 0; k < HASH_PIECES; k++)
    hex += Math.round(buf[off + 1 + k]!)
      .toString(16)
      .padStart(6, '0');
  return hex.slice(0, Math.round(buf[off]!));
}

/** A worker's use of the cache: which images a step must decode, and the features of all its samples. */
export class StepFeatureCache {
  readonly cache: FeatureCache;

  constructor(
    private readonly config: JobConfig,
    private readonly images: ImageCache,
    dim: number,
  ) {
    this.cache = new FeatureCache(dim, (config.featureCacheMb ?? 1024) * 2 ** 20);
  }

  /** Decodes (with the step's transform) only the samples whose features are not cached now. */
  async load(samples: SampleRef[], epoch: number): Promise<StepBatch> {
    const plan = viewPlan(this.config, epoch);
    const positions: number[] = [];
    samples.forEach((s, k) => {
      if (!this.cache.has(featureKey(s, plan))) positions.push(k);
    });
    const batch = await loadBatch(
      this.images,
      positions.map((k) => samples[k]!),
      stepLoadOptions(this.config, epoch),
    );
    return { ...batch, positions };
  }

  /**
   * Every sample's features: cached rows, rows the backbone computes now from `decoded` (load()'s
   * output), and -- for a sample evicted since load() ran -- from images decoded here.
   */
  async features(
    replica: FeatureTraining,
    samples: SampleRef[],
    epoch: number,
    decoded: StepBatch,
  ): Promise<StepFeatures> {
    const plan = viewPlan(this.config, epoch);
    const dim = this.cache.dim;
    const features = new Float32Array(samples.length * dim);
    const labels = Int32Array.from(samples, (s) => s.l);
    const have = new Uint8Array(samples.length);
    let cached = 0;
    samples.forEach((s, k) => {
      const row = this.cache.get(featureKey(s, plan));
      if (row !== undefined) {
        features.set(row, k * dim);
        have[k] = 1;
        cached++;
      }
    });
    // Rows to compute: decoded ones the cache still lacks, then any missing sample decoded now.
    const per = decoded.size * decoded.size * 3;
    const positions = decoded.positions ?? samples.map((_, k) => k);
    const fromDecoded = positions.map((k, j) => ({ k, j })).filter(({ k }) => have[k] === 0);
    const missing = samples.map((_, k) => k).filter((k) => have[k] === 0 && !positions.includes(k));
    const extra =
      missing.length > 0
        ? await loadBatch(
            this.images,
            missing.map((k) => samples[k]!),
            stepLoadOptions(this.config, epoch),
          )
        : undefined;
    const count = fromDecoded.length + missing.length;
    if (count > 0) {
      const images = new Float32Array(count * per);
      fromDecoded.forEach(({ j }, n) => images.set(decoded.images.subarray(j * per, (j + 1) * per), n * per));
      if (extra) images.set(extra.images.subarray(0, missing.length * per), fromDecoded.length * per);
      const order = [...fromDecoded.map(({ k }) => k), ...missing];
      const out = await replica.computeFeatures({
        images,
        labels: Int32Array.from(order, (k) => labels[k]!),
        count,
        size: decoded.size,
      });
      order.forEach((k, n) => {
        const row = out.subarray(n * dim, (n + 1) * dim);
        features.set(row, k * dim);
        this.cache.put(featureKey(samples[k]!, plan), row);
      });
    }
    return {
      features,
      labels,
      cached,
      computed: count,
      computedAt: count > 0 ? [...fromDecoded.map(({ k }) => k), ...missing] : [],
    };
  }

  /**
   * Features of validation samples (the eval transform, keyed by content hash like --augment none's):
   * cached rows, and the backbone run only on the samples not cached yet -- so from the second epoch on
   * a worker's evaluation is the head alone. Rows in `samples` order; `cached`: how many were cached.
   */
  async evalFeatures(
    replica: FeatureTraining,
    samples: SampleRef[],
  ): Promise<{ features: Float32Array; cached: number }> {
    const dim = this.cache.dim;
    const out = new Float32Array(samples.length * dim);
    const missing: number[] = [];
    const plan: ViewPlan = { ...EVAL_VIEW, drawEpoch: 0 };
    samples.forEach((s, k) => {
      const row = this.cache.get(featureKey(s, plan));
      if (row !== undefined) out.set(row, k * dim);
      else missing.push(k);
    });
    if (missing.length > 0) {
      const batch = await loadBatch(
        this.images,
        missing.map((k) => samples[k]!),
        { size: this.config.imageSize, seed: this.config.seed, epoch: 0, train: plan.train },
      );
      const computed = await replica.computeFeatures(batch);
      missing.forEach((k, n) => {
        const row = computed.subarray(n * dim, (n + 1) * dim);
        out.set(row, k * dim);
        this.cache.put(featureKey(samples[k]!, plan), row);
      });
    }
    return { features: out, cached: samples.length - missing.length };
  }

  /** The exchange buffer of this step with this rank's newly computed rows in its slots (see above). */
  packExchange(rank: number, world: number, samples: SampleRef[], f: StepFeatures): Float32Array {
    const dim = this.cache.dim;
    const slot = SLOT_HEADER + dim;
    const per = Math.ceil(this.config.globalBatch / world);
    const size = exchangeSize(dim, this.config.globalBatch, world);
    // world changes when the ring is re-formed
    if (this.exchange?.length !== size) this.exchange = new Float32Array(size);
    const buf = this.exchange;
    buf.fill(0);
    f.computedAt.slice(0, per).forEach((k, n) => {
      const o = (rank * per + n) * slot;
      const s = samples[k]!;
      buf[o] = 1;
      buf[o + 1] = s.i;
      packHash(s.h, buf, o + 2);
      buf.set(f.features.subarray(k * dim, (k + 1) * dim), o + SLOT_HEADER);
    });
    return buf;
  }

  /** Stores every row of the summed exchange buffer (the other ranks' new rows, and this rank's again). */
  unpackExchange(buf: Float32Array, epoch: number): number {
    const plan = viewPlan(this.config, epoch);
    const slot = SLOT_HEADER + this.cache.dim;
    let n = 0;
    for (let o = 0; o + slot <= buf.length; o += slot) {
      if (buf[o] !== 1) continue;
      const sample = { h: unpackHash(buf, o + 2), l: 0, i: Math.round(buf[o + 1]!) };
      const key = featureKey(sample, plan);
      if (!this.cache.has(key)) {
        this.cache.put(key, buf.subarray(o + SLOT_HEADER, o + slot));
        n++;
      }
    }
    return n;
  }

  private exchange: Float32Array | undefined;
}
