// Reusable mapped staging buffers between the host and the GPU, made once and kept:
//  - RangeReader reads ranges of a GPU buffer back one by one while the GPU is still working: each
//    range's copy closes a submission of a replayed step (capture.ts's ReplayCut) and its staging buffer
//    is mapped right after, so the host has range k (a bucket of gradients) while the GPU computes the
//    rest of the backward pass;
//  - MappedUpload writes host data into a GPU buffer through a staging buffer the host writes directly
//    (mapped for writing), in place of queue.writeBuffer, which copies the data once more into Dawn's own
//    staging memory first; the staging buffer is mapped again as soon as its copy has run, ready for the
//    next upload.
import { spinDawn } from './sync-read.js';
import type { ReplayCut } from './capture.js';
import { BufferUsage, MapMode, type ByteRange, type GpuBuffer, type WebGpuBackend } from './types.js';
import { WolfpackError } from '../../errors.js';

/** Ranges of one GPU buffer (bytes, multiples of 4), each read back through its own staging buffer. */
export class RangeReader {
  private readonly staging: GpuBuffer[];

  constructor(
    b: WebGpuBackend,
    private readonly src: GpuBuffer,
    readonly ranges: readonly ByteRange[],
  ) {
    for (const r of ranges)
      if (r.begin % 4 !== 0 || r.end % 4 !== 0 || r.end <= r.begin || r.end > src.size)
        throw new WolfpackError(
          'E_BACKEND',
          `RangeReader: range [${r.begin}, ${r.end}) of a ${src.size}-byte buffer ` +
            '(needs 0 <= begin < end, multiples of 4)',
        );
    this.staging = ranges.map((r) =>
      b.device.createBuffer({ size: r.end - r.begin, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST }),
    );
  }

  /**
   * The replay cut that copies range k after `after` commands and maps it once submitted. `read` settles
   * after `use` has had the range's bytes (valid only during the call), or with the mapping's error.
   * Range k's staging buffer must not be in another step's cut that has not settled.
   */
  cut(k: number, after: number, use: (bytes: ArrayBuffer) => void): { cut: ReplayCut; read: Promise<void> } {
    const r = this.ranges[k]!;
    const buf = this.staging[k]!;
    let settle!: { resolve: () => void; reject: (e: unknown) => void };
    const read = new Promise<void>((resolve, reject) => {
      settle = { resolve, reject };
    });
    const mapped = (): void => {
      try {
        use(buf.getMappedRange());
        settle.resolve();
      } catch (e) {
        settle.reject(e);
      } finally {
        buf.unmap();
      }
    };
    const failed = (e: unknown): void =>
      settle.reject(
        new WolfpackError(
          'E_BACKEND',
          `webgpu: reading back bytes ${r.begin}..${r.end} failed: ${(e as Error)?.message}`,
        ),
      );
    return {
      read,
      cut: {
        after,
        encode: (enc) => enc.copyBufferToBuffer(this.src, r.begin, buf, 0, r.end - r.begin),
        submitted: () => void buf.mapAsync(MapMode.READ).then(mapped, failed),
      },
    };
  }

  dispose(): void {
    for (const buf of this.staging) buf.destroy();
  }
}

/** Uploads of up to `bytes` bytes through `count` staging buffers mapped for writing, used in turn. */
export class MappedUpload {
  private readonly buffers: GpuBuffer[];
  private failure: unknown;
  private next = 0;

  constructor(
    private readonly b: WebGpuBackend,
    readonly bytes: number,
    count = 2,
  ) {
    this.buffers = Array.from({ length: count }, () =>
      b.device.createBuffer({
        size: Math.max(4, bytes),
        usage: BufferUsage.MAP_WRITE | BufferUsage.COPY_SRC,
        mappedAtCreation: true,
      }),
    );
  }

  /**
   * Copies `data` into `dst` at `dstOffset` bytes, after every command recorded so far and before any
   * recorded later: TF.js's pending work is submitted first, the copy in a submission of its own. Waits
   * (driving Dawn's ticks) only when the staging buffer whose turn it is has not been mapped again yet.
   */
  write(dst: GpuBuffer, dstOffset: number, data: Float32Array): void {
    if (data.byteLength > this.bytes)
      throw new WolfpackError(
        'E_BACKEND',
        `MappedUpload: ${data.byteLength} bytes for a ${this.bytes}-byte staging buffer`,
      );
    const buf = this.buffers[this.next]!;
    this.next = (this.next + 1) % this.buffers.length;
    if (buf.mapState !== 'mapped')
      spinDawn(() => buf.mapState === 'mapped' || this.failure !== undefined, undefined, 'a staging buffer mapping');
    if (this.failure !== undefined)
      throw new WolfpackError(
        'E_BACKEND',
        `webgpu: mapping an upload staging buffer failed: ${(this.failure as Error)?.message ?? String(this.failure)}`,
      );
    new Float32Array(buf.getMappedRange(0, data.byteLength)).set(data);
    buf.unmap();
    const b = this.b;
    b.endComputePassEncoder();
    if (b.commandEncoder) b.submitQueue();
    const enc = b.device.createCommandEncoder();
    enc.copyBufferToBuffer(buf, 0, dst, dstOffset, data.byteLength);
    b.queue.submit([enc.finish()]);
    // Mapped again once the copy has run: the host writes the next upload without waiting.
    buf.mapAsync(MapMode.WRITE).catch((e: unknown) => {
      this.failure ??= e ?? new Error('mapAsync failed');
    });
  }

  dispose(): void {
    for (const buf of this.buffers) buf.destroy();
  }
}
