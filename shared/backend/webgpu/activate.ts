// WebGPU through Dawn's Node bindings (npm `webgpu`, an optional dependency) and a Vulkan driver:
// NVIDIA's on a GPU host, Mesa's CPU driver (lavapipe) in tests. TF.js's webgpu backend registers
// itself only if navigator.gpu exists when it is imported, so the globals are installed first.
// Activation also
//  - picks the adapter: `gpuIndex` selects the INDEX-th GPU on the PCI bus (nvidia-smi's order)
//    through the Vulkan device-select layer, see selectGpuByIndex;
//  - refuses a software (fallback) adapter unless asked for one (`auto` never takes it);
//  - explains a missing adapter: which of the Vulkan loader, an ICD file or libEGL is missing;
//  - makes dataSync() work (Node has no OffscreenCanvas; see sync-read.ts) and registers
//    wolfpack's kernels (kernels.ts).
// See docs/GPU.md for a GPU host's setup.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { tf } from '../tf.js';
import { installSyncRead, installTickCapture } from './sync-read.js';
import { registerWebGpuKernels } from './kernels.js';
import { WolfpackError } from '../../errors.js';

interface GpuAdapterInfo {
  vendor?: string;
  architecture?: string;
  device?: string;
  description?: string;
  isFallbackAdapter?: boolean;
}
interface GpuAdapter {
  info?: GpuAdapterInfo;
  isFallbackAdapter?: boolean;
  features?: Set<string>;
}
export interface Gpu {
  requestAdapter(o?: Record<string, unknown>): Promise<GpuAdapter | null>;
}
interface Dawn {
  create(flags: string[]): Gpu;
  globals: Record<string, unknown>;
}

export interface WebGpuOptions {
  /** Accept a software adapter such as lavapipe (explicit `--backend webgpu`; `auto` does not). */
  allowSoftwareGpu: boolean;
  /** The INDEX-th GPU of the host (PCI bus order, as nvidia-smi numbers them). */
  gpuIndex?: number;
  /** Extra Dawn flags (`enable-dawn-features=...`); WOLFPACK_DAWN_FLAGS adds more, ';'-separated. */
  dawnFlags?: string[];
}

export interface WebGpuAdapterReport {
  description: string;
  vendor: string;
  architecture: string;
  software: boolean;
  flags: string[];
  /** The PCI address chosen by gpuIndex, when one was. */
  pci?: string;
}

/**
 * Dawn toggles wolfpack runs with: no lazy zero-fill of fresh buffers (every tensor buffer is written
 * before it is read) and no robustness bounds checks in shaders (TF.js's shaders check their own).
 */
export const DEFAULT_DAWN_FLAGS: readonly string[] = [
  'enable-dawn-features=disable_robustness,disable_lazy_clear_for_mapped_at_creation_buffer',
  'disable-dawn-features=lazy_clear_resource_on_first_use',
];

const ICD_DIRS = ['/usr/share/vulkan/icd.d', '/etc/vulkan/icd.d', '/usr/local/share/vulkan/icd.d'];
const LIB_DIRS = [
  '/lib/x86_64-linux-gnu',
  '/usr/lib/x86_64-linux-gnu',
  '/usr/lib64',
  '/usr/lib',
  '/lib64',
  '/usr/local/lib',
];
const LAYER_DIRS = [
  '/usr/share/vulkan/implicit_layer.d',
  '/etc/vulkan/implicit_layer.d',
  '/usr/local/share/vulkan/implicit_layer.d',
];

function findLib(name: string): string | undefined {
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...LIB_DIRS];
  for (const d of dirs) if (existsSync(`${d}/${name}`)) return `${d}/${name}`;
  return undefined;
}

function icdFiles(): string[] {
  const env = process.env.VK_ICD_FILENAMES ?? process.env.VK_DRIVER_FILES;
  if (env) return env.split(':').filter(Boolean);
  const out: string[] = [];
  for (const d of ICD_DIRS) {
    try {
      for (const f of readdirSync(d)) if (f.endsWith('.json')) out.push(`${d}/${f}`);
    } catch {
      /* no such directory */
    }
  }
  return out;
}

