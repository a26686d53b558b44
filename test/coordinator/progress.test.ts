// The terminal's progress line: position, loss, elapsed time and the time left at the pace so far.
import t from 'tap';
import { progressLine } from '../../coordinator/epoch-figures.js';

t.test('elapsed and ETA from the steps this process ran', (t) => {
  // 20 epochs of 10 steps; started at global step 30 (a resumed run), now at 40 after 50 s: 5 s a step,
  // 160 steps left -> 800 s.
  t.equal(
    progressLine(4, 20, 40, 10, 0.51234, { t0: 1000, done0: 30 }, 51_000),
    'epoch 5/20 step 0/10 loss 0.5123  elapsed 0:50  ETA 13:20',
  );
  t.equal(
    progressLine(0, 2, 1, 100, 1, { t0: 0, done0: 0 }, 3_600_000),
    'epoch 1/2 step 1/100 loss 1.0000  elapsed 1:00:00  ETA 199:00:00',
  );
  t.equal(
    progressLine(0, 1, 0, 5, 1, { t0: 0, done0: 0 }, 10),
    'epoch 1/1 step 0/5 loss 1.0000  elapsed 0:00  ETA ?',
    'no step run yet: no estimate',
  );
  t.end();
});
