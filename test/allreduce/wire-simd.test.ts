// The 16-bit wire's WebAssembly SIMD conversions (wire-simd.wat, used on ring buffers) give the same bits as
// wire.ts's JS code, which is itself checked against numpy and an independent rounding: packing, adding,
// copying and rounding in place, over every class of float32 (zeros, subnormals of both formats, the edges
// of half's range, ties, infinities, NaN), at offsets and lengths that are not multiples of eight. A ring
// all-reduce on ring buffers then gives the same bits, message bytes and sums as on plain Float32Arrays.
// And the embedded module is the assembly of the .wat source.
import t from 'tap';
import { assemble, WASM_SOURCES } from '../../scripts/build-wasm.js';
import { createRingBuffer, isRingBuffer, ringAllReduce } from '../../shared/allreduce/ring.js';
import { simdBufferOf } from '../../shared/allreduce/simd-add.js';
import { WIRE_SIMD_WASM } from '../../shared/allreduce/wire-simd-module.js';
import { simdWireFor, type SimdWire } from '../../shared/allreduce/wire-simd.js';
import { wireCodec } from '../../shared/allreduce/wire.js';
import { createMemoryRing } from '../../shared/transport/memory-link.js';
import { xorshiftRng } from '../helpers/numerics.js';

t.test('the embedded module is the assembly of wire-simd.wat (npm run wasm)', async (t) => {
  const source = WASM_SOURCES.find((s) => s.name === 'WIRE_SIMD_WASM')!;
  const bytes = await assemble(source.wat);
  t.ok(Buffer.from(bytes).equals(WIRE_SIMD_WASM), `${source.module} holds ${source.wat} assembled`);
});

/** float32 bit patterns of every kind the conversions treat apart, then random ones over the whole range. */
function testBits(n: number, seed: number): Uint32Array {
  const r = xorshiftRng(seed);
  const special = [
    0x00000000,
    0x80000000,
    0x00000001,
    0x807fffff,
    0x7f800000,
    0xff800000,
    0x7fc00000,
    0xffc00001,
    0x7f800001,
    0x7f7fffff,
    0xff7fffff,
    0x3f800000,
    0x3f808000,
    0x3f818000,
    0x3f80ffff, // bf16 ties and near-ties
    0x477fe000,
    0x477fefff,
    0x477ff000,
    0x477fffff,
    0x47800000,
    0xc77ff000, // half's largest, its ties, overflow
    0x38800000,
    0x387fffff,
    0x38000000,
    0x33800000,
    0x33000000,
    0x33000001,
    0x32ffffff,
    0x33c00000, // half subnormals
    0x3a801000,
    0x3a803000,
    0x3a802000,
    0x3a806000, // subnormal ties to even
  ];
  const bits = new Uint32Array(n);
  for (let i = 0; i < n; i++) {
    if (i < special.length) bits[i] = special[i]!;
    else if (i % 3 === 0)
      bits[i] = Math.floor(r() * 2 ** 32) >>> 0; // anywhere, NaNs included
    else {
      // exponents around half's and bfloat16's interesting range, random mantissa and sign
      const exp = 96 + Math.floor(r() * 60);
      bits[i] = ((r() < 0.5 ? 0x80000000 : 0) | (exp << 23) | Math.floor(r() * 2 ** 23)) >>> 0;
    }
  }
  return bits;
}

const same = (a: Float32Array, b: Float32Array): boolean =>
  Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));

for (const format of ['bf16', 'fp16'] as const) {
  t.test(`${format}: the SIMD conversions give wire.ts's bits`, async (t) => {
    const n = 50_021;
    const buf = createRingBuffer(n, { maxChunkElems: n });
    t.ok(isRingBuffer(buf), 'a ring buffer (WebAssembly SIMD is available here)');
    const wire = simdWireFor(format, buf, simdBufferOf(buf), n) as SimdWire;
    t.ok(wire, 'the wire module compiles');
    const js = wireCodec(format);
    const input = new Float32Array(testBits(n, format === 'bf16' ? 7 : 8).buffer);
    for (const [off, len] of [
      [0, n],
      [1, n - 1],
      [3, n - 10],
      [5, 7],
      [2, 8],
      [0, 1],
    ] as const) {
      buf.set(input);
      const packed = wire.pack(buf, off, len);
      const expected = js.pack(input, off, len);
      t.ok(same(packed, expected), `pack [${off}, +${len}): same words, pad included`);

      // unpack from a receive slot: add, then copy
      wire.slot(1, len).set(packed);
      const addend = Float32Array.from({ length: n }, (_, i) => (i % 5) - 2.5);
      buf.set(addend);
      const sum = Float32Array.from(addend);
      wire.unpack(buf, off, 1, len, true);
      js.addInto(sum, off, packed, len);
      t.ok(same(buf, sum), `add [${off}, +${len})`);
      buf.set(addend);
      const copy = Float32Array.from(addend);
      wire.unpack(buf, off, 1, len, false);
      js.copyInto(copy, off, packed, len);
      t.ok(same(buf, copy), `copy [${off}, +${len})`);

      buf.set(input);
      const rounded = Float32Array.from(input);
      wire.round(buf, off, len);
      js.round(rounded, off, len);
      t.ok(same(buf, rounded), `round in place [${off}, +${len})`);
    }
  });

  t.test(`${format}: a ring all-reduce on ring buffers equals one on plain arrays, bit for bit`, async (t) => {
    for (const [size, len, chunkElems, seed] of [
      [2, 1001, 64, 1],
      [3, 40_099, 4097, 2],
      [4, 20_003, 1 << 20, 3],
      [5, 777, 13, 4],
    ] as const) {
      const r = xorshiftRng(seed);
      const inputs = Array.from({ length: size }, () => Float32Array.from({ length: len }, () => (r() * 2 - 1) * 0.5));
      const runs: { bufs: Float32Array[]; bytes: number[] }[] = [];
      for (const ring of [false, true]) {
        const bufs = inputs.map((a) => {
          const b = ring ? createRingBuffer(len, { maxChunkElems: chunkElems }) : new Float32Array(len);
          b.set(a);
          return b;
        });
        const links = createMemoryRing(size, { delays: { seed }, reorder: seed % 2 === 0 });
        const stats = await Promise.all(
          bufs.map((b, rank) => ringAllReduce(b, rank, size, links[rank]!, { chunkElems, wire: format })),
        );
        runs.push({ bufs, bytes: stats.map((s) => s.bytesSent) });
      }
      const [plain, ring] = runs as [(typeof runs)[0], (typeof runs)[0]];
      t.ok(
        ring.bufs.every((b, rank) => same(b, plain.bufs[rank]!)),
        `N=${size} L=${len} chunk ${chunkElems}: every rank's result has the same bits both ways`,
      );
      t.ok(
        ring.bufs.every((b) => same(b, ring.bufs[0]!)),
        'and every rank holds the same bits',
      );
      t.same(ring.bytes, plain.bytes, 'the same bytes sent');
    }
  });
}
