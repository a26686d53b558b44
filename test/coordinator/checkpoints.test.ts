// RunOutput's checkpoints: told which parts of the state can change, it re-encodes only those tensors
// and reuses the bytes of the rest -- and the files are byte for byte what a full encoding writes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RunOutput, type TrainState } from '../../coordinator/checkpoints.js';
import { mutableRanges } from '../../shared/model/state.js';
import { initModel, tensorsFromModel } from '../../shared/model/weights.js';
import { readCkpt, writeCkpt } from '../../shared/weights/ckpt.js';

const train = (epoch: number): TrainState => ({
  epoch,
  step: epoch * 3,
  seed: 0,
  bestAccuracy: 0.5,
  bestEpoch: 1,
  config: {} as TrainState['config'],
});

t.test('checkpoints with a frozen backbone reuse the backbone bytes and equal a full encoding', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-ckpt-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const state = initModel({ flavour: 'mindspore', width: 4, numClasses: 2 }, 5);
  const accum = new Float32Array(state.layout.paramCount);
  for (const [freeze, bn] of [
    ['backbone', 'frozen'],
    ['backbone', 'train'],
    ['none', 'frozen'],
    ['none', 'train'],
  ] as const) {
    const ranges = mutableRanges(state.layout, freeze, bn);
    const out = new RunOutput(join(dir, `${freeze}-${bn}`), ranges);
    await out.init();
    for (let epoch = 1; epoch <= 3; epoch++) {
      // what training changes between saves: only the mutable ranges
      for (let i = ranges.params.begin; i < ranges.params.end; i += 7)
        state.params[i] = state.params[i]! + 0.25 * epoch;
      for (let i = ranges.accum.begin; i < ranges.accum.end; i += 5) accum[i] = epoch * 0.5 + i * 1e-6;
      for (let i = ranges.stats.begin; i < ranges.stats.end; i += 3) state.stats[i] = state.stats[i]! + 0.125;
      await out.saveBest(state);
      await out.saveLast(state, accum, train(epoch));
      const fullBest = join(dir, 'full-best.ckpt');
      const fullLast = join(dir, 'full-last.ckpt');
      await writeCkpt(fullBest, tensorsFromModel(state));
      await writeCkpt(fullLast, tensorsFromModel(state, accum));
      t.ok(
        readFileSync(join(out.dir, 'best.ckpt')).equals(readFileSync(fullBest)),
        `${freeze}/${bn} epoch ${epoch}: best.ckpt = a full encoding`,
      );
      t.ok(
        readFileSync(join(out.dir, 'last.ckpt')).equals(readFileSync(fullLast)),
        `${freeze}/${bn} epoch ${epoch}: last.ckpt = a full encoding`,
      );
    }
  }
  const head = (await readCkpt(join(dir, 'backbone-frozen', 'last.ckpt'))).get('moments.end_point.weight');
  t.ok(head !== undefined && head.bytes.some((b) => b !== 0), "the head's Momentum is in last.ckpt");
});
