// A short `wolfpack bench chaos`: one fault of each kind (kill, short and long SIGSTOP, short and long
// link cut; the cuts only where network namespaces can be made) on 240 steps of the tiny job.
// The faulted run must reach the uninterrupted run's weights and count every epoch's samples once;
// and the bench must leave nothing behind: no process it started, no namespace it made.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import t from 'tap';
import type { ChaosResult } from '../../bench/chaos.js';
import { netnsUnavailable } from '../../bench/netns-lab.js';
import { distPath } from '../../shared/paths.js';
import { ensureBuilt } from '../helpers/build.js';
import { alive, exited, Output, startCli } from '../helpers/processes.js';

// Two training runs of 240 steps and five faults: 70 s on 2 cores at load 10, 2.5 minutes at load 14.
t.setTimeout(540_000);

t.test(
  'one fault of each kind: same weights as the uninterrupted run, every sample counted once, nothing left behind',
  async (t) => {
    ensureBuilt(distPath(join('bench', 'chaos.js')));
    const cuts = netnsUnavailable() === undefined;
    // Enough steps that the five faults fit in: the run goes on while a stopped worker waits for its
    // eviction's end or a fresh one starts, about 20 steps a fault here.
    const p = startCli([
      'bench',
      'chaos',
      '--epochs',
      '2',
      '--steps-per-epoch',
      '120',
      '--max-faults',
      cuts ? '5' : '3',
      '--gap',
      '1-2',
      '--timeout',
      '2',
      '--max-minutes',
      '8',
      '--json',
    ]);
    const out = new Output(p);
    const code = await exited(p, 510_000);
    const r = JSON.parse(
      out.text.split('\n').find((l) => l.startsWith('{"bench":"wolfpack_chaos"')) ?? '{}',
    ) as ChaosResult;
    t.equal(code, 0, `the chaos run passes${code ? `: ${JSON.stringify(r.problems ?? out.text.slice(-2000))}` : ''}`);
    const kinds = cuts
      ? ['kill', 'stop-short', 'stop-long', 'cut-short', 'cut-long']
      : ['kill', 'stop-short', 'stop-long'];
    t.same(
      r.chaos.faults.map((f) => f.kind).sort(),
      [...kinds].sort(),
      'the first round of faults has one of each kind',
    );
    if (!cuts) t.match(r.skipped.join(' '), /link cuts .* skipped/, 'it says that it skipped link cuts');
    t.ok(r.evictions >= 2, `the kill and the long stop were evicted (${r.evictions} evictions)`);
    t.ok(r.weights.ok, `weights within ${r.weights.tolerance}: ${r.weights.worst_rel_diff}`);
    t.ok(r.samples_ok && r.samples.every((s) => s.samples === 120 * 6), 'every epoch trained 120 x 6 samples');
    const pids = [...r.reference.pids, ...r.chaos.pids];
    t.ok(pids.length >= 2 * 4 + 2, `it started ${pids.length} processes`);
    t.same(pids.filter(alive), [], 'none of them is left');
    if (cuts)
      t.notMatch(
        execFileSync('ip', ['netns', 'list'], { encoding: 'utf8' }),
        new RegExp(`wpnet-${p.pid}-`),
        'its namespaces are deleted',
      );
  },
);
