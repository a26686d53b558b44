// Turns a list of sample references into a Batch: looks the image bytes up by hash, decodes and
// augments them with sharp (on libuv's thread pool, so decoding of the next step overlaps this
// step's compute) and packs them into one NHWC Float32Array.
import { WolfpackError } from '../shared/errors.js';
import { drawTrainAugment, evalTransform, imageSize, trainTransform } from '../shared/data/transforms.js';
import type { SampleRef } from '../shared/protocol/messages.js';
import type { Batch } from '../shared/train/replica.js';

export class ImageCache {
  private readonly blobs = new Map<string, Uint8Array>();

  /** Stores the blobs of a `blobs` message: items' byte lengths, payload concatenated in order. */
  addAll(items: { h: string; n: number }[], payload: Uint8Array): void {
    let off = 0;
    for (const { h, n } of items) {
      if (off + n > payload.length)
        throw new WolfpackError(
          'E_PROTOCOL',
          `blobs: item ${h} runs past the payload (${off + n} > ${payload.length})`,
        );
      // copy: the payload's frame buffer is released after this message
      this.blobs.set(h, Uint8Array.prototype.slice.call(payload, off, off + n));
      off += n;
    }
    if (off !== payload.length)
      throw new WolfpackError('E_PROTOCOL', `blobs: ${payload.length - off} bytes beyond the listed items`);
  }

  get(hash: string): Uint8Array {
    const b = this.blobs.get(hash);
    if (!b) throw new WolfpackError('E_PROTOCOL', `image ${hash} was never sent to this worker`);
    return b;
  }

  get size(): number {
    return this.blobs.size;
  }
}

export interface LoadOptions {
  size: number;
  seed: number;
  epoch: number;
  /** Training augmentation (RandomResizedCrop + flip) or evaluation transforms. */
  train: boolean;
}

export async function loadBatch(cache: ImageCache, samples: SampleRef[], opts: LoadOptions): Promise<Batch> {
  const per = opts.size * opts.size * 3;
  const images = new Float32Array(samples.length * per);
  const labels = new Int32Array(samples.length);
  await Promise.all(
    samples.map(async (s, k) => {
      const bytes = cache.get(s.h);
      let pixels: Float32Array;
      if (opts.train) {
        const { width, height } = await imageSize(bytes, s.h);
        pixels = await trainTransform(
          bytes,
          opts.size,
          drawTrainAugment(opts.seed, opts.epoch, s.i, width, height),
          s.h,
        );
      } else {
        pixels = await evalTransform(bytes, opts.size, s.h);
      }
      images.set(pixels, k * per);
      labels[k] = s.l;
    }),
  );
  return { images, labels, count: samples.length, size: opts.size };
}
