// Several hosts on one machine: the coordinator and three workers each in a network namespace of
// their own, joined through a Linux bridge on a private test subnet (test/helpers/netns.ts), every
// link authenticated with a shared token file. Training runs across the "hosts"; then one worker's
// cable is pulled mid-epoch (its switch port goes down: no FIN, no RST, its sockets stay open and
// its process keeps running). The coordinator must evict it after --timeout for lack of heartbeats,
// re-form the ring on the other two and finish with every epoch's metrics. A second run plugs the
// cable back in and starts a fresh worker on that host, which rejoins (--min-workers 3). The cable is
// pulled while the coordinator holds after step 2 of epoch 2 (--hold-at, test/helpers/hold.ts), so the
// cut falls in epoch 2 whatever the machine's speed. Skipped where network namespaces cannot be made
// (not root / no CAP_NET_ADMIN).
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import { Hold } from '../helpers/hold.js';
import { exited, Output } from '../helpers/processes.js';
import { Lab, netnsUnavailable } from '../helpers/netns.js';
import { makeTinyJob } from '../helpers/tiny-job.js';

const why = netnsUnavailable();
const TIMEOUT_S = 3;
const TOKEN = 'netns-test-token-' + 'a7'.repeat(16);
const WORKERS = ['w1', 'w2', 'w3'];

interface Metric {
  epoch: number;
  workers: number;
}

const re = (s: string): string => s.replace(/\./g, '\\.');

