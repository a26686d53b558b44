// Reads TensorBoard event files with a reader that is not ours: TensorBoard's own event.proto and
// summary.proto (test/fixtures/tensorboard/, compiled by Debian's protoc) parsed by python3-protobuf,
// with the TFRecord framing and CRCs checked by test/fixtures/tensorboard/read_events.py.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { packageRoot } from '../../shared/paths.js';

const FIXTURES = join(packageRoot, 'test', 'fixtures', 'tensorboard');
const PROTO_DIR = join(FIXTURES, 'tensorboard', 'compat', 'proto');
const PYTHON = '/usr/bin/python3';

export interface ReadValue {
  tag: string;
  /** Which member of Summary.Value's oneof was set ('simple_value' for a scalar). */
  kind: string | null;
  /** A float32 widened to a double; NaN and infinities as strings. */
  value: number | string;
}

export interface ReadEvent {
  wall_time: number;
  step: number;
  what: string | null;
  file_version?: string;
  values?: ReadValue[];
}

export type ReadResult = { ok: true; events: ReadEvent[] } | { ok: false; error: string };

/** Why the reader cannot run here (a reason for t.skip), or undefined when it can. */
export function readerUnavailable(): string | undefined {
  const protoc = spawnSync('protoc', ['--version'], { encoding: 'utf8' });
  if (protoc.error !== undefined || protoc.status !== 0) return 'protoc not found (Debian package protobuf-compiler)';
  const py = spawnSync(PYTHON, ['-c', 'import google.protobuf'], { encoding: 'utf8' });
  if (py.error !== undefined || py.status !== 0)
    return `${PYTHON} cannot import google.protobuf (Debian package python3-protobuf)`;
  return undefined;
}

/** A reader: TensorBoard's .proto files compiled to Python in a temporary folder (`dispose` removes it). */
export function eventReader(): { read(file: string): ReadResult; dispose(): void } {
  const generated = mkdtempSync(join(tmpdir(), 'wolfpack-tb-proto-'));
  const protos = readdirSync(PROTO_DIR)
    .filter((f) => f.endsWith('.proto'))
    .map((f) => join(PROTO_DIR, f));
  const protoc = spawnSync('protoc', ['-I', FIXTURES, `--python_out=${generated}`, ...protos], { encoding: 'utf8' });
  if (protoc.status !== 0) throw new Error(`protoc failed: ${protoc.stderr}`);
  return {
    read(file) {
      const r = spawnSync(PYTHON, [join(FIXTURES, 'read_events.py'), generated, file], { encoding: 'utf8' });
      if (r.status !== 0) return { ok: false, error: (r.stderr || r.error?.message) ?? `exit ${r.status}` };
      return { ok: true, events: (JSON.parse(r.stdout) as { events: ReadEvent[] }).events };
    },
    dispose: () => rmSync(generated, { recursive: true, force: true }),
  };
}

/** The event files in `dir`. */
export function eventFiles(dir: string): string[] {
  return readdirSync(dir)
    .filter((f) => f.startsWith('events.out.tfevents.'))
    .map((f) => join(dir, f));
}
