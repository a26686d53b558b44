// A replica's fingerprint: SHA-256 over the bytes of its parameters and moving statistics. Equal
// fingerprints at an epoch's end prove the replicas have not drifted apart.
import { createHash } from 'node:crypto';
import type { ModelState } from '../model/state.js';

export function stateChecksum(state: ModelState): string {
  const h = createHash('sha256');
  h.update(new Uint8Array(state.params.buffer, state.params.byteOffset, state.params.byteLength));
  h.update(new Uint8Array(state.stats.buffer, state.stats.byteOffset, state.stats.byteLength));
  return h.digest('hex').slice(0, 32);
}
