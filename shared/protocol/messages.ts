// Every message between the coordinator and its workers, in one place. Control fields travel as
// msgpack (codec.ts); bulk bytes (weights, images, training state) travel beside them as a raw,
// 8-byte-aligned payload in the same WebSocket frame, never element by element. Each message type
// has a schema that codec.ts checks at the edge before any code sees the message.

export const PROTOCOL_VERSION = 1;

/** Training hyper-parameters and model shape every replica must agree on. */
export interface JobConfig {
  jobId: string;
  flavour: 'mindspore' | 'torchvision';
  width: number;
  numClasses: number;
  classes: string[];
  imageSize: number;
  freeze: 'none' | 'backbone';
  bn: 'train' | 'frozen';
  lr: number;
  momentum: number;
  seed: number;
  globalBatch: number;
  chunkElems: number;
  // feature cache (worker/feature-cache.ts); absent means the defaults in brackets
  /** Training transform: 'train' (RandomResizedCrop + flip) or 'none' (the eval transform) ['train']. */
  augment?: 'train' | 'none';
  /** With augment 'train': K > 0 draws the augmentation from epoch % K (K views per sample); 0: every epoch new [0]. */
  views?: number;
  /** Reuse the frozen backbone's features per (sample, view); needs freeze 'backbone' and bn 'frozen' [false]. */
  cacheFeatures?: boolean;
  /** Bound on each worker's feature cache, MiB [1024]. */
  featureCacheMb?: number;
  /** What the gradient all-reduce sends between ranks (shared/allreduce/wire.ts); absent: fp32. */
  wire?: 'fp32' | 'bf16' | 'fp16';
  /** Float32 values of gradients in one all-reduce bucket (worker/gradient-reduce.ts); absent: all at once. */
  bucketElems?: number;
}

/** A sample assigned to a worker: image content hash, label, index in the data set (for its draws). */
export interface SampleRef {
  h: string;
  l: number;
  i: number;
}

export interface Timings {
  data: number;
  compute: number;
  allreduce: number;
  update: number;
}

export type Message =
  // worker -> coordinator
  // ringCert: the SHA-256 fingerprint of the ring listener's certificate when it serves wss:// (a worker
  // whose coordinator connection is wss://); absent for a plain ws:// ring listener.
  | {
      type: 'hello';
      host: string;
      ringHost: string;
      ringPort: number;
      backend: string;
      pid: number;
      memberId: string;
      ringCert?: string;
    }
  | { type: 'beat'; memberId: string }
  | { type: 'ready'; rank: number; generation: number }
  | {
      type: 'stepDone';
      rank: number;
      generation: number;
      step: number;
      loss: number;
      correct: number;
      samples: number;
      skipped: boolean;
      nonFinite: boolean;
      timings: Timings;
    }
  | {
      type: 'evalResult';
      rank: number;
      generation: number;
      epoch: number;
      correct: number;
      total: number;
      checksum: string;
    }
  | { type: 'statePart'; rank: number; kind: 'params' | 'stats' | 'accum'; offset: number; total: number }
  | { type: 'aborted'; rank: number; generation: number; lastStep: number }
  | { type: 'failure'; rank: number; message: string }
  // coordinator -> worker
  | { type: 'welcome'; config: JobConfig }
  // leftCert: with a wss:// leftUrl, the fingerprint the left neighbour announced in its hello (the rank pins it).
  | {
      type: 'ring';
      generation: number;
      rank: number;
      world: number;
      leftUrl: string;
      rightRank: number;
      source: 'coordinator' | 'peer';
      lastStep: number;
      leftCert?: string;
    }
  | { type: 'weightsPart'; kind: 'params' | 'stats' | 'accum'; offset: number; total: number }
  | { type: 'blobs'; items: { h: string; n: number }[] }
  | { type: 'step'; generation: number; epoch: number; step: number; samples: SampleRef[] }
  | { type: 'eval'; generation: number; epoch: number; samples: SampleRef[] }
  | { type: 'stateRequest'; epoch: number }
  | { type: 'abort'; generation: number; reason: string }
  | { type: 'shutdown'; reason: string }
  // auth (shared/auth/handshake.ts): the first messages on every connection, before hello
  // coordinator -> worker: 'none' when the coordinator has no token, else a fresh 32-byte nonce (hex)
  | { type: 'authChallenge'; scheme: 'none' | 'hmac-sha256'; nonce: string }
  // worker -> coordinator: the worker's nonce and HMAC(token, client transcript)
  | { type: 'authProof'; nonce: string; proof: string }
  // coordinator -> worker: HMAC(token, server transcript), the coordinator's half of the mutual proof
  | { type: 'authOk'; proof: string };

export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

type FieldKind = 'string' | 'int' | 'number' | 'boolean' | 'object' | 'array';
type Schema = Record<string, FieldKind | readonly string[]>;

const PART_KINDS = ['params', 'stats', 'accum'] as const;
const AUTH_SCHEMES = ['none', 'hmac-sha256'] as const;

/** Field schemas, checked by codec.ts on every decoded message. */
export const SCHEMAS: Record<MessageType, Schema> = {
  hello: { host: 'string', ringHost: 'string', ringPort: 'int', backend: 'string', pid: 'int', memberId: 'string' },
  beat: { memberId: 'string' },
  ready: { rank: 'int', generation: 'int' },
  stepDone: {
    rank: 'int',
    generation: 'int',
    step: 'int',
    loss: 'number',
    correct: 'int',
    samples: 'int',
    skipped: 'boolean',
    nonFinite: 'boolean',
    timings: 'object',
  },
  evalResult: { rank: 'int', generation: 'int', epoch: 'int', correct: 'int', total: 'int', checksum: 'string' },
  statePart: { rank: 'int', kind: PART_KINDS, offset: 'int', total: 'int' },
  aborted: { rank: 'int', generation: 'int', lastStep: 'number' },
  failure: { rank: 'int', message: 'string' },
  welcome: { config: 'object' },
  ring: {
    generation: 'int',
    rank: 'int',
    world: 'int',
    leftUrl: 'string',
    rightRank: 'int',
    source: ['coordinator', 'peer'],
    lastStep: 'number',
  },
  weightsPart: { kind: PART_KINDS, offset: 'int', total: 'int' },
  blobs: { items: 'array' },
  step: { generation: 'int', epoch: 'int', step: 'int', samples: 'array' },
  eval: { generation: 'int', epoch: 'int', samples: 'array' },
  stateRequest: { epoch: 'int' },
  abort: { generation: 'int', reason: 'string' },
  shutdown: { reason: 'string' },
  authChallenge: { scheme: AUTH_SCHEMES, nonce: 'string' },
  authProof: { nonce: 'string', proof: 'string' },
  authOk: { proof: 'string' },
};

/** Messages that carry a binary payload (and how it is interpreted). */
export const WITH_PAYLOAD: ReadonlySet<MessageType> = new Set(['weightsPart', 'statePart', 'blobs']);
