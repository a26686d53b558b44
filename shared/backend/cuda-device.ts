// One GPU per worker with tfjs-node-gpu: libtensorflow sees the GPUs CUDA_VISIBLE_DEVICES lists, read when it
// first initialises CUDA, so a worker's `--gpu I` sets it (in this process, before tfjs-node-gpu loads) to
// the I-th GPU: I itself, or the I-th entry of a list the environment already narrowed (a container given
// GPUs 2,3 sees them as 0,1). TensorFlow otherwise reserves nearly all of a GPU's memory at start, so a
// second worker on the same GPU would fail to allocate: TF_FORCE_GPU_ALLOW_GROWTH=true makes each take what
// it uses, unless the environment says otherwise.
import { WolfpackError } from '../errors.js';

/** The variables to set for tfjs-node-gpu in a worker given `--gpu index` (or none), from `env`. */
export function cudaDeviceEnv(index: number | undefined, env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {};
  if (env.TF_FORCE_GPU_ALLOW_GROWTH === undefined) out.TF_FORCE_GPU_ALLOW_GROWTH = 'true';
  if (index === undefined) return out;
  if (!Number.isSafeInteger(index) || index < 0)
    throw new WolfpackError('E_USAGE', `--gpu must be an integer >= 0, got ${index}`);
  const visible = env.CUDA_VISIBLE_DEVICES;
  if (visible === undefined || visible.trim() === '') {
    out.CUDA_VISIBLE_DEVICES = String(index);
    return out;
  }
  const list = visible.split(',').map((s) => s.trim());
  const chosen = list[index];
  if (chosen === undefined)
    throw new WolfpackError(
      'E_BACKEND',
      `--gpu ${index}: CUDA_VISIBLE_DEVICES=${visible} gives this process ${list.length} GPU(s); ` +
        `valid indices are 0..${list.length - 1}`,
    );
  out.CUDA_VISIBLE_DEVICES = chosen;
  return out;
}
