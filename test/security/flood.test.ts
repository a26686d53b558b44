// A connection flood during a real run (shared/transport/admission.ts in every listener): `wolfpack
// coordinator --handshake-timeout 3` and two `wolfpack worker` processes with the same deadline on their ring
// ports. Hundreds of idle and malformed connections (test/helpers/flood.ts: idle, an unfinished head, an
// unfinished upgrade with a 5 KB key, an oversized head, an oversized first frame) from other loopback
// addresses hit the coordinator's port, and the first worker's ring port once the coordinator names it; a
// burst from one address goes past the per-address cap. While nothing can finish (the coordinator waits for
// its second worker, the first worker for its welcome), every connection of the first round must be closed
// by the servers, the held ones at their deadline. The flood goes on (each closed connection is reopened)
// while the second worker connects late: it must join, its ring link must form through the flooded ring
// port, and the run must finish. The refusals are logged once per address and counted, not line by line.
import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import { coordinatorSecurity, securityEnv, workerSecurity } from '../../shared/auth/config.js';
import {
  ADMISSION_GRACE_MS,
  MAX_PENDING_CONNECTIONS,
  MAX_PENDING_PER_ADDRESS,
} from '../../shared/transport/admission.js';
import { ensureBuilt } from '../helpers/build.js';
import { allClosed, Flood, FLOOD_KINDS, openFlood, type FloodKind, type FloodSocket } from '../helpers/flood.js';
import { makeTinyJob, tinyTrainArgs, type TinyJob } from '../helpers/tiny-job.js';
import { packageRoot } from '../../shared/paths.js';
import { logRecords, start, startCoordinator, waitForLog, type Proc } from '../helpers/secure-cluster.js';

const TOKEN = 'flood-test-token-' + 'f5'.repeat(12);
/** --handshake-timeout of every process here, seconds. */
const DEADLINE_S = 3;
/** Longest a held connection may live: the deadline, the grace of a polite close, and slack for a loaded machine. */
const HELD_BOUND_MS = DEADLINE_S * 1000 + ADMISSION_GRACE_MS + 10_000;
/** Kinds the servers can only cut at the deadline (the others are refused for their size). */
const HELD: FloodKind[] = ['idle', 'partial-head', 'long-key'];
const COORD_FROM = ['127.0.0.2', '127.0.0.3', '127.0.0.4', '127.0.0.5', '127.0.0.6', '127.0.0.7'];
const RING_FROM = ['127.0.0.12', '127.0.0.13', '127.0.0.14', '127.0.0.15'];
/** Per address and kind: 6 x 5 kinds = 30 connections per address, under the per-address cap. */
const PER_KIND = 6;
const BURST_FROM = '127.0.0.9';
const BURST = MAX_PENDING_PER_ADDRESS + 28;

let job: TinyJob;
t.before(async () => {
  ensureBuilt(join(packageRoot, 'dist', 'shared', 'transport', 'admission.js'));
  job = await makeTinyJob();
  writeFileSync(join(job.dir, 'token'), TOKEN + '\n', { mode: 0o600 });
});
t.teardown(() => job?.cleanup());

function lifetimes(sockets: FloodSocket[]): number[] {
  return sockets.map((s) => (s.closedAt ?? Infinity) - s.openedAt).sort((a, b) => a - b);
}

function describe(sockets: FloodSocket[]): string {
  const l = lifetimes(sockets);
  return l.length === 0
    ? 'none'
    : `${l.length}: ${l[0]} / ${l[Math.floor(l.length / 2)]} / ${l[l.length - 1]} ms (min / median / max life)`;
}

function fds(p: Proc): number {
  try {
    return readdirSync(`/proc/${p.proc.pid}/fd`).length;
  } catch {
    return -1;
  }
}

/**
 * Refusals `p` logged from `address`: the first line's one plus the summaries' counts, by reason, and how many
 * lines.
 */
function refusalsFrom(p: Proc, address: string): { total: number; lines: number; kinds: Record<string, number> } {
  const kinds: Record<string, number> = {};
  let lines = 0;
  for (const r of logRecords(p)) {
    if (r.address !== address) continue;
    if (r.msg === 'connection refused') {
      lines++;
      const k = String(r.kind);
      kinds[k] = (kinds[k] ?? 0) + 1;
    } else if (r.msg === 'connections refused') {
      lines++;
      for (const [k, n] of Object.entries(r.reasons as Record<string, number>)) kinds[k] = (kinds[k] ?? 0) + n;
    }
  }
  return { total: Object.values(kinds).reduce((a, b) => a + b, 0), lines, kinds };
}

