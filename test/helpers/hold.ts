// Holding a spawned coordinator at a point of its run, so that a test acts there with no race against the
// trainer's speed: `--hold-file FILE --hold-at POINTS` (coordinator/hold.ts) makes the coordinator create
// FILE at each point, log 'holding at ... until FILE is removed' and wait; the test waits for that line,
// acts while the run stands still (kill a worker, cut a link, start one), then removes FILE.
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import type { Output } from './processes.js';

/** Generous: a loaded machine (3x its cores) runs the tiny job's epochs several times slower. */
const REACH_MS = 180_000;

export class Hold {
  readonly file: string;

  constructor(dir: string, name = 'hold') {
    this.file = join(dir, name);
  }

  /** The coordinator's flags: hold at each of `points` ('E' the end of epoch E, 'E:S' after step S of epoch E). */
  args(points: string): string[] {
    return ['--hold-file', this.file, '--hold-at', points];
  }

  /** Resolves once the coordinator holds at `at` ('epoch 2 step 2', 'the end of epoch 1'). */
  async reached(out: Output, at: string, timeoutMs = REACH_MS): Promise<void> {
    await out.waitFor(new RegExp(`"msg":"holding at ${at.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} until `), timeoutMs);
  }

  /** Lets the run go on. */
  release(): void {
    rmSync(this.file, { force: true });
  }
}
