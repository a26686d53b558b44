// Picks the TF.js backend at run time. tfjs-node(-gpu) are optional dependencies (their install needs
// the internet), WebGPU needs a hardware adapter, so `auto` walks an ordered list and records why
// each candidate that failed did so; explicit choices fail loudly with that reason.
import { createRequire } from 'node:module';
import { WolfpackError } from '../errors.js';
import type { Logger } from '../log.js';
import { tf } from './tf.js';
import { registerWasmConv2dBackpropFilter } from './wasm/conv2d-backprop-filter.js';
import { registerWasmConv2dBackpropInput } from './wasm/conv2d-backprop-input.js';

export const BACKENDS = ['auto', 'tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'] as const;
export type BackendChoice = (typeof BACKENDS)[number];
export type ConcreteBackend = Exclude<BackendChoice, 'auto'>;

/** The order `auto` tries, fastest first. */
export const AUTO_ORDER: readonly ConcreteBackend[] = ['tensorflow-gpu', 'webgpu', 'tensorflow', 'wasm', 'cpu'];

export interface BackendSelection {
  backend: ConcreteBackend;
  /** tf.getBackend() after selection ('tensorflow', 'webgpu', 'wasm', 'cpu'). */
  tfName: string;
  /** Why each earlier candidate was passed over. */
  skipped: { backend: ConcreteBackend; reason: string }[];
}

import { restoreLegacyUtilChecks } from './node-util-compat.js';
import { cudaDeviceEnv } from './cuda-device.js';

const require = createRequire(import.meta.url);

function message(e: unknown): string {
  const text = e instanceof Error ? e.message : String(e);
  return text.split('\n')[0]!.slice(0, 300);
}

/**
 * Why tfjs-node(-gpu) could not load, with what to do when the package is there but its native library is
 * not: npm 11 skips a dependency's install script (which downloads libtensorflow) unless the root
 * package.json's `allowScripts` names it, and the package then installs without its binding.
 */
export function tensorflowLoadError(pkg: string, e: unknown, installed: boolean): string {
  const text = message(e);
  if (!installed || !/tfjs_binding\.node|libtensorflow/.test(text)) return text;
  return (
    `${pkg} is installed without its native library (${text}): its install script, which downloads ` +
    `libtensorflow, did not run. Allow it (package.json "allowScripts": {"${pkg}": true}, or ` +
    `npm install --allow-scripts=${pkg}) and reinstall it`
  );
}

function requireTensorflow(pkg: '@tensorflow/tfjs-node' | '@tensorflow/tfjs-node-gpu'): void {
  restoreLegacyUtilChecks(); // Node >= 23 removed what tfjs-node 4.22 calls (./node-util-compat.ts)
  try {
    require(pkg);
  } catch (e) {
    let installed = true;
    try {
      require.resolve(`${pkg}/package.json`);
    } catch {
      installed = false;
    }
    throw new WolfpackError('E_BACKEND', tensorflowLoadError(pkg, e, installed));
  }
}

async function activate(
  name: ConcreteBackend,
  opts: { allowSoftwareGpu: boolean; gpuIndex?: number },
): Promise<string> {
  switch (name) {
    case 'tensorflow-gpu':
      Object.assign(process.env, cudaDeviceEnv(opts.gpuIndex, process.env));
      requireTensorflow('@tensorflow/tfjs-node-gpu');
      if (!(await tf.setBackend('tensorflow')))
        throw new WolfpackError('E_BACKEND', 'tfjs-node-gpu loaded but its backend did not initialise');
      return 'tensorflow';
    case 'tensorflow':
      requireTensorflow('@tensorflow/tfjs-node');
      if (!(await tf.setBackend('tensorflow')))
        throw new WolfpackError('E_BACKEND', 'tfjs-node loaded but its backend did not initialise');
      return 'tensorflow';
    case 'webgpu': {
      const { activateWebGpu } = await import('./webgpu/activate.js');
      await activateWebGpu(opts);
      return 'webgpu';
    }
    case 'wasm':
      await import('@tensorflow/tfjs-backend-wasm');
      registerWasmConv2dBackpropFilter();
      registerWasmConv2dBackpropInput();
      if (!(await tf.setBackend('wasm'))) throw new WolfpackError('E_BACKEND', 'the wasm backend did not initialise');
      return 'wasm';
    case 'cpu':
      if (!(await tf.setBackend('cpu'))) throw new WolfpackError('E_BACKEND', 'the cpu backend did not initialise');
      return 'cpu';
  }
}

/**
 * The GPU(s) a container runtime reserved for this process (NVIDIA_VISIBLE_DEVICES, set by the NVIDIA
 * Container Toolkit and by NVIDIA's CUDA images), or undefined: unset, empty, `void` or `none`.
 */
export function reservedGpu(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const v = env.NVIDIA_VISIBLE_DEVICES;
  return v === undefined || v === '' || v === 'void' || v === 'none' ? undefined : v;
}

/**
 * Selects and initialises a backend. `auto` tries AUTO_ORDER and logs which one it took and why the
 * others failed, with a warning when a GPU was reserved for the process but it ends up on a CPU backend;
 * a named backend that cannot start is an E_BACKEND error carrying the reason.
 */
export async function selectBackend(
  choice: BackendChoice,
  logger?: Logger,
  opts: { gpuIndex?: number } = {},
): Promise<BackendSelection> {
  tf.env().set('PROD', true); // no debug checks, no "install tfjs-node" banner
  const skipped: BackendSelection['skipped'] = [];
  const candidates = choice === 'auto' ? AUTO_ORDER : [choice];
  for (const name of candidates) {
    try {
      // `auto` never takes a software (fallback) WebGPU adapter: it would be slower than wasm.
      const tfName = await activate(name, { allowSoftwareGpu: choice !== 'auto', gpuIndex: opts.gpuIndex });
      logger?.info({ backend: name, skipped }, `backend: ${name}`);
      const gpu = choice === 'auto' && name !== 'tensorflow-gpu' && name !== 'webgpu' ? reservedGpu() : undefined;
      if (gpu !== undefined) {
        logger?.warn(
          { backend: name, skipped, NVIDIA_VISIBLE_DEVICES: gpu },
          `a GPU is reserved for this process (NVIDIA_VISIBLE_DEVICES=${gpu}) ` +
            `but no GPU backend started, so it trains on ${name}, far slower: ` +
            `${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`,
        );
      }
      return { backend: name, tfName, skipped };
    } catch (e) {
      skipped.push({ backend: name, reason: message(e) });
      if (choice !== 'auto') {
        throw new WolfpackError('E_BACKEND', `backend ${name} is not available: ${message(e)}`, { backend: name });
      }
      logger?.debug({ backend: name, reason: message(e) }, 'backend unavailable');
    }
  }
  throw new WolfpackError(
    'E_BACKEND',
    `no TF.js backend could start: ${skipped.map((s) => `${s.backend}: ${s.reason}`).join('; ')}`,
  );
}
