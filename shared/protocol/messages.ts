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
}

/** A sample assigned to a worker: image content hash, label, index in the data set (for its draws). */
export interface SampleRef { h: string; l: number; i: number }

export interface Timings { data: number; compute: number; allreduce: number; update: number }

export type Message =
  // worker -> coordinator
  | { type: 'hello'; host: string; ringHost: string; ringPort: number; backend: string; pid: number }
  | { type: 'ready'; rank: number }
  | { type: 'stepDone'; rank: number; step: number; loss: number; correct: number; samples: number; skipped: boolean; timings: Timings }
  | { type: 'evalResult'; rank: number; epoch: number; correct: number; total: number; checksum: string }
  | { type: 'statePart'; rank: number; kind: 'params' | 'stats' | 'accum'; offset: number; total: number }
  | { type: 'failure'; rank: number; message: string }
  // coordinator -> worker
  | { type: 'welcome'; rank: number; world: number; config: JobConfig; rightUrl: string; leftRank: number }
  | { type: 'weightsPart'; kind: 'params' | 'stats' | 'accum'; offset: number; total: number }
  | { type: 'blobs'; items: { h: string; n: number }[] }
  | { type: 'step'; epoch: number; step: number; samples: SampleRef[] }
  | { type: 'eval'; epoch: number; samples: SampleRef[] }
  | { type: 'stateRequest'; epoch: number }
  | { type: 'shutdown'; reason: string };

export type MessageType = Message['type'];
export type MessageOf<T extends MessageType> = Extract<Message, { type: T }>;

type FieldKind = 'string' | 'int' | 'number' | 'boolean' | 'object' | 'array';
type Schema = Record<string, FieldKind | readonly string[]>;

const PART_KINDS = ['params', 'stats', 'accum'] as const;

/** Field schemas, checked by codec.ts on every decoded message. */
export const SCHEMAS: Record<MessageType, Schema> = {
  hello: { host: 'string', ringHost: 'string', ringPort: 'int', backend: 'string', pid: 'int' },
  ready: { rank: 'int' },
  stepDone: { rank: 'int', step: 'int', loss: 'number', correct: 'int', samples: 'int', skipped: 'boolean', timings: 'object' },
  evalResult: { rank: 'int', epoch: 'int', correct: 'int', total: 'int', checksum: 'string' },
  statePart: { rank: 'int', kind: PART_KINDS, offset: 'int', total: 'int' },
  failure: { rank: 'int', message: 'string' },
  welcome: { rank: 'int', world: 'int', config: 'object', rightUrl: 'string', leftRank: 'int' },
  weightsPart: { kind: PART_KINDS, offset: 'int', total: 'int' },
  blobs: { items: 'array' },
  step: { epoch: 'int', step: 'int', samples: 'array' },
  eval: { epoch: 'int', samples: 'array' },
  stateRequest: { epoch: 'int' },
  shutdown: { reason: 'string' },
};

/** Messages that carry a binary payload (and how it is interpreted). */
export const WITH_PAYLOAD: ReadonlySet<MessageType> = new Set(['weightsPart', 'statePart', 'blobs']);
