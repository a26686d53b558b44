// The rank's side of the IPC channel to the benchmark parent (bench/rank-process.ts): messages are
// queued from the moment listenToParent() is called, so that none is lost before its reader waits for
// it, and read by type. When the parent goes away (its channel closes), the rank exits: a benchmark
// rank never outlives the run that started it.

const inbox: Array<{ t?: string }> = [];
let waiter: (() => void) | null = null;

/** Starts queueing the parent's messages; exits with `code` when the channel to the parent closes. */
export function listenToParent(onDisconnect?: () => void): void {
  process.on('message', (m: { t?: string }) => {
    inbox.push(m);
    if (waiter !== null) waiter();
  });
  process.on('disconnect', () => {
    onDisconnect?.();
    process.exit(1);
  });
}

/** Sends `msg` to the parent; resolves once it was handed to the channel. */
export function sendToParent(msg: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    if (!process.send) {
      reject(new Error('this rank needs an IPC channel to its parent (start it through the benchmark)'));
      return;
    }
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** The next message of type `t` from the parent. */
export async function nextParentMessage<T>(t: string): Promise<T> {
  for (;;) {
    const k = inbox.findIndex((m) => m !== null && typeof m === 'object' && m.t === t);
    if (k >= 0) return inbox.splice(k, 1)[0] as T;
    await new Promise<void>((resolve) => {
      waiter = resolve;
    });
    waiter = null;
  }
}
