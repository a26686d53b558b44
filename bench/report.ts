// Markdown for the benchmark results: one section per benchmark, each with the commands that produced
// it, the machine and how busy it was, and the figures beside the peer's with their ratio
// (wolfpack's speed over the peer's: above 1, wolfpack is faster). `wolfpack bench all` writes this to
// bench/results/latest.md; BENCHMARKS.md quotes it.
import { MAX_CHUNK_KIB } from '../shared/allreduce/ring.js';
import type { AllreduceComparison, CurveResult } from './allreduce-compare.js';
import { COMPUTE_MODELLED_NOTE, type ClusterRunResult } from './cluster.js';
import type { MachineInfo, QuietRecord } from './machine.js';
import type { MemoryResult } from './memory.js';
import type { ScalingResult } from './scaling.js';
import type { TtaResult } from './time-to-accuracy.js';

export const fmt = (v: number | null | undefined, digits = 2): string =>
  v === null || v === undefined || !Number.isFinite(v) ? '-' : v.toFixed(digits);

export function table(head: string[], rows: string[][]): string {
  const line = (r: string[]): string => `| ${r.join(' | ')} |`;
  return [line(head), line(head.map((_, i) => (i === 0 ? '---' : '---:'))), ...rows.map(line)].join('\n') + '\n';
}

export function machineLine(m: MachineInfo): string {
  return `Machine: ${m.cpu_model}, ${m.cores} cores, ${m.memory_gib} GiB, ${m.platform}, Node ${m.node}.`;
}

export function quietLine(qs: QuietRecord[]): string {
  if (qs.length === 0) return '';
  const busy = qs.map((q) => q.busy_before * 100);
  const loads = qs.map((q) => q.load1);
  const notQuiet = qs.filter((q) => !q.quiet).length;
  return (
    `Other load before each run: CPU ${Math.min(...busy).toFixed(0)}-${Math.max(...busy).toFixed(0)}% busy, ` +
    `1-min load average ${Math.min(...loads).toFixed(2)}-${Math.max(...loads).toFixed(2)}` +
    (notQuiet > 0 ? `; ${notQuiet} of ${qs.length} runs started without a quiet second (waited 30 s)` : '') +
    '.'
  );
}

const pct = (v: number) => `${(v * 100).toFixed(0)}%`;

export function allreduceSection(c: AllreduceComparison): string {
  const rows = c.figures.map((f) => [
    `N=${f.procs}, ${f.elems.toLocaleString('en-US')} floats`,
    fmt(f.wolfpack_s * 1e3, 3),
    fmt(f.gloo_s === null ? null : f.gloo_s * 1e3, 3),
    fmt(f.wolfpack_busbw_MBps, 1),
    fmt(f.gloo_busbw_MBps, 1),
    fmt(f.ratio, 3),
    `${pct(f.wolfpack_spread)} / ${pct(f.gloo_spread)}`,
  ]);
  return (
    [
      `$ wolfpack bench allreduce-vs-gloo --rounds ${c.rounds}`,
      `$ ${c.gloo_command}${c.gloo_skipped ? `   (skipped: ${c.gloo_skipped})` : ''}`,
      '',
      table(
        [
          'all-reduce, float32 SUM, loopback',
          'wolfpack ms',
          'Gloo ms',
          'wolfpack busbw MB/s',
          'Gloo busbw MB/s',
          'wolfpack / Gloo',
          'spread over rounds (wolfpack / Gloo)',
        ],
        rows,
      ),
      `Raw TCP between two Node processes, ${(c.raw_tcp.bytes / 1e6).toFixed(1)} MB: ` +
        `one way ${fmt(c.raw_tcp.one_way_MBps, 0)} MB/s ` +
        `(rounds ${c.raw_tcp.one_way_rounds.join(', ')}), ` +
        `both ways at once ${fmt(c.raw_tcp.duplex_MBps, 0)} MB/s per direction ` +
        `(rounds ${c.raw_tcp.duplex_rounds.join(', ')}). ` +
        `wolfpack N=2 busbw at 25,557,032 floats is ${pct(c.vs_raw_tcp.one_way)} of the one-way stream ` +
        `and ${pct(c.vs_raw_tcp.duplex)} of the duplex one.`,
      quietLine(c.quiet),
    ].join('\n') + '\n'
  );
}

