// Ring all-reduce over in-memory links: results against an independent float64 sum, bitwise identity
// across ranks, the exact bytes each rank sends, tags across calls, and failures.
import t, { type Test } from 'tap';
import {
  createRingBuffer,
  isRingBuffer,
  ringAllReduce,
  ringBytesSent,
  type RingStats,
} from '../../shared/allreduce/ring.js';
import { createMemoryRing, type MemoryRingOptions } from '../../shared/transport/memory-link.js';
import type { Link } from '../../shared/allreduce/link.js';
import { xorshiftRng as rng } from '../helpers/numerics.js';
import { isWolfpackError } from '../../shared/errors.js';

function inputs(n: number, len: number, seed: number): Float32Array[] {
  const r = rng(seed);
  const out: Float32Array[] = [];
  for (let k = 0; k < n; k++) {
    const a = new Float32Array(len);
    for (let i = 0; i < len; i++) a[i] = (r() * 2 - 1) * (r() < 0.1 ? 1000 : 1);
    out.push(a);
  }
  return out;
}

/** Expected bytes sent by `rank`, derived here from first principles: the segments it forwards. */
function expectedBytes(len: number, n: number, rank: number): number {
  if (n === 1 || len === 0) return 0;
  const seg = (s: number): number => Math.floor(len / n) + (s < len % n ? 1 : 0);
  let elems = 0;
  // reduce-scatter sends segments rank, rank-1, ..., rank-(n-2); all-gather sends rank+1, rank, ..., rank+1-(n-2)
  for (let g = 0; g < n - 1; g++) elems += seg((((rank - g) % n) + n) % n);
  for (let g = 0; g < n - 1; g++) elems += seg((((rank + 1 - g) % n) + n) % n);
  return 4 * elems;
}

async function runRing(
  bufs: Float32Array[],
  links: Link[],
  opts: { chunkElems?: number; step?: number } = {},
): Promise<RingStats[]> {
  return Promise.all(bufs.map((b, r) => ringAllReduce(b, r, bufs.length, links[r]!, opts)));
}

function check(tt: Test, orig: Float32Array[], out: Float32Array[], what: string): void {
  const n = orig.length;
  const len = orig[0]!.length;
  let worst = 0;
  for (let i = 0; i < len; i++) {
    let sum = 0;
    let mag = 0;
    for (let r = 0; r < n; r++) {
      sum += orig[r]![i]!;
      mag += Math.abs(orig[r]![i]!);
    }
    // n-1 float32 roundings of partial sums, each at most 2^-24 of a partial sum bounded by mag
    const tol = (n - 1) * 2 ** -24 * mag + 1e-30;
    const err = Math.abs(out[0]![i]! - sum);
    if (err > tol) {
      tt.fail(`${what}: element ${i}: got ${out[0]![i]}, float64 sum ${sum}, tolerance ${tol}`);
      return;
    }
    worst = Math.max(worst, err / (tol || 1));
  }
  const ref = Buffer.from(out[0]!.buffer, out[0]!.byteOffset, out[0]!.byteLength);
  for (let r = 1; r < n; r++) {
    if (!ref.equals(Buffer.from(out[r]!.buffer, out[r]!.byteOffset, out[r]!.byteLength))) {
      tt.fail(`${what}: rank ${r} differs bitwise from rank 0`);
      return;
    }
  }
  tt.pass(`${what} (worst error ${(worst * 100).toFixed(0)}% of tolerance)`);
}

t.test('ringBytesSent matches the derived formula, and 2(N-1)/N exactly when N divides L', async (tt) => {
  for (let n = 1; n <= 8; n++) {
    for (const len of [0, 1, n - 1, n, n + 1, 97, 1009, 25557032]) {
      for (let r = 0; r < n; r++) {
        const want = expectedBytes(len, n, r);
        if (ringBytesSent(len, n, r) !== want) tt.fail(`n=${n} len=${len} rank=${r}`);
        if (len % n === 0 && want !== (2 * (n - 1) * 4 * len) / n) tt.fail(`n=${n} len=${len}: not 2(N-1)/N`);
      }
    }
  }
  tt.pass('formula checked');
});

