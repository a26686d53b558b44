// HTTP(S) download to a file that survives broken connections: bytes go to DEST.part (with what the
// server said about the file in DEST.part.json), a broken or stalled connection is retried with a
// Range request from where it stopped, and a later run resumes the same way. The size (the caller's, or
// the server's Content-Length) and the sha256 (where the caller knows it) are checked before the file is
// renamed to DEST, so DEST is either absent or complete. Progress goes to a callback; progressPrinter
// draws it as a bar on a terminal and as plain lines elsewhere.
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, open, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { WolfpackError } from '../errors.js';

export interface DownloadProgress {
  url: string;
  /** Bytes in the file so far, including those from earlier tries. */
  received: number;
  /** The file's full size, when known. */
  total?: number;
  /** Bytes that were already there when this connection started (resumed from). */
  resumedFrom: number;
  done: boolean;
}

export interface DownloadOptions {
  url: string;
  dest: string;
  /** Expected size in bytes; when unknown, the server's Content-Length (or Content-Range total) is checked. */
  size?: number;
  /** Expected sha256, hex; checked when given. */
  sha256?: string;
  /** Tries after the first when a connection fails or breaks, each resuming where the file stopped (default 3). */
  retries?: number;
  /** Wait before the first retry, doubled for each next one (default 1000 ms). */
  retryDelayMs?: number;
  /** A connection that delivers nothing for this long counts as broken (default 60 s). */
  idleTimeoutMs?: number;
  onProgress?: (p: DownloadProgress) => void;
}

export interface DownloadResult {
  path: string;
  bytes: number;
  sha256: string;
  /** DEST was already there (and matched what is known about it); nothing was downloaded. */
  skipped: boolean;
  /** Bytes of an earlier partial download this call started from (0: from the beginning). */
  resumedFrom: number;
  /** Connections made. */
  connections: number;
}

/** What DEST.part.json remembers, so a resume asks for the same version of the file. */
interface PartMeta {
  url: string;
  etag?: string;
  lastModified?: string;
  total?: number;
}

/** A failure worth another try with Range (the connection broke, stalled, or the server had a moment). */
class Retryable extends Error {}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export async function download(opts: DownloadOptions): Promise<DownloadResult> {
  const { url, dest } = opts;
  const retries = opts.retries ?? 3;
  const part = `${dest}.part`;
  const metaPath = `${dest}.part.json`;

  const existing = await stat(dest).catch(() => undefined);
  if (existing?.isFile()) {
    const sha = await sha256File(dest);
    const sizeOk = opts.size === undefined || existing.size === opts.size;
    const shaOk = opts.sha256 === undefined || sha === opts.sha256.toLowerCase();
    if (sizeOk && shaOk)
      return { path: dest, bytes: existing.size, sha256: sha, skipped: true, resumedFrom: 0, connections: 0 };
    await rm(dest, { force: true }); // a different file than expected: fetch it anew
  }
  await mkdir(dirname(dest), { recursive: true }).catch((e: Error) => {
    throw new WolfpackError('E_IO', `cannot create the folder for ${dest}: ${e.message}`, { path: dest });
  });

  const startedWith = await partSize(part, metaPath, url);
  let connections = 0;
  let expected = opts.size;
  for (let attempt = 0; ; attempt++) {
    try {
      connections++;
      expected = await fetchInto(opts, part, metaPath, expected);
      break;
    } catch (e) {
      if (!(e instanceof Retryable)) throw e;
      const have = (await stat(part).catch(() => undefined))?.size ?? 0;
      expected ??= (await readMeta(metaPath))?.total;
      if (attempt >= retries) {
        const of = expected !== undefined ? ` of ${expected}` : '';
        throw new WolfpackError(
          'E_IO',
          `download of ${url} broke off after ${have}${of} bytes (${e.message}); ` +
            `${have > 0 ? `run the same command again to resume from byte ${have}` : 'run the same command again'}`,
          { url, received: have, total: expected },
        );
      }
      await sleep((opts.retryDelayMs ?? 1000) * 2 ** attempt);
    }
  }

  const bytes = (await stat(part)).size;
  const sha = await sha256File(part);
  if (opts.sha256 !== undefined && sha !== opts.sha256.toLowerCase()) {
    await rm(part, { force: true });
    await rm(metaPath, { force: true });
    throw new WolfpackError(
      'E_CORRUPT',
      `checksum mismatch for ${url}: sha256 ${sha}, expected ${opts.sha256.toLowerCase()} ` +
        `(${bytes} bytes); the download was deleted, run the command again to fetch it anew`,
      { url, sha256: sha, expected: opts.sha256 },
    );
  }
  await rename(part, dest);
  await rm(metaPath, { force: true });
  return { path: dest, bytes, sha256: sha, skipped: false, resumedFrom: startedWith, connections };
}

