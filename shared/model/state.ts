// A model's numbers live in two flat Float32Arrays, in model layout (convs HWIO, dense [in, out]):
// `params` holds what the optimizer trains, `stats` the BatchNorm moving statistics. Flat buffers let
// the optimizer update the whole model in one loop, let the ring all-reduce work on one buffer, and
// make a replica checksum a single pass.
import type { NetworkSpec, ParamSpec } from './spec.js';

export interface Slot {
  spec: ParamSpec;
  /** Offset (in floats) into `params` (trainable) or `stats` (moving statistics). */
  offset: number;
  size: number;
}

export type Freeze = 'none' | 'backbone';

export class ParamLayout {
  readonly net: NetworkSpec;
  readonly trainable: Slot[] = [];
  readonly stats: Slot[] = [];
  readonly paramCount: number;
  readonly statCount: number;
  private readonly byName = new Map<string, { kind: 'params' | 'stats'; slot: Slot }>();

  constructor(net: NetworkSpec) {
    this.net = net;
    let p = 0;
    let s = 0;
    for (const spec of net.params) {
      const size = spec.shape.reduce((a, b) => a * b, 1);
      if (spec.trainable) {
        const slot = { spec, offset: p, size };
        this.trainable.push(slot);
        this.byName.set(spec.name, { kind: 'params', slot });
        p += size;
      } else {
        const slot = { spec, offset: s, size };
        this.stats.push(slot);
        this.byName.set(spec.name, { kind: 'stats', slot });
        s += size;
      }
    }
    this.paramCount = p;
    this.statCount = s;
  }

  find(name: string): { kind: 'params' | 'stats'; slot: Slot } | undefined {
    return this.byName.get(name);
  }

  /** The parameters the optimizer updates: all of them, or only the head's. */
  trainableFor(freeze: Freeze): Slot[] {
    return freeze === 'backbone' ? this.trainable.filter((s) => s.spec.head) : this.trainable;
  }

  /** The contiguous range of `params` those slots occupy (the head is last, so both are ranges). */
  trainableRange(freeze: Freeze): { begin: number; end: number } {
    const slots = this.trainableFor(freeze);
    // Never empty: every network has a trainable head.
    const first = slots[0]!;
    const last = slots[slots.length - 1]!;
    return { begin: first.offset, end: last.offset + last.size };
  }
}

/** A half-open range of floats, [begin, end). */
export interface FloatRange {
  begin: number;
  end: number;
}

/** A range of each flat buffer of a replica's state: parameters, moving statistics, Momentum. */
export type MutableRanges = Record<'params' | 'stats' | 'accum', FloatRange>;

/**
 * The parts of a replica's state that training can change: the trained parameters and their Momentum
 * (all of them, or the head's with --freeze backbone), and the moving statistics only with --bn train.
 * Everything outside these ranges stays what the job started with, on every replica -- so an epoch's
 * state transfer to the coordinator (checkpoints) need only carry these.
 */
export function mutableRanges(layout: ParamLayout, freeze: Freeze, bn: 'train' | 'frozen'): MutableRanges {
  const trained = layout.trainableRange(freeze);
  return {
    params: trained,
    accum: trained,
    stats: bn === 'train' ? { begin: 0, end: layout.statCount } : { begin: 0, end: 0 },
  };
}

export interface ModelState {
  layout: ParamLayout;
  params: Float32Array;
  stats: Float32Array;
}

export function emptyState(layout: ParamLayout): ModelState {
  return { layout, params: new Float32Array(layout.paramCount), stats: new Float32Array(layout.statCount) };
}

/** A view of one named tensor's numbers inside the flat buffers. */
export function view(state: ModelState, name: string): Float32Array {
  const hit = state.layout.find(name);
  if (!hit) throw new Error(`no parameter named ${name}`);
  const buf = hit.kind === 'params' ? state.params : state.stats;
  return buf.subarray(hit.slot.offset, hit.slot.offset + hit.slot.size);
}
