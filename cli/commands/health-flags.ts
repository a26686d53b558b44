// --health-file PATH, taken by the commands that run a long-lived process (worker, coordinator, train,
// demo): the process keeps PATH up to date with its state (shared/health/state-file.ts), for
// `wolfpack health --file PATH` to judge from a container's health check.
import type { JobEvents } from '../../coordinator/dashboard/events.js';
import { HealthFile, type HealthRole } from '../../shared/health/state-file.js';
import type { Logger } from '../../shared/log.js';
import type { Options } from '../../shared/config/args.js';
import { optStr } from '../../shared/config/args.js';
import { parserOptions, type FlagSpec } from '../../shared/config/flags.js';

export const HEALTH_SPEC: FlagSpec = {
  name: 'health-file',
  kind: 'string',
  value: 'PATH',
  describe:
    "keep PATH up to date with this process's state, for `wolfpack health --file PATH` in a container health check",
};
export const HEALTH_FLAGS: Options = parserOptions([HEALTH_SPEC]);
export const HEALTH_USAGE = '[--health-file PATH]';

/** The health file --health-file names, written as `role`, in state `starting`; undefined without the flag. */
export function healthFileFrom(
  values: Record<string, unknown>,
  role: HealthRole,
  logger: Logger,
): HealthFile | undefined {
  const path = optStr(values, 'health-file');
  if (path === undefined) return undefined;
  const file = new HealthFile(path, role, logger);
  file.set('starting');
  return file;
}

/** The coordinator's states from its job's events: listening until the first ring is formed, then training. */
export function healthEvents(file: HealthFile | undefined): JobEvents | undefined {
  if (file === undefined) return undefined;
  return {
    listening: ({ port }) => file.set('listening', `port ${port}`),
    members: (members, generation) => file.set('training', `${members.length} worker(s), ring ${generation}`),
  };
}

/** Runs the job `run` with `file` following it: done when it resolves, failed (with the reason) when it throws. */
export async function withHealth<T>(file: HealthFile | undefined, run: () => Promise<T>): Promise<T> {
  try {
    const r = await run();
    file?.set('done');
    return r;
  } catch (e) {
    file?.set('failed', (e as Error).message);
    throw e;
  } finally {
    file?.close();
  }
}
