// Fuzzing the decoder at the edge: random bytes, valid frames of every message type mutated in their
// prefix, msgpack header and payload, and well-formed msgpack headers with random field values. decodeFrame
// followed by validateMessage (the per-message checks codec.ts runs) must either return a message or
// throw WolfpackError E_PROTOCOL: never another exception type, and never take long. Seeded and bounded
// (count and time), so a failure reproduces with the printed seed and iteration.
import { Packr } from 'msgpackr';
import t from 'tap';
import { isWolfpackError } from '../../shared/errors.js';
import { decodeFrame, encodeFrame, MAX_HEADER_BYTES, PREFIX_BYTES } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION, type Message } from '../../shared/protocol/messages.js';
import { validateMessage } from '../../shared/protocol/validate.js';

const SEED = Number(process.env.WOLFPACK_FUZZ_SEED ?? 20240611);
const ITERATIONS = Number(process.env.WOLFPACK_FUZZ_ITERATIONS ?? 200_000);
const BUDGET_MS = 15_000;
/** Slowest single decode allowed (generous for loaded CI machines; a decoder that loops would blow it). */
const SLOW_MS = 2000;

/** mulberry32: small, seeded, good enough to drive a fuzzer. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let x = a;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

const hash = 'a'.repeat(32);
const hex64 = 'b'.repeat(64);
const config = {
  jobId: '0123456789abcdef',
  flavour: 'mindspore',
  width: 4,
  numClasses: 2,
  classes: ['dogs', 'wolves'],
  imageSize: 32,
  freeze: 'none',
  bn: 'train',
  lr: 0.01,
  momentum: 0.9,
  seed: 0,
  globalBatch: 6,
  chunkElems: 262144,
} as const;
const SAMPLES: { msg: Message; payload?: Uint8Array }[] = [
  {
    msg: {
      type: 'hello',
      host: 'vm',
      ringHost: '127.0.0.1',
      ringPort: 4000,
      backend: 'wasm',
      pid: 42,
      memberId: 'e'.repeat(32),
    },
  },
  {
    msg: {
      type: 'hello',
      host: 'vm',
      ringHost: '127.0.0.1',
      ringPort: 4000,
      backend: 'wasm',
      pid: 42,
      memberId: 'e'.repeat(32),
      ringCert: '0f'.repeat(32),
    },
  },
  { msg: { type: 'beat', memberId: 'e'.repeat(32) } },
  { msg: { type: 'ready', rank: 1, generation: 0 } },
  {
    msg: {
      type: 'stepDone',
      rank: 0,
      generation: 1,
      step: 3,
      loss: 0.5,
      correct: 2,
      samples: 3,
      skipped: false,
      nonFinite: false,
      timings: { data: 1, compute: 2, allreduce: 3, update: 4 },
    },
  },
  { msg: { type: 'evalResult', rank: 0, generation: 1, epoch: 0, correct: 1, total: 4, checksum: 'c'.repeat(32) } },
  { msg: { type: 'aborted', rank: 1, generation: 2, lastStep: -1 } },
  { msg: { type: 'statePart', rank: 0, kind: 'params', offset: 0, total: 4 }, payload: new Uint8Array(16) },
  { msg: { type: 'failure', rank: 0, message: 'boom' } },
  { msg: { type: 'welcome', config: { ...config, classes: [...config.classes] } } },
  {
    msg: {
      type: 'ring',
      generation: 1,
      rank: 0,
      world: 2,
      leftUrl: 'ws://127.0.0.1:4001',
      rightRank: 1,
      source: 'peer',
      lastStep: 5,
    },
  },
  {
    msg: {
      type: 'ring',
      generation: 1,
      rank: 0,
      world: 2,
      leftUrl: 'wss://127.0.0.1:4001',
      rightRank: 1,
      source: 'peer',
      lastStep: 5,
      leftCert: 'a'.repeat(64),
    },
  },
  { msg: { type: 'abort', generation: 2, reason: 'worker lost' } },
  { msg: { type: 'weightsPart', kind: 'stats', offset: 2, total: 6 }, payload: new Uint8Array(16) },
  {
    msg: {
      type: 'blobs',
      items: [
        { h: hash, n: 3 },
        { h: 'd'.repeat(32), n: 5 },
      ],
    },
    payload: new Uint8Array(8),
  },
  {
    msg: {
      type: 'step',
      generation: 0,
      epoch: 0,
      step: 1,
      samples: [
        { h: hash, l: 1, i: 7 },
        { h: hash, l: 0, i: 8 },
      ],
    },
  },
  { msg: { type: 'eval', generation: 0, epoch: 0, samples: [{ h: hash, l: 1, i: 0 }] } },
  { msg: { type: 'stateRequest', epoch: 2 } },
  { msg: { type: 'shutdown', reason: 'done' } },
  { msg: { type: 'authChallenge', scheme: 'hmac-sha256', nonce: hex64 } },
  { msg: { type: 'authProof', nonce: hex64, proof: hex64 } },
  { msg: { type: 'authOk', proof: hex64 } },
];

const packr = new Packr({ useRecords: false, mapsAsObjects: true, int64AsType: 'number' });

function randomValue(r: () => number, depth = 0): unknown {
  const k = Math.floor(r() * (depth > 3 ? 9 : 12));
  switch (k) {
    case 0:
      return null;
    case 1:
      return r() < 0.5;
    case 2:
      return Math.floor(r() * 2 ** 32) - 2 ** 31;
    case 3:
      return [NaN, Infinity, -Infinity, -0, 1e308, 2 ** 53, -1, 0.5][Math.floor(r() * 8)];
    case 4:
      return 'x'.repeat(Math.floor(r() * 70));
    case 5:
      return ['', 'ws://h:1', '__proto__', 'constructor', 'a'.repeat(32), 'b'.repeat(64), '\u0000', 'é'][
        Math.floor(r() * 8)
      ];
    case 6:
      return new Uint8Array(Math.floor(r() * 16));
    case 7:
      return Math.floor(r() * 100);
    case 8:
      return undefined;
    case 9:
      return Array.from({ length: Math.floor(r() * 4) }, () => randomValue(r, depth + 1));
    case 10: {
      const o: Record<string, unknown> = {};
      for (let i = Math.floor(r() * 4); i > 0; i--)
        o[['h', 'l', 'i', 'n', 'data', 'jobId', 'classes', 'x'][Math.floor(r() * 8)]!] = randomValue(r, depth + 1);
      return o;
    }
    default:
      return { ...config, [Object.keys(config)[Math.floor(r() * 13)]!]: randomValue(r, depth + 1) };
  }
}

/** A frame built by hand around an arbitrary msgpack header (encodeFrame only takes Messages). */
function rawFrame(header: Uint8Array, payload: Uint8Array = new Uint8Array(0), version = PROTOCOL_VERSION): Buffer {
  const start = (PREFIX_BYTES + header.length + 7) & ~7;
  const out = Buffer.alloc(start + payload.length);
  out[0] = 0x57;
  out[1] = version;
  out.writeUInt32LE(header.length, 4);
  out.set(header, PREFIX_BYTES);
  out.set(payload, start);
  return out;
}

