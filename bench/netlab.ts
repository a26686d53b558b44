// A simulated cluster network for benchmarks: one Linux network namespace per host, each joined by a
// veth pair to a bridge in a namespace of its own (the "switch"), every host link optionally shaped to
// a fixed rate with tbf on both of its ends (host -> switch on the host's eth0, switch -> host on the
// switch port), so that each host has a full-duplex link of that rate, as a NIC on a switch would.
//
//   wpclu-PID-K-h0 (10.200.8.10) eth0 ==veth== p0 \
//   wpclu-PID-K-h1 (10.200.8.11) eth0 ==veth== p1 -- br0 in wpclu-PID-K-sw
//   ...
//
// The subnet exists only inside these namespaces: nothing is added to the machine's own namespace and
// no packet leaves the switch. This kernel has tbf but no netem, so links have a rate and no delay.
// Needs root (or CAP_NET_ADMIN) and iproute2; `netlabUnavailable()` says why not otherwise.
//
// Cleanup: destroy() kills every process started in the hosts (by pid, then whatever else is left in
// the namespaces) and deletes the namespaces, which removes the veths and the bridge with them. It runs
// on every exit path of the caller, again (synchronously) when this process exits, and on SIGINT,
// SIGTERM and SIGHUP before the signal's default action. Namespaces whose creator died without cleaning
// up (SIGKILL) are removed by the next create().
import { execFileSync, spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { WolfpackError } from '../shared/errors.js';

const PREFIX = 'wpclu-';
const SUBNET = '10.200.8';
const FIRST_OCTET = 10;
const CMD_TIMEOUT_MS = 10_000;
/** Most hosts one lab holds (addresses .10 to .250). */
export const MAX_HOSTS = 240;

function run(cmd: 'ip' | 'tc', args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', timeout: CMD_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryIp(args: string[]): string | undefined {
  try {
    return run('ip', args);
  } catch {
    return undefined;
  }
}

function errText(e: unknown): string {
  const x = e as { stderr?: string | Buffer; message?: string };
  const stderr = x.stderr ? String(x.stderr).trim() : '';
  return stderr || x.message || String(e);
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function killNamespace(ns: string): void {
  for (const pid of (tryIp(['netns', 'pids', ns]) ?? '').split(/\s+/).filter(Boolean)) {
    try {
      process.kill(Number(pid), 'SIGKILL');
    } catch {
      // gone
    }
  }
}

/** Our namespaces that currently exist (all of this process's when `pid` is given). */
export function listNamespaces(pid?: number): string[] {
  const list = tryIp(['netns', 'list']) ?? '';
  return list
    .split('\n')
    .map((l) => l.split(' ')[0]!)
    .filter((n) => n.startsWith(pid === undefined ? PREFIX : `${PREFIX}${pid}-`));
}

/** Removes namespaces left by earlier runs whose process is gone. */
function removeStale(): void {
  for (const ns of listNamespaces()) {
    const m = /^wpclu-(\d+)-/.exec(ns);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      killNamespace(ns);
      tryIp(['netns', 'del', ns]);
    }
  }
}

/** Why the simulated cluster network cannot be built here, or undefined when it can. */
export function netlabUnavailable(): string | undefined {
  if (typeof process.getuid === 'function' && process.getuid() !== 0) {
    return 'needs root (network namespaces, veth, bridge and tc): run as root';
  }
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    run('ip', ['netns', 'add', probe]);
  } catch (e) {
    return (
      "cannot create a network namespace (needs root or CAP_NET_ADMIN, and iproute2's ip): " +
      `${errText(e).split('\n')[0]}`
    );
  }
  try {
    run('ip', ['-n', probe, 'link', 'add', 'br0', 'type', 'bridge']);
    run('ip', ['-n', probe, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']);
    run('tc', [
      '-n',
      probe,
      'qdisc',
      'add',
      'dev',
      'va',
      'root',
      'tbf',
      'rate',
      '100mbit',
      'burst',
      '64kb',
      'latency',
      '50ms',
    ]);
  } catch (e) {
    return `network namespaces work but veth pairs, bridges or tc tbf do not: ${errText(e).split('\n')[0]}`;
  } finally {
    tryIp(['netns', 'del', probe]);
  }
  return undefined;
}

export interface NetHost {
  /** Namespace name. */
  ns: string;
  /** The host's address on the lab subnet. */
  addr: string;
  /** Its port on the switch (a device in the switch namespace). */
  port: string;
}

export interface NetLabOptions {
  hosts: number;
  /** Rate of every host link in Mbit/s, each direction; undefined: unshaped. */
  rateMbit?: number;
}

/**
 * tbf parameters for a rate: the bucket holds 4 ms at the rate (at least 64 KiB, so that one 64 KiB
 * GSO packet always fits and is never split), and packets wait at most 50 ms in the queue.
 */
export function tbfArgs(rateMbit: number): string[] {
  const burstBytes = Math.max(64 * 1024, Math.ceil(((rateMbit * 1e6) / 8) * 0.004));
  return ['tbf', 'rate', `${rateMbit}mbit`, 'burst', String(burstBytes), 'latency', '50ms'];
}

const live = new Set<NetLab>();
let hooked = false;
function destroyAll(): void {
  for (const lab of live) lab.destroy();
}
function hook(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', destroyAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      destroyAll();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // the default action (or whoever else listens) ends the process
    };
    process.on(sig, onSignal);
  }
}

