// TensorBoard event files (shared/report/tensorboard.ts) read by a reader that is not ours: TensorBoard's
// own event.proto and summary.proto compiled by protoc and parsed by python3-protobuf, the TFRecord
// framing and both masked CRC-32Cs checked by an independent Python implementation
// (test/fixtures/tensorboard/read_events.py). A corrupted CRC, a corrupted length or a cut file is rejected.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import t from 'tap';
import {
  crc32c,
  encodeEvent,
  EventFileWriter,
  FILE_VERSION,
  maskedCrc32c,
  tfRecord,
} from '../../shared/report/tensorboard.js';
import { eventFiles, eventReader, readerUnavailable, type ReadEvent } from '../helpers/tensorboard-reader.js';

t.test('CRC-32C: the published check values', async (t) => {
  // RFC 3720 (iSCSI), appendix B.4, and the CRC catalogue's check value for "123456789"
  t.equal(crc32c(Buffer.from('123456789', 'ascii')), 0xe3069283);
  t.equal(crc32c(new Uint8Array(32)), 0x8a9136aa, '32 bytes of zeros');
  t.equal(crc32c(new Uint8Array(32).fill(0xff)), 0x62a8ab43, '32 bytes of 0xff');
  t.equal(crc32c(Uint8Array.from({ length: 32 }, (_, i) => i)), 0x46dd794e, 'bytes 0..31');
  t.equal(crc32c(new Uint8Array(0)), 0);
  t.equal(maskedCrc32c(new Uint8Array(0)), 0xa282ead8, 'masking 0 is the constant alone');
});

t.test('a record frames its data: length, masked CRC of the length, data, masked CRC of the data', async (t) => {
  const data = Buffer.from('hello');
  const r = tfRecord(data);
  t.equal(r.length, 8 + 4 + 5 + 4);
  t.equal(r.readBigUInt64LE(0), 5n);
  t.same(r.subarray(12, 17), data);
  t.equal(r.readUInt32LE(17), maskedCrc32c(data));
});

const unavailable = readerUnavailable();

t.test(
  "TensorBoard's protos and an independent reader parse what the writer wrote",
  { skip: unavailable ?? false },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'wolfpack-tb-'));
    const reader = eventReader();
    t.teardown(() => {
      reader.dispose();
      rmSync(dir, { recursive: true, force: true });
    });
    let clock = 1_700_000_000_123.5;
    const writer = new EventFileWriter(join(dir, 'tb'), () => clock);
    t.match(
      basename(writer.path),
      new RegExp(
        `^events\\.out\\.tfevents\\.1700000000\\.${hostname().replace(/[.]/g, '\\.')}\\.${process.pid}\\.wolfpack$`,
      ),
    );
    const written = [
      {
        step: 1,
        scalars: [
          { tag: 'step/loss', value: 0.6931 },
          { tag: 'step/accuracy', value: 0.5 },
          { tag: 'step/workers', value: 2 },
        ],
      },
      {
        step: 2,
        scalars: [
          { tag: 'step/loss', value: 1e-30 },
          { tag: 'step/images_per_s', value: 123456.789 },
          { tag: 'step/allreduce_share', value: 0 },
        ],
      },
      {
        step: 300,
        scalars: [
          { tag: 'epoch/val_accuracy', value: -2.5 },
          { tag: 'épreuve/λ', value: 3 },
        ],
      },
      { step: 2 ** 40 + 7, scalars: [{ tag: 'x', value: Math.PI }] },
    ];
    const times: number[] = [clock / 1000];
    for (const w of written) {
      clock += 1500.25;
      times.push(clock / 1000);
      writer.scalars(w.step, w.scalars);
    }
    writer.scalars(9, []); // nothing to write: no record
    t.same(eventFiles(join(dir, 'tb')), [writer.path], 'one event file in the folder');
    const r = reader.read(writer.path);
    if (!r.ok) return t.fail(r.error);
    const expected: ReadEvent[] = [
      { wall_time: times[0]!, step: 0, what: 'file_version', file_version: FILE_VERSION },
      ...written.map((w, i) => ({
        wall_time: times[i + 1]!,
        step: w.step,
        what: 'summary',
        values: w.scalars.map((s) => ({ tag: s.tag, kind: 'simple_value', value: Math.fround(s.value) })),
      })),
    ];
    t.same(r.events, expected, 'every event, field for field (values as float32)');

    // A second writer in the same second does not reuse the first one's file.
    const second = new EventFileWriter(join(dir, 'tb'), () => clock);
    t.not(second.path, writer.path);
    t.equal(eventFiles(join(dir, 'tb')).length, 2);
  },
);

t.test('the reader rejects a corrupt or cut file', { skip: unavailable ?? false }, async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'wolfpack-tb-'));
  const reader = eventReader();
  t.teardown(() => {
    reader.dispose();
    rmSync(dir, { recursive: true, force: true });
  });
  const good = Buffer.concat([
    tfRecord(encodeEvent({ wallTime: 1, step: 0, fileVersion: FILE_VERSION })),
    tfRecord(encodeEvent({ wallTime: 2, step: 5, scalars: [{ tag: 'a', value: 1 }] })),
  ]);
  const first = 16 + encodeEvent({ wallTime: 1, step: 0, fileVersion: FILE_VERSION }).length; // offset of record 1
  const variant = (name: string, edit: (b: Buffer) => Buffer): string => {
    const path = join(dir, name);
    writeFileSync(path, edit(Buffer.from(good)));
    return path;
  };
  const ok = reader.read(variant('good', (b) => b));
  t.ok(ok.ok, 'the unedited file reads');
  const flip = (at: number) => (b: Buffer) => {
    b[at] = b[at]! ^ 0x01;
    return b;
  };
  const cases: [string, (b: Buffer) => Buffer, RegExp][] = [
    ['data-crc', flip(good.length - 1), /record 1: data CRC mismatch/],
    ['length-crc', flip(first + 8), /record 1: length CRC mismatch/],
    ['length', flip(first), /record 1: length CRC mismatch/],
    ['data', flip(first + 12 + 3), /record 1: data CRC mismatch/],
    ['cut', (b) => b.subarray(0, b.length - 2), /record 1: truncated data/],
  ];
  for (const [name, edit, want] of cases) {
    const r = reader.read(variant(name, edit));
    t.notOk(r.ok, `${name}: rejected`);
    if (!r.ok) t.match(r.error, want, `${name}: ${r.error.trim()}`);
  }
  // A field TensorBoard's Event does not declare (number 15, a varint), with valid CRCs: rejected too.
  const stray = Buffer.concat([encodeEvent({ wallTime: 3, step: 1 }), Buffer.from([15 << 3, 1])]);
  const r = reader.read(variant('stray', (b) => Buffer.concat([b, tfRecord(stray)])));
  t.notOk(r.ok, 'an undeclared field: rejected');
  if (!r.ok) t.match(r.error, /record 2: holds fields/);
  t.ok(readFileSync(join(dir, 'good')).equals(good));
});
