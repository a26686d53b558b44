// Unpacking a downloaded data set without an unzip program: yauzl reads the zip (central directory,
// ZIP64, stored and deflate entries, sizes checked) and each entry's CRC-32 is checked here with Node's
// zlib.crc32 as it streams out; unzipImageFolder finds the folder in a zip that holds train/<class>/ and
// val/<class>/ (the lab's zip has data/Canidae/{train,val}/{dogs,wolves}) and unpacks just that folder to
// DEST, atomically: DEST appears only once every file is out and checked.
import { createWriteStream } from 'node:fs';
import { mkdir, rename, rm, stat } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { crc32 } from 'node:zlib';
import yauzl from 'yauzl';
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
  isDirectory: boolean;
}

const corrupt = (zip: string, what: string, details: Record<string, unknown> = {}) =>
  new WolfpackError('E_CORRUPT', `zip ${zip}: ${what}`, { path: zip, ...details });

/** yauzl's error as wolfpack's: a name that leaves the folder, a file that is not a zip, anything else damaged. */
function zipError(zip: string, e: Error): WolfpackError {
  const m = /^(?:absolute path|invalid relative path): (.*)$/.exec(e.message);
  if (m)
    return corrupt(zip, `entry '${m[1]}' points outside the folder it is unpacked into; refusing to unpack`, {
      entry: m[1],
    });
  if (/end of central directory record signature not found/i.test(e.message)) {
    return corrupt(zip, 'not a zip file (no end-of-central-directory record; truncated download?)');
  }
  return corrupt(zip, e.message);
}

interface OpenZip {
  entries: { entry: ZipEntry; raw: yauzl.Entry }[];
  file: yauzl.ZipFile;
}

/** Opens `zip` and reads its central directory. */
async function openZip(zip: string): Promise<OpenZip> {
  await stat(zip).catch((e: Error) => {
    throw new WolfpackError('E_IO', `cannot open ${zip}: ${e.message}`, { path: zip });
  });
  const file = await new Promise<yauzl.ZipFile>((resolve, reject) => {
    yauzl.open(zip, { lazyEntries: true, autoClose: false }, (err, f) =>
      err ? reject(zipError(zip, err)) : resolve(f),
    );
  });
  const entries: OpenZip['entries'] = [];
  await new Promise<void>((resolve, reject) => {
    file.on('entry', (raw: yauzl.Entry) => {
      entries.push({
        raw,
        entry: {
          name: raw.fileName,
          method: raw.compressionMethod,
          flags: raw.generalPurposeBitFlag,
          crc32: raw.crc32,
          compressedSize: raw.compressedSize,
          size: raw.uncompressedSize,
          isDirectory: raw.fileName.endsWith('/'),
        },
      });
      file.readEntry();
    });
    file.once('end', () => resolve());
    file.once('error', (e: Error) => reject(zipError(zip, e)));
    file.readEntry();
  }).catch((e: unknown) => {
    file.close();
    throw e;
  });
  return { entries, file };
}

/** The entries of the zip's central directory, in order. */
export async function listZip(zip: string): Promise<ZipEntry[]> {
  const z = await openZip(zip);
  z.file.close();
  return z.entries.map((e) => e.entry);
}

/** A relative, '/'-separated path with no '..', or an error: an entry must not write outside DEST. */
export function safeEntryPath(zip: string, name: string): string {
  const parts = name.split('/').filter((s) => s !== '' && s !== '.');
  if (name.startsWith('/') || /^[A-Za-z]:/.test(name) || parts.includes('..')) {
    throw corrupt(zip, `entry '${name}' points outside the folder it is unpacked into; refusing to unpack`, {
      entry: name,
    });
  }
  return parts.join('/');
}

/** Passes bytes through, counting them and computing their CRC-32; fails past `limit` bytes. */
class Checker extends Transform {
  crc = 0;
  bytes = 0;
  constructor(
    private readonly limit: number,
    private readonly onOver: () => Error,
  ) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    if (this.bytes > this.limit) {
      cb(this.onOver());
      return;
    }
    this.crc = crc32(chunk, this.crc);
    cb(null, chunk);
  }
}

