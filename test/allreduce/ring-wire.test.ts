// The ring all-reduce with 16-bit values on the wire (--wire bf16|fp16): every rank ends with the same bits,
// the error against the float64 sum stays within what rounding each of the N-1 reduce-scatter hops and the
// final value to the format allows, and the bytes on the wire halve. Checked against an exact float64 sum,
// over uneven lengths, odd chunk sizes, delayed and reordered deliveries, and with bfloat16 rounding checked
// against an independent nearest-even rounding in float64 (IEEE half is checked against numpy in
// wire-fp16.test.ts).
import t from 'tap';
import { ringAllReduce, ringBytesSent } from '../../shared/allreduce/ring.js';
import { toBfloat16, wireCodec, type WireFormat } from '../../shared/allreduce/wire.js';
import { createMemoryRing } from '../../shared/transport/memory-link.js';
import { xorshiftRng } from '../helpers/numerics.js';

function inputs(n: number, len: number, seed: number, scale: number): Float32Array[] {
  const r = xorshiftRng(seed);
  return Array.from({ length: n }, () => Float32Array.from({ length: len }, () => (r() * 2 - 1) * scale));
}

for (const wire of ['bf16', 'fp16'] as const) {
  // bits of mantissa: one rounding costs at most 2^-(bits+1) relative; N-1 hops plus the final one
  const bits = wire === 'bf16' ? 8 : 11;
  t.test(`--wire ${wire}: identical on every rank, within rounding of the exact sum, half the bytes`, async (t) => {
    for (const [n, len, chunkElems, seed] of [
      [2, 1001, 64, 1],
      [3, 4099, 257, 2],
      [4, 20_000, 1 << 20, 3],
      [5, 777, 13, 4],
    ] as const) {
      const orig = inputs(n, len, seed, 0.5);
      const bufs = orig.map((a) => Float32Array.from(a));
      const links = createMemoryRing(n, { delays: { seed }, reorder: seed % 2 === 0 });
      const stats = await Promise.all(
        bufs.map((b, r) => ringAllReduce(b, r, n, links[r]!, { chunkElems, wire: wire as WireFormat })),
      );
      const same = bufs.every((b) => Buffer.from(b.buffer).equals(Buffer.from(bufs[0]!.buffer)));
      t.ok(same, `N=${n} L=${len} chunk ${chunkElems}: every rank holds the same bits`);
      // error bound: each hop rounds a partial sum of at most n*0.5 in magnitude
      const bound = n * (n * 0.5) * 2 ** -bits;
      let worst = 0;
      for (let i = 0; i < len; i++) {
        let exact = 0;
        for (const a of orig) exact += a[i]!;
        worst = Math.max(worst, Math.abs(bufs[0]![i]! - exact));
      }
      t.ok(worst <= bound, `N=${n}: worst abs error ${worst.toExponential(2)} <= ${bound.toExponential(2)}`);
      t.ok(worst > 0, 'and it did round (the check can fail)');
      for (const [r, s] of stats.entries()) {
        const fp32 = ringBytesSent(len, n, r);
        // an odd count is padded to whole float32 words: at most 2 bytes a message
        t.ok(
          s.bytesSent >= fp32 / 2 && s.bytesSent <= fp32 / 2 + 2 * s.messagesSent,
          `rank ${r}: ${s.bytesSent} bytes sent, half of fp32's ${fp32} (plus at most 2 a message)`,
        );
      }
    }
  });
}

t.test('fp32 stays the default and exact to float32 summation', async (t) => {
  const orig = inputs(3, 999, 9, 1);
  const a = orig.map((x) => Float32Array.from(x));
  const b = orig.map((x) => Float32Array.from(x));
  const la = createMemoryRing(3);
  const lb = createMemoryRing(3);
  await Promise.all(a.map((x, r) => ringAllReduce(x, r, 3, la[r]!, { chunkElems: 100 })));
  await Promise.all(b.map((x, r) => ringAllReduce(x, r, 3, lb[r]!, { chunkElems: 100, wire: 'fp32' })));
  t.ok(Buffer.from(a[0]!.buffer).equals(Buffer.from(b[0]!.buffer)), "wire 'fp32' is the default path, bit for bit");
});

t.test(
  'codec: pack then copy is rounding; odd counts are padded; bfloat16 rounds to the nearest, ties to even',
  async (t) => {
    const c = wireCodec('bf16');
    const x = Float32Array.from([1, 1 + 2 ** -9, 1 + 3 * 2 ** -9, -2.5, 1e30, 0]);
    const packed = c.pack(x, 0, 5);
    t.equal(packed.length, 3, '5 values take 3 float32 words');
    const y = new Float32Array(5);
    c.copyInto(y, 0, packed, 5);
    const z = Float32Array.from(x);
    c.round(z, 0, 5);
    t.same(Array.from(y), Array.from(z.subarray(0, 5)), 'what a rank receives is what the owner rounds to');
    t.same(Array.from(y.subarray(0, 4)), [1, 1, 1 + 2 ** -7, -2.5], 'ties to even: 1+2^-9 -> 1, 1+3*2^-9 -> 1+2^-7');

    // against an independent rounding: the two bfloat16 neighbours of x (its top 16 bits, and the next one
    // away from zero), the nearer in exact float64 arithmetic, ties to the even word
    const r = xorshiftRng(7);
    const xs = Float32Array.from({ length: 50_000 }, (_, i) => (r() - 0.5) * 10 ** ((i % 60) - 30));
    const got = new Uint16Array(xs.length);
    toBfloat16(xs, got);
    const u = new Uint32Array(xs.buffer);
    const word = new Uint32Array(1);
    const asFloat = (h: number) => {
      word[0] = h << 16;
      return new Float32Array(word.buffer)[0]!;
    };
    let diff = 0;
    for (let i = 0; i < xs.length; i++) {
      const lo = u[i]! >>> 16;
      const hi = lo + 1;
      const dLo = Math.abs(xs[i]! - asFloat(lo));
      const dHi = Math.abs(asFloat(hi) - xs[i]!);
      const want = dLo < dHi ? lo : dHi < dLo ? hi : lo & 1 ? hi : lo;
      if (got[i] !== want) diff++;
    }
    t.equal(diff, 0, `all ${xs.length} bfloat16 words are the nearest, ties to even`);
  },
);