export function curveSection(c: CurveResult): string {
  const rows = c.points.map((p) => [
    `N=${p.procs}, ${p.bytes >= 1e6 ? `${(p.bytes / 1e6).toFixed(1)} MB` : `${(p.bytes / 1e3).toFixed(1)} KB`}` +
      ` (${p.elems.toLocaleString('en-US')} floats)`,
    fmt(p.wolfpack_s * 1e3, 3),
    fmt(p.gloo_s === null ? null : p.gloo_s * 1e3, 3),
    fmt(p.wolfpack_busbw_MBps, 1),
    fmt(p.gloo_busbw_MBps, 1),
    fmt(p.gloo_s === null ? null : p.gloo_s / p.wolfpack_s, 2),
  ]);
  return (
    [
      `$ wolfpack bench curve --procs ${c.procs.join(',')}`,
      `$ ${c.gloo_command}${c.gloo_skipped ? `   (skipped: ${c.gloo_skipped})` : ''}`,
      '',
      table(['size', 'wolfpack ms', 'Gloo ms', 'wolfpack busbw MB/s', 'Gloo busbw MB/s', 'wolfpack / Gloo'], rows),
      c.png ? `Plot: \`${c.png}\`.` : '',
      quietLine([c.quiet]),
    ].join('\n') + '\n'
  );
}

export function scalingSection(rs: ScalingResult[]): string {
  const rows: string[][] = [];
  for (const r of rs) {
    for (const p of r.points) {
      const b = p.breakdown;
      rows.push([
        `--freeze ${r.freeze} --bn ${r.bn}, N=${p.workers}`,
        fmt(p.images_per_s, 1),
        p.workers === 1 ? '-' : pct(p.efficiency),
        fmt(b.step_ms, 0),
        fmt(b.data_ms, 1),
        fmt(b.compute_ms, 0),
        fmt(b.allreduce_ms, 1),
        fmt(b.update_ms, 1),
        fmt(b.other_ms, 1),
        `${p.runs_images_per_s.map((v) => v.toFixed(1)).join(', ')} (${pct(p.spread)})`,
      ]);
    }
  }
  const r0 = rs[0]!;
  return (
    [
      ...rs.map((r) => `$ ${r.command}`),
      '',
      `${r0.batch_per_worker} images per worker per step (global batch ${r0.batch_per_worker} x N), ` +
        `${r0.image_size}x${r0.image_size}, wasm (1 thread per worker); ` +
        `steady state: the first ${r0.skip_steps} steps left out; ` +
        `medians over ${r0.repeats} repeat(s), N=1 and N=2 alternating.`,
      '',
      table(
        [
          'scaling (real trainer)',
          'images/s',
          'efficiency',
          'step ms',
          'data ms',
          'fwd+bwd ms',
          'all-reduce ms',
          'update ms',
          'other ms',
          'runs (spread)',
        ],
        rows,
      ),
      quietLine(rs.flatMap((r) => r.runs.map((x) => x.quiet))),
    ].join('\n') + '\n'
  );
}

