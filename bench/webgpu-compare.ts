// `wolfpack bench webgpu` (and `npm run bench -- --backend webgpu`): ResNet-50 training and forward
// images/s on the webgpu backend (bench/webgpu.ts) beside PyTorch on the same GPU, in one run
// (scripts/gpu/torch_resnet50.py: CUDA, strict fp32 and PyTorch's default TF32 arithmetic), with the
// dispatch counts and the per-kernel GPU profile that limit going further. PyTorch is skipped, with the
// reason, where no python has torch with CUDA (this 2-core machine: lavapipe and a CPU-only torch).
//   node --import tsx bench/webgpu-compare.ts [same flags as `wolfpack bench webgpu`]  (the bundle on a GPU host)
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { basename, join, resolve } from 'node:path';
import { num, parse } from '../shared/config/args.js';
import { packageRoot } from '../shared/paths.js';
import { machineInfo, round, type MachineInfo } from './machine.js';
import { runCommand } from './command.js';
import type { PeerRun } from './model.js';
import { fmt, table } from './report.js';
import { benchWebGpu, type Phase, type PhaseResult, type WebGpuBenchResult } from './webgpu.js';

/** What scripts/gpu/torch_resnet50.py prints. */
export interface TorchCudaResult {
  bench: 'torch_resnet50_cuda';
  batch: number;
  image_size: number;
  torch?: string;
  device?: string;
  cuda?: string;
  cudnn?: number;
  model?: string;
  error?: string;
  fp32?: TorchSetting;
  default?: TorchSetting;
}

interface TorchSetting {
  allow_tf32_matmul: boolean;
  allow_tf32_cudnn: boolean;
  forward: { img_s: number; median_s: number };
  train: { img_s: number; median_s: number };
}

export interface WebGpuCompareOptions {
  batch?: number;
  imageSize?: number;
  reps?: number;
  /** Stem channels (default 64, ResNet-50); smaller only to try the benchmark quickly (PyTorch is then skipped). */
  width?: number;
  /** Accept a software adapter (lavapipe): for trying the benchmark without a GPU. */
  software?: boolean;
  /** Also profile the CPU side of a step (V8's sampling profiler) and time TF.js's unfused training step. */
  profile?: boolean;
  /**
   * Python to run PyTorch with (default: the first of WOLFPACK_TORCH_PYTHON, python3, /usr/bin/python3,
   * /opt/conda/bin/python that imports torch).
   */
  python?: string;
  progress?: (line: string) => void;
}

export interface WebGpuComparison {
  bench: 'wolfpack_vs_torch_webgpu';
  machine: MachineInfo;
  /** nvidia-smi's GPU name, driver and memory, where nvidia-smi runs. */
  gpu?: string;
  wolfpack: WebGpuBenchResult;
  torch: PeerRun<TorchCudaResult>;
  /** wolfpack images/s over PyTorch's (above 1: wolfpack is faster). */
  ratios: Record<string, number>;
}

/** The phases run by default; --profile adds the CPU profile and TF.js's unfused training step. */
export const DEFAULT_PHASES: readonly Phase[] = [
  'forward-stock',
  'forward-fused',
  'train-fused-ddp',
  'train-fused-single',
  'profile-gpu',
];

const TORCH_SCRIPT = resolve(packageRoot, 'scripts', 'gpu', 'torch_resnet50.py');

/** The first python that imports torch, or why there is none. */
export async function findTorchPython(explicit?: string): Promise<{ python?: string; why?: string }> {
  const candidates = explicit
    ? [explicit]
    : [process.env.WOLFPACK_TORCH_PYTHON, 'python3', '/usr/bin/python3', '/opt/conda/bin/python', 'python'].filter(
        (c): c is string => typeof c === 'string' && c.length > 0,
      );
  const tried: string[] = [];
  for (const c of candidates) {
    const r = await runCommand(c, ['-c', 'import torch'], 60_000);
    if (r.code === 0) return { python: c };
    tried.push(`${c}: ${r.stderr.trim().split('\n').pop() || `exit ${r.code}`}`);
  }
  return { why: `no python with torch (${tried.join('; ')})` };
}

