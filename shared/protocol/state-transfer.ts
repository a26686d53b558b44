// A model state in transit: parameters, moving statistics and Momentum accumulators, sent as parts of at
// most STATE_CHUNK_FLOATS floats, each a frame of its own. The coordinator sends the starting weights to
// rank 0 this way (`weightsPart`), and rank 0 sends back what training changed at each epoch end and on a
// stop (`statePart`, only the mutable ranges). Both directions use these two functions, so the chunking and
// the checks on what arrives (right buffer length, inside the expected range, nothing counted twice) are
// written once.
import { WolfpackError } from '../errors.js';
import { payloadFloats } from './codec.js';

export type StateKind = 'params' | 'stats' | 'accum';
export const STATE_KINDS: readonly StateKind[] = ['params', 'stats', 'accum'];
export type StateBuffers = Record<StateKind, Float32Array>;
export type StateRanges = Record<StateKind, { begin: number; end: number }>;

/** Floats per part: 16 MiB frames, well under a peer's frame limit, few enough for ResNet-50 (~5 per kind). */
export const STATE_CHUNK_FLOATS = 4 * 1024 * 1024;

/** The whole of every buffer. */
export function wholeRanges(bufs: StateBuffers): StateRanges {
  return {
    params: { begin: 0, end: bufs.params.length },
    stats: { begin: 0, end: bufs.stats.length },
    accum: { begin: 0, end: bufs.accum.length },
  };
}

/** One part as sent: which buffer, where in it, that buffer's length. */
export interface StatePart {
  kind: StateKind;
  offset: number;
  total: number;
}

/** Sends `ranges` of `bufs` in parts, in order params, stats, accum; `send` puts one part on the wire. */
export async function sendState(
  bufs: StateBuffers,
  ranges: StateRanges,
  send: (part: StatePart, payload: Uint8Array) => Promise<void>,
  chunkFloats = STATE_CHUNK_FLOATS,
): Promise<void> {
  for (const kind of STATE_KINDS) {
    const buf = bufs[kind];
    const { begin, end } = ranges[kind];
    for (let off = begin; off < end; off += chunkFloats) {
      const part = buf.subarray(off, Math.min(end, off + chunkFloats));
      await send(
        { kind, offset: off, total: buf.length },
        new Uint8Array(part.buffer, part.byteOffset, part.byteLength),
      );
    }
  }
}

/**
 * Receives parts from `next` into `bufs` until `ranges` are filled. A part for a buffer of another length,
 * outside its range, or beyond what is left of it is E_PROTOCOL, naming `from` (who sent it).
 */
export async function receiveState(
  bufs: StateBuffers,
  ranges: StateRanges,
  next: () => Promise<{ part: StatePart; payload: Uint8Array }>,
  from: string,
): Promise<void> {
  const left = {
    params: ranges.params.end - ranges.params.begin,
    stats: ranges.stats.end - ranges.stats.begin,
    accum: ranges.accum.end - ranges.accum.begin,
  };
  while (left.params + left.stats + left.accum > 0) {
    const { part, payload } = await next();
    const data = payloadFloats(payload);
    const dst = bufs[part.kind];
    const want = ranges[part.kind];
    if (
      part.total !== dst.length ||
      part.offset < want.begin ||
      part.offset + data.length > want.end ||
      data.length > left[part.kind]
    ) {
      throw new WolfpackError(
        'E_PROTOCOL',
        `state part ${part.kind} from ${from}: ${data.length} floats at ${part.offset} (of ${part.total}) ` +
          `are outside the expected [${want.begin}, ${want.end}) of ${dst.length}, ` +
          `or more than the ${left[part.kind]} still expected`,
      );
    }
    dst.set(data, part.offset);
    left[part.kind] -= data.length;
  }
}