function mutate(r: () => number, src: Uint8Array): Uint8Array {
  let b: Uint8Array = Uint8Array.from(src);
  const n = 1 + Math.floor(r() * 4);
  for (let i = 0; i < n; i++) {
    const op = Math.floor(r() * 7);
    const at = Math.floor(r() * Math.max(1, b.length));
    if (op === 0 && b.length > 0)
      b[at] = b[at]! ^ (1 << Math.floor(r() * 8)); // bit flip
    else if (op === 1 && b.length > 0)
      b[at] = Math.floor(r() * 256); // byte
    else if (op === 2)
      b = b.subarray(0, at); // truncate
    else if (op === 3) {
      // insert bytes
      const ins = Uint8Array.from({ length: 1 + Math.floor(r() * 8) }, () => Math.floor(r() * 256));
      const c = new Uint8Array(b.length + ins.length);
      c.set(b.subarray(0, at));
      c.set(ins, at);
      c.set(b.subarray(at), at + ins.length);
      b = c;
    } else if (op === 4 && b.length >= 8) {
      // header length
      const v = [0, 1, b.length, b.length - 8, 0xffffffff, MAX_HEADER_BYTES + 1, Math.floor(r() * 2 ** 32)][
        Math.floor(r() * 7)
      ]!;
      new DataView(b.buffer, b.byteOffset, b.byteLength).setUint32(4, v >>> 0, true);
    } else if (op === 5 && b.length > 8) {
      // interesting msgpack markers in the header
      b[8 + Math.floor(r() * Math.min(b.length - 8, 64))] = [
        0xc1, 0xd4, 0xc7, 0xdd, 0xdf, 0xc9, 0xcb, 0xd3, 0xff, 0x80,
      ][Math.floor(r() * 10)]!;
    } else if (op === 6 && b.length > 1) b[1] = Math.floor(r() * 4); // version
  }
  return b;
}