/** Runs scripts/gpu/torch_resnet50.py; skipped, with the reason, without torch or CUDA. */
export async function torchOnGpu(o: {
  batch: number;
  imageSize: number;
  python?: string;
}): Promise<PeerRun<TorchCudaResult>> {
  const args = [TORCH_SCRIPT, '--batch', String(o.batch), '--image-size', String(o.imageSize)];
  const found = await findTorchPython(o.python);
  const command = [found.python ?? 'python3', 'scripts/gpu/torch_resnet50.py', ...args.slice(1)].join(' ');
  if (!found.python) return { ok: false, command, skipped: found.why ?? 'no python with torch' };
  if (!existsSync(TORCH_SCRIPT)) return { ok: false, command, skipped: `${TORCH_SCRIPT} not found` };
  const r = await runCommand(found.python, args, 300_000);
  const line = r.stdout
    .split('\n')
    .filter((l) => l.trim().startsWith('{'))
    .pop();
  if (r.code !== 0 || line === undefined) {
    return {
      ok: false,
      command,
      skipped: `failed (exit ${r.code}): ${r.stderr.trim().split('\n').slice(-2).join(' | ')}`,
    };
  }
  const result = JSON.parse(line) as TorchCudaResult;
  if (result.error) return { ok: false, command, skipped: `${result.error} (torch ${result.torch ?? '?'})` };
  return { ok: true, command, result };
}

function nvidiaSmi(): string | undefined {
  try {
    return execFileSync('nvidia-smi', ['--query-gpu=name,driver_version,memory.total', '--format=csv,noheader'], {
      encoding: 'utf8',
      timeout: 10_000,
    })
      .trim()
      .split('\n')[0];
  } catch {
    return undefined;
  }
}

export async function compareWebGpu(opts: WebGpuCompareOptions = {}): Promise<WebGpuComparison> {
  const batch = opts.batch ?? 32;
  const imageSize = opts.imageSize ?? 224;
  const say = opts.progress ?? ((l: string) => process.stderr.write(`bench webgpu: ${l}\n`));
  const phases: Phase[] = [...DEFAULT_PHASES];
  if (opts.profile) phases.push('profile-cpu', 'train-stock');
  const wolfpack = await benchWebGpu({
    batch,
    imageSize,
    reps: opts.reps ?? 5,
    width: opts.width,
    software: opts.software,
    phases,
    progress: say,
  });
  say(`PyTorch on the same GPU: batch ${batch}, ${imageSize}x${imageSize}`);
  const torch: PeerRun<TorchCudaResult> =
    (opts.width ?? 64) === 64
      ? await torchOnGpu({ batch, imageSize, python: opts.python })
      : { ok: false, command: '', skipped: `--width ${opts.width}: PyTorch's peer is the full-width ResNet-50` };
  if (!torch.ok) say(`PyTorch skipped: ${torch.skipped}`);
  const ratios: Record<string, number> = {};
  if (torch.ok) {
    const t = torch.result;
    const put = (key: string, ours: { img_s: number } | undefined, theirs: number | undefined): void => {
      if (ours && theirs) ratios[key] = round(ours.img_s / theirs, 3);
    };
    for (const setting of ['fp32', 'default'] as const) {
      put(`forward_vs_${setting}`, wolfpack.forward.fused, t[setting]?.forward.img_s);
      put(`train_ddp_vs_${setting}`, wolfpack.train.fused_ddp, t[setting]?.train.img_s);
      put(`train_single_vs_${setting}`, wolfpack.train.fused_single, t[setting]?.train.img_s);
      // what a worker runs by default: the step captured and replayed (and with --bucket-mb 25, streamed)
      put(`train_ddp_captured_vs_${setting}`, wolfpack.train.fused_ddp?.captured, t[setting]?.train.img_s);
      put(`train_ddp_streamed_vs_${setting}`, wolfpack.train.fused_ddp?.streamed, t[setting]?.train.img_s);
      put(`train_single_captured_vs_${setting}`, wolfpack.train.fused_single?.captured, t[setting]?.train.img_s);
    }
  }
  return { bench: 'wolfpack_vs_torch_webgpu', machine: machineInfo(), gpu: nvidiaSmi(), wolfpack, torch, ratios };
}

