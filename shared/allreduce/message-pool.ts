// Reusable buffers for the messages the 16-bit wire builds (packed partial sums, forwarded all-gather
// chunks). A new typed array per message costs more than the copy into it: V8 zero-fills it, and a large
// one is fresh memory from the kernel, so every page faults on first touch and is returned at the next
// garbage collection. Profiled in `bench cluster` (N=8, bf16), it was the ring's largest CPU cost.
// The ring hands a message back once the link says its bytes may be reused (Link.send resolves).

/** Smallest buffer the pool hands out, bytes; capacities are powers of two from here. */
const MIN_CAPACITY = 4096;

/** Free buffers by capacity (powers of two), kept up to a byte bound. */
export class MessagePool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private keptBytes = 0;

  /** At most `keepBytes` of free buffers are kept; the rest are left to the garbage collector. */
  constructor(private readonly keepBytes = 64 * 1024 * 1024) {}

  /** A message of `elems` float32 elements, not zeroed: the caller writes every element. */
  take(elems: number): Float32Array {
    const cap = capacityFor(4 * elems);
    const b = this.free.get(cap)?.pop();
    if (b === undefined) return new Float32Array(new ArrayBuffer(cap), 0, elems);
    this.keptBytes -= cap;
    return new Float32Array(b, 0, elems);
  }

  /** Takes back a message from take() whose bytes nobody reads any more; others are left to the GC. */
  give(msg: Float32Array): void {
    const b = msg.buffer;
    const cap = b.byteLength;
    if (!(b instanceof ArrayBuffer) || cap !== capacityFor(cap) || this.keptBytes + cap > this.keepBytes) return;
    let list = this.free.get(cap);
    if (list === undefined) this.free.set(cap, (list = []));
    list.push(b);
    this.keptBytes += cap;
  }

  /** Bytes of free buffers held now. */
  get heldBytes(): number {
    return this.keptBytes;
  }
}

/** The pool's capacity for a message of `bytes`: the next power of two, at least MIN_CAPACITY. */
function capacityFor(bytes: number): number {
  return Math.max(MIN_CAPACITY, 2 ** Math.ceil(Math.log2(Math.max(1, bytes))));
}