/** A lab of four hosts, the tiny job, a coordinator on host c and a worker on each other host. */
async function multiHost(t: Test, coordExtra: string[]) {
  const lab = Lab.create([{ name: 'c', octet: 1 }, ...WORKERS.map((name, i) => ({ name, octet: 11 + i }))], {
    delayMs: 2,
  });
  t.teardown(() => lab.destroy());
  for (const n of lab.notes) t.comment(n);
  await lab.waitUp();
  const job = await makeTinyJob({ trainPerClass: 30 });
  t.teardown(job.cleanup);
  const tokenFile = join(job.dir, 'token');
  writeFileSync(tokenFile, TOKEN + '\n');
  chmodSync(tokenFile, 0o600);
  const out = join(job.dir, 'out');
  const coordAddr = lab.host('c').addr;
  const hold = new Hold(job.dir);

  const coord = lab.startCli('c', [
    'coordinator',
    '--workers',
    '3',
    '--host',
    coordAddr,
    '--port',
    '0',
    '--token-file',
    tokenFile,
    '--data',
    job.data,
    '--weights',
    job.weights,
    '--epochs',
    '3',
    '--batch-size',
    '6',
    '--image-size',
    '32',
    '--out',
    out,
    '--backend',
    'wasm',
    '--lr',
    '0.01',
    '--bn',
    'frozen',
    '--timeout',
    String(TIMEOUT_S),
    '--log-level',
    'debug',
    ...hold.args('2:2'),
    ...coordExtra,
  ]);
  const co = new Output(coord);
  const port = (await co.waitFor(/"port":(\d+).*listening for workers/, 30_000))[1];
  const startWorker = (name: string) =>
    lab.startCli(name, [
      'worker',
      '--connect',
      `ws://${coordAddr}:${port}`,
      '--ring-bind',
      '0.0.0.0',
      '--advertise',
      lab.host(name).addr,
      '--token-file',
      tokenFile,
      '--backend',
      'wasm',
      '--timeout',
      '60',
    ]);
  const workers = WORKERS.map(startWorker);
  const wo = workers.map((w) => new Output(w));

  // The ring is made of the namespaces' addresses, and the workers reached the coordinator from theirs.
  const ring = (await co.waitFor(/"ring":(\[[^\]]*\]).*"msg":"ring formed"/, 120_000))[1]!;
  for (const n of WORKERS) {
    t.match(
      ring,
      new RegExp(`\\(${re(lab.host(n).addr)}:\\d+\\)`),
      `${n}'s ring listener is advertised at ${lab.host(n).addr}`,
    );
    t.match(
      co.text,
      new RegExp(`"peer":"worker@${re(lab.host(n).addr)}:\\d+".*"msg":"worker connected"`),
      `${n} connected from ${lab.host(n).addr}`,
    );
  }
  t.notMatch(ring, /127\.0\.0\.1/, 'no loopback address in the ring');

  /** Pulls the cable of the rank-1 worker while the run holds after epoch 2 step 2; resolves when it is evicted. */
  const cutRank1 = async () => {
    await hold.reached(co, 'epoch 2 step 2');
    const rank1 = /"rank":1,"worker":"[^"]*\/pid (\d+)/.exec(ring);
    const i = workers.findIndex((w) => rank1 !== null && w.pid === Number(rank1[1]));
    t.ok(i >= 0, `rank 1 is one of the test's workers (pid ${rank1?.[1]})`);
    const victim = WORKERS[Math.max(0, i)]!;
    const cutAt = Date.now();
    lab.cut(victim);
    hold.release();
    t.comment(`cut ${victim} (${lab.host(victim).addr}) at epoch 2 step 2`);
    const lost = await co.waitFor(/"reason":"([^"]*no heartbeat for ([\d.]+) s[^"]*)","msg":"worker lost"/, 60_000);
    const waited = (Date.now() - cutAt) / 1000;
    t.match(lost[1], lab.host(victim).addr, 'the lost worker is the one that was cut');
    t.ok(Number(lost[2]) >= TIMEOUT_S, `its last heartbeat was ${lost[2]} s (rounded) before the eviction`);
    // The clock starts at the last heartbeat received (every 1 s, later under load), so before the cut.
    t.ok(
      waited < TIMEOUT_S + 12,
      `evicted ${waited.toFixed(1)} s after the cut for lack of heartbeats (--timeout ${TIMEOUT_S} s)`,
    );
    return { victim, index: Math.max(0, i) };
  };

  const finish = async () => {
    t.equal(
      await exited(coord, 180_000),
      0,
      `the coordinator finishes${coord.exitCode ? `: ${co.text.slice(-2000)}` : ''}`,
    );
    t.match(co.text, /ring will be re-formed/);
    t.match(co.text, /End training, the best Accuracy is/);
    const m = readFileSync(join(out, 'metrics.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Metric);
    t.same(
      m.map((x) => x.epoch),
      [1, 2, 3],
      'every epoch has its metrics',
    );
    return m;
  };

  const noToken = (outputs: Output[]) => {
    t.ok(
      outputs.every((o) => !o.text.includes(TOKEN)),
      'the token appears in no output',
    );
  };

  return { lab, co, workers, wo, startWorker, cutRank1, finish, noToken };
}

t.test(
  'a cut link across network namespaces: the worker is evicted after --timeout and the run finishes on two',
  { skip: why ?? false },
  async (t) => {
    const { lab, co, workers, wo, cutRank1, finish, noToken } = await multiHost(t, []);
    const exitTimes = workers.map((w) => new Promise<number>((resolve) => w.once('exit', () => resolve(Date.now()))));
    const { victim, index } = await cutRank1();
    const m = await finish();
    t.same(
      m.map((x) => x.workers),
      [3, 2, 2],
      'epoch 1 on three hosts; epoch 2, where the cable was pulled, ends on two, and so does epoch 3',
    );

    const victimProc = workers[index]!;
    t.equal(victimProc.exitCode, null, `the cut worker (${victim}) is still running: a network fault, not a crash`);
    // The survivors got the shutdown order; each process ends once its sockets are gone. A socket to
    // the cut host cannot close cleanly (no close frame or FIN comes back), and the ws library's close
    // timer destroys it only after 30 s: a survivor whose ring neighbour was the cut host lingers up to
    // ~30 s after the abort (docs/RELIABILITY.md, known issues).
    const shutdownAt = Date.now();
    for (const [i, w] of workers.entries()) {
      if (i === index) continue;
      const code = await exited(w, 45_000);
      t.match(wo[i]!.text, /"reason":"training finished","msg":"shutdown"/, `${WORKERS[i]} got the shutdown order`);
      t.equal(
        code,
        0,
        `${WORKERS[i]} exits with 0${
          code !== 0
            ? `: ${wo[i]!.text.split('\n')
                .filter((l) => !l.includes('"level":20'))
                .join('\n')
                .slice(-2500)}`
            : ''
        }`,
      );
      t.comment(
        `${WORKERS[i]} exited ${(((await exitTimes[i]!) - shutdownAt) / 1000).toFixed(1)} s after the coordinator`,
      );
    }
    noToken([co, ...wo]);

    lab.destroy();
    t.same(lab.remaining(), [], 'every namespace of the test is gone');
    await exited(victimProc, 5_000);
    t.equal(victimProc.signalCode, 'SIGKILL', 'the cut worker was killed by its pid');
  },
);

t.test(
  'the link comes back: a fresh worker on that host rejoins (--min-workers 3) and training goes on with three',
  { skip: why ?? false },
  async (t) => {
    const { lab, co, wo, startWorker, cutRank1, finish, noToken } = await multiHost(t, ['--min-workers', '3']);
    const { victim } = await cutRank1();
    await co.waitFor(/"have":2,"need":3,"msg":"waiting for workers to \(re\)join"/, 60_000);
    lab.restore(victim);
    await lab.waitUp();
    const fresh = startWorker(victim);
    const fo = new Output(fresh);
    await co.waitFor(
      new RegExp(
        `"ring":\\[[^\\]]*/pid ${fresh.pid} \\(${re(lab.host(victim).addr)}:\\d+\\)[^\\]]*\\].*"msg":"ring formed"`,
      ),
      120_000,
    );
    t.pass(`the fresh worker on ${victim} is in the re-formed ring`);
    const m = await finish();
    t.same(
      m.map((x) => x.workers),
      [3, 3, 3],
      'every epoch ran on three hosts',
    );
    t.equal(await exited(fresh, 30_000), 0, 'the fresh worker exits cleanly at shutdown');
    t.match(fo.text, /"source":"rank 0".*"msg":"ring formed; state in place"/, 'it got the state from a peer');
    noToken([co, fo, ...wo]);
  },
);
