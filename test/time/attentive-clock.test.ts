// The attentive clock credits at most one tick's worth for a stall of this thread's event loop, reports
// the stall, and an attentive timeout set before a stall fires only after its full attentive duration.
import t from 'tap';
import { attentiveClock, attentiveTimeout, MAX_CREDIT_MS } from '../../shared/time/attentive-clock.js';

/** Blocks this thread's event loop for `ms` of wall time (the stall under test). */
function block(ms: number): void {
  const end = performance.now() + ms;
  while (performance.now() < end) {
    /* stalled */
  }
}

function nextTick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}

t.test('a stall of the event loop is not credited, and is reported', async (t) => {
  await nextTick();
  const before = attentiveClock.now();
  const wallBefore = performance.now();
  block(1500);
  const during = attentiveClock.now() - before;
  t.ok(during <= MAX_CREDIT_MS, `1.5 s blocked advanced the clock by ${during.toFixed(0)} ms <= ${MAX_CREDIT_MS}`);
  await new Promise((resolve) => setTimeout(resolve, 250)); // let the ticker see the gap
  const stalls = attentiveClock.stallsSince(before);
  t.ok(stalls.maxGapMs >= 1500 - 1, `the longest gap (${stalls.maxGapMs} ms) covers the 1.5 s block`);
  t.ok(stalls.totalMs >= 1500 - MAX_CREDIT_MS - 1, `stalled ${stalls.totalMs} ms, at least the block less one credit`);
  t.ok(
    attentiveClock.now() - before < performance.now() - wallBefore - 1000,
    'attentive time fell behind wall time by the stall',
  );
});

t.test('an attentive timeout does not fire early after a stall', async (t) => {
  await nextTick();
  const start = attentiveClock.now();
  let firedAt: number | undefined;
  const fired = new Promise<void>((resolve) =>
    attentiveTimeout(() => {
      firedAt = attentiveClock.now();
      resolve();
    }, 500),
  );
  block(1200); // longer than the timeout: a plain setTimeout would fire as soon as the loop wakes
  await fired;
  t.ok(firedAt! - start >= 500, `fired after ${(firedAt! - start).toFixed(0)} ms of attentive time (>= 500)`);
});

t.test('an attentive timeout can be cancelled', async (t) => {
  let fired = false;
  const cancel = attentiveTimeout(() => {
    fired = true;
  }, 50);
  cancel();
  await new Promise<void>((resolve) => attentiveTimeout(resolve, 300));
  t.notOk(fired, 'the cancelled timeout never fired');
});

t.test('without stalls attentive time keeps up with wall time', async (t) => {
  const a0 = attentiveClock.now();
  const w0 = performance.now();
  await new Promise((resolve) => setTimeout(resolve, 600));
  const a = attentiveClock.now() - a0;
  const w = performance.now() - w0;
  t.ok(a <= w + 1, `attentive ${a.toFixed(0)} ms never runs ahead of wall ${w.toFixed(0)} ms`);
  t.ok(a > 0, 'it advances');
});