t.test('memory ring: N = 1..8, uneven lengths, chunk sizes, random delays', async (tt) => {
  let seed = 1;
  for (let n = 1; n <= 8; n++) {
    const lengths = [...new Set([0, 1, Math.max(n - 1, 0), n, n + 1, 2 * n - 1, 7, 13, 97, 1009, 4099])];
    for (const len of lengths) {
      const chunks = len <= 100 ? [1, 3, 1 << 18] : [7, 64, 1 << 18];
      for (const chunkElems of chunks) {
        for (const mode of ['fifo', 'reorder'] as const) {
          const opts: MemoryRingOptions = { delays: { seed: seed++, maxMs: 1 }, reorder: mode === 'reorder' };
          if (mode === 'reorder' && len > 1009) continue; // keep the run short; FIFO covers the long ones
          const orig = inputs(n, len, seed);
          const bufs = orig.map((a) => a.slice());
          const stats = await runRing(bufs, createMemoryRing(n, opts), { chunkElems });
          const what = `n=${n} len=${len} chunk=${chunkElems} ${mode}`;
          check(tt, orig, bufs, what);
          for (let r = 0; r < n; r++) {
            const want = expectedBytes(len, n, r);
            if (stats[r]!.bytesSent !== want)
              tt.fail(`${what}: rank ${r} sent ${stats[r]!.bytesSent} bytes, want ${want}`);
          }
          const sent = stats.reduce((s, x) => s + x.bytesSent, 0);
          const recv = stats.reduce((s, x) => s + x.bytesReceived, 0);
          if (sent !== recv) tt.fail(`${what}: ${sent} bytes sent, ${recv} received`);
        }
      }
    }
  }
});

t.test('ring buffers (WebAssembly SIMD sums) against the float64 sum, and the JS fallback', async (tt) => {
  tt.ok(isRingBuffer(createRingBuffer(10)), 'WebAssembly SIMD is available here');
  tt.notOk(isRingBuffer(new Float32Array(10)), 'a plain Float32Array is not a ring buffer');
  let seed = 500;
  for (const n of [2, 3, 4, 7]) {
    for (const len of [1, 3, 5, 17, 1001, 65_539]) {
      for (const [chunkElems, slot] of [
        [4, 4],
        [61, 64],
        [1000, 1000],
        [1 << 20, 1 << 20],
        [100, 50],
      ] as const) {
        if (len / chunkElems > 300) continue; // thousands of delayed messages: slow, and covered above
        const orig = inputs(n, len, seed++);
        const bufs = orig.map((a) => {
          const b = createRingBuffer(len, { maxChunkElems: slot });
          b.set(a);
          return b;
        });
        const stats = await runRing(bufs, createMemoryRing(n, { delays: { seed }, reorder: seed % 2 === 0 }), {
          chunkElems,
        });
        check(
          tt,
          orig,
          bufs,
          `n=${n} len=${len} chunk=${chunkElems} slot=${slot}${chunkElems > slot ? ' (JS fallback)' : ''}`,
        );
        if (stats[0]!.bytesSent !== expectedBytes(len, n, 0)) tt.fail('bytes sent');
      }
    }
  }
  // a subarray of a ring buffer still takes the fast path
  const big = createRingBuffer(1000);
  tt.ok(isRingBuffer(big.subarray(10, 500)), 'subarray');
  const orig = inputs(3, 490, 77);
  const views = orig.map((a) => {
    const b = createRingBuffer(1000).subarray(10, 500);
    b.set(a);
    return b;
  });
  await runRing(views, createMemoryRing(3), { chunkElems: 64 });
  check(tt, orig, views, 'subarray views');
});

