// A ring of n ranks over real WebSocket links on loopback, in one process: rank r connects to its left
// neighbour's listener and accepts its right neighbour. The caller closes the links.
import type { Link } from '../../shared/allreduce/link.js';
import { connectRing, listenRing, wsLink } from '../../shared/transport/ring/index.js';

export async function wsRing(n: number, opts: { ordered?: boolean; jobId?: string } = {}): Promise<Link[]> {
  const jobId = opts.jobId ?? 'ws-ring';
  const listeners = await Promise.all(Array.from({ length: n }, () => listenRing({ host: '127.0.0.1', port: 0 })));
  const links = await Promise.all(
    listeners.map(async (l, rank) => {
      const left = listeners[(rank + n - 1) % n]!;
      const [out, inc] = await Promise.all([
        l.accept({ rank: (rank + 1) % n, jobId }, 10_000),
        connectRing(
          `ws://127.0.0.1:${left.port}`,
          { rank, size: n, jobId },
          { timeoutMs: 10_000, ...(opts.ordered !== undefined ? { ordered: opts.ordered } : {}) },
        ),
      ]);
      return wsLink(out, inc);
    }),
  );
  await Promise.all(listeners.map((l) => l.close()));
  return links;
}
