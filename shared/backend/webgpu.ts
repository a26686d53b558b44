// WebGPU through Dawn's Node bindings (npm `webgpu`, an optional dependency). TF.js's webgpu backend
// registers itself only if navigator.gpu exists when it is imported, so the globals are installed
// first. See ../shared/gpu/README.md beside the project for the GPU machine's kit.
import { createRequire } from 'node:module';
import { tf } from './tf.js';

const require = createRequire(import.meta.url);

interface GpuAdapterInfo { vendor?: string; architecture?: string; device?: string; description?: string }
interface GpuAdapter { info?: GpuAdapterInfo; isFallbackAdapter?: boolean }
interface Gpu { requestAdapter(o?: Record<string, unknown>): Promise<GpuAdapter | null> }

const HELP = 'check the Vulkan loader (`ldconfig -p | grep libvulkan`), an ICD file (VK_ICD_FILENAMES, ' +
  'e.g. /usr/share/vulkan/icd.d/nvidia_icd.json) and libEGL.so.1 for NVIDIA; `vulkaninfo --summary` lists adapters';

export async function activateWebGpu(opts: { allowSoftwareGpu: boolean; gpuIndex?: number }): Promise<void> {
  let dawn: { create(flags: string[]): Gpu; globals: Record<string, unknown> };
  try {
    dawn = require('webgpu') as typeof dawn;
  } catch (e) {
    throw new Error(`the optional package 'webgpu' (Dawn for Node) is not installed: ${(e as Error).message.split('\n')[0]}`);
  }
  Object.assign(globalThis, dawn.globals);
  const flags = opts.gpuIndex !== undefined ? [`adapter=${opts.gpuIndex}`] : [];
  const gpu = dawn.create(flags);
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error(`no WebGPU adapter found: ${HELP}`);
  if (adapter.isFallbackAdapter && !opts.allowSoftwareGpu) {
    throw new Error(`only a software WebGPU adapter (${adapter.info?.description ?? 'fallback'}) was found: ${HELP}`);
  }
  Object.defineProperty(globalThis, 'navigator', { value: { gpu }, configurable: true, writable: true });
  await import('@tensorflow/tfjs-backend-webgpu' as string);
  if (!(await tf.setBackend('webgpu'))) throw new Error(`the webgpu backend did not initialise: ${HELP}`);
}
