// Reading and writing a tensor's data where the wasm backend keeps it, its WebAssembly heap, without the
// copies TF.js's data()/dataSync() and tf.tensor() make. A training step reads ~100 MB of gradients and
// rewrites ~100 MB of parameters (full fine-tuning); each copy of that is allocated, zero-filled and
// collected again, which costs the step time and, with two workers on two cores, the other's time too.
import { tf } from '../tf.js';

/** The wasm backend's own helpers: a tensor's data as a view of its heap, and a fresh output tensor. */
export interface WasmHeapBackend {
  typedArrayFromHeap(t: tf.TensorInfo): tf.TypedArray;
  makeOutput(shape: number[], dtype: 'float32'): tf.TensorInfo;
}

/**
 * A float32 tensor's data as a view into the wasm heap, or undefined on other backends (and for other
 * dtypes or empty tensors). The view is valid until the next TF.js call that may allocate (the heap can
 * grow, which detaches it): use it at once. Writing through it changes the tensor in place -- only for
 * tensors the caller owns alone.
 */
export function wasmHeapView(t: tf.Tensor): Float32Array | undefined {
  if (t.dtype !== 'float32' || t.size === 0 || tf.getBackend() !== 'wasm') return undefined;
  const backend = tf.backend() as unknown as Partial<WasmHeapBackend>;
  if (typeof backend.typedArrayFromHeap !== 'function') return undefined;
  return backend.typedArrayFromHeap({ dataId: t.dataId, shape: t.shape, dtype: t.dtype }) as Float32Array;
}