/** The comparison as markdown: the device, one table of images/s and ratios, dispatches, the top kernels. */
export function webgpuSection(c: WebGpuComparison, command: string): string {
  const w = c.wolfpack;
  const t = c.torch.ok ? c.torch.result : undefined;
  const device = [
    c.gpu ? `GPU ${c.gpu}` : undefined,
    w.adapter ? `WebGPU adapter ${w.adapter.description}${w.adapter.software ? ' (software)' : ''}` : undefined,
    `${c.machine.cpu_model}, ${c.machine.cores} cores, Node ${c.machine.node}`,
  ]
    .filter(Boolean)
    .join('; ');
  // Captured rows: what a worker runs by default (dispatches: those of the step recorded through TF.js).
  const captured = (r: PhaseResult | undefined, c: { img_s: number } | undefined) =>
    r && c ? { img_s: c.img_s, dispatches: r.dispatches } : undefined;
  const rows: [string, { img_s: number; dispatches: number } | undefined, 'forward' | 'train'][] = [
    ['forward, TF.js ops (Replica.predict)', w.forward.stock, 'forward'],
    ['forward, fused (WebGpuReplica.predict)', w.forward.fused, 'forward'],
    ['training step, fused, gradients read back for the ring (a worker of a pack)', w.train.fused_ddp, 'train'],
    [
      'the same, captured and replayed (a worker of a pack, as it runs)',
      captured(w.train.fused_ddp, w.train.fused_ddp?.captured),
      'train',
    ],
    [
      'the same, gradients read back in 25 MiB buckets (train --bucket-mb 25)',
      captured(w.train.fused_ddp, w.train.fused_ddp?.streamed),
      'train',
    ],
    ['training step, fused, one worker (no read-back)', w.train.fused_single, 'train'],
    [
      'the same, captured and replayed (one worker, as it runs)',
      captured(w.train.fused_single, w.train.fused_single?.captured),
      'train',
    ],
    ['training step, TF.js ops (Replica)', w.train.stock, 'train'],
  ];
  const body = rows
    .filter(([, r]) => r !== undefined)
    .map(([name, r, kind]) => {
      const fp32 = t?.fp32?.[kind].img_s;
      const def = t?.default?.[kind].img_s;
      return [
        name,
        fmt(r!.img_s, 1),
        String(r!.dispatches),
        fmt(fp32, 1),
        fmt(def, 1),
        fp32 ? (r!.img_s / fp32).toFixed(3) : '-',
        def ? (r!.img_s / def).toFixed(3) : '-',
      ];
    });
  const out = [
    `Device: ${device}.`,
    '',
    `$ ${command}`,
    ...(c.torch.command ? [`$ ${c.torch.command}${c.torch.ok ? '' : `   (skipped: ${c.torch.skipped})`}`] : []),
    '',
    `ResNet-50${w.width === 64 ? '' : ` (stem width ${w.width}, not the real network)`}, ` +
      `${w.image_size}x${w.image_size}, batch ${w.batch}, float32, median of ${w.reps} runs after warm-up.` +
      (t
        ? ` PyTorch ${t.torch} on ${t.device} (CUDA ${t.cuda}, cuDNN ${t.cudnn}): ` +
          "'fp32' = TF32 off, 'default' = PyTorch's defaults (cuDNN may use TF32)."
        : ''),
    '',
    table(
      [
        'ResNet-50 images/s',
        'wolfpack webgpu',
        'dispatches',
        'PyTorch fp32',
        'PyTorch default',
        'wolfpack / fp32',
        'wolfpack / default',
      ],
      body,
    ),
  ];
  const split = w.train.fused_ddp?.split_ms;
  if (split)
    out.push(
      '',
      'Fused step with read-back, where the wall time goes (ms, median): ' +
        `recording GPU work ${fmt(split.record, 1)}, waiting for the gradients ${fmt(split.read, 1)}, ` +
        `update ${fmt(split.update, 1)}.`,
    );
  for (const [name, r] of [
    ['with read-back', w.train.fused_ddp],
    ['one worker', w.train.fused_single],
  ] as const) {
    const c = r?.captured;
    if (!r?.split_ms || !c) continue;
    out.push(
      '',
      c.fallback
        ? `Captured step (${name}): capture fell back to TF.js (${c.fallback}).`
        : `Captured step (${name}): launching a replay takes ${fmt(c.launch_ms, 2)} ms of CPU ` +
            `where TF.js records for ${fmt(r.split_ms.record, 1)} ms ` +
            `(${fmt(c.launch_over_record, 3)}x)` +
            (c.launch_cpu_ms !== undefined
              ? `, ${fmt(c.launch_cpu_ms, 2)} against ${fmt(r.record_cpu_ms, 1)} ms of the thread's CPU time ` +
                `(${fmt(c.launch_cpu_over_record_cpu, 3)}x)`
              : '') +
            `; ${fmt(c.img_s, 1)} images/s against ${fmt(r.img_s, 1)}.`,
    );
  }
  const streamed = w.train.fused_ddp?.streamed;
  if (streamed)
    out.push(
      '',
      `Gradients in ${streamed.buckets} buckets of 25 MiB: handed to the ring at ` +
        `${streamed.bucket_ms.map((ms) => fmt(ms, 1)).join(', ')} ms of a step whose read-back ends at ` +
        `${fmt(streamed.done_ms, 1)} ms (the first at ${fmt(streamed.first_over_done, 3)} of it).`,
    );
  const prof = w.gpu_profile?.fused_step;
  if (prof?.supported && prof.byKernel.length > 0) {
    out.push(
      '',
      `GPU time of one fused step: ${fmt(prof.totalMs, 1)} ms over ${prof.dispatches} dispatches; ` +
        'the kernels that take most:',
      '',
      table(
        ['kernel', 'dispatches', 'GPU ms', 'share'],
        prof.byKernel
          .slice(0, 8)
          .map((k) => [k.name, String(k.count), fmt(k.ms, 2), `${fmt((100 * k.ms) / prof.totalMs, 1)}%`]),
      ),
    );
  } else if (prof) {
    out.push('', 'No per-kernel GPU times: the adapter has no timestamp queries.');
  }
  if (w.errors.length > 0) out.push('', `Errors: ${w.errors.map((e) => e.split('\n')[0]).join('; ')}`);
  return out.join('\n') + '\n';
}