/** The frame `i` of the seeded sequence. */
function frameAt(r: () => number): Uint8Array {
  const kind = r();
  if (kind < 0.1) return Uint8Array.from({ length: Math.floor(r() * 64) }, () => Math.floor(r() * 256));
  const base = SAMPLES[Math.floor(r() * SAMPLES.length)]!;
  if (kind < 0.55) return mutate(r, encodeFrame(base.msg, base.payload));
  // A well-formed header whose fields are replaced, removed or added with random values.
  const m: Record<string, unknown> = { ...(base.msg as unknown as Record<string, unknown>) };
  const keys = Object.keys(m);
  for (let i = 1 + Math.floor(r() * 3); i > 0; i--) {
    const key =
      r() < 0.85 ? keys[Math.floor(r() * keys.length)]! : ['extra', '__proto__', 'constructor'][Math.floor(r() * 3)]!;
    if (r() < 0.15) delete m[key];
    else m[key] = randomValue(r);
  }
  let header: Uint8Array;
  try {
    header = packr.pack(m);
  } catch {
    header = packr.pack({ type: 'ready', rank: -1 });
  }
  const payload = r() < 0.3 ? new Uint8Array(Math.floor(r() * 40)) : (base.payload ?? new Uint8Array(0));
  const f = rawFrame(header, payload);
  return kind < 0.8 ? f : mutate(r, f);
}

function check(frame: Uint8Array): { ok: boolean; err?: unknown } {
  try {
    const d = decodeFrame(frame, 1 << 20);
    validateMessage(d.msg, d.payload.length);
    return { ok: true };
  } catch (e) {
    return { ok: false, err: e };
  }
}

t.test('every sample frame decodes and validates', async (t) => {
  for (const s of SAMPLES) {
    const r = check(encodeFrame(s.msg, s.payload));
    t.ok(r.ok, `${s.msg.type}${r.ok ? '' : `: ${(r.err as Error).message}`}`);
  }
});

t.test(`seeded fuzz (seed ${SEED}, up to ${ITERATIONS} frames, ${BUDGET_MS} ms)`, async (t) => {
  const r = rng(SEED);
  const t0 = performance.now();
  let accepted = 0;
  let rejected = 0;
  let slowest = 0;
  const wrong: string[] = [];
  let i = 0;
  for (; i < ITERATIONS && performance.now() - t0 < BUDGET_MS; i++) {
    const frame = frameAt(r);
    const s = performance.now();
    const res = check(frame);
    slowest = Math.max(slowest, performance.now() - s);
    if (res.ok) accepted++;
    else if (isWolfpackError(res.err, 'E_PROTOCOL')) rejected++;
    else if (wrong.length < 5) {
      const e = res.err as Error;
      wrong.push(
        `iteration ${i}: ${e?.constructor?.name ?? typeof e} ${isWolfpackError(e) ? e.code : ''} ` +
          `${String(e?.message ?? e).slice(0, 200)} ` +
          `(frame ${Buffer.from(frame).subarray(0, 48).toString('hex')})`,
      );
    }
  }
  t.same(wrong, [], 'only WolfpackError E_PROTOCOL is ever thrown');
  t.ok(i >= Math.min(ITERATIONS, 5000), `${i} frames tried (${accepted} accepted, ${rejected} rejected)`);
  t.ok(rejected > i / 4, 'most mutated frames are rejected');
  t.ok(slowest < SLOW_MS, `slowest decode ${slowest.toFixed(1)} ms < ${SLOW_MS} ms`);
});

