// Several "hosts" on one machine, for the end-to-end tests (test/e2e/netns.test.ts) and the chaos run
// (bench/chaos.ts): one Linux network namespace per host, each joined by a veth pair to a Linux bridge
// that lives in a namespace of its own (the "switch"). Addresses are on a test-only private subnet
// (10.200.7.0/24) that exists only inside these namespaces: nothing is added to the machine's own
// namespace, and no packet leaves the switch.
//
//   wpnet-PID-0c  (10.200.7.1)  eth0 ==veth== p0 \
//   wpnet-PID-0w1 (10.200.7.11) eth0 ==veth== p1 -- br0 in wpnet-PID-0sw
//   wpnet-PID-0w2 (10.200.7.12) eth0 ==veth== p2 /
//
// A host's link is cut by setting its switch port down (a pulled cable: no packet goes either way,
// and neither side's sockets see an error). Needs root or CAP_NET_ADMIN; `netnsUnavailable()` says
// why not otherwise. Names carry the creating process's pid, so parallel runs never collide; everything
// is removed in `destroy()`, and again, synchronously, when the process exits or is signalled (the
// handlers are installed with the first lab). Processes are started with `ip netns exec NS node ...`
// (ip execs node, so the ChildProcess's pid is node's) and killed by that pid.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { cliPath } from '../shared/paths.js';

const PREFIX = 'wpnet-';
const SUBNET = '10.200.7';
const CMD_TIMEOUT_MS = 10_000;

function ip(args: string[]): string {
  return execFileSync('ip', args, { encoding: 'utf8', timeout: CMD_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] });
}

function tryIp(args: string[]): string | undefined {
  try {
    return ip(args);
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

/** Namespaces left by earlier test runs that died without cleaning up (their pid is gone). */
function removeStale(): void {
  const list = tryIp(['netns', 'list']) ?? '';
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0]!;
    const m = /^wpnet-(\d+)-[a-z0-9]+$/.exec(name);
    if (m && Number(m[1]) !== process.pid && !alive(Number(m[1]))) {
      for (const pid of (tryIp(['netns', 'pids', name]) ?? '').split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      tryIp(['netns', 'del', name]);
    }
  }
}

/** Why network namespaces cannot be used here, or undefined when they can. */
export function netnsUnavailable(): string | undefined {
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    ip(['netns', 'add', probe]);
  } catch (e) {
    return `cannot create a network namespace (needs root or CAP_NET_ADMIN, and iproute2): ${errText(e)}`;
  }
  try {
    ip(['-n', probe, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', probe, 'link', 'add', 'va', 'type', 'veth', 'peer', 'name', 'vb']);
  } catch (e) {
    return `network namespaces work but veth pairs or bridges do not: ${errText(e)}`;
  } finally {
    tryIp(['netns', 'del', probe]);
  }
  return undefined;
}

export interface Host {
  /** Namespace name. */
  ns: string;
  /** The host's address on the test subnet. */
  addr: string;
  /** Its port on the switch (a device in the switch namespace). */
  port: string;
}

const live = new Set<Lab>();
function cleanupAll(): void {
  for (const lab of live) lab.destroy();
}
let guarded = false;
function guardProcess(): void {
  if (guarded) return;
  guarded = true;
  process.on('exit', cleanupAll);
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanupAll();
      process.removeListener(sig, onSignal);
      process.kill(process.pid, sig); // whoever else listens (tap's signal-exit) ends the process
    };
    process.on(sig, onSignal);
  }
}

/** A switch namespace with a bridge, and hosts plugged into it. */
export class Lab {
  readonly id: string;
  readonly switchNs: string;
  readonly hosts = new Map<string, Host>();
  /** What was set up beyond the plain links (e.g. netem delay), or why it was not. */
  readonly notes: string[] = [];
  private readonly namespaces: string[] = [];
  private readonly procs = new Set<ChildProcess>();
  private destroyed = false;

  private static made = 0;

  private constructor() {
    this.id = `${PREFIX}${process.pid}-${Lab.made++}`;
    this.switchNs = `${this.id}sw`;
  }

