// A small zip reader (stored and deflate entries, ZIP64 sizes, CRC-32 checked), enough to unpack a
// downloaded data set without an unzip program; and unzipImageFolder, which finds the folder in a zip
// that holds train/<class>/ and val/<class>/ (the lab's zip has data/Canidae/{train,val}/{dogs,wolves})
// and unpacks just that folder to DEST, atomically: DEST appears only once every file is out and checked.
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createInflateRaw } from 'node:zlib';
import { WolfpackError } from '../errors.js';

export interface ZipEntry {
  /** Path inside the zip, '/'-separated; folders end with '/'. */
  name: string;
  /** 0 = stored, 8 = deflate. */
  method: number;
  flags: number;
  crc32: number;
  compressedSize: number;
  size: number;
  localHeaderOffset: number;
  isDirectory: boolean;
}

const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_LOCAL = 0x04034b50;

const corrupt = (zip: string, what: string, details: Record<string, unknown> = {}) =>
  new WolfpackError('E_CORRUPT', `zip ${zip}: ${what}`, { path: zip, ...details });

async function readAt(zip: string, fd: Awaited<ReturnType<typeof open>>, position: number, length: number): Promise<Buffer> {
  const buf = Buffer.alloc(length);
  const { bytesRead } = await fd.read(buf, 0, length, position);
  if (bytesRead !== length) throw corrupt(zip, `truncated (wanted ${length} bytes at offset ${position}, the file ends first)`);
  return buf;
}

const u64 = (b: Buffer, at: number): number => Number(b.readBigUInt64LE(at));

/** The entries of the zip's central directory, in order. */
export async function listZip(zip: string): Promise<ZipEntry[]> {
  const fd = await open(zip, 'r').catch((e: Error) => { throw new WolfpackError('E_IO', `cannot open ${zip}: ${e.message}`, { path: zip }); });
  try {
    const size = (await fd.stat()).size;
    const tailLen = Math.min(size, 22 + 0xffff);
    const tail = await readAt(zip, fd, size - tailLen, tailLen);
    let eocd = -1;
    for (let i = tailLen - 22; i >= 0; i--) {
      if (tail.readUInt32LE(i) === SIG_EOCD) { eocd = i; break; }
    }
    if (eocd < 0) throw corrupt(zip, 'not a zip file (no end-of-central-directory record; truncated download?)');
    let count = tail.readUInt16LE(eocd + 10);
    let cdSize = tail.readUInt32LE(eocd + 12);
    let cdOffset = tail.readUInt32LE(eocd + 16);
    if (count === 0xffff || cdSize === 0xffffffff || cdOffset === 0xffffffff) {
      const locAt = size - tailLen + eocd - 20;
      const loc = locAt >= 0 ? await readAt(zip, fd, locAt, 20) : undefined;
      if (!loc || loc.readUInt32LE(0) !== SIG_ZIP64_LOCATOR) throw corrupt(zip, 'ZIP64 sizes without a ZIP64 locator');
      const z64 = await readAt(zip, fd, u64(loc, 8), 56);
      if (z64.readUInt32LE(0) !== SIG_ZIP64_EOCD) throw corrupt(zip, 'bad ZIP64 end-of-central-directory record');
      count = u64(z64, 32);
      cdSize = u64(z64, 40);
      cdOffset = u64(z64, 48);
    }
    if (cdOffset + cdSize > size) throw corrupt(zip, `central directory (${cdSize} bytes at ${cdOffset}) lies past the end of the file (${size} bytes)`);
    const cd = await readAt(zip, fd, cdOffset, cdSize);
    const entries: ZipEntry[] = [];
    let p = 0;
    for (let i = 0; i < count; i++) {
      if (p + 46 > cd.length || cd.readUInt32LE(p) !== SIG_CENTRAL) throw corrupt(zip, `central directory entry ${i} is damaged`);
      const flags = cd.readUInt16LE(p + 8);
      const nameLen = cd.readUInt16LE(p + 28);
      const extraLen = cd.readUInt16LE(p + 30);
      const commentLen = cd.readUInt16LE(p + 32);
      const rawName = cd.subarray(p + 46, p + 46 + nameLen);
      const name = rawName.toString(flags & 0x800 ? 'utf8' : 'latin1').replace(/\\/g, '/');
      let size32 = cd.readUInt32LE(p + 24);
      let csize32 = cd.readUInt32LE(p + 20);
      let offset32 = cd.readUInt32LE(p + 42);
      // ZIP64 extra field: the 64-bit values of exactly those fields that hold 0xffffffff, in this order.
      const extra = cd.subarray(p + 46 + nameLen, p + 46 + nameLen + extraLen);
      for (let e = 0; e + 4 <= extra.length;) {
        const id = extra.readUInt16LE(e);
        const len = extra.readUInt16LE(e + 2);
        if (id === 0x0001) {
          let q = e + 4;
          if (size32 === 0xffffffff) { size32 = u64(extra, q); q += 8; }
          if (csize32 === 0xffffffff) { csize32 = u64(extra, q); q += 8; }
          if (offset32 === 0xffffffff) { offset32 = u64(extra, q); }
        }
        e += 4 + len;
      }
      entries.push({
        name, flags, method: cd.readUInt16LE(p + 10), crc32: cd.readUInt32LE(p + 16),
        compressedSize: csize32, size: size32, localHeaderOffset: offset32, isDirectory: name.endsWith('/'),
      });
      p += 46 + nameLen + extraLen + commentLen;
    }
    return entries;
  } finally {
    await fd.close();
  }
}