/**
 * What is missing for a Vulkan adapter, in words a user can act on: the loader, an ICD file, and for
 * NVIDIA's driver libEGL (without it vkCreateInstance fails inside the driver).
 */
export function diagnoseVulkan(): string {
  const problems: string[] = [];
  if (!findLib('libvulkan.so.1')) problems.push('no Vulkan loader (libvulkan.so.1: apt-get install libvulkan1)');
  const icds = icdFiles();
  const missing = icds.filter((f) => !existsSync(f));
  if (icds.length === 0) {
    problems.push(
      "no Vulkan ICD file (VK_ICD_FILENAMES unset and none in /usr/share/vulkan/icd.d: the GPU driver's " +
        "nvidia_icd.json, or Mesa's lvp_icd.json for the CPU driver)",
    );
  } else if (missing.length > 0) {
    problems.push(`ICD file(s) not found: ${missing.join(', ')}`);
  }
  if (icds.some((f) => f.includes('nvidia')) && !findLib('libEGL.so.1')) {
    problems.push('the NVIDIA ICD needs libEGL.so.1 (apt-get install libegl1), else vkCreateInstance fails');
  }
  const names = icds.map((f) => f.split('/').pop()).join(', ');
  const found =
    problems.length === 0 ? `Vulkan loader and ICD files (${names}) present but no adapter from them; ` : '';
  return (
    `${found}${problems.join('; ')}${problems.length ? '; ' : ''}check with \`vulkaninfo --summary\` ` +
    '(package vulkan-tools) and see docs/GPU.md'
  );
}

/** GPUs on the PCI bus (display and 3D controllers), in bus order: the order nvidia-smi numbers them. */
export function pciGpus(root = '/sys/bus/pci/devices'): string[] {
  let names: string[];
  try {
    names = readdirSync(root);
  } catch {
    return [];
  }
  return names
    .filter((n) => {
      try {
        return readFileSync(`${root}/${n}/class`, 'utf8').trim().startsWith('0x03');
      } catch {
        return false;
      }
    })
    .sort();
}

function deviceSelectLayerInstalled(): boolean {
  const extra = (process.env.VK_ADD_LAYER_PATH ?? '').split(':').filter(Boolean);
  return [...LAYER_DIRS, ...extra].some((d) => {
    try {
      return readdirSync(d).some((f) => f.includes('device_select'));
    } catch {
      return false;
    }
  });
}

/**
 * Restricts Vulkan to one GPU before the Dawn instance exists. Dawn's Node bindings choose an adapter
 * only by name, and identical GPUs share one, so the choice is made below Dawn: Mesa's device-select
 * layer (an implicit layer in Debian's mesa-vulkan-drivers) keeps only the device whose PCI address
 * DRI_PRIME names when MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE=1. With one GPU, index 0 needs nothing.
 */
export function selectGpuByIndex(
  index: number,
  gpus = pciGpus(),
  layer = deviceSelectLayerInstalled(),
): { pci?: string; env: Record<string, string> } {
  if (!Number.isSafeInteger(index) || index < 0)
    throw new WolfpackError('E_USAGE', `--gpu must be an integer >= 0, got ${index}`);
  if (gpus.length <= 1 && index === 0) return { pci: gpus[0], env: {} };
  if (index >= gpus.length) {
    throw new WolfpackError(
      'E_BACKEND',
      `--gpu ${index}: ` +
        `this host has ${gpus.length} GPU(s) on the PCI bus${gpus.length ? ` (${gpus.join(', ')})` : ''}; ` +
        `valid indices are 0..${Math.max(0, gpus.length - 1)}`,
    );
  }
  if (!layer) {
    throw new WolfpackError(
      'E_BACKEND',
      `--gpu ${index}: choosing one of ${gpus.length} GPUs needs Mesa's Vulkan device-select layer ` +
        "(VkLayer_MESA_device_select, in Debian's mesa-vulkan-drivers); install it, or give each worker one GPU " +
        '(e.g. a container with NVIDIA_VISIBLE_DEVICES=INDEX) and leave --gpu out',
    );
  }
  const pci = gpus[index]!;
  const m = /^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$/i.exec(pci);
  if (!m) throw new WolfpackError('E_BACKEND', `--gpu ${index}: unexpected PCI address ${pci}`);
  return {
    pci,
    env: { DRI_PRIME: `pci-${m[1]}_${m[2]}_${m[3]}_${m[4]}`, MESA_VK_DEVICE_SELECT_FORCE_DEFAULT_DEVICE: '1' },
  };
}

