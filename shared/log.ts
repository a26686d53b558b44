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
  const format = opts.format ?? (process.env.WOLFPACK_LOG_FORMAT as LogFormat | undefined) ??
    (process.stderr.isTTY ? 'pretty' : 'json');
  const options: LoggerOptions = { level, base: { pid: process.pid, ...(opts.base ?? {}) } };
  if (format === 'pretty') {
    return pino(options, prettyStream());
  }
  return pino(options, pino.destination({ fd: 2, sync: true }));
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
        .filter((x) => x !== undefined).join(':');
      const extra = Object.entries(rec).filter(([k]) => !HIDDEN.has(k))
        .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`).join(' ');
      process.stderr.write(`${t} ${LEVELS[Number(rec.level)] ?? rec.level} ${who ? `[${who}] ` : ''}${String(rec.msg ?? '')}${extra ? ' ' + extra : ''}\n`);
    },
  };
}