/** Size of a usable partial download of `url` (0, and the leftovers deleted, when there is none). */
async function partSize(part: string, metaPath: string, url: string): Promise<number> {
  const size = (await stat(part).catch(() => undefined))?.size ?? 0;
  const meta = await readMeta(metaPath);
  if (size > 0 && meta?.url === url) return size;
  await rm(part, { force: true });
  await rm(metaPath, { force: true });
  return 0;
}

async function readMeta(path: string): Promise<PartMeta | undefined> {
  try {
    const m = JSON.parse(await readFile(path, 'utf8')) as PartMeta;
    return typeof m?.url === 'string' ? m : undefined;
  } catch {
    return undefined;
  }
}

/** One connection: appends to DEST.part from where it stops. Returns the file's full size when known. */
async function fetchInto(
  opts: DownloadOptions,
  part: string,
  metaPath: string,
  expected: number | undefined,
): Promise<number | undefined> {
  const { url } = opts;
  let have = await partSize(part, metaPath, url);
  const meta = have > 0 ? await readMeta(metaPath) : undefined;
  const known = expected ?? meta?.total;
  if (have > 0 && known !== undefined && have === known) return known; // an earlier try got it all

  const idleMs = opts.idleTimeoutMs ?? 60_000;
  const abort = new AbortController();
  let idle = setTimeout(() => abort.abort(), idleMs);
  const touch = () => {
    clearTimeout(idle);
    idle = setTimeout(() => abort.abort(), idleMs);
  };
  const headers: Record<string, string> = { 'user-agent': 'wolfpack-fetch', 'accept-encoding': 'identity' };
  if (have > 0) {
    headers.range = `bytes=${have}-`;
    // If-Range takes a strong ETag or a date; with it, a file changed since the first try comes back whole (200).
    const validator = meta?.etag && !meta.etag.startsWith('W/') ? meta.etag : meta?.lastModified;
    if (validator) headers['if-range'] = validator;
  }
  try {
    let res: Response;
    try {
      res = await fetch(url, { headers, redirect: 'follow', signal: abort.signal });
    } catch (e) {
      throw new Retryable(abort.signal.aborted ? `no answer for ${idleMs / 1000} s` : reason(e));
    }

    let total: number | undefined;
    if (res.status === 416 && have > 0) {
      // Nothing left past `have`: either the file is complete or the part is longer than the file.
      await res.body?.cancel();
      const full = rangeTotal(res.headers.get('content-range'));
      if (full === have && (expected === undefined || expected === full)) return full;
      await rm(part, { force: true });
      throw new Retryable(`the server refused to resume at byte ${have}`);
    }
    if (res.status === 206) {
      const range = /^bytes (\d+)-(\d+)\/(\d+|\*)$/.exec(res.headers.get('content-range') ?? '');
      if (!range || Number(range[1]) !== have) {
        await res.body?.cancel();
        await rm(part, { force: true });
        throw new Retryable(
          `the server answered a resume at byte ${have} with range '${res.headers.get('content-range') ?? ''}'`,
        );
      }
      total = range[3] === '*' ? undefined : Number(range[3]);
    } else if (res.status === 200) {
      have = 0; // the server sent the whole file (no Range support, or the file changed since): start over
      const len = res.headers.get('content-length');
      total = len === null ? undefined : Number(len);
    } else {
      await res.body?.cancel();
      const msg = `GET ${url}: HTTP ${res.status}${res.statusText ? ` ${res.statusText}` : ''}`;
      if (res.status >= 500 || res.status === 408 || res.status === 429) throw new Retryable(msg);
      throw new WolfpackError('E_IO', msg, { url, status: res.status });
    }
    if (opts.size !== undefined && total !== undefined && total !== opts.size) {
      await res.body?.cancel();
      throw new WolfpackError('E_CORRUPT', `${url}: the server has ${total} bytes, expected ${opts.size}`, {
        url,
        total,
        expected: opts.size,
      });
    }
    const want = opts.size ?? total;
    const newMeta: PartMeta = {
      url,
      etag: res.headers.get('etag') ?? undefined,
      lastModified: res.headers.get('last-modified') ?? undefined,
      total: want,
    };
    await writeFile(metaPath, JSON.stringify(newMeta) + '\n');

    const file = await open(part, have > 0 ? 'a' : 'w');
    const resumedFrom = have;
    let received = have;
    try {
      opts.onProgress?.({ url, received, total: want, resumedFrom, done: false });
      if (res.body) {
        const reader = res.body.getReader();
        for (;;) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            throw new Retryable(abort.signal.aborted ? `no data for ${idleMs / 1000} s` : reason(e));
          }
          if (chunk.done) break;
          touch();
          await file.write(chunk.value);
          received += chunk.value.byteLength;
          if (want !== undefined && received > want) {
            throw new WolfpackError('E_CORRUPT', `${url}: the server sent more than the ${want} bytes expected`, {
              url,
              expected: want,
            });
          }
          opts.onProgress?.({ url, received, total: want, resumedFrom, done: false });
        }
      }
    } finally {
      await file.close();
    }
    if (want !== undefined && received < want)
      throw new Retryable(`the connection closed after ${received} of ${want} bytes`);
    opts.onProgress?.({ url, received, total: want ?? received, resumedFrom, done: true });
    return want ?? received;
  } catch (e) {
    if (e instanceof WolfpackError && e.code === 'E_CORRUPT') {
      await rm(part, { force: true });
      await rm(metaPath, { force: true });
    }
    throw e;
  } finally {
    clearTimeout(idle);
  }
}