function isSoftware(a: GpuAdapter): boolean {
  const info = a.info ?? {};
  if (info.isFallbackAdapter ?? a.isFallbackAdapter) return true;
  const text = `${info.architecture ?? ''} ${info.description ?? ''} ${info.device ?? ''}`.toLowerCase();
  return /\b(software|llvmpipe|lavapipe|swiftshader)\b/.test(text);
}

let gpuInstance: { gpu: Gpu; flags: string } | undefined;
let lastReport: WebGpuAdapterReport | undefined;

/** The adapter the active webgpu backend runs on (after activateWebGpu). */
export function webGpuAdapterReport(): WebGpuAdapterReport | undefined {
  return lastReport;
}

async function loadDawn(): Promise<Dawn> {
  try {
    return (await import('webgpu' as string)) as Dawn;
  } catch (e) {
    throw new WolfpackError(
      'E_BACKEND',
      `the optional package 'webgpu' (Dawn for Node) is not installed or cannot load: ` +
        `${(e as Error).message.split('\n')[0]}`,
    );
  }
}

export async function activateWebGpu(opts: WebGpuOptions): Promise<WebGpuAdapterReport> {
  const dawn = await loadDawn();
  installTickCapture(); // before the Dawn instance exists, so that its event ticks can be driven
  Object.assign(globalThis, dawn.globals);
  const flags = [
    ...DEFAULT_DAWN_FLAGS,
    ...(opts.dawnFlags ?? []),
    ...(process.env.WOLFPACK_DAWN_FLAGS ?? '')
      .split(';')
      .map((s) => s.trim())
      .filter(Boolean),
  ];
  let pci: string | undefined;
  if (opts.gpuIndex !== undefined) {
    const sel = selectGpuByIndex(opts.gpuIndex);
    pci = sel.pci;
    Object.assign(process.env, sel.env); // read by the Vulkan loader when Dawn creates its instance
  }
  // One Dawn instance a process: its adapter list is fixed when it is created.
  const key = flags.join('|');
  if (gpuInstance && gpuInstance.flags !== key) {
    throw new WolfpackError('E_BACKEND', 'webgpu was already activated with other Dawn flags in this process');
  }
  gpuInstance ??= { gpu: dawn.create(flags), flags: key };
  const gpu = gpuInstance.gpu;
  let adapter: GpuAdapter | null;
  try {
    adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  } catch (e) {
    throw new WolfpackError(
      'E_BACKEND',
      `requesting a WebGPU adapter failed (${(e as Error).message.split('\n')[0]}): ${diagnoseVulkan()}`,
    );
  }
  if (!adapter) throw new WolfpackError('E_BACKEND', `no WebGPU adapter found: ${diagnoseVulkan()}`);
  const info = adapter.info ?? {};
  const report: WebGpuAdapterReport = {
    description: info.description || info.device || 'unknown adapter',
    vendor: info.vendor ?? '',
    architecture: info.architecture ?? '',
    software: isSoftware(adapter),
    flags,
    pci,
  };
  if (report.software && !opts.allowSoftwareGpu) {
    throw new WolfpackError(
      'E_BACKEND',
      `only a software WebGPU adapter (${report.description}) was found; auto does not take it (slower ` +
        'than wasm): name it with --backend webgpu, or make a GPU visible (its Vulkan ICD file; docs/GPU.md)',
    );
  }
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  await import('@tensorflow/tfjs-backend-webgpu' as string);
  if (!tf.findBackendFactory('webgpu')) {
    throw new WolfpackError(
      'E_BACKEND',
      '@tensorflow/tfjs-backend-webgpu is not installed or did not register (navigator.gpu was missing when it loaded)',
    );
  }
  if (!(await tf.setBackend('webgpu')))
    throw new WolfpackError(
      'E_BACKEND',
      `the webgpu backend did not initialise on ${report.description}: ${diagnoseVulkan()}`,
    );
  installSyncRead(tf.backend());
  registerWebGpuKernels();
  lastReport = report;
  return report;
}