t.test('no delays (synchronous delivery) and a large buffer', async (tt) => {
  for (const n of [2, 3, 5]) {
    const orig = inputs(n, 300_007, 99 + n);
    const bufs = orig.map((a) => a.slice());
    const stats = await runRing(bufs, createMemoryRing(n), { chunkElems: 10_000 });
    check(tt, orig, bufs, `n=${n} len=300007 synchronous`);
    tt.equal(stats[0]!.bytesSent, expectedBytes(300_007, n, 0));
  }
});

t.test('consecutive calls with step numbers on the same links, and concurrent calls', async (tt) => {
  const n = 4;
  const links = createMemoryRing(n, { delays: { seed: 5 } });
  for (let step = 0; step < 4; step++) {
    const orig = inputs(n, 1000 + step, 17 + step);
    const bufs = orig.map((a) => a.slice());
    await runRing(bufs, links, { chunkElems: 33, step });
    check(tt, orig, bufs, `call ${step}`);
  }
  // two collectives in flight at once on reordering links, kept apart by their steps
  const rl = createMemoryRing(n, { delays: { seed: 6 }, reorder: true });
  const a = inputs(n, 777, 1);
  const b = inputs(n, 777, 2);
  const ab = a.map((x) => x.slice());
  const bb = b.map((x) => x.slice());
  await Promise.all([runRing(ab, rl, { chunkElems: 50, step: 10 }), runRing(bb, rl, { chunkElems: 50, step: 11 })]);
  check(tt, a, ab, 'concurrent call A');
  check(tt, b, bb, 'concurrent call B');
});

t.test('failures', async (tt) => {
  // ranks that disagree on the length: a count mismatch is a protocol error
  {
    const links = createMemoryRing(2);
    const res = await Promise.allSettled([
      ringAllReduce(new Float32Array(10), 0, 2, links[0]!),
      ringAllReduce(new Float32Array(12), 1, 2, links[1]!),
    ]);
    const codes = res.map((x) => (x.status === 'rejected' && isWolfpackError(x.reason) ? x.reason.code : x.status));
    tt.ok(codes.includes('E_PROTOCOL'), `count mismatch rejected (${codes.join(', ')})`);
    for (const l of links) l.close();
  }
  // a rank that goes away: its neighbours fail with E_WORKER instead of waiting forever
  {
    const links = createMemoryRing(3);
    const p0 = ringAllReduce(new Float32Array(30), 0, 3, links[0]!);
    const p1 = ringAllReduce(new Float32Array(30), 1, 3, links[1]!);
    links[2]!.close();
    const res = await Promise.allSettled([p0, p1]);
    for (const x of res) {
      tt.ok(x.status === 'rejected' && isWolfpackError(x.reason, 'E_WORKER'), 'E_WORKER when a neighbour closes');
    }
  }
  // bad arguments
  const l1 = createMemoryRing(1)[0]!;
  await tt.rejects(ringAllReduce(new Float32Array(4), 1, 1, l1), { code: 'E_USAGE' });
  await tt.rejects(ringAllReduce(new Float32Array(4), 0, 0, l1), { code: 'E_USAGE' });
  await tt.rejects(ringAllReduce(new Float32Array(4), 0, 1, l1, { chunkElems: 0 }), { code: 'E_USAGE' });
  await tt.rejects(ringAllReduce(new Float32Array(4), 0, 1, l1, { step: -1 }), { code: 'E_USAGE' });
  tt.same(
    await ringAllReduce(new Float32Array([1, 2]), 0, 1, l1),
    {
      bytesSent: 0,
      bytesReceived: 0,
      messagesSent: 0,
      messagesReceived: 0,
    },
    'size 1 is a no-op',
  );
});

t.test('memory link detects a buffer reused before its send resolved', async (tt) => {
  const ring = createMemoryRing(2, { delays: { seed: 3 } });
  const a = ring[0]!;
  const b = ring[1]!;
  const data = new Float32Array([1, 2, 3]);
  const sent = a.send(7, data);
  data[1] = 42; // too early: the message has not been delivered
  const got = b.recv(7, 3, () => undefined);
  await tt.rejects(sent, { code: 'E_PROTOCOL' });
  await tt.rejects(got, { code: 'E_PROTOCOL' });
});
