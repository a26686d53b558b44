// TF.js tensors for a ModelState's numbers. Creating them copies the flat buffers into the backend
// (for wasm, into its heap), so the set is refreshed only for what changed: after an optimizer step
// with a frozen backbone only the head's tensors are rebuilt.
import { tf } from '../backend/tf.js';
import type { ModelState, Slot } from './state.js';

/** Whether the backend copies a new tensor's values at once (wasm: into its heap). */
function copiesOnWrite(): boolean {
  return tf.getBackend() === 'wasm';
}

export class ParamTensors {
  private readonly tensors = new Map<string, tf.Tensor>();
  private readonly state: ModelState;

  constructor(state: ModelState) {
    this.state = state;
    this.refreshAll();
  }

  get(name: string): tf.Tensor {
    const t = this.tensors.get(name);
    if (!t) throw new Error(`no tensor for parameter ${name}`);
    return t;
  }

  readonly lookup = (name: string): tf.Tensor => this.get(name);

  /** Re-reads the given slots (of params or of stats) from the flat buffers. */
  refresh(slots: Slot[], buffer: 'params' | 'stats'): void {
    const src = buffer === 'params' ? this.state.params : this.state.stats;
    for (const slot of slots) {
      this.tensors.get(slot.spec.name)?.dispose();
      // A new tensor, not the old one's wasm memory overwritten: that was tried and derailed training
      // (test/model/memory.test.ts saw non-finite steps from the second step on; cause not pinned down).
      // slice(): a backend that keeps a reference (cpu, webgpu until upload) must not see later in-place
      // updates; wasm copies into its heap at once, so a view saves a 100 MB copy a step there.
      const range = [slot.offset, slot.offset + slot.size] as const;
      const t = tf.tensor(copiesOnWrite() ? src.subarray(...range) : src.slice(...range), slot.spec.shape, 'float32');
      this.tensors.set(slot.spec.name, tf.keep(t));
    }
  }

  refreshAll(): void {
    this.refresh(this.state.layout.trainable, 'params');
    this.refresh(this.state.layout.stats, 'stats');
  }

  dispose(): void {
    for (const t of this.tensors.values()) t.dispose();
    this.tensors.clear();
  }
}