t.test('targeted per-message checks reject malformed shapes with E_PROTOCOL naming the field', async (t) => {
  const cases: [Record<string, unknown>, Uint8Array | undefined, RegExp][] = [
    [{ type: 'blobs', items: [{ h: 'NOT-A-HASH', n: 1 }] }, new Uint8Array(1), /items\[0\]\.h/],
    [{ type: 'blobs', items: [{ h: hash, n: 4 }] }, new Uint8Array(8), /announce 4 bytes, the payload has 8/],
    [{ type: 'blobs', items: ['x'] }, undefined, /items\[0\]/],
    [
      {
        type: 'step',
        generation: 0,
        epoch: 0,
        step: 0,
        samples: [
          { h: hash, l: 1, i: 0 },
          { h: hash, l: -1, i: 0 },
        ],
      },
      undefined,
      /samples\[1\]\.l/,
    ],
    [{ type: 'step', generation: 0, epoch: 0, step: 0, samples: [[hash, 1, 0]] }, undefined, /samples\[0\]/],
    [{ type: 'eval', generation: 0, epoch: 0, samples: [{ h: hash, l: 1 }] }, undefined, /samples\[0\]\.i/],
    [{ type: 'welcome', config: { ...config, lr: 'fast' } }, undefined, /config\.lr/],
    [{ type: 'welcome', config: { ...config, classes: ['a'] } }, undefined, /config\.classes/],
    [{ type: 'welcome', config: { ...config, flavour: 'keras' } }, undefined, /config\.flavour/],
    [
      {
        type: 'ring',
        generation: 0,
        rank: 2,
        world: 2,
        leftUrl: 'ws://h:1',
        rightRank: 1,
        source: 'peer',
        lastStep: -1,
      },
      undefined,
      /'rank'/,
    ],
    [
      {
        type: 'ring',
        generation: 0,
        rank: 0,
        world: 2,
        leftUrl: 'http://h/x',
        rightRank: 1,
        source: 'peer',
        lastStep: -1,
      },
      undefined,
      /leftUrl/,
    ],
    [
      { type: 'hello', host: 'vm', ringHost: 'a b/c', ringPort: 1, backend: 'wasm', pid: 1, memberId: 'e'.repeat(32) },
      undefined,
      /ringHost/,
    ],
    [
      { type: 'hello', host: 'vm', ringHost: 'h', ringPort: 70000, backend: 'wasm', pid: 1, memberId: 'e'.repeat(32) },
      undefined,
      /ringPort/,
    ],
    [
      {
        type: 'hello',
        host: 'vm',
        ringHost: 'h',
        ringPort: 1,
        backend: 'wasm',
        pid: 1,
        memberId: 'e'.repeat(32),
        ringCert: 'AB'.repeat(32),
      },
      undefined,
      /ringCert/,
    ],
    [
      {
        type: 'ring',
        generation: 0,
        rank: 0,
        world: 2,
        leftUrl: 'wss://h:1',
        rightRank: 1,
        source: 'peer',
        lastStep: -1,
      },
      undefined,
      /leftCert.*is missing/,
    ],
    [
      {
        type: 'ring',
        generation: 0,
        rank: 0,
        world: 2,
        leftUrl: 'ws://h:1',
        rightRank: 1,
        source: 'peer',
        lastStep: -1,
        leftCert: 'a'.repeat(64),
      },
      undefined,
      /leftCert.*not wss/,
    ],
    [
      {
        type: 'ring',
        generation: 0,
        rank: 0,
        world: 2,
        leftUrl: 'wss://h:1',
        rightRank: 1,
        source: 'peer',
        lastStep: -1,
        leftCert: 'a'.repeat(63),
      },
      undefined,
      /leftCert/,
    ],
    [
      {
        type: 'stepDone',
        rank: 0,
        generation: 0,
        step: 0,
        loss: 1,
        correct: 5,
        samples: 3,
        skipped: false,
        nonFinite: false,
        timings: { data: 0, compute: 0, allreduce: 0, update: 0 },
      },
      undefined,
      /correct/,
    ],
    [
      {
        type: 'stepDone',
        rank: 0,
        generation: 0,
        step: 0,
        loss: 1,
        correct: 0,
        samples: 3,
        skipped: false,
        nonFinite: false,
        timings: { data: 0 },
      },
      undefined,
      /timings\.compute/,
    ],
    [{ type: 'weightsPart', kind: 'params', offset: 4, total: 6 }, new Uint8Array(16), /runs past the total/],
    [{ type: 'authProof', nonce: 'short', proof: hex64 }, undefined, /'nonce'/],
  ];
  for (const [msg, payload, re] of cases) {
    const r = check(rawFrame(packr.pack(msg), payload));
    t.ok(
      !r.ok && isWolfpackError(r.err, 'E_PROTOCOL') && re.test((r.err as Error).message),
      `${String(msg.type)} ${re}: ${r.ok ? 'accepted' : (r.err as Error).message}`,
    );
  }
});
