// SIGINT (Ctrl-C) and SIGTERM (`docker stop`, `kubectl delete pod`, systemd) stop a command cleanly: the
// first aborts the returned signal, and the command winds down (the coordinator saves the last completed
// step, a worker leaves its job); a second exits at once. Handlers are what make a signal stop node at
// all when it runs as PID 1 in a container: the kernel delivers no default action to PID 1.
import { constants } from 'node:os';

export interface StopSignals {
  /** Aborted (its reason the signal's name) on the first SIGINT or SIGTERM. */
  signal: AbortSignal;
  /** Removes the handlers (the command has ended). */
  dispose(): void;
}

/**
 * Installs the handlers. `say` is told what happens (a log line); `exitNow` ends the process on the second
 * signal (tests pass their own), with the shell's code for death by that signal (128 + its number).
 */
export function stopOnSignals(
  say: (line: string) => void,
  exitNow: (code: number) => void = (code) => process.exit(code),
): StopSignals {
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => {
    if (controller.signal.aborted) {
      say(`${name} again: exiting now, without saving`);
      exitNow(128 + (constants.signals[name] ?? 0));
      return;
    }
    say(`${name}: stopping cleanly; ${name === 'SIGINT' ? 'Ctrl-C' : name} again exits at once`);
    controller.abort(name);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    signal: controller.signal,
    dispose: () => {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