export function ttaSection(t: TtaResult): string {
  const peer = t.peer.ok ? t.peer.result : undefined;
  const torch = t.peer_tta.ok ? t.peer_tta.result : undefined;
  const rows = t.runs.map((r) => [
    `${r.variant}${r.flags.length ? ` (\`${r.flags.join(' ')}\`)` : ''}`,
    r.reached ? String(r.epoch) : `not in ${t.max_epochs}`,
    fmt(r.wall_s, 1),
    fmt(r.epochs_s, 1),
    r.epochs.map((e) => e.images_per_s.toFixed(0)).join(' '),
    r.epochs.map((e) => pct(e.cache_hit_rate)).join(' '),
    fmt(r.step_images_per_s, 0),
    fmt(r.last_epoch_step_images_per_s, 0),
    fmt(t.ratio[r.variant], 2),
  ]);
  if (torch) {
    rows.push([
      `PyTorch ${torch.torch}, ${torch.threads} threads (bench/peers/torch_tta.py)`,
      torch.reached ? String(torch.epoch) : `not in ${torch.max_epochs}`,
      fmt(torch.wall_s, 1),
      fmt(torch.epochs_s, 1),
      torch.epochs.map((e) => fmt(e.images_per_s, 0)).join(' '),
      '-',
      '-',
      '-',
      '-',
    ]);
  }
  const ratioLine = torch
    ? `Wall time to ${t.target}, PyTorch's over wolfpack's (above 1: wolfpack reaches the target sooner): ` +
      t.runs
        .map(
          (r) =>
            `${r.variant} ${fmt(t.tta_ratio[r.variant], 2)}` +
            (t.tta_ratio[r.variant] === undefined ? ` (${r.reached ? 'PyTorch' : 'wolfpack'} did not reach it)` : ''),
        )
        .join(', ') +
      `. PyTorch: ${fmt(torch.setup_s, 1)} s from process start to the first step; ` +
      `accuracy per epoch ${torch.epochs.map((e) => e.val_accuracy.toFixed(2)).join(' ')}.`
    : `PyTorch time to accuracy: skipped (${t.peer_tta.ok ? '' : t.peer_tta.skipped}).`;
  return (
    [
      `$ ${t.command}`,
      `$ ${t.peer.command}${t.peer.ok ? '' : `   (skipped: ${t.peer.skipped})`}`,
      `$ ${t.peer_tta.command}${t.peer_tta.ok ? '' : `   (skipped: ${t.peer_tta.skipped})`}`,
      '',
      `Target validation accuracy ${t.target} (at most ${t.max_epochs} epochs; --views ${t.views} for views+cache).` +
        (peer
          ? ` PyTorch frozen-backbone step, ${peer.threads} threads, batch ${peer.batch}, ` +
            `${peer.size}x${peer.size}: ${fmt(peer.img_s, 1)} images/s.`
          : ''),
      '',
      table(
        [
          'demo variant',
          'epoch reached',
          'wall s to target',
          'epoch s to target (steps + eval + state fetch)',
          'images/s per epoch (metrics)',
          'cache hits per epoch',
          'step images/s',
          'step images/s, last epoch',
          'last epoch / PyTorch',
        ],
        rows,
      ),
      ratioLine,
      quietLine([...t.runs.map((r) => r.quiet), ...(t.peer_tta_quiet ? [t.peer_tta_quiet] : [])]),
    ].join('\n') + '\n'
  );
}

export function memorySection(m: MemoryResult): string {
  const peakRows = m.peak.map((p) => [
    `--freeze ${p.freeze}, ${p.batch_per_worker} images/worker, ${p.image_size}x${p.image_size}`,
    p.peak_rss_mib.map((v) => v.toFixed(0)).join(', '),
    String(p.steps),
    p.note ?? '',
  ]);
  const growthRows = m.growth.map((g) => [
    `--freeze ${g.freeze}, ${g.image_size}x${g.image_size}, ${g.epochs} epochs`,
    String(g.steps),
    g.tensors_distinct.join(', '),
    g.rss_epoch_medians_mib.map((w) => w.join(' ')).join('<br>'),
    fmt(g.rss_slope_mib_per_100_steps, 2),
  ]);
  return (
    [
      ...m.peak.map((p) => `$ ${p.command}`),
      ...m.growth.map((g) => `$ ${g.command}`),
      '',
      table(['peak RSS per worker (2 workers)', 'VmHWM MiB (each worker)', 'steps', 'note'], peakRows),
      table(
        [
          'growth (2 workers)',
          'steps per worker',
          'tf numTensors seen (all steps)',
          'RSS MiB per epoch (median; a row per worker)',
          'RSS slope after epoch 1, MiB/100 steps',
        ],
        growthRows,
      ),
      quietLine([...m.peak.map((p) => p.quiet), ...m.growth.map((g) => g.quiet)]),
    ].join('\n') + '\n'
  );
}

/** A cluster run's schedule as its report row and progress line name it: buckets, in flight, message size. */
export function scheduleLabel(r: ClusterRunResult): string {
  const buckets =
    r.schedule === 'overlap'
      ? `overlap (${r.buckets ?? '?'} buckets <= ${r.bucket_mb ?? '?'} MiB, ${r.inflight ?? 1} in flight)`
      : r.schedule;
  return buckets + (r.chunk_kib !== MAX_CHUNK_KIB ? `, ${r.chunk_kib} KiB messages` : '');
}

/** The simulated cluster runs (`wolfpack bench cluster`), one row per N, with the command and the load. */
export function clusterSection(rs: ClusterRunResult[], command: string): string {
  const mb = (v: number | null) => (v === null ? '-' : (v / 1e6).toFixed(1));
  const maxOf = (xs: Array<number | null>): number | null =>
    xs.some((x) => x === null) || xs.length === 0 ? null : Math.max(...(xs as number[]));
  const rows = rs.map((r) => [
    `N=${r.workers}`,
    scheduleLabel(r),
    r.net === 'loopback' ? 'loopback' : r.link_mbit === null ? 'unshaped' : `${r.link_mbit} Mbit/s`,
    fmt(r.compute_ms, 0),
    fmt(r.step_s * 1e3, 0),
    fmt(r.exposed_allreduce_s * 1e3, 0),
    pct(r.efficiency),
    r.efficiency_on_paper === null ? '-' : pct(r.efficiency_on_paper),
    mb(maxOf(r.bytes_per_rank)),
    `${mb(maxOf(r.wire_tx_bytes_per_rank))}${r.wire_drops ? ` (${r.wire_drops.toFixed(0)} drops)` : ''}`,
    `${fmt(maxOf(r.cpu_s_per_step), 2)} (system ${fmt(maxOf(r.cpu_system_s_per_step), 2)})`,
    r.machine_busy === null ? '-' : `${pct(r.machine_busy)} (softirq ${pct(r.machine_softirq ?? NaN)})`,
    `${fmt(r.load1_before, 2)} / ${fmt(r.load1_after, 2)}`,
    `${r.verified}` +
      `${r.same_bits_as_none === undefined ? '' : r.same_bits_as_none ? " (= none's bits)" : ' (differs from none)'}`,
  ]);
  const r0 = rs[0];
  return (
    [
      `$ ${command}`,
      '',
      `**${COMPUTE_MODELLED_NOTE}**`,
      r0 === undefined
        ? ''
        : `Gradients: ResNet-50, ${r0.elements.toLocaleString('en-US')} floats in ${r0.layers} tensors` +
          `${r0.layout_scale !== 1 ? ` (every tensor scaled by ${r0.layout_scale})` : ''}, ` +
          `--schedule ${[...new Set(rs.map((r) => r.schedule))].join(',')}, --wire ${r0.wire}; ` +
          `${r0.warmup} warm-up + ${r0.steps} timed steps; figures of the slowest rank, mean over the timed steps.`,
      '',
      table(
        [
          'run',
          'schedule',
          'link',
          'T ms',
          'step ms',
          'exposed all-reduce ms',
          'efficiency (T / step)',
          'on paper',
          'payload MB sent / rank',
          'MB on the wire / rank',
          'CPU s / step / rank (max)',
          `machine CPU busy (${r0?.cores ?? '?'} cores)`,
          '1-min load before / after',
          'verified',
        ],
        rows,
      ),
    ].join('\n') + '\n'
  );
}