/** `wolfpack bench webgpu`'s flags, shared by the CLI and this file's own entry point (bundled for GPU hosts). */
export const WEBGPU_BENCH_FLAGS = {
  batch: { type: 'string' },
  'image-size': { type: 'string' },
  reps: { type: 'string' },
  width: { type: 'string' },
  software: { type: 'boolean' },
  profile: { type: 'boolean' },
  python: { type: 'string' },
  json: { type: 'boolean' },
  out: { type: 'string' },
} as const;

export function webgpuOptionsFrom(values: Record<string, unknown>): WebGpuCompareOptions {
  return {
    batch: num(values, 'batch', 32, { int: true, min: 1 }),
    imageSize: num(values, 'image-size', 224, { int: true, min: 32 }),
    reps: num(values, 'reps', 5, { int: true, min: 1 }),
    width: num(values, 'width', 64, { int: true, min: 1 }),
    software: values.software === true,
    profile: values.profile === true,
    python: typeof values.python === 'string' ? values.python : undefined,
  };
}

/** Writes OUT/webgpu-latest.md and OUT/webgpu-latest.json; returns the markdown. */
export async function writeWebGpuReport(c: WebGpuComparison, outDir: string, command: string): Promise<string> {
  await mkdir(outDir, { recursive: true });
  const md = [`# wolfpack on webgpu beside PyTorch (${new Date().toISOString()})`, '', webgpuSection(c, command)].join(
    '\n',
  );
  await writeFile(join(outDir, 'webgpu-latest.md'), md);
  await writeFile(join(outDir, 'webgpu-latest.json'), JSON.stringify(c, null, 1) + '\n');
  return md;
}

async function main(argv: string[]): Promise<void> {
  const { values } = parse(argv, WEBGPU_BENCH_FLAGS);
  const c = await compareWebGpu(webgpuOptionsFrom(values));
  const command = ['wolfpack', 'bench', 'webgpu', ...argv].join(' ');
  const md =
    typeof values.out === 'string' ? await writeWebGpuReport(c, values.out, command) : webgpuSection(c, command);
  process.stdout.write(values.json === true ? `${JSON.stringify(c)}\n` : md);
}

// By file name, not import.meta.url: in an esbuild bundle every module shares the bundle's URL.
if (['webgpu-compare.ts', 'webgpu-compare.js', 'bench-webgpu-compare.mjs'].includes(basename(process.argv[1] ?? ''))) {
  main(process.argv.slice(2)).then(
    () => process.exit(0),
    (e: unknown) => {
      process.stderr.write(`bench webgpu: ${(e as Error).stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}