  /** Creates the switch and one host per name (`c`, `w1`, ...), host i at 10.200.7.<addrs[i]>. */
  static create(hosts: { name: string; octet: number }[], opts: { delayMs?: number } = {}): Lab {
    guardProcess();
    removeStale();
    const lab = new Lab();
    live.add(lab);
    try {
      lab.addNs(lab.switchNs);
      ip(['-n', lab.switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
      ip(['-n', lab.switchNs, 'link', 'set', 'br0', 'up']);
      hosts.forEach((h, i) => lab.plug(h.name, `${SUBNET}.${h.octet}`, `p${i}`, opts.delayMs));
    } catch (e) {
      lab.destroy();
      throw new Error(`setting up the network namespaces failed: ${errText(e)}`);
    }
    return lab;
  }

  private addNs(ns: string): void {
    ip(['netns', 'add', ns]);
    this.namespaces.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
  }

  private plug(name: string, addr: string, port: string, delayMs: number | undefined): void {
    const ns = `${this.id}${name}`;
    this.addNs(ns);
    // Both ends are created directly in their namespaces: nothing appears in this machine's own.
    ip(['link', 'add', 'eth0', 'netns', ns, 'type', 'veth', 'peer', 'name', port, 'netns', this.switchNs]);
    ip(['-n', this.switchNs, 'link', 'set', port, 'master', 'br0']);
    ip(['-n', this.switchNs, 'link', 'set', port, 'up']);
    ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', 'eth0']);
    ip(['-n', ns, 'link', 'set', 'eth0', 'up']);
    if (delayMs) {
      try {
        execFileSync(
          'ip',
          ['netns', 'exec', ns, 'tc', 'qdisc', 'add', 'dev', 'eth0', 'root', 'netem', 'delay', `${delayMs}ms`],
          { timeout: CMD_TIMEOUT_MS, stdio: ['ignore', 'pipe', 'pipe'] },
        );
        if (!this.notes.includes(`netem delay ${delayMs} ms on every host link`))
          this.notes.push(`netem delay ${delayMs} ms on every host link`);
      } catch (e) {
        const why = `no netem delay (${errText(e).split('\n')[0]})`;
        if (!this.notes.includes(why)) this.notes.push(why);
      }
    }
    this.hosts.set(name, { ns, addr, port });
  }

  host(name: string): Host {
    const h = this.hosts.get(name);
    if (!h) throw new Error(`no host ${name} in the lab`);
    return h;
  }

  /** Waits (bounded) until every link is up on both ends and the bridge forwards (no STP: ports forward at once). */
  async waitUp(timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    const down = (): string[] => {
      const out: string[] = [];
      const sw = tryIp(['-n', this.switchNs, '-o', 'link', 'show']) ?? '';
      for (const [name, h] of this.hosts) {
        const own = tryIp(['-n', h.ns, '-o', 'link', 'show', 'eth0']) ?? '';
        if (!/state UP/.test(own)) out.push(`${name} eth0`);
        if (!new RegExp(`: ${h.port}@[^:]*:.*state UP`).test(sw)) out.push(`switch port ${h.port}`);
      }
      if (!/: br0:.*state UP/.test(sw)) out.push('br0');
      return out;
    };
    for (;;) {
      const d = down();
      if (d.length === 0) return;
      if (Date.now() > deadline) throw new Error(`links still down after ${timeoutMs} ms: ${d.join(', ')}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Starts `wolfpack ARGS` inside host `name`'s namespace. */
  startCli(name: string, args: string[], env: Record<string, string> = {}): ChildProcess {
    const h = this.host(name);
    const p = spawn('ip', ['netns', 'exec', h.ns, process.execPath, cliPath, ...args], {
      env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.procs.add(p);
    p.on('exit', () => this.procs.delete(p));
    return p;
  }

  /** Pulls host `name`'s cable: its switch port goes down, so nothing reaches it or leaves it. */
  cut(name: string): void {
    ip(['-n', this.switchNs, 'link', 'set', this.host(name).port, 'down']);
  }

  /** Plugs the cable back in. */
  restore(name: string): void {
    ip(['-n', this.switchNs, 'link', 'set', this.host(name).port, 'up']);
  }

  /**
   * Kills every process started here (by pid) and anything else inside the namespaces, then deletes them.
   * Idempotent, synchronous.
   */
  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    live.delete(this);
    for (const p of this.procs) {
      if (p.exitCode === null && p.signalCode === null) {
        try {
          p.kill('SIGCONT');
          p.kill('SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const ns of this.namespaces) {
      for (const pid of (tryIp(['netns', 'pids', ns]) ?? '').split(/\s+/).filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* gone */
        }
      }
    }
    for (const ns of [...this.namespaces].reverse()) tryIp(['netns', 'del', ns]);
  }

  /** Names of this lab's namespaces that still exist (for checking the cleanup). */
  remaining(): string[] {
    const list = tryIp(['netns', 'list']) ?? '';
    return list
      .split('\n')
      .map((l) => l.split(' ')[0]!)
      .filter((n) => this.namespaces.includes(n));
  }
}