/** A switch namespace with a bridge and `hosts` hosts plugged into it. */
export class NetLab {
  readonly id: string;
  readonly switchNs: string;
  readonly hosts: NetHost[] = [];
  readonly rateMbit: number | undefined;
  private readonly namespaces: string[] = [];
  private readonly procs = new Set<ChildProcess>();
  private destroyed = false;
  private static made = 0;

  private constructor(rateMbit: number | undefined) {
    this.id = `${PREFIX}${process.pid}-${NetLab.made++}`;
    this.switchNs = `${this.id}-sw`;
    this.rateMbit = rateMbit;
  }

  static create(opts: NetLabOptions): NetLab {
    if (!Number.isSafeInteger(opts.hosts) || opts.hosts < 1 || opts.hosts > MAX_HOSTS) {
      throw new WolfpackError('E_USAGE', `hosts must be an integer in [1, ${MAX_HOSTS}], got ${opts.hosts}`);
    }
    if (opts.rateMbit !== undefined && !(Number.isFinite(opts.rateMbit) && opts.rateMbit > 0)) {
      throw new WolfpackError('E_USAGE', `rateMbit must be a positive number, got ${opts.rateMbit}`);
    }
    hook();
    removeStale();
    const lab = new NetLab(opts.rateMbit);
    live.add(lab);
    try {
      lab.addNs(lab.switchNs);
      run('ip', ['-n', lab.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      run('ip', ['-n', lab.switchNs, 'link', 'set', 'br0', 'up']);
      for (let i = 0; i < opts.hosts; i++) lab.plug(i);
    } catch (e) {
      lab.destroy();
      throw new WolfpackError('E_IO', `setting up the simulated cluster network failed: ${errText(e)}`);
    }
    return lab;
  }

  private addNs(ns: string): void {
    run('ip', ['netns', 'add', ns]);
    this.namespaces.push(ns);
    run('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  private plug(i: number): void {
    const ns = `${this.id}-h${i}`;
    const port = `p${i}`;
    const addr = `${SUBNET}.${FIRST_OCTET + i}`;
    this.addNs(ns);
    // Both ends are created directly in their namespaces: nothing appears in this machine's own.
    run('ip', ['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.switchNs]);
    run('ip', ['-n', this.switchNs, 'link', 'set', port, 'master', 'br0']);
    run('ip', ['-n', this.switchNs, 'link', 'set', port, 'up']);
    run('ip', ['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    run('ip', ['-n', ns, 'link', 'set', 'eth0', 'up']);
    if (this.rateMbit !== undefined) {
      run('tc', ['-n', ns, 'qdisc', 'add', 'dev', 'eth0', 'root', ...tbfArgs(this.rateMbit)]);
      run('tc', ['-n', this.switchNs, 'qdisc', 'add', 'dev', port, 'root', ...tbfArgs(this.rateMbit)]);
    }
    this.hosts.push({ ns, addr, port });
  }

  /** Waits (bounded) until every link is up on both ends and the bridge forwards (no STP: at once). */
  async waitUp(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const down = (): string[] => {
      const out: string[] = [];
      const sw = tryIp(['-n', this.switchNs, '-o', 'link', 'show']) ?? '';
      for (const h of this.hosts) {
        const own = tryIp(['-n', h.ns, '-o', 'link', 'show', 'eth0']) ?? '';
        if (!/state UP/.test(own)) out.push(`${h.ns} eth0`);
        if (!new RegExp(`: ${h.port}@[^:]*:.*state UP`).test(sw)) out.push(`switch port ${h.port}`);
      }
      if (!/: br0:.*state UP/.test(sw)) out.push('br0');
      return out;
    };
    for (;;) {
      const d = down();
      if (d.length === 0) return;
      if (Date.now() > deadline)
        throw new WolfpackError('E_IO', `simulated cluster links still down after ${timeoutMs} ms: ${d.join(', ')}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }

  /** Starts `command args` inside host `i`'s namespace (`ip netns exec` execs it: the pid is the command's). */
  spawn(
    i: number,
    command: string,
    args: string[],
    opts: { env?: NodeJS.ProcessEnv; stdio?: StdioOptions } = {},
  ): ChildProcess {
    if (this.destroyed) throw new WolfpackError('E_USAGE', 'the simulated cluster network was already removed');
    const h = this.hosts[i];
    if (h === undefined) throw new WolfpackError('E_USAGE', `no host ${i} in the simulated cluster network`);
    const p = spawn('ip', ['netns', 'exec', h.ns, command, ...args], {
      env: opts.env ?? process.env,
      stdio: opts.stdio ?? ['ignore', 'pipe', 'pipe'],
    });
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    return p;
  }

  /**
   * Kills every process started here (by pid) and anything else in the namespaces, then deletes them.
   * Idempotent, synchronous.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        try {
          p.kill('SIGKILL');
        } catch {
          // gone
        }
      }
    }
    this.procs.clear();
    for (const ns of this.namespaces) killNamespace(ns);
    for (const ns of [...this.namespaces].reverse()) tryIp(['netns', 'del', ns]);
  }

  /** This lab's namespaces that still exist (for checking the cleanup). */
  remaining(): string[] {
    return listNamespaces().filter((n) => this.namespaces.includes(n));
  }
}
