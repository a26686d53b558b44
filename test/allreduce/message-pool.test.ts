// The send pool of the 16-bit wire (shared/allreduce/message-pool.ts): buffers come back for reuse by size class,
// the pool keeps no more than its byte bound, and a message built in a reused buffer has the bits of one built
// in a fresh buffer (the pad word of an odd-length message is zeroed, not left from the last use).
import t from 'tap';
import { MessagePool } from '../../shared/allreduce/message-pool.js';
import { createRingBuffer, ringAllReduce } from '../../shared/allreduce/ring.js';
import { simdBufferOf } from '../../shared/allreduce/simd-add.js';
import { simdWireFor, type SimdWire } from '../../shared/allreduce/wire-simd.js';
import { wireCodec } from '../../shared/allreduce/wire.js';
import { createMemoryRing } from '../../shared/transport/memory-link.js';
import { xorshiftRng } from '../helpers/numerics.js';

const bytesOf = (a: Float32Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

t.test('a given-back buffer is handed out again for a message of its size class', async (t) => {
  const pool = new MessagePool();
  const a = pool.take(1000);
  t.equal(a.length, 1000, 'the length asked for');
  t.equal(a.buffer.byteLength, 4096, 'in a buffer of the next power of two (at least 4 KiB)');
  pool.give(a);
  t.equal(pool.heldBytes, 4096, 'held once given back');
  const b = pool.take(1024);
  t.equal(b.buffer, a.buffer, 'the same buffer for another message of the class');
  t.equal(pool.heldBytes, 0, 'and no longer held');
  const c = pool.take(1025);
  t.not(c.buffer, a.buffer, 'a larger message gets a larger buffer');
  t.equal(c.buffer.byteLength, 8192);
});

t.test('the pool keeps at most its byte bound, and ignores arrays it did not make', async (t) => {
  const pool = new MessagePool(3 * 8192);
  const msgs = Array.from({ length: 5 }, () => pool.take(2048));
  for (const m of msgs) pool.give(m);
  t.equal(pool.heldBytes, 3 * 8192, 'three of five 8 KiB buffers kept');
  pool.give(new Float32Array(3000)); // 12,000 bytes: not a size class
  t.equal(pool.heldBytes, 3 * 8192, 'a foreign array is left to the garbage collector');
});

for (const format of ['bf16', 'fp16'] as const) {
  t.test(`${format}: pack into a reused buffer gives the JS codec's words, pad included`, async (t) => {
    const n = 4099;
    const buf = createRingBuffer(n, { maxChunkElems: n });
    const wire = simdWireFor(format, buf, simdBufferOf(buf), n) as SimdWire;
    const js = wireCodec(format);
    const r = xorshiftRng(11);
    const input = Float32Array.from({ length: n }, () => (r() * 2 - 1) * 3);
    buf.set(input);
    for (const len of [n, n - 2, 9, 1]) {
      const dirty = wire.pack(buf, 0, len);
      new Uint8Array(dirty.buffer).fill(0xff); // what a sent message leaves behind
      wire.release(dirty);
      const packed = wire.pack(buf, 0, len);
      t.equal(packed.buffer, dirty.buffer, `len ${len}: built in the given-back buffer`);
      t.ok(bytesOf(packed).equals(bytesOf(js.pack(input, 0, len))), `len ${len}: the same bytes as a fresh message`);
      wire.release(packed);
    }
  });
}

t.test('the chunk size changes the messages, not the sums: the same bits at 1 Mi, 4097 and 64 elements', async (t) => {
  const size = 4;
  const len = 30_011;
  const r = xorshiftRng(5);
  const inputs = Array.from({ length: size }, () => Float32Array.from({ length: len }, () => (r() * 2 - 1) * 0.7));
  for (const wire of ['fp32', 'bf16'] as const) {
    const results: Buffer[] = [];
    for (const chunkElems of [1 << 20, 4097, 64]) {
      const bufs = inputs.map((a) => {
        const b = createRingBuffer(len);
        b.set(a);
        return b;
      });
      const links = createMemoryRing(size, { delays: { seed: chunkElems }, reorder: true });
      await Promise.all(bufs.map((b, rank) => ringAllReduce(b, rank, size, links[rank]!, { chunkElems, wire })));
      t.ok(
        bufs.every((b) => bytesOf(b).equals(bytesOf(bufs[0]!))),
        `${wire}, chunk ${chunkElems}: ranks agree`,
      );
      results.push(bytesOf(bufs[0]!));
    }
    t.ok(
      results.every((b) => b.equals(results[0]!)),
      `${wire}: every chunk size gives the same bits`,
    );
  }
});
