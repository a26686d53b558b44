// Reading a checkpoint the way tests compare them: every tensor as float32, by name.
import { readCkpt } from '../../shared/weights/ckpt.js';
import { toFloat32 } from '../../shared/weights/host-tensor.js';

export async function readCkptFloats(file: string): Promise<Map<string, Float32Array>> {
  const m = await readCkpt(file);
  return new Map([...m].map(([k, v]) => [k, toFloat32(v)]));
}
