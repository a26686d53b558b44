// Bounded read-ahead for the data loader: while the trainer works on one batch, the next few are
// decoded and transformed. Results come out in order, at most `depth` producers run ahead of the
// consumer (so memory stays bounded), and a consumer that stops early stops further work.
import { WolfpackError } from '../errors.js';

/**
 * Runs the producers with up to `depth` of them in flight ahead of the consumer and yields their
 * results in order. A producer's failure is thrown when the consumer reaches its position (results
 * before it are still delivered). Breaking out of the loop starts no further producers; those already
 * running finish in the background and their results (or errors) are dropped. depth 0 runs one
 * producer at a time, only when the consumer asks.
 */
export function prefetch<T>(producers: Iterable<() => Promise<T>>, depth: number): AsyncGenerator<T, void, undefined> {
  // Checked here rather than in the generator, so a bad depth fails at the call, not at first use.
  if (!Number.isInteger(depth) || depth < 0) {
    throw new WolfpackError('E_USAGE', `prefetch: depth must be a non-negative integer, got ${String(depth)}`);
  }
  return readAhead(producers, depth);
}

async function* readAhead<T>(producers: Iterable<() => Promise<T>>, depth: number): AsyncGenerator<T, void, undefined> {
  const source = producers[Symbol.iterator]();
  const pending: Promise<T>[] = [];
  let exhausted = false;

  const startNext = (): boolean => {
    if (exhausted) return false;
    const step = source.next();
    if (step.done) {
      exhausted = true;
      return false;
    }
    let result: Promise<T>;
    try {
      result = Promise.resolve(step.value());
    } catch (e) {
      // A producer that throws synchronously fails at its own position, like a rejected one.
      result = Promise.reject(e);
    }
    // Nobody may await a result the consumer never reaches (early break, earlier failure): keep
    // its rejection from becoming an unhandled one. The consumer still sees it through `await`.
    result.catch(() => undefined);
    pending.push(result);
    return true;
  };

  try {
    for (;;) {
      while (pending.length < Math.max(1, depth) && startNext()) {
        /* fill the window */
      }
      const head = pending.shift();
      if (head === undefined) return;
      const value = await head;
      // Refill before handing the value over, so `depth` producers work while the consumer does.
      while (pending.length < depth && startNext()) {
        /* fill the window */
      }
      yield value;
    }
  } finally {
    if (!exhausted) source.return?.();
  }
}