/** A relative, '/'-separated path with no '..', or an error: an entry must not write outside DEST. */
export function safeEntryPath(zip: string, name: string): string {
  const parts = name.split('/').filter((s) => s !== '' && s !== '.');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name) || parts.includes('..')) {
    throw corrupt(zip, `entry '${name}' points outside the folder it is unpacked into; refusing to unpack`, { entry: name });
  }
  return parts.join('/');
}

const CRC_TABLE = (() => {
  const t = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    t[n] = c >>> 0;
  }
  return t;
})();

/** CRC-32 (IEEE, as zip uses) of `data`, continuing from `crc`. */
export function crc32(data: Uint8Array, crc = 0): number {
  let c = ~crc >>> 0;
  for (let i = 0; i < data.length; i++) c = CRC_TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
  return ~c >>> 0;
}

/** Passes bytes through, counting them and computing their CRC-32; fails past `limit` bytes. */
class Checker extends Transform {
  crc = 0;
  bytes = 0;
  constructor(private readonly limit: number, private readonly onOver: () => Error) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) { cb(this.onOver()); return; }
    this.crc = crc32(chunk, this.crc);
    cb(null, chunk);
  }
}

/** Unpacks one file entry to `out`, checking its size and CRC-32. */
export async function extractEntry(zip: string, entry: ZipEntry, out: string): Promise<void> {
  if (entry.flags & 0x1) throw corrupt(zip, `entry '${entry.name}' is encrypted; wolfpack cannot unpack it`, { entry: entry.name });
  if (entry.method !== 0 && entry.method !== 8) {
    throw corrupt(zip, `entry '${entry.name}' uses compression method ${entry.method}; wolfpack unpacks only stored (0) and deflate (8) entries, ` +
      'unpack this zip with another tool', { entry: entry.name, method: entry.method });
  }
  const fd = await open(zip, 'r');
  let dataStart: number;
  try {
    const local = await readAt(zip, fd, entry.localHeaderOffset, 30);
    if (local.readUInt32LE(0) !== SIG_LOCAL) throw corrupt(zip, `entry '${entry.name}': no local header at offset ${entry.localHeaderOffset}`, { entry: entry.name });
    dataStart = entry.localHeaderOffset + 30 + local.readUInt16LE(26) + local.readUInt16LE(28);
  } finally {
    await fd.close();
  }
  await mkdir(dirname(out), { recursive: true });
  const checker = new Checker(entry.size, () => corrupt(zip, `entry '${entry.name}' unpacks to more than its ${entry.size} bytes`, { entry: entry.name }));
  const source = entry.compressedSize > 0
    ? createReadStream(zip, { start: dataStart, end: dataStart + entry.compressedSize - 1 })
    : Readable.from([]); // an empty file
  const stages = entry.method === 8 && entry.compressedSize > 0 ? [source, createInflateRaw(), checker] : [source, checker];
  try {
    await pipeline([...stages, createWriteStream(out)]);
  } catch (e) {
    if (e instanceof WolfpackError) throw e;
    throw corrupt(zip, `entry '${entry.name}' cannot be unpacked: ${(e as Error).message}`, { entry: entry.name });
  }
  if (checker.bytes !== entry.size) throw corrupt(zip, `entry '${entry.name}' unpacked to ${checker.bytes} bytes, the zip says ${entry.size}`, { entry: entry.name });
  if (checker.crc !== entry.crc32) {
    throw corrupt(zip, `entry '${entry.name}': CRC-32 ${checker.crc.toString(16)} does not match the zip's ${entry.crc32.toString(16)}`, { entry: entry.name });
  }
}

