// The process helpers every e2e test waits on must never hang: a child killed by a signal before the
// wait starts (exitCode null, signalCode set, its 'exit' already emitted) must still resolve at once.
import { spawn } from 'node:child_process';
import t from 'tap';
import { exited } from './processes.js';

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms);
  });
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

const idle = () => spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });

t.test('a child killed by a signal before the wait resolves with null', async (t) => {
  const p = idle();
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  await new Promise((resolve) => p.once('spawn', resolve));
  p.kill('SIGKILL');
  await new Promise((resolve) => p.once('exit', resolve));
  t.equal(p.signalCode, 'SIGKILL');
  t.equal(await within(exited(p, 60_000), 30_000, 'exited() of a dead child'), null);
});

t.test('a child that exits with a code while waited on resolves with it', async (t) => {
  const p = spawn(process.execPath, ['-e', 'process.exit(3)'], { stdio: 'ignore' });
  t.equal(await within(exited(p, 60_000), 60_000, 'exited() of a child exiting 3'), 3);
  t.equal(await within(exited(p, 60_000), 30_000, 'exited() after it exited'), 3, 'and again once it has exited');
});

t.test('a child still running at the timeout is killed, and the wait ends', async (t) => {
  const p = idle();
  t.teardown(() => {
    p.kill('SIGKILL');
  });
  t.equal(await within(exited(p, 200), 60_000, 'exited() past its timeout'), null);
  t.equal(p.signalCode, 'SIGKILL');
});
