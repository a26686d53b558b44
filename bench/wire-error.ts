// The 16-bit wire's error on a real model's gradients, after one step: N replicas compute one full
// fine-tuning step of ResNet-50 (randomly initialised as in `bench model`: torchvision flavour, 2 classes,
// BatchNorm in training mode) on their own draw of random images (bench/synthetic-batch.ts), the ring
// all-reduce sums the N gradient buffers in float32, bf16 and fp16 (N ranks over the in-process memory
// ring), and every parameter tensor's error against the float32 sum is reported: the L2 relative error
// ||g16 - g32|| / ||g32|| and the largest element's error relative to the tensor's largest |g32|, as
// min / median / max over the tensors, with the worst tensor named.
//   node --import tsx bench/wire-error.ts [--workers 4] [--batch-per-worker 4] [--image-size 64]
import { basename } from 'node:path';
import { parseArgs } from 'node:util';
import { createRingBuffer, ringAllReduce } from '../shared/allreduce/ring.js';
import type { WireFormat } from '../shared/allreduce/wire.js';
import { selectBackend } from '../shared/backend/select.js';
import { initModel } from '../shared/model/weights.js';
import { maxRelToScale, relL2 } from '../shared/weights/compare.js';
import { Replica } from '../shared/train/replica.js';
import { createMemoryRing } from '../shared/transport/memory-link.js';
import { median } from './machine.js';
import { syntheticBatch } from './synthetic-batch.js';

interface TensorError {
  name: string;
  size: number;
  /** ||g16 - g32|| / ||g32|| */
  l2: number;
  /** max |g16 - g32| / max |g32| */
  maxAbs: number;
}

function tensorError(name: string, a: Float32Array, ref: Float32Array): TensorError {
  return { name, size: ref.length, l2: relL2(a, ref), maxAbs: maxRelToScale(a, ref) };
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { workers: { type: 'string' }, 'batch-per-worker': { type: 'string' }, 'image-size': { type: 'string' } },
  });
  const workers = Number(values.workers ?? 4);
  const perWorker = Number(values['batch-per-worker'] ?? 4);
  const imageSize = Number(values['image-size'] ?? 64);
  const sel = await selectBackend('auto');
  const state = initModel({ flavour: 'torchvision', width: 64, numClasses: 2 }, 0);
  const replica = new Replica(state, { lr: 1e-3, momentum: 0.9, freeze: 'none', bn: 'train' });
  const grads: Float32Array[] = [];
  try {
    for (let r = 0; r < workers; r++) {
      // each replica its own draw of random images
      const batch = syntheticBatch(perWorker, imageSize, 2, Math.imul(r + 1, 2654435761));
      await replica.computeGradients(batch, workers * perWorker);
      grads.push(Float32Array.from(replica.reduce.grads(replica.buffer)));
    }
  } finally {
    replica.dispose();
  }
  const sum = async (wire: WireFormat): Promise<Float32Array> => {
    const bufs = grads.map((g) => {
      const b = createRingBuffer(g.length);
      b.set(g);
      return b;
    });
    const links = createMemoryRing(workers);
    await Promise.all(bufs.map((b, rank) => ringAllReduce(b, rank, workers, links[rank]!, { wire })));
    return bufs[0]!;
  };
  const ref = await sum('fp32');
  const slots = state.layout.trainable;
  const out: Record<string, unknown> = {
    bench: 'wire_error_after_one_step',
    backend: sel.backend,
    workers,
    batch_per_worker: perWorker,
    image_size: imageSize,
    tensors: slots.length,
    elements: ref.length,
  };
  for (const wire of ['bf16', 'fp16'] as const) {
    const got = await sum(wire);
    const errs = slots.map((s) =>
      tensorError(s.spec.name, got.subarray(s.offset, s.offset + s.size), ref.subarray(s.offset, s.offset + s.size)),
    );
    const stat = (f: (e: TensorError) => number) => {
      const v = errs.map(f);
      const worst = errs[v.indexOf(Math.max(...v))]!;
      return { min: Math.min(...v), median: median(v), max: Math.max(...v), worst: worst.name };
    };
    out[wire] = { l2_rel: stat((e) => e.l2), max_abs_rel: stat((e) => e.maxAbs), whole: tensorError('all', got, ref) };
  }
  process.stdout.write(`${JSON.stringify(out)}\n`);
}

if (basename(process.argv[1] ?? '') === 'wire-error.ts') {
  main().then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`wire-error: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
