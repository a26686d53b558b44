// Running another program from a benchmark (a PyTorch peer, a probe) and collecting what it printed.
import { execFile } from 'node:child_process';

/** Runs a program to its end (killed after timeoutMs): exit code, stdout and stderr. */
export function runCommand(
  file: string,
  args: string[],
  timeoutMs: number,
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun) => {
    execFile(file, args, { timeout: timeoutMs, maxBuffer: 64 << 20, killSignal: 'SIGKILL' }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolveRun({
        code,
        stdout,
        stderr: err && err.killed ? `${stderr}\n(killed after ${timeoutMs / 1000} s)` : stderr,
      });
    });
  });
}
