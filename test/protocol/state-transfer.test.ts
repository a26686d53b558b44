// A state sent in parts arrives bit for bit, whole or by ranges, in parts of any size; a part that does not
// belong (another buffer length, outside the range, more than is left) is refused naming who sent it.
import t from 'tap';
import {
  receiveState,
  sendState,
  wholeRanges,
  type StateBuffers,
  type StatePart,
  type StateRanges,
} from '../../shared/protocol/state-transfer.js';

function filled(n: number, seed: number): Float32Array {
  const a = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    a[i] = (s / 2 ** 32 - 0.5) * 1e3;
  }
  return a;
}

async function roundTrip(
  src: StateBuffers,
  ranges: StateRanges,
  chunk: number,
): Promise<{ dst: StateBuffers; parts: StatePart[] }> {
  const wire: { part: StatePart; payload: Uint8Array }[] = [];
  await sendState(
    src,
    ranges,
    async (part, payload) => {
      wire.push({ part, payload: Uint8Array.from(payload) });
    },
    chunk,
  );
  const dst = {
    params: new Float32Array(src.params.length),
    stats: new Float32Array(src.stats.length),
    accum: new Float32Array(src.accum.length),
  };
  let i = 0;
  const next = async () => {
    const w = wire[i++];
    if (w === undefined) throw new Error(`receiveState asked for part ${i} of ${wire.length}`);
    return w;
  };
  await receiveState(dst, ranges, next, 'the test');
  t.equal(i, wire.length, 'every part sent is taken');
  return { dst, parts: wire.map((w) => w.part) };
}

const src = (): StateBuffers => ({ params: filled(1001, 1), stats: filled(37, 2), accum: filled(1001, 3) });

t.test('whole buffers, parts of 64 floats: bit for bit', async (t) => {
  const s = src();
  const { dst, parts } = await roundTrip(s, wholeRanges(s), 64);
  for (const k of ['params', 'stats', 'accum'] as const)
    t.same(new Uint32Array(dst[k].buffer), new Uint32Array(s[k].buffer), `${k} bit for bit`);
  t.equal(parts.length, 16 + 1 + 16, 'ceil(1001/64) + 1 + ceil(1001/64) parts');
  t.same(parts.slice(0, 2), [
    { kind: 'params', offset: 0, total: 1001 },
    { kind: 'params', offset: 64, total: 1001 },
  ]);
});

t.test('ranges only: the rest of the destination is untouched', async (t) => {
  const s = src();
  const ranges: StateRanges = {
    params: { begin: 900, end: 1001 },
    stats: { begin: 0, end: 0 },
    accum: { begin: 950, end: 1001 },
  };
  const { dst, parts } = await roundTrip(s, ranges, 40);
  t.same(Array.from(dst.params.subarray(900)), Array.from(s.params.subarray(900)));
  t.ok(
    dst.params.subarray(0, 900).every((v) => v === 0),
    'outside the range: not written',
  );
  t.ok(
    dst.stats.every((v) => v === 0),
    'an empty range sends nothing',
  );
  t.same(
    parts.map((p) => p.kind + p.offset),
    ['params900', 'params940', 'params980', 'accum950', 'accum990'],
  );
});

t.test('parts that do not belong are E_PROTOCOL naming the sender', async (t) => {
  const dst = { params: new Float32Array(10), stats: new Float32Array(2), accum: new Float32Array(10) };
  const bytes = (n: number) => new Uint8Array(new Float32Array(n).buffer);
  const cases: [StatePart, number, RegExp][] = [
    [
      { kind: 'params', offset: 0, total: 11 },
      4,
      /state part params from rank 3: 4 floats at 0 \(of 11\) are outside the expected \[0, 10\) of 10/,
    ],
    [{ kind: 'stats', offset: 1, total: 2 }, 2, /stats from rank 3: 2 floats at 1 \(of 2\)/],
    [{ kind: 'accum', offset: -1, total: 10 }, 1, /accum from rank 3: 1 floats at -1/],
  ];
  for (const [part, n, re] of cases) {
    await t.rejects(
      receiveState(dst, wholeRanges(dst), async () => ({ part, payload: bytes(n) }), 'rank 3'),
      { code: 'E_PROTOCOL', message: re },
    );
  }
  // a part that overlaps one already taken: more than is left of the range
  let k = 0;
  const overlap = [
    { part: { kind: 'stats' as const, offset: 0, total: 2 }, payload: bytes(1) },
    { part: { kind: 'stats' as const, offset: 0, total: 2 }, payload: bytes(2) },
  ];
  const only: StateRanges = { params: { begin: 0, end: 0 }, stats: { begin: 0, end: 2 }, accum: { begin: 0, end: 0 } };
  await t.rejects(
    receiveState(dst, only, async () => overlap[k++]!, 'rank 3'),
    { code: 'E_PROTOCOL', message: /2 floats at 0 \(of 2\) .* more than the 1 still expected/ },
  );
});