t.test('--handshake-timeout (WOLFPACK_HANDSHAKE_TIMEOUT): seconds, checked, handed to local workers', async (t) => {
  t.equal(coordinatorSecurity({ handshakeTimeout: '2.5' }, {}).handshakeTimeoutMs, 2500);
  t.equal(workerSecurity({}, { WOLFPACK_HANDSHAKE_TIMEOUT: '4' }).handshakeTimeoutMs, 4000, 'from the environment');
  t.equal(
    workerSecurity({ handshakeTimeout: '1' }, { WOLFPACK_HANDSHAKE_TIMEOUT: '4' }).handshakeTimeoutMs,
    1000,
    'the flag wins',
  );
  t.equal(coordinatorSecurity({}, {}).handshakeTimeoutMs, undefined, "unset: the listeners' default");
  for (const bad of ['0', '-1', 'soon', '1e9']) {
    t.throws(
      () => coordinatorSecurity({ handshakeTimeout: bad }, {}),
      { code: 'E_USAGE', message: /--handshake-timeout .* must be a number of seconds/ },
      `${bad}: E_USAGE`,
    );
  }
  t.equal(securityEnv({ handshakeTimeout: '3' }).WOLFPACK_HANDSHAKE_TIMEOUT, '3', 'local workers inherit it');
});

