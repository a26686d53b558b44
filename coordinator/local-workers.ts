// Single-node mode: N worker processes on this machine, started from the CLI entry point and
// stopped by process id however the job ends.
import { spawn, type ChildProcess } from 'node:child_process';
import { WolfpackError } from '../shared/errors.js';
import { cliPath } from '../shared/paths.js';
import type { Logger } from '../shared/log.js';

/**
 * `--gpus 0,1,2,3`: the GPU indices local workers take in turn (worker k: entry k mod n), each passed on as
 * the worker's `--gpu`. Undefined or empty: none chosen (every worker uses its backend's default device).
 */
export function parseGpuList(text: string | undefined, what = '--gpus'): number[] | undefined {
  if (text === undefined || text.trim() === '') return undefined;
  const parts = text.split(',').map((s) => s.trim());
  const bad = parts.find((s) => !/^\d+$/.test(s) || !Number.isSafeInteger(Number(s)));
  if (bad !== undefined)
    throw new WolfpackError(
      'E_USAGE',
      `${what}: expected GPU indices separated by commas, such as 0,1,2,3; '${bad}' in '${text}' is not one`,
      { option: 'gpus' },
    );
  return parts.map(Number);
}

function withoutConfig(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  // The health file (WOLFPACK_HEALTH_FILE = --health-file) is the coordinator's own: workers must not write it.
  const { WOLFPACK_CONFIG: _config, WOLFPACK_HEALTH_FILE: _health, ...rest } = env;
  return rest;
}

export class LocalWorkers {
  private readonly procs: ChildProcess[] = [];
  private readonly logger: Logger;

  constructor(logger: Logger) {
    this.logger = logger.child({ component: 'local-workers' });
  }

  /** Starts `n` workers; with `gpus`, worker i runs with `--gpu gpus[i mod gpus.length]`. */
  start(
    n: number,
    url: string,
    backend: string,
    extraEnv: Record<string, string> = {},
    gpus: readonly number[] = [],
  ): void {
    for (let i = 0; i < n; i++) {
      const gpu = gpus.length > 0 ? ['--gpu', String(gpus[i % gpus.length])] : [];
      const p = spawn(process.execPath, [cliPath, 'worker', '--connect', url, '--backend', backend, ...gpu], {
        stdio: ['ignore', 'inherit', 'inherit'],
        // Their own process group: a terminal's Ctrl-C goes to the coordinator alone, which saves the last
        // step and then tells them to stop; killed with the group, they could take that step's state with them.
        detached: true,
        // A training config file (WOLFPACK_CONFIG) holds training flags a worker does not take.
        env: { ...withoutConfig(process.env), ...extraEnv },
      });
      p.on('exit', (code, signal) => {
        if (code !== 0) this.logger.warn({ pid: p.pid, code, signal }, 'local worker exited');
      });
      this.procs.push(p);
    }
    this.logger.info(
      { pids: this.procs.map((p) => p.pid), ...(gpus.length > 0 ? { gpus: [...gpus] } : {}) },
      `started ${n} local worker(s)`,
    );
  }

  get pids(): number[] {
    return this.procs.map((p) => p.pid!).filter((x) => x !== undefined);
  }

  /** Waits up to `graceMs` for the workers to exit by themselves, then kills what is left. */
  async stop(graceMs = 5000): Promise<void> {
    const alive = this.procs.filter((p) => p.exitCode === null && p.signalCode === null);
    await Promise.all(
      alive.map(
        (p) =>
          new Promise<void>((resolve) => {
            const t = setTimeout(() => {
              p.kill('SIGKILL');
            }, graceMs);
            p.once('exit', () => {
              clearTimeout(t);
              resolve();
            });
          }),
      ),
    );
  }
}
