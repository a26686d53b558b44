// Shared by the weights tests: where the committed fixtures are, what they must contain (expected.json,
// written by test/fixtures/weights/gen_weights_fixtures.py), and a tiny hand-written protobuf encoder so
// tests can build broken checkpoints without going through the code under test.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { isWolfpackError } from '../../shared/errors.js';
import { toFloat32, type HostTensor, type TensorMap } from '../../shared/weights/host-tensor.js';

export const fixtureDir = fileURLToPath(new URL('../fixtures/weights/', import.meta.url));
export const fixturePath = (name: string): string => fixtureDir + name;

export interface ExpectedTensor {
  dtype: string;
  shape: number[];
  hex: string;
  values: (number | string)[];
  f32_bits: number[];
}

export interface ExpectedSection {
  order: string[];
  tensors: Record<string, ExpectedTensor>;
  metadata?: Record<string, string>;
}

export interface Expected {
  ckpt: ExpectedSection;
  safetensors: ExpectedSection;
  f16_cases: [number, number][];
  f16_table_sha256: string;
  bf16_cases: [number, number][];
}

export const expected: Expected = JSON.parse(readFileSync(fixturePath('expected.json'), 'utf8'));

export const hex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');

/** The float32 bit patterns of an array (exact comparison, NaN payloads and -0 included). */
export const bitsOf = (f: Float32Array): number[] => Array.from(new Uint32Array(f.buffer, f.byteOffset, f.length));

/** A tensor whose bytes sit at an odd offset of a larger buffer, as a slice of a file would. */
export function atOddOffset(t: HostTensor): HostTensor {
  const backing = new Uint8Array(t.bytes.byteLength + 3);
  backing.set(t.bytes, 1);
  return { ...t, bytes: backing.subarray(1, 1 + t.bytes.byteLength) };
}

// ---- protobuf by hand (varint and length-delimited fields only)
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function field(num: number, payload: Uint8Array): Uint8Array {
  return Uint8Array.from([...varint((num << 3) | 2), ...varint(payload.byteLength), ...payload]);
}

/** One `Value` of a Checkpoint, encoded as MindSpore does (proto2, unpacked dims). */
export function pbValue(tag: string, dims: number[], tensorType: string, content: Uint8Array): Uint8Array {
  const dimBytes = dims.flatMap((d) => [0x08, ...varint(d)]);
  const tensor = Uint8Array.from([...dimBytes, ...field(2, Buffer.from(tensorType)), ...field(3, content)]);
  return field(1, Uint8Array.from([...field(1, Buffer.from(tag)), ...field(2, tensor)]));
}

/** A safetensors file from an explicit header (object or raw text) and data, with no validation. */
export function rawSafetensors(header: object | string, data: Uint8Array = new Uint8Array(0)): Uint8Array {
  const text = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const prefix = Buffer.alloc(8);
  prefix.writeBigUInt64LE(BigInt(text.byteLength));
  return Buffer.concat([prefix, text, data]);
}

// ---- error assertions
/** What `fn` throws (undefined when it returns). */
export function thrownBy(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** What `p` rejects with (undefined when it resolves). */
export async function rejectionOf(p: Promise<unknown>): Promise<unknown> {
  try {
    await p;
  } catch (e) {
    return e;
  }
  return undefined;
}

/** The assertions these helpers use (a tap Test satisfies it). */
interface Asserts {
  ok(v: unknown, msg: string): unknown;
  same(a: unknown, b: unknown, msg: string): unknown;
  equal(a: unknown, b: unknown, msg: string): unknown;
  match(a: unknown, b: unknown, msg: string): unknown;
}

/** `e` is a WolfpackError with `code` whose message contains every string and matches every pattern. */
export function assertWolfpackError(t: Asserts, e: unknown, code: string, ...mentions: (string | RegExp)[]): void {
  t.ok(isWolfpackError(e), `a WolfpackError was thrown (got ${String(e)})`);
  if (!isWolfpackError(e)) return;
  t.equal(e.code, code, `code ${code} (message: ${e.message})`);
  for (const m of mentions) {
    if (typeof m === 'string') t.ok(e.message.includes(m), `message mentions ${JSON.stringify(m)}: ${e.message}`);
    else t.match(e.message, m, `message matches ${m}`);
  }
}

/** Same names in the same order, and per tensor the same dtype, shape and bytes. */
export function assertSameTensors(t: Asserts, got: TensorMap, want: TensorMap): void {
  t.same([...got.keys()], [...want.keys()], 'same names in the same order');
  for (const [name, w] of want) {
    const g = got.get(name);
    t.ok(g, `${name} present`);
    if (!g) continue;
    t.equal(g.dtype, w.dtype, `${name} dtype`);
    t.same(g.shape, w.shape, `${name} shape`);
    t.equal(hex(g.bytes), hex(w.bytes), `${name} bytes`);
  }
}

/**
 * Per tensor of the expected.json section, in its order: the read tensor's dtype, shape, exact bytes and float32
 * values.
 */
export function assertMatchesExpected(t: Asserts, got: TensorMap, want: ExpectedSection): void {
  for (const name of want.order) {
    const g = got.get(name)!;
    const exp = want.tensors[name];
    t.ok(exp, `${name} in the expected tensors`);
    if (!exp) continue;
    t.equal(g.dtype, exp.dtype, `${name} dtype`);
    t.same(g.shape, exp.shape, `${name} shape`);
    t.equal(hex(g.bytes), exp.hex, `${name} bytes`);
    t.same(bitsOf(toFloat32(g)), exp.f32_bits, `${name} as float32`);
  }
}
