// Content-addressed image bytes. Each data set file is known by the SHA-256 of its bytes; the
// coordinator remembers which hashes each worker already holds, so no worker receives a file twice
// and workers need no shared file system.
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';

export interface BlobRef {
  hash: string;
  path: string;
}

export function hashBytes(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex').slice(0, 32);
}

export class BlobStore {
  private readonly byHash = new Map<string, { path: string; bytes: Uint8Array }>();
  private readonly sent = new Map<string, Set<string>>();

  /** Reads and hashes every file once (data sets of this lab's size fit in memory). */
  async add(paths: string[]): Promise<string[]> {
    const hashes: string[] = [];
    for (const path of paths) {
      const bytes = await readFile(path);
      const hash = hashBytes(bytes);
      if (!this.byHash.has(hash)) this.byHash.set(hash, { path, bytes });
      hashes.push(hash);
    }
    return hashes;
  }

  bytes(hash: string): Uint8Array {
    const b = this.byHash.get(hash);
    if (!b) throw new Error(`no blob ${hash}`);
    return b.bytes;
  }

  /** The hashes among `wanted` that worker `memberId` does not hold yet; marks them as held. */
  missing(memberId: string, wanted: Iterable<string>): string[] {
    let held = this.sent.get(memberId);
    if (!held) this.sent.set(memberId, (held = new Set()));
    const out: string[] = [];
    for (const h of wanted) {
      if (!held.has(h)) {
        held.add(h);
        out.push(h);
      }
    }
    return out;
  }

  /** Forget what a worker holds (it left). */
  forget(memberId: string): void {
    this.sent.delete(memberId);
  }
}
