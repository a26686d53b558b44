// TF.js tensors for a ModelState's numbers. Creating them copies the flat buffers into the backend
// (for wasm, into its heap), so the set is refreshed only for what changed: after an optimizer step
// with a frozen backbone only the head's tensors are rebuilt.
import { tf } from '../backend/tf.js';
import type { ModelState, Slot } from './state.js';

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
      // slice(): a backend that keeps a reference (cpu) must not see later in-place updates.
      const t = tf.tensor(src.slice(slot.offset, slot.offset + slot.size), slot.spec.shape, 'float32');
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
