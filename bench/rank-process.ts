// The parent's side of a benchmark rank process: a child with an IPC channel whose messages
// ({t: type, ...}) are queued from the start and awaited by type with a deadline. A rank that exits,
// reports {t: 'error'} or misses the deadline fails the wait with an E_WORKER error that says which rank
// and why (its stderr's tail included). Children are killed by pid on every exit path of the caller
// (stopRanks) and when this process exits.
import type { ChildProcess } from 'node:child_process';
import { WolfpackError } from '../shared/errors.js';

export type RankMessage = { t: string } & Record<string, unknown>;

export interface RankProcess {
  readonly index: number;
  readonly proc: ChildProcess;
  stderr: string;
  readonly messages: RankMessage[];
  readonly waiters: Array<() => void>;
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
}

const live = new Set<ChildProcess>();
let exitHook = false;
function killAll(): void {
  for (const p of live) {
    if (p.exitCode === null && p.signalCode === null) {
      try {
        p.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  live.clear();
}

/** Watches `proc` (spawned with an 'ipc' stdio entry and stderr piped) as rank `index`. */
export function watchRank(index: number, proc: ChildProcess): RankProcess {
  if (!exitHook) {
    exitHook = true;
    process.on('exit', killAll);
  }
  live.add(proc);
  const c: RankProcess = { index, proc, stderr: '', messages: [], waiters: [], exited: null };
  proc.stderr?.setEncoding('utf8');
  proc.stderr?.on('data', (s: string) => {
    c.stderr = (c.stderr + s).slice(-4000);
  });
  const wake = (): void => {
    for (const w of c.waiters.splice(0)) w();
  };
  proc.on('message', (m: RankMessage) => {
    c.messages.push(m);
    wake();
  });
  proc.on('exit', (code, signal) => {
    c.exited = { code, signal };
    live.delete(proc);
    wake();
  });
  proc.on('error', (err) => {
    c.stderr += `\nspawn error: ${err.message}`;
    c.exited = { code: -1, signal: null };
    live.delete(proc);
    wake();
  });
  return c;
}

/**
 * The next message of type `t` from rank `c`, or an E_WORKER error on exit, error report or deadline
 * (ms since the epoch).
 */
export function expectMessage<T>(c: RankProcess, t: string, deadline: number): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const check = (): boolean => {
      const k = c.messages.findIndex((m) => m.t === t || m.t === 'error');
      if (k >= 0) {
        const m = c.messages.splice(k, 1)[0]!;
        if (m.t === 'error') {
          reject(
            new WolfpackError('E_WORKER', `rank process ${c.index} failed: ${String(m.message)}`, { code: m.code }),
          );
        } else {
          resolve(m as unknown as T);
        }
        return true;
      }
      if (c.exited !== null) {
        const how = c.exited.signal ?? `code ${c.exited.code}`;
        reject(
          new WolfpackError(
            'E_WORKER',
            `rank process ${c.index} exited (${how}) while waiting for '${t}'` +
              `${c.stderr ? `: ${c.stderr.trim().slice(-1000)}` : ''}`,
          ),
        );
        return true;
      }
      return false;
    };
    if (check()) return;
    const timer = setTimeout(
      () => {
        reject(new WolfpackError('E_WORKER', `rank process ${c.index}: no '${t}' within the time limit`));
      },
      Math.max(0, deadline - Date.now()),
    );
    const again = (): void => {
      if (check()) clearTimeout(timer);
      else c.waiters.push(again);
    };
    c.waiters.push(again);
  });
}

/** Sends `msg` to rank `c` if it is still running. */
export function postMessage(c: RankProcess, msg: object): void {
  if (c.exited === null && c.proc.connected) c.proc.send(msg);
}

/** Resolves when rank `c` has exited, killing it at the deadline (ms since the epoch). */
export function waitRankExit(c: RankProcess, deadline: number): Promise<void> {
  return new Promise<void>((resolve) => {
    if (c.exited !== null) {
      resolve();
      return;
    }
    const timer = setTimeout(
      () => {
        stopRanks([c]);
        resolve();
      },
      Math.max(0, deadline - Date.now()),
    );
    const again = (): void => {
      if (c.exited !== null) {
        clearTimeout(timer);
        resolve();
      } else c.waiters.push(again);
    };
    c.waiters.push(again);
  });
}

/** Kills every rank that still runs, by pid. */
export function stopRanks(ranks: RankProcess[]): void {
  for (const c of ranks) {
    if (c.exited === null && c.proc.pid !== undefined) {
      try {
        process.kill(c.proc.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
    live.delete(c.proc);
  }
}