function rangeTotal(header: string | null): number | undefined {
  const m = /\/(\d+)$/.exec(header ?? '');
  return m ? Number(m[1]) : undefined;
}

/** fetch's errors carry the socket's reason in `cause`. */
function reason(e: unknown): string {
  const err = e as Error & { cause?: Error & { code?: string } };
  const cause = err?.cause;
  if (cause?.message)
    return cause.code && !cause.message.includes(cause.code) ? `${cause.code}: ${cause.message}` : cause.message;
  return err?.message ?? String(e);
}

export async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Where progress is drawn: a stream that may be a terminal. */
export interface ProgressStream {
  write(s: string): unknown;
  isTTY?: boolean;
  columns?: number;
}

const MiB = 1024 * 1024;
const mib = (n: number) => `${(n / MiB).toFixed(1)} MiB`;

/**
 * A progress callback that draws on `stream`: on a terminal one bar redrawn in place (at most 10 times a
 * second), elsewhere (logs, CI) a plain line at each tenth of the file, or every 10 MiB when the size is
 * unknown.
 */
export function progressPrinter(
  stream: ProgressStream,
  label: string,
  now: () => number = () => performance.now(),
): (p: DownloadProgress) => void {
  let lastDraw = -Infinity;
  let lastStep = -1;
  let start = 0;
  let startBytes = 0;
  return (p) => {
    const t = now();
    if (p.received === p.resumedFrom && !p.done) {
      start = t;
      startBytes = p.received;
      if (p.resumedFrom > 0) stream.write(`${label}: resuming at ${mib(p.resumedFrom)}\n`);
    }
    const rate = t > start ? (p.received - startBytes) / ((t - start) / 1000) : 0;
    const of = p.total !== undefined ? ` / ${mib(p.total)}` : '';
    if (stream.isTTY) {
      if (!p.done && t - lastDraw < 100) return;
      lastDraw = t;
      const pct = p.total ? Math.min(1, p.received / p.total) : undefined;
      const width = Math.max(10, Math.min(40, (stream.columns ?? 80) - label.length - 45));
      const bar =
        pct === undefined
          ? ''
          : `[${'#'.repeat(Math.round(pct * width)).padEnd(width, '.')}] ${(pct * 100).toFixed(0).padStart(3)}% `;
      stream.write(`\r${label} ${bar}${mib(p.received)}${of}  ${mib(rate)}/s\x1b[K${p.done ? '\n' : ''}`);
      return;
    }
    const step = p.total ? Math.floor((p.received / p.total) * 10) : Math.floor(p.received / (10 * MiB));
    if (p.done) {
      stream.write(`${label}: done, ${mib(p.received)}\n`);
    } else if (step > lastStep && (p.total === undefined || p.received < p.total)) {
      // 'done' says 100%
      lastStep = step;
      const pct = p.total ? ` (${Math.floor((p.received / p.total) * 100)}%)` : '';
      stream.write(`${label}: ${mib(p.received)}${of}${pct}\n`);
    }
  };
}
