// A tensorflow-gpu worker's --gpu I: CUDA_VISIBLE_DEVICES names the I-th GPU this process may see, and
// TF_FORCE_GPU_ALLOW_GROWTH lets several workers share one GPU, unless the environment already decided.
import t from 'tap';
import { cudaDeviceEnv } from '../../shared/backend/cuda-device.js';

t.test('without --gpu only memory growth is asked for', async (t) => {
  t.same(cudaDeviceEnv(undefined, {}), { TF_FORCE_GPU_ALLOW_GROWTH: 'true' });
  t.same(cudaDeviceEnv(undefined, { TF_FORCE_GPU_ALLOW_GROWTH: 'false' }), {}, "the user's setting stands");
});

t.test('--gpu I on a host whose GPUs are all visible: device I', async (t) => {
  t.same(cudaDeviceEnv(2, {}), { TF_FORCE_GPU_ALLOW_GROWTH: 'true', CUDA_VISIBLE_DEVICES: '2' });
  t.same(cudaDeviceEnv(0, { CUDA_VISIBLE_DEVICES: '' }), {
    TF_FORCE_GPU_ALLOW_GROWTH: 'true',
    CUDA_VISIBLE_DEVICES: '0',
  });
});

t.test('--gpu I where the environment narrowed the GPUs: the I-th of them', async (t) => {
  t.same(cudaDeviceEnv(1, { CUDA_VISIBLE_DEVICES: '2, 3', TF_FORCE_GPU_ALLOW_GROWTH: 'true' }), {
    CUDA_VISIBLE_DEVICES: '3',
  });
  t.same(cudaDeviceEnv(0, { CUDA_VISIBLE_DEVICES: 'GPU-5ec2a1b4' }).CUDA_VISIBLE_DEVICES, 'GPU-5ec2a1b4', 'UUIDs too');
  t.throws(() => cudaDeviceEnv(2, { CUDA_VISIBLE_DEVICES: '2,3' }), {
    code: 'E_BACKEND',
    message: /--gpu 2: CUDA_VISIBLE_DEVICES=2,3 gives this process 2 GPU\(s\); valid indices are 0\.\.1/,
  });
  t.throws(() => cudaDeviceEnv(-1, {}), { code: 'E_USAGE' });
});
