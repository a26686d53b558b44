// Chain broadcast along the ring: rank 0 sends `buf` to rank 1, which stores each chunk and passes
// it on, and so on to rank N-1. Chunks pipeline down the chain, so the root uploads the buffer once
// whatever N is (the coordinator gives the weights to rank 0 only). Runs over the same Link as the
// all-reduce, with the caller's collective number in the tags.
import type { Link } from './link.js';
import { DEFAULT_CHUNK_ELEMS, ringTag } from './ring.js';

export async function chainBroadcast(
  buf: Float32Array,
  rank: number,
  size: number,
  link: Link,
  opts: { step: number; chunkElems?: number },
): Promise<void> {
  if (size <= 1 || buf.length === 0) return;
  const chunk = opts.chunkElems ?? DEFAULT_CHUNK_ELEMS;
  const forward = rank < size - 1;
  const sends: Promise<void>[] = [];
  for (let off = 0, seq = 0; off < buf.length; off += chunk, seq++) {
    const n = Math.min(chunk, buf.length - off);
    const part = buf.subarray(off, off + n);
    const tag = ringTag(opts.step, seq);
    if (rank > 0) await link.recv(tag, n, (v) => part.set(v));
    if (forward) sends.push(link.send(tag, part));
  }
  await Promise.all(sends);
}
