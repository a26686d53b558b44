// A faulty-RAM bit flip in a live process, for end-to-end tests of what silent memory corruption does:
// the process's writable mappings (/proc/PID/maps) are searched through /proc/PID/mem for a byte
// pattern, and one bit of every copy found is flipped in place. Nothing in the process is told or
// changed otherwise, as with a real bad DIMM. Linux only; the caller must be allowed to ptrace the
// process (its parent is, and root is), and should SIGSTOP it first so the memory holds still.
import { closeSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';

const CHUNK = 16 * 1024 * 1024;

/** Why this process cannot flip bits in `pid`'s memory, or undefined when it can. */
export function memoryFaultUnavailable(pid: number): string | undefined {
  if (process.platform !== 'linux') return `needs Linux's /proc/PID/mem (this is ${process.platform})`;
  try {
    closeSync(openSync(`/proc/${pid}/mem`, 'r+'));
  } catch (e) {
    return `cannot open /proc/${pid}/mem for writing (ptrace not permitted?): ${(e as Error).message}`;
  }
  return undefined;
}

export interface Flipped {
  /** Addresses (in the process) of the copies of the pattern whose bit was flipped. */
  addresses: number[];
  /** Bytes of writable memory searched. */
  searched: number;
}

/**
 * Flips bit `bit` (0 = least significant) of byte `at` in every copy of `pattern` found in `pid`'s
 * private writable mappings.
 */
export function flipBitEverywhere(pid: number, pattern: Uint8Array, at = 0, bit = 0): Flipped {
  if (pattern.length < 16 || at >= pattern.length)
    throw new Error('the pattern must be at least 16 bytes and hold byte `at`');
  const regions = readFileSync(`/proc/${pid}/maps`, 'utf8')
    .split('\n')
    .map((line) => /^([0-9a-f]+)-([0-9a-f]+) rw.p \S+ \S+ \S+\s*(.*)$/.exec(line))
    .filter((m): m is RegExpExecArray => m !== null && !/^\[(vvar|vsyscall|vdso)/.test(m[3]!))
    .map((m) => ({ start: parseInt(m[1]!, 16), end: parseInt(m[2]!, 16) }));
  const needle = Buffer.from(pattern);
  const buf = Buffer.allocUnsafe(CHUNK + needle.length);
  const fd = openSync(`/proc/${pid}/mem`, 'r+');
  const addresses: number[] = [];
  let searched = 0;
  try {
    for (const r of regions) {
      for (let base = r.start; base < r.end; base += CHUNK) {
        const len = Math.min(CHUNK + needle.length - 1, r.end - base);
        let n: number;
        try {
          n = readSync(fd, buf, 0, len, base);
        } catch {
          break; // a mapping that cannot be read through /proc (a device or guard mapping): skip it
        }
        searched += Math.min(n, CHUNK);
        const view = buf.subarray(0, n);
        // A copy starting past CHUNK lies in the next chunk too, and is counted there.
        for (let i = view.indexOf(needle); i >= 0 && i < CHUNK; i = view.indexOf(needle, i + 1))
          addresses.push(base + i);
      }
    }
    for (const a of addresses) {
      const one = Buffer.alloc(1);
      readSync(fd, one, 0, 1, a + at);
      one[0] = one[0]! ^ (1 << bit);
      writeSync(fd, one, 0, 1, a + at);
    }
  } finally {
    closeSync(fd);
  }
  return { addresses, searched };
}
