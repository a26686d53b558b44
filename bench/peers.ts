// The repository's own PyTorch peer scripts (bench/peers/*.py), for comparisons the shared peers
// (bench/peers/peer_*.py, run by bench/model.ts runPeerScript) do not cover: any image size and batch, and the
// frozen-backbone step. Run with the same Debian python3 and skipped, with the reason, without torch.
import { resolve } from 'node:path';
import { packageRoot } from '../shared/paths.js';
import { runPeerFile, type PeerRun } from './model.js';

/** Path of a script in bench/peers. */
export function benchPeerScript(name: string): string {
  return resolve(packageRoot, 'bench', 'peers', name);
}

/** Runs bench/peers/NAME with ARGS and parses every JSON line it prints (runPeerFile). */
export function runBenchPeer<T>(name: string, args: string[], timeoutMs: number): Promise<PeerRun<T[]>> {
  return runPeerFile<T>(benchPeerScript(name), `bench/peers/${name}`, args, timeoutMs);
}
