// Read a whole file into memory, turning file-system failures into one E_IO error that names the path
// and says plainly why (missing, a directory, no permission), so every reader reports them the same way.
import { readFile } from 'node:fs/promises';
import { WolfpackError } from '../errors.js';

const PLAIN_REASONS: Record<string, string> = {
  ENOENT: 'no such file',
  EISDIR: 'is a directory, not a file',
  EACCES: 'permission denied',
  EPERM: 'permission denied',
  ENOTDIR: 'a parent of it is not a directory',
};

/** The file's bytes. `what` names the kind of file in the error, e.g. 'weights file'. */
export async function readFileBytes(path: string, what = 'file'): Promise<Buffer> {
  try {
    return await readFile(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException)?.code;
    const reason = (code && PLAIN_REASONS[code]) ?? (e instanceof Error ? e.message : String(e));
    throw new WolfpackError('E_IO', `cannot read ${what} ${path}: ${reason}${code ? ` (${code})` : ''}`, {
      path,
      ...(code ? { errno: code } : {}),
    });
  }
}
