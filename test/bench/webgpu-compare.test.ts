// `npm run bench -- --backend webgpu` (= `wolfpack bench all --backend webgpu`): on lavapipe, with the
// small width-4 network, it measures the webgpu forward and training steps, counts their dispatches,
// writes webgpu-latest.{md,json}, and runs PyTorch on the GPU where a python has torch with CUDA (here:
// none, and the report says why). The figures themselves are for a GPU host (docs/GPU.md).
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { WebGpuComparison } from '../../bench/webgpu-compare.js';
import { runCli } from '../helpers/processes.js';
import { webGpuPrerequisitesMissing } from '../helpers/webgpu.js';

const why = webGpuPrerequisitesMissing();

t.test(
  'bench all --backend webgpu measures forward and training on webgpu and reports PyTorch beside it',
  { skip: why ?? false },
  async (t) => {
    const out = mkdtempSync(join(tmpdir(), 'wolfpack-bench-webgpu-'));
    t.teardown(() => rmSync(out, { recursive: true, force: true }));
    const r = await runCli(
      [
        'bench',
        'all',
        '--backend',
        'webgpu',
        '--software',
        '--width',
        '4',
        '--image-size',
        '32',
        '--batch',
        '2',
        '--reps',
        '1',
        '--out',
        out,
        '--json',
      ],
      240_000,
      { VK_ICD_FILENAMES: process.env.VK_ICD_FILENAMES ?? '' },
    );
    t.equal(r.code, 0, r.stderr.slice(-1500));
    const c = JSON.parse(r.stdout) as WebGpuComparison;
    t.equal(c.wolfpack.width, 4);
    t.ok(c.wolfpack.adapter?.software, 'ran on the software adapter it was allowed');
    for (const [name, p] of [
      ['forward stock', c.wolfpack.forward.stock],
      ['forward fused', c.wolfpack.forward.fused],
      ['train ddp', c.wolfpack.train.fused_ddp],
      ['train single', c.wolfpack.train.fused_single],
    ] as const) {
      t.ok(p !== undefined && p.img_s > 0 && p.dispatches > 0, `${name}: images/s and dispatches measured`);
    }
    t.ok(
      c.wolfpack.forward.fused!.dispatches < c.wolfpack.forward.stock!.dispatches,
      'the fused forward pass issues fewer dispatches',
    );
    t.ok(c.wolfpack.train.fused_ddp!.split_ms!.read >= 0, 'the step split is recorded');
    t.same(c.wolfpack.errors, []);
    t.notOk(c.torch.ok, 'no PyTorch figures for the width-4 network');
    t.match(c.torch.ok ? '' : c.torch.skipped, /--width 4/);
    const md = readFileSync(join(out, 'webgpu-latest.md'), 'utf8');
    t.match(md, /\| forward, fused \(WebGpuReplica\.predict\) \| [\d.]+ \| \d+ \| - \| - \|/);
    t.match(md, /stem width 4, not the real network/);
    t.match(
      md,
      /\| the same, captured and replayed \(a worker of a pack, as it runs\) \| [\d.]+ \| \d+ \| - \| - \|/,
      'the captured step as a worker runs it has its own row',
    );
    const streamed = c.wolfpack.train.fused_ddp!.streamed!;
    t.ok(
      streamed.img_s > 0 && streamed.buckets >= 1 && streamed.bucket_ms.length === streamed.buckets,
      `the step with its gradients in buckets: ${streamed.buckets} handed over at ${streamed.bucket_ms.join(', ')} ms`,
    );
    t.match(md, /Gradients in \d+ buckets of 25 MiB: handed to the ring at/);
    t.same(JSON.parse(readFileSync(join(out, 'webgpu-latest.json'), 'utf8')).wolfpack.batch, 2);
  },
);

t.test('PyTorch on the GPU is skipped with the reason where torch has no CUDA', { skip: why ?? false }, async (t) => {
  const { torchOnGpu } = await import('../../bench/webgpu-compare.js');
  const r = await torchOnGpu({ batch: 2, imageSize: 32 });
  if (r.ok) {
    t.ok(
      r.result.fp32!.train.img_s > 0 && r.result.default!.forward.img_s > 0,
      `PyTorch measured on ${r.result.device}`,
    );
  } else {
    t.match(r.skipped, /CUDA is not available|no python with torch/, r.skipped);
    t.match(r.command, /scripts\/gpu\/torch_resnet50\.py --batch 2 --image-size 32$/);
  }
});