/** Unpacks one file entry to `out`, checking its size and CRC-32. */
async function extractEntry(zip: string, z: OpenZip, e: OpenZip['entries'][number], out: string): Promise<void> {
  const { entry, raw } = e;
  if (entry.flags & 0x1)
    throw corrupt(zip, `entry '${entry.name}' is encrypted; wolfpack cannot unpack it`, { entry: entry.name });
  if (entry.method !== 0 && entry.method !== 8) {
    throw corrupt(
      zip,
      `entry '${entry.name}' uses compression method ${entry.method}; ` +
        `wolfpack unpacks only stored (0) and deflate (8) entries, ` +
        'unpack this zip with another tool',
      { entry: entry.name, method: entry.method },
    );
  }
  await mkdir(dirname(out), { recursive: true });
  const checker = new Checker(entry.size, () =>
    corrupt(zip, `entry '${entry.name}' unpacks to more than its ${entry.size} bytes`, { entry: entry.name }),
  );
  try {
    const source = await new Promise<Readable>((resolve, reject) => {
      z.file.openReadStream(raw, (err, stream) => (err ? reject(err) : resolve(stream)));
    });
    await pipeline(source, checker, createWriteStream(out));
  } catch (err) {
    if (err instanceof WolfpackError) throw err;
    throw corrupt(zip, `entry '${entry.name}' cannot be unpacked: ${(err as Error).message}`, { entry: entry.name });
  }
  if (checker.bytes !== entry.size)
    throw corrupt(zip, `entry '${entry.name}' unpacked to ${checker.bytes} bytes, the zip says ${entry.size}`, {
      entry: entry.name,
    });
  if (checker.crc !== entry.crc32) {
    throw corrupt(
      zip,
      `entry '${entry.name}': CRC-32 ${checker.crc.toString(16)} does not match the zip's ${entry.crc32.toString(16)}`,
      { entry: entry.name },
    );
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
      const seg = segs[i];
      if (seg !== 'train' && seg !== 'val') continue;
      const prefix = segs.slice(0, i).join('/');
      if (!seen.has(prefix)) seen.set(prefix, new Set());
      seen.get(prefix)!.add(seg);
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
  if (await stat(dest).catch(() => undefined))
    throw new WolfpackError('E_IO', `${dest} already exists; remove it to unpack ${zip} again`, { path: dest });
  const z = await openZip(zip);
  try {
    return await unpack(zip, z, dest);
  } finally {
    z.file.close();
  }
}

async function unpack(zip: string, z: OpenZip, dest: string): Promise<UnzipResult> {
  const entries = z.entries.map((e) => e.entry);
  const root = findImageFolderRoot(entries.map((e) => e.name));
  if (root === undefined) {
    const sample = entries
      .slice(0, 5)
      .map((e) => e.name)
      .join(', ');
    throw new WolfpackError(
      'E_DATA',
      `zip ${zip} has no folder with train/<class>/ and val/<class>/ inside (the ImageFolder layout); ` +
        `its first entries: ${sample || '(none)'}`,
      { path: zip },
    );
  }
  const prefix = root === '' ? '' : root + '/';
  const tmp = join(dirname(dest), `.${dest.split(/[\\/]/).pop()}.partial-${process.pid}`);
  await rm(tmp, { recursive: true, force: true });
  await mkdir(tmp, { recursive: true });
  let files = 0;
  let bytes = 0;
  try {
    for (const e of z.entries) {
      const { entry } = e;
      const rel = safeEntryPath(zip, entry.name);
      if (entry.isDirectory || isJunk(entry.name) || !(rel + '/').startsWith(prefix) || rel.length <= prefix.length)
        continue;
      await extractEntry(zip, z, e, join(tmp, rel.slice(prefix.length)));
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
