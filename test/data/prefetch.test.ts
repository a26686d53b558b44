// prefetch: results in order, never more than `depth` producers running, a failure surfacing at its
// own position, and an early break that stops starting new work.
import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { prefetch } from '../../shared/data/prefetch.js';

// Producers that record how many run at once; producer i takes `delay(i)` ms.
function tracked(n: number, delay: (i: number) => number, fail?: number) {
  const stats = { inFlight: 0, maxInFlight: 0, started: 0 };
  function* producers(): Generator<() => Promise<number>> {
    for (let i = 0; i < n; i++) {
      yield async () => {
        stats.started++;
        stats.inFlight++;
        stats.maxInFlight = Math.max(stats.maxInFlight, stats.inFlight);
        try {
          await sleep(delay(i));
          if (i === fail) throw new Error(`producer ${i} failed`);
          return i;
        } finally {
          stats.inFlight--;
        }
      };
    }
  }
  return { stats, producers: producers() };
}

t.test('yields in order even when later producers finish first', async (t) => {
  const { producers } = tracked(12, (i) => (12 - i) * 2);
  const got: number[] = [];
  for await (const v of prefetch(producers, 4)) got.push(v);
  t.same(
    got,
    Array.from({ length: 12 }, (_, i) => i),
  );
});

t.test('at most depth producers run at once, and depth of them do while the consumer is slow', async (t) => {
  for (const depth of [1, 3, 5]) {
    const { stats, producers } = tracked(20, () => 3);
    let seen = 0;
    for await (const _ of prefetch(producers, depth)) {
      seen++;
      await sleep(5); // a slow consumer: the window fills up
    }
    t.equal(seen, 20);
    t.equal(stats.maxInFlight, depth, `depth ${depth}: max in flight ${stats.maxInFlight}`);
  }
  const { stats, producers } = tracked(5, () => 1);
  for await (const _ of prefetch(producers, 0)) await sleep(2);
  t.equal(stats.maxInFlight, 1, 'depth 0 runs one at a time');
});

t.test('a failure surfaces at its position, after the results before it', async (t) => {
  const { producers } = tracked(10, (i) => (i === 5 ? 1 : 8), 5);
  const got: number[] = [];
  await t.rejects(
    async () => {
      for await (const v of prefetch(producers, 4)) got.push(v);
    },
    { message: 'producer 5 failed' },
  );
  t.same(got, [0, 1, 2, 3, 4]);

  // A producer that throws before returning a promise counts the same way.
  const sync = [
    () => Promise.resolve(1),
    () => {
      throw new Error('sync boom');
    },
    () => Promise.resolve(3),
  ];
  const got2: number[] = [];
  await t.rejects(
    async () => {
      for await (const v of prefetch(sync, 2)) got2.push(v);
    },
    { message: 'sync boom' },
  );
  t.same(got2, [1]);
});

t.test('breaking early starts no more producers and leaves no unhandled rejection', async (t) => {
  // Producers after the break point fail: their rejections must not escape.
  const { stats, producers } = tracked(100, () => 2, 4);
  const unhandled: unknown[] = [];
  const onUnhandled = (e: unknown): void => {
    unhandled.push(e);
  };
  process.on('unhandledRejection', onUnhandled);
  let closed = false;
  function* watched(): Generator<() => Promise<number>> {
    try {
      yield* producers;
    } finally {
      closed = true;
    }
  }
  const got: number[] = [];
  for await (const v of prefetch(watched(), 3)) {
    got.push(v);
    if (got.length === 2) break;
  }
  await sleep(30);
  process.off('unhandledRejection', onUnhandled);
  t.same(got, [0, 1]);
  t.ok(stats.started <= 2 + 3, `started ${stats.started} of 100`);
  t.equal(stats.inFlight, 0, 'the ones already running finished');
  t.ok(closed, 'the producer iterator was closed');
  t.same(unhandled, []);
});

t.test('bad depth is a usage error at the call', async (t) => {
  t.throws(() => prefetch([], -1), { code: 'E_USAGE' });
  t.throws(() => prefetch([], 1.5), { code: 'E_USAGE' });
  const empty: number[] = [];
  for await (const v of prefetch<number>([], 3)) empty.push(v);
  t.same(empty, []);
});
