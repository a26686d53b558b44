// The first SIGINT/SIGTERM asks for a clean stop (the AbortSignal, with the signal's name); a second exits
// at once with the shell's code for death by that signal; disposed, the handlers are gone.
import t from 'tap';
import { stopOnSignals } from '../../cli/stop-signals.js';

t.test('first signal aborts, second exits at once with 128 + its number', (t) => {
  const lines: string[] = [];
  const codes: number[] = [];
  const before = process.listenerCount('SIGTERM');
  const stop = stopOnSignals(
    (l) => lines.push(l),
    (c) => codes.push(c),
  );
  t.equal(process.listenerCount('SIGTERM'), before + 1);
  t.notOk(stop.signal.aborted);
  process.emit('SIGTERM', 'SIGTERM');
  t.ok(stop.signal.aborted, 'the first SIGTERM aborts');
  t.equal(stop.signal.reason, 'SIGTERM');
  t.same(codes, [], 'and does not exit');
  t.match(lines[0], /SIGTERM: stopping cleanly; SIGTERM again exits at once/);
  process.emit('SIGINT', 'SIGINT');
  t.same(codes, [130], 'a second signal (SIGINT) exits with 130');
  t.match(lines[1], /SIGINT again: exiting now, without saving/);
  stop.dispose();
  t.equal(process.listenerCount('SIGTERM'), before, 'dispose removes the handlers');
  t.end();
});
