// Real coordinator and worker processes for the security tests: start `wolfpack coordinator` on an
// ephemeral port (read from its 'listening for workers' log line), start workers, wait for them, all
// bounded, all killed by pid when the test ends (test/helpers/processes.ts).
import type { ChildProcess } from 'node:child_process';
import { startCli } from './processes.js';

export interface Proc {
  proc: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Exit code (null: killed), or 'timeout' after `ms`. */
  exit(ms: number): Promise<number | null | 'timeout'>;
  kill(): void;
}

export function start(args: string[], env: Record<string, string> = {}): Proc {
  const proc = startCli(args, env);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err += d.toString();
  });
  const exited = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exit: (ms) => {
      let timer: NodeJS.Timeout | undefined;
      return Promise.race([
        exited,
        new Promise<'timeout'>((resolve) => {
          timer = setTimeout(() => resolve('timeout'), ms);
        }),
      ]).finally(() => clearTimeout(timer));
    },
    kill: () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
    },
  };
}

/**
 * Waits until `p` logs a JSON line whose msg matches `re` (and that `where` accepts); resolves with it.
 * Rejects on exit or after `ms`.
 */
export function waitForLog(
  p: Proc,
  re: RegExp,
  ms: number,
  where: (rec: Record<string, unknown>) => boolean = () => true,
): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    let done = false;
    const scan = () => {
      for (const line of p.stderr().split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const rec = JSON.parse(line) as Record<string, unknown>;
          if (typeof rec.msg === 'string' && re.test(rec.msg) && where(rec)) return rec;
        } catch {
          /* a partial line */
        }
      }
      return undefined;
    };
    const finish = (f: () => void) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      p.proc.stderr!.off('data', onData);
      p.proc.off('exit', onExit);
      f();
    };
    const onData = () => {
      const r = scan();
      if (r) finish(() => resolve(r));
    };
    const onExit = () =>
      finish(() => reject(new Error(`process exited before logging ${re}: ${p.stderr().slice(-2000)}`)));
    const timer = setTimeout(
      () => finish(() => reject(new Error(`no log line ${re} within ${ms} ms: ${p.stderr().slice(-2000)}`))),
      ms,
    );
    p.proc.stderr!.on('data', onData);
    p.proc.once('exit', onExit);
    onData();
  });
}

/** Every JSON line `p` logged so far. */
export function logRecords(p: Proc): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of p.stderr().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      /* a partial line */
    }
  }
  return out;
}

/** `wolfpack coordinator ARGS --port 0`, resolved once it listens, with its port. */
export async function startCoordinator(
  args: string[],
  env: Record<string, string> = {},
  ms = 30_000,
): Promise<{ p: Proc; port: number }> {
  const p = start(['coordinator', '--port', '0', ...args], env);
  const rec = await waitForLog(p, /^listening for workers$/, ms);
  return { p, port: Number(rec.port) };
}
