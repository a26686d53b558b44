// Counter-based random numbers for the data pipeline. Every random draw of a sample's augmentation is a
// pure function of (seed, epoch, sample index, stream), so a sample looks the same whichever worker
// loads it and however the data set is split; nothing carries state from one sample to the next.
import { WolfpackError } from '../errors.js';

/** Independent families of draws, so that e.g. the epoch shuffle never reuses augmentation numbers. */
export const STREAM = {
  AUGMENT: 0,
  PERMUTATION: 1,
  SYNTHETIC: 2,
} as const;

/** The two draws that transforms need; a scripted sequence can stand in for it in tests. */
export interface UniformSource {
  /** A number in [0, 1). */
  next(): number;
  /** A number in [a, b) (a + u * (b - a), as torch's uniform_). */
  uniform(a: number, b: number): number;
}

export interface SampleRng extends UniformSource {
  /** An integer in [0, n), n >= 1. */
  below(n: number): number;
}

const TWO_POW_32 = 4294967296;
const TWO_POW_53 = 9007199254740992;

// MurmurHash3's 32-bit finaliser: a bijection with full avalanche, cheap with Math.imul.
function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

function checkInteger(name: string, value: number): void {
  if (!Number.isSafeInteger(value)) {
    throw new WolfpackError('E_USAGE', `rng: ${name} must be a safe integer, got ${String(value)}`);
  }
}

// Folds the key words into one 32-bit key; two different start values give the two key halves, so a
// collision needs 64 bits to agree.
function deriveKey(start: number, words: number[]): number {
  let h = start;
  for (const w of words) h = fmix32((h ^ w) + 0x9e3779b9);
  return h;
}

function keyWords(seed: number, epoch: number, index: number, stream: number): number[] {
  // Each integer may exceed 32 bits: split into low and high words (two's complement for negatives).
  const split = (x: number): [number, number] => [x >>> 0, Math.floor(x / TWO_POW_32) >>> 0];
  return [...split(seed), ...split(epoch), ...split(index), ...split(stream)];
}

/**
 * The random source of one sample: its k-th output is a hash of (key, k), so the sequence can be
 * re-created anywhere from the four integers alone.
 */
export function sampleRng(seed: number, epoch: number, index: number, stream: number = STREAM.AUGMENT): SampleRng {
  checkInteger('seed', seed);
  checkInteger('epoch', epoch);
  checkInteger('index', index);
  checkInteger('stream', stream);
  const words = keyWords(seed, epoch, index, stream);
  const k0 = deriveKey(0x243f6a88, words);
  const k1 = deriveKey(0x85a308d3, words);
  let counter = 0;

  const word = (): number => {
    // Two rounds keyed by different halves: one round of fmix32 over a counter still shows patterns
    // in the low bits across neighbouring counters.
    const c = counter++;
    const a = fmix32((k0 ^ Math.imul(c, 0x9e3779b9)) >>> 0);
    return fmix32((a ^ k1) + Math.imul(c, 0x632be5ab));
  };
  const next = (): number => {
    // 53-bit resolution: 27 high bits of one word and 26 of the next, as in random.random().
    const hi = word() >>> 5;
    const lo = word() >>> 6;
    return (hi * 67108864 + lo) / TWO_POW_53;
  };
  return {
    next,
    uniform: (a: number, b: number): number => a + next() * (b - a),
    below: (n: number): number => Math.floor(next() * n),
  };
}

/**
 * The order in which an epoch visits n samples: a Fisher-Yates shuffle driven by the rng of
 * (seed, epoch, stream PERMUTATION), identical on every process.
 */
export function epochPermutation(seed: number, epoch: number, n: number): Uint32Array {
  if (!Number.isSafeInteger(n) || n < 0 || n >= TWO_POW_32) {
    throw new WolfpackError('E_USAGE', `epochPermutation: n must be an integer in [0, 2^32), got ${String(n)}`);
  }
  const rng = sampleRng(seed, epoch, 0, STREAM.PERMUTATION);
  const order = new Uint32Array(n);
  for (let i = 0; i < n; i++) order[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = rng.below(i + 1);
    const tmp = order[i]!;
    order[i] = order[j]!;
    order[j] = tmp;
  }
  return order;
}
