// Errors are values with a stable code and a message a user can act on (which file, field, tensor or
// worker, and why). Every module throws WolfpackError rather than bare Error for bad input.

export type ErrorCode =
  | 'E_USAGE' // bad command-line flags or options
  | 'E_WEIGHTS' // weights file: missing/extra tensors, shape mismatch, unknown dtype
  | 'E_CORRUPT' // truncated or corrupt file (checkpoint, safetensors, npy, image)
  | 'E_DATA' // data directory problems (missing or empty class, class mismatch)
  | 'E_PROTOCOL' // a frame or message that breaks the protocol
  | 'E_AUTH' // authentication failed
  | 'E_WORKER' // a worker failed or was lost
  | 'E_REPLICA' // replicas diverged (checksum mismatch)
  | 'E_DIVERGED' // non-finite loss or gradient too many steps in a row
  | 'E_BACKEND' // no usable tfjs backend
  | 'E_RESUME' // a resume directory that does not fit this job
  | 'E_STOPPED' // a stop was requested (a signal, an AbortSignal)
  | 'E_IO'; // file system errors

export class WolfpackError extends Error {
  readonly code: ErrorCode;
  readonly details: Record<string, unknown>;

  constructor(code: ErrorCode, message: string, details: Record<string, unknown> = {}) {
    super(message);
    this.name = 'WolfpackError';
    this.code = code;
    this.details = details;
  }
}

export function isWolfpackError(e: unknown, code?: ErrorCode): e is WolfpackError {
  return e instanceof WolfpackError && (code === undefined || e.code === code);
}
