// Running the real CLI in tests: spawned from the compiled dist/ (npm test builds first), every wait
// bounded, every process killed by pid when the test ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { cliPath } from '../../shared/paths.js';

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const p of live) p.kill('SIGKILL');
});

/** Runs `wolfpack ARGS` to completion (or kills it after timeoutMs). */
export function runCli(args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliPath, ...args], {
      env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    live.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.on('exit', (code, signal) => {
      clearTimeout(timer);
      live.delete(p);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/** Starts `wolfpack ARGS` in the background; the caller stops it with kill(). */
export function startCli(args: string[], env: Record<string, string> = {}): ChildProcess {
  const p = spawn(process.execPath, [cliPath, ...args], {
    env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(p);
  p.on('exit', () => live.delete(p));
  return p;
}

/**
 * Collects a child's stdout+stderr and resolves when `pattern` appears; rejects after timeoutMs, or as
 * soon as the child has exited (its output closed) without printing it.
 */
export class Output {
  text = '';
  private closed = false;
  private waiters: { re: RegExp; resolve: (m: RegExpMatchArray) => void; reject: (e: Error) => void }[] = [];

  constructor(p: ChildProcess) {
    const on = (d: Buffer) => {
      this.text += d.toString();
      for (const w of [...this.waiters]) {
        const m = this.text.match(w.re);
        if (m) {
          this.waiters.splice(this.waiters.indexOf(w), 1);
          w.resolve(m);
        }
      }
    };
    p.stdout?.on('data', on);
    p.stderr?.on('data', on);
    p.once('close', (code, signal) => {
      this.closed = true;
      for (const w of this.waiters.splice(0))
        w.reject(this.missing(w.re, `the process exited (${signal ?? `code ${code}`})`));
    });
  }

  private missing(re: RegExp, why: string): Error {
    return new Error(`${why} waiting for ${re}; output tail:\n${this.text.slice(-3000)}`);
  }

  waitFor(re: RegExp, timeoutMs: number): Promise<RegExpMatchArray> {
    const m = this.text.match(re);
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(this.missing(re, 'the process had exited'));
    return new Promise((resolve, reject) => {
      const w = {
        re,
        resolve: (x: RegExpMatchArray) => {
          clearTimeout(t);
          resolve(x);
        },
        reject: (e: Error) => {
          clearTimeout(t);
          reject(e);
        },
      };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(this.missing(re, `timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.push(w);
    });
  }
}

/**
 * Resolves with the exit code when the child exits (null when a signal ended it). A child that has already
 * exited resolves at once: one killed by a signal has exitCode null and signalCode set, and its 'exit' event
 * has fired, so waiting for it would never end. After timeoutMs the child is killed and the wait goes on
 * for its 'exit', which SIGKILL makes certain.
 */
export function exited(p: ChildProcess, timeoutMs: number): Promise<number | null> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(p.exitCode);
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), timeoutMs);
    p.once('exit', (code) => {
      clearTimeout(t);
      resolve(code);
    });
  });
}

/** A `wolfpack coordinator` on a free port plus `n` wasm worker processes the test owns (killed by pid in teardown). */
export async function startCluster(t: { teardown(fn: () => void): void }, coordArgs: string[], n: number) {
  const coord = startCli(['coordinator', '--workers', String(n), '--port', '0', ...coordArgs]);
  const co = new Output(coord);
  const workers: ChildProcess[] = [];
  t.teardown(() => {
    for (const p of [coord, ...workers]) {
      p.kill('SIGCONT');
      p.kill('SIGKILL');
    }
  });
  const port = (await co.waitFor(/"port":(\d+).*listening for workers/, 60_000))[1];
  const startWorker = () => {
    const w = startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '120']);
    workers.push(w);
    return w;
  };
  for (let i = 0; i < n; i++) startWorker();
  return { coord, co, workers, startWorker };
}

/** Whether a process with this pid exists (signal 0 probes without touching it). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
