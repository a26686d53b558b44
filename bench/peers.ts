// The repository's own PyTorch peer scripts (bench/peers/*.py), for comparisons the shared peers
// (../shared/peers, run by bench/model.ts runPeerScript) do not cover: any image size and batch, and the
// frozen-backbone step. Run with the same Debian python3 and skipped, with the reason, without torch.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { WolfpackError } from '../shared/errors.js';
import { packageRoot } from '../shared/paths.js';
import { PEER_PYTHON, peerUnavailable, type PeerRun } from './model.js';

/** Path of a script in bench/peers. */
export function benchPeerScript(name: string): string {
  return resolve(packageRoot, 'bench', 'peers', name);
}

/** Runs bench/peers/NAME with ARGS and parses every JSON line it prints. */
export async function runBenchPeer<T>(name: string, args: string[], timeoutMs: number): Promise<PeerRun<T[]>> {
  const script = benchPeerScript(name);
  const command = [PEER_PYTHON, `bench/peers/${name}`, ...args].join(' ');
  const why = await peerUnavailable(script);
  if (why) return { ok: false, command, skipped: why };
  const { code, stdout, stderr } = await new Promise<{ code: number; stdout: string; stderr: string }>((res) => {
    execFile(PEER_PYTHON, [script, ...args], { timeout: timeoutMs, maxBuffer: 16 << 20, killSignal: 'SIGKILL' }, (err, so, se) => {
      res({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout: so, stderr: se });
    });
  });
  if (code !== 0) throw new WolfpackError('E_WORKER', `peer ${command} failed (exit ${code}): ${stderr.trim().split('\n').slice(-3).join(' | ')}`);
  const lines = stdout.split('\n').filter((l) => l.trim().startsWith('{'));
  if (lines.length === 0) throw new WolfpackError('E_WORKER', `peer ${command} printed no JSON line`);
  return { ok: true, command, result: lines.map((l) => JSON.parse(l) as T) };
}
