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
process.on('exit', () => { for (const p of live) p.kill('SIGKILL'); });

/** Runs `wolfpack ARGS` to completion (or kills it after timeoutMs). */
export function runCli(args: string[], timeoutMs: number, env: Record<string, string> = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(p);
    let stdout = '';
    let stderr = '';
    p.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
    p.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
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
  const p = spawn(process.execPath, [cliPath, ...args], { env: { ...process.env, WOLFPACK_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(p);
  p.on('exit', () => live.delete(p));
  return p;
}
