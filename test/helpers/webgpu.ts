// Whether the webgpu tests can run here: the optional packages, and a Vulkan driver (Mesa's lavapipe,
// scripts/ci/install-lavapipe.sh, on a machine without a GPU). Points VK_ICD_FILENAMES at lavapipe when
// it is installed and nothing else was set.
import { execFileSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { activateWebGpu } from '../../shared/backend/webgpu/activate.js';

const require = createRequire(import.meta.url);
const ROOT = join(import.meta.dirname, '..', '..');

/** Why webgpu cannot run in this process, or undefined when a Vulkan driver and the packages are there. */
export function webGpuPrerequisitesMissing(): string | undefined {
  try {
    require.resolve('webgpu');
    require.resolve('@tensorflow/tfjs-backend-webgpu');
  } catch {
    return "the optional packages 'webgpu' and '@tensorflow/tfjs-backend-webgpu' are not installed";
  }
  if (!process.env.VK_ICD_FILENAMES) {
    try {
      process.env.VK_ICD_FILENAMES = execFileSync(
        'bash',
        [join(ROOT, 'scripts', 'ci', 'install-lavapipe.sh'), '--icd'],
        { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
      ).trim();
    } catch {
      return (
        'no Vulkan driver to test with: Mesa >= 23 lavapipe is not installed ' +
        '(run scripts/ci/install-lavapipe.sh as root)'
      );
    }
  }
  return undefined;
}

/** As webGpuPrerequisitesMissing, and also starts the webgpu backend in this process (a software adapter allowed). */
export async function webGpuUnavailable(): Promise<string | undefined> {
  const missing = webGpuPrerequisitesMissing();
  if (missing) return missing;
  try {
    await activateWebGpu({ allowSoftwareGpu: true });
  } catch (e) {
    return `webgpu did not start: ${(e as Error).message}`;
  }
  return undefined;
}
