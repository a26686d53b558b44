// The capture of Dawn's event ticks (shared/backend/webgpu/sync-read.ts), with a stand-in for Dawn's tick: a
// nameless, parameterless native-looking function that schedules itself again with the global setImmediate
// while its work is pending, as Dawn's Node bindings do. On the event loop the re-scheduling backs off to a
// timer after a burst of immediate polls (so a long GPU wait neither busies a core nor piles up garbage), a
// new wait starts on the immediate queue again, and a blocking read (spinDawn) still runs the pending tick
// at once. What the tick was scheduled as is read from the event loop's own resource list, not from timing.
import t from 'tap';
import { installTickCapture, spinDawn } from '../../shared/backend/webgpu/sync-read.js';

installTickCapture();

/** Counts of the event loop's immediates and timers now. */
function loopResources(): { immediates: number; timers: number } {
  const r = process.getActiveResourcesInfo();
  return { immediates: r.filter((x) => x === 'Immediate').length, timers: r.filter((x) => x === 'Timeout').length };
}

/**
 * A Dawn-like tick that polls `polls` times: each call schedules the next with setImmediate, and records the
 * loop's resources right after scheduling at the calls in `probe`. Resolves with the records after the last.
 */
function dawnLikeWait(polls: number, probe: number[]): Promise<Map<number, ReturnType<typeof loopResources>>> {
  return new Promise((resolve) => {
    const seen = new Map<number, ReturnType<typeof loopResources>>();
    let calls = 0;
    const native = function (): void {
      calls++;
      if (calls < polls) setImmediate(tick);
      if (probe.includes(calls)) seen.set(calls, loopResources());
      if (calls === polls) resolve(seen);
    };
    // bound functions print as native code; Dawn's tick is also nameless and takes no arguments
    const tick = native.bind(null);
    Object.defineProperty(tick, 'name', { value: '' });
    setImmediate(tick);
  });
}

t.test('a long wait polls on the immediate queue for a burst, then on a timer; a new wait starts fast', async (t) => {
  const first = await dawnLikeWait(400, [5, 300]);
  const [early, late] = [first.get(5)!, first.get(300)!];
  t.equal(late.immediates, early.immediates - 1, 'after the burst the next tick is no longer an immediate');
  // (the timer that ran this tick still counts until its callback returns)
  t.ok(late.timers > early.timers, `but a timer (${early.timers} -> ${late.timers} timers)`);
  const again = await dawnLikeWait(10, [5]);
  t.same(again.get(5), early, 'a new wait is back on the immediate queue');
});

t.test('spinDawn runs the pending ticks itself, past the burst, without the event loop', async (t) => {
  let calls = 0;
  const native = function (): void {
    if (++calls < 2000) setImmediate(tick);
  };
  const tick = native.bind(null);
  Object.defineProperty(tick, 'name', { value: '' });
  setImmediate(tick);
  spinDawn(() => calls >= 2000, 30_000, 'the test wait');
  t.equal(calls, 2000, 'a blocking wait drove 2000 ticks');
});
