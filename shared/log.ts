// Structured logging with pino: one root logger per process, a child per component and rank.
// Library code takes a Logger and never writes to the console itself.
import { pino, type Logger, type LoggerOptions } from 'pino';

export type { Logger };
export type LogFormat = 'pretty' | 'json';

export interface LogOptions {
  level?: string;
  format?: LogFormat;
  /** Extra bindings for the root logger, e.g. { component: 'worker', pid } */
  base?: Record<string, unknown>;
}

/** Root logger. 'pretty' writes short human lines to stderr; 'json' writes pino's NDJSON to stderr. */
export function createLogger(opts: LogOptions = {}): Logger {
  const level = opts.level ?? process.env.WOLFPACK_LOG_LEVEL ?? 'info';
  const format =
    opts.format ??
    (process.env.WOLFPACK_LOG_FORMAT as LogFormat | undefined) ??
    (process.stderr.isTTY ? 'pretty' : 'json');
  const options: LoggerOptions = { level, base: { pid: process.pid, ...(opts.base ?? {}) } };
  if (format === 'pretty') {
    return pino(options, prettyStream());
  }
  return pino(options, pino.destination({ fd: 2, sync: true }));
}

/**
 * Whether JSON output was asked for explicitly: `--log-format json` in `argv`, or else
 * WOLFPACK_LOG_FORMAT=json (as the container images set). Only then do a command's human-readable lines
 * and its final error become JSON records too; JSON chosen only because stderr is not a terminal leaves them as text.
 */
export function jsonRequested(argv: readonly string[] = []): boolean {
  let flag: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (arg === '--log-format') flag = argv[++i];
    else if (arg.startsWith('--log-format=')) flag = arg.slice('--log-format='.length);
  }
  return (flag ?? process.env.WOLFPACK_LOG_FORMAT) === 'json';
}

/**
 * Where a command's human-readable lines go (the lab's epoch lines, what the demo generates): stdout as
 * they are, or, when `json` (see jsonRequested), one JSON record a line in pino's shape (level 30,
 * time, pid, msg), so that every line a container writes parses as JSON.
 */
export function createPrinter(json: boolean): (line: string) => void {
  if (!json)
    return (line) => {
      process.stdout.write(line + '\n');
    };
  const out = pino({ base: { pid: process.pid } }, pino.destination({ fd: 1, sync: true }));
  return (line) => {
    for (const l of line.split('\n')) out.info(l);
  };
}

/**
 * A stream for code that writes text in chunks (download progress, `fetch`'s report): each complete,
 * non-empty line becomes one JSON record (level 30, or `level`) on file descriptor `fd`. Not a terminal,
 * so progress bars are drawn as lines.
 */
export function jsonLineStream(
  fd: 1 | 2,
  level: 'info' | 'warn' = 'info',
): { write(chunk: string): boolean; isTTY: false } {
  const out = pino({ base: { pid: process.pid } }, pino.destination({ fd, sync: true }));
  let pending = '';
  return {
    isTTY: false,
    write(chunk: string): boolean {
      const parts = (pending + chunk).split('\n');
      pending = parts.pop() ?? '';
      for (const l of parts) if (l.trim() !== '') out[level](l.replace(/\r/g, ''));
      return true;
    },
  };
}

/** A command's final error as one JSON line (level 50) when `json`, else as the text itself. */
export function errorLine(text: string, json: boolean, fields: Record<string, unknown> = {}): string {
  return json
    ? JSON.stringify({ level: 50, time: Date.now(), pid: process.pid, ...fields, msg: text }) + '\n'
    : text + '\n';
}

/** A logger that drops everything: for tests and library callers that pass none. */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' };
const HIDDEN = new Set(['level', 'time', 'pid', 'hostname', 'msg', 'component', 'rank']);

// A minimal synchronous pretty printer: pino-pretty runs in a worker thread, which we do not want
// in every worker process; this keeps human output readable with no extra dependency.
function prettyStream(): { write(line: string): void } {
  return {
    write(line: string): void {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line) as Record<string, unknown>;
      } catch {
        process.stderr.write(line);
        return;
      }
      const t = new Date(Number(rec.time)).toISOString().slice(11, 23);
      const who = [rec.component, rec.rank !== undefined ? `r${String(rec.rank)}` : undefined]
        .filter((x) => x !== undefined)
        .join(':');
      const extra = Object.entries(rec)
        .filter(([k]) => !HIDDEN.has(k))
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
        .join(' ');
      process.stderr.write(
        `${t} ${LEVELS[Number(rec.level)] ?? rec.level} ` +
          `${who ? `[${who}] ` : ''}${String(rec.msg ?? '')}${extra ? ' ' + extra : ''}\n`,
      );
    },
  };
}