t.test(
  'a flood of idle and malformed connections during a run: cut at the deadline, counted in the log; ' +
    'a late worker still joins',
  async (t) => {
    const f = (n: string) => join(job.dir, n);
    const common = ['--token-file', f('token'), '--handshake-timeout', String(DEADLINE_S)];
    const t0 = Date.now();
    const { p: coord, port } = await startCoordinator(['--workers', '2', ...common, ...tinyTrainArgs(job, f('out'))]);
    t.teardown(() => coord.kill());
    const coordFlood = new Flood(port, COORD_FROM, FLOOD_KINDS, PER_KIND);
    t.teardown(() => coordFlood.destroy());
    const burst = Array.from({ length: BURST }, () => openFlood(port, BURST_FROM, 'idle'));
    t.teardown(() => {
      for (const s of burst) s.socket.destroy();
    });
    const worker = () =>
      start(['worker', '--connect', `ws://127.0.0.1:${port}`, ...common, '--backend', 'wasm', '--timeout', '120']);
    const a = worker();
    t.teardown(() => a.kill());
    const aHello = await waitForLog(coord, /^worker connected$/, 120_000, (r) => r.pid === a.proc.pid);
    t.pass('the first worker joins while the coordinator is flooded');
    const ringPort = Number(String(aHello.ring).split(':').pop());
    t.ok(ringPort > 0, `the coordinator names its ring port (${String(aHello.ring)})`);
    const ringFlood = new Flood(ringPort, RING_FROM, FLOOD_KINDS, PER_KIND);
    t.teardown(() => ringFlood.destroy());
    const coordFds = fds(coord);

    // Round one: nothing can finish (the coordinator waits for a second worker, the first for its welcome),
    // so every close is the servers' doing.
    const round1 = [...coordFlood.firstRound, ...burst, ...ringFlood.firstRound];
    const closed1 = await allClosed(round1, HELD_BOUND_MS + 30_000);
    t.ok(
      closed1,
      'every connection of the first round was closed by the servers ' +
        `(${round1.filter((s) => s.closedAt === undefined).length} of ${round1.length} open)`,
    );
    t.equal(coord.proc.exitCode, null, 'the coordinator was running meanwhile');
    t.equal(a.proc.exitCode, null, 'the first worker was running meanwhile');
    const held = round1.filter(
      (s) => HELD.includes(s.kind) && !(s.from === BURST_FROM && s.closedAt! - s.openedAt < DEADLINE_S * 1000 - 100),
    );
    const early = held.filter((s) => s.closedAt! - s.openedAt < DEADLINE_S * 1000 - 100);
    const late = round1.filter((s) => s.closedAt === undefined || s.closedAt - s.openedAt > HELD_BOUND_MS);
    t.same(
      early.map((s) => `${s.kind} from ${s.from}`),
      [],
      'no idle or unfinished connection was cut before its deadline',
    );
    t.same(
      late.map((s) => `${s.kind} from ${s.from}`),
      [],
      `none lived past ${HELD_BOUND_MS} ms`,
    );
    const sized = round1.filter((s) => !HELD.includes(s.kind));
    t.ok(
      sized.filter((s) => s.kind === 'big-head').every((s) => s.received.startsWith('HTTP/1.1 431')),
      'oversized heads were answered 431',
    );
    t.comment(
      `round one: coordinator ${coordFlood.firstRound.length} + burst ${burst.length}, ` +
        `ring ${ringFlood.firstRound.length}; the coordinator held ${coordFds} descriptors`,
    );
    t.comment(`  held (idle, unfinished head, 5 KB key): ${describe(held)}`);
    t.comment(`  refused for size (431 head, oversized frame): ${describe(sized)}`);
    t.comment(`  burst from one address: ${describe(burst)}`);
    t.ok(
      coordFds > 0 && coordFds < MAX_PENDING_CONNECTIONS + 100,
      `the coordinator holds a bounded number of descriptors (${coordFds})`,
    );

    // What the coordinator logged for round one: per address, one line and counts, with the reasons.
    const burstRefusals = refusalsFrom(coord, BURST_FROM);
    t.ok(
      (burstRefusals.kinds['address cap'] ?? 0) >= 1,
      `the burst went past the per-address cap: ${JSON.stringify(burstRefusals.kinds)}`,
    );

    // The flood goes on (closed connections are reopened) while the second worker connects late.
    const b = worker();
    t.teardown(() => b.kill());
    await waitForLog(coord, /^worker connected$/, 120_000, (r) => r.pid === b.proc.pid).catch((e: Error) => {
      throw new Error(`${e.message.slice(0, 300)}\nlate worker: ${b.stderr().slice(-3000)}`);
    });
    const coordOpenAtJoin = coordFlood.stillOpen;
    t.ok(
      coordOpenAtJoin > 0,
      `the late worker joined while ${coordOpenAtJoin} flood connections were open on the coordinator`,
    );
    await waitForLog(a, /^ring formed; state in place$/, 120_000).catch((e: Error) => {
      throw new Error(`${e.message.slice(0, 3000)}\nlate worker: ${b.stderr().slice(-3000)}`);
    });
    const ringOpenAtLink = ringFlood.stillOpen;
    t.ok(
      ringOpenAtLink > 0,
      "the late worker's ring link formed through the first worker's ring port " +
        `while ${ringOpenAtLink} flood connections were open on it`,
    );
    const [doneC, doneR] = await Promise.all([
      coordFlood.stop(HELD_BOUND_MS + 30_000),
      ringFlood.stop(HELD_BOUND_MS + 30_000),
    ]);
    t.ok(
      doneC && doneR,
      `every flood connection closed once the flood stopped (${coordFlood.stillOpen + ringFlood.stillOpen} open)`,
    );
    const all = [...coordFlood.sockets, ...ringFlood.sockets, ...burst];
    t.same(
      all
        .filter((s) => s.closedAt === undefined || s.closedAt - s.openedAt > HELD_BOUND_MS)
        .map((s) => `${s.kind} from ${s.from}`),
      [],
      `no flood connection lived past ${HELD_BOUND_MS} ms (${all.length} in all)`,
    );

    const code = await coord.exit(240_000);
    t.equal(code, 0, `the run finishes${code === 0 ? '' : `: ${coord.stderr().slice(-3000)}`}`);
    t.match(coord.stdout(), /End training, the best Accuracy is/);
    for (const [name, w] of [
      ['first', a],
      ['late', b],
    ] as const) {
      const wc = await w.exit(30_000);
      t.equal(wc, 0, `the ${name} worker exits 0${wc === 0 ? '' : `: ${w.stderr().slice(-2000)}`}`);
    }
    t.comment(
      `whole flood: coordinator ${coordFlood.sockets.length} + ${burst.length}, ` +
        `ring ${ringFlood.sockets.length} connections; run ${Math.round((Date.now() - t0) / 1000)} s`,
    );

    // The log: per address a first line and summaries (the last at close), counting every refusal.
    const minutes = Math.ceil((Date.now() - t0) / 60_000);
    for (const [p, from, sockets] of [
      [coord, [...COORD_FROM, BURST_FROM], [...coordFlood.sockets, ...burst]],
      [a, RING_FROM, ringFlood.sockets],
    ] as const) {
      for (const address of from) {
        const r = refusalsFrom(p, address);
        const n = sockets.filter((s) => s.from === address).length;
        t.ok(r.lines >= 1 && r.lines <= 2 + minutes, `${address}: ${r.lines} log line(s) for ${n} connections`);
        t.ok(
          r.total >= round1.filter((s) => s.from === address).length && r.total <= n,
          `${address}: ${r.total} refusals counted (${JSON.stringify(r.kinds)})`,
        );
      }
    }
    const perConnection = logRecords(coord).filter((r) =>
      /bad frame|no valid handshake|TLS handshake failed/.test(String(r.msg)),
    );
    t.same(perConnection, [], 'no log line per connection');
  },
);
