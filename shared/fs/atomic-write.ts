// Replace a file so that readers, and a crash at any moment, see either the whole old content or the
// whole new content, never a mix: write a temp file in the same directory, fsync it, rename it over the
// target (atomic within one file system), then fsync the directory so the rename itself is durable.
// Checkpoints and exported weights are saved through here.
import { randomBytes } from 'node:crypto';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { WolfpackError } from '../errors.js';

/** One buffer, or chunks written in order (a generator lets a writer stream without one big copy). */
export type AtomicWriteData = Uint8Array | Iterable<Uint8Array> | AsyncIterable<Uint8Array>;

/**
 * Atomically replace (or create) `path` with `data`. On failure the temp file is removed, the target
 * is untouched, and the error is rethrown: file-system errors as E_IO naming the path, errors thrown by
 * the caller's iterator unchanged.
 */
export async function writeFileAtomic(path: string, data: AtomicWriteData): Promise<void> {
  const dir = dirname(path);
  // Same directory, so rename never crosses a file system; the leading dot keeps it out of globs.
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let handle: FileHandle | undefined = await io(`cannot create a temp file for ${path}`, open(tmp, 'wx'));
  try {
    const chunks = data instanceof Uint8Array ? [data] : data;
    for await (const chunk of chunks) await writeAll(handle, chunk, path);
    await io(`cannot fsync ${path}`, handle.sync());
    const closing = handle;
    handle = undefined;
    await io(`cannot close ${path}`, closing.close());
    await io(`cannot rename a temp file over ${path}`, rename(tmp, path));
  } catch (e) {
    await handle?.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await syncDirectory(dir);
}

async function writeAll(handle: FileHandle, chunk: Uint8Array, path: string): Promise<void> {
  // write() may write less than asked (large buffers, signals): loop until the chunk is out.
  let offset = 0;
  while (offset < chunk.byteLength) {
    const { bytesWritten } = await io(`cannot write ${path}`, handle.write(chunk, offset, chunk.byteLength - offset));
    offset += bytesWritten;
  }
}

async function syncDirectory(dir: string): Promise<void> {
  let handle: FileHandle;
  try {
    handle = await open(dir, 'r');
  } catch (e) {
    // Some platforms (Windows) cannot open a directory at all; there the rename is as durable as it gets.
    if (isErrno(e, 'EISDIR', 'EPERM', 'EACCES')) return;
    throw ioError(`cannot open directory ${dir} to fsync it`, e);
  }
  try {
    await handle.sync();
  } catch (e) {
    // Some file systems do not support fsync on a directory; the data itself is already synced.
    if (!isErrno(e, 'EINVAL', 'EBADF', 'ENOTSUP')) throw ioError(`cannot fsync directory ${dir}`, e);
  } finally {
    await handle.close().catch(() => undefined);
  }
}

async function io<T>(what: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (e) {
    throw ioError(what, e);
  }
}

function ioError(what: string, e: unknown): WolfpackError {
  const code = (e as NodeJS.ErrnoException)?.code;
  const reason = e instanceof Error ? e.message : String(e);
  return new WolfpackError('E_IO', `${what}: ${reason}`, code ? { errno: code } : {});
}

function isErrno(e: unknown, ...codes: string[]): boolean {
  const code = (e as NodeJS.ErrnoException)?.code;
  return typeof code === 'string' && codes.includes(code);
}