/** Junk that archivers add: macOS resource forks and hidden files. */
function isJunk(name: string): boolean {
  return name.split('/').some((s) => s === '__MACOSX' || s.startsWith('.'));
}

/**
 * The folder (a '/'-separated prefix, '' for the zip's top) that holds train/<class>/<file> and
 * val/<class>/<file>; the shortest such prefix when there are several. Undefined when there is none.
 */
export function findImageFolderRoot(names: string[]): string | undefined {
  const seen = new Map<string, Set<string>>();
  for (const name of names) {
    if (name.endsWith('/') || isJunk(name)) continue;
    const segs = name.split('/').filter(Boolean);
    for (let i = 0; i + 2 < segs.length; i++) {
      if (segs[i] !== 'train' && segs[i] !== 'val') continue;
      const prefix = segs.slice(0, i).join('/');
      if (!seen.has(prefix)) seen.set(prefix, new Set());
      seen.get(prefix)!.add(segs[i]);
    }
  }
  const roots = [...seen].filter(([, s]) => s.size === 2).map(([p]) => p);
  roots.sort((a, b) => a.length - b.length || (a < b ? -1 : 1));
  return roots[0];
}

export interface UnzipResult {
  /** DEST. */
  dir: string;
  /** The folder inside the zip that became DEST ('' for the zip's top). */
  rootInZip: string;
  files: number;
  bytes: number;
}

/**
 * Unpacks the ImageFolder data set in `zip` (the folder holding train/ and val/) to `dest`, which must
 * not exist yet: files go to a temporary sibling folder first, renamed to `dest` when all are out.
 */
export async function unzipImageFolder(zip: string, dest: string): Promise<UnzipResult> {
  if (await stat(dest).catch(() => undefined)) throw new WolfpackError('E_IO', `${dest} already exists; remove it to unpack ${zip} again`, { path: dest });
  const entries = await listZip(zip);
  const root = findImageFolderRoot(entries.map((e) => e.name));
  if (root === undefined) {
    const sample = entries.slice(0, 5).map((e) => e.name).join(', ');
    throw new WolfpackError('E_DATA', `zip ${zip} has no folder with train/<class>/ and val/<class>/ inside (the ImageFolder layout); ` +
      `its first entries: ${sample || '(none)'}`, { path: zip });
  }
  const prefix = root === '' ? '' : root + '/';
  const tmp = join(dirname(dest), `.${dest.split(/[\\/]/).pop()}.partial-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  let files = 0;
  let bytes = 0;
  try {
    for (const entry of entries) {
      const rel = safeEntryPath(zip, entry.name);
      if (entry.isDirectory || isJunk(entry.name) || !(rel + '/').startsWith(prefix) || rel.length <= prefix.length) continue;
      await extractEntry(zip, entry, join(tmp, rel.slice(prefix.length)));
      files++;
      bytes += entry.size;
    }
    await rename(tmp, dest);
  } catch (e) {
    await rm(tmp, { recursive: true, force: true });
    throw e;
  }
  return { dir: dest, rootInZip: root, files, bytes };
}
