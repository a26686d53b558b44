// The benchmarks' input: a batch whose values do not change what a step costs.
import type { Batch } from '../shared/train/replica.js';

/**
 * Random N(0,1)-like images (a fixed LCG started at `seed`; the values do not change the cost) and labels
 * 0, 1, .., classes-1, 0, ...
 */
export function syntheticBatch(count: number, size: number, classes = 2, seed = 12345): Batch {
  const images = new Float32Array(count * size * size * 3);
  let s = seed >>> 0;
  for (let i = 0; i < images.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    images[i] = (s / 2147483648 - 1) * 1.7;
  }
  return { images, labels: Int32Array.from({ length: count }, (_, i) => i % classes), count, size };
}
