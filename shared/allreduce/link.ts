// The Link: what a collective algorithm needs from a transport, and nothing more (Gloo's `pair`).
// A rank's Link sends messages to its right neighbour and receives messages from its left neighbour.
// Algorithms in shared/allreduce/ run over this interface only; transports (shared/transport/ring/, the WebSocket
// ring, and shared/transport/memory-link.ts, in one process for tests) implement it. Algorithm bugs and wire bugs
// live in different files.
//
// Contract, which every implementation must keep and the ring relies on:
//  - A message is one Float32Array payload plus a tag, an integer in [0, MAX_TAG]. Tags identify messages;
//    the receiver matches a message to a recv() by its tag, whatever order messages arrive in. Two messages
//    in flight on one link never share a tag (the algorithm composes tags so that they do not).
//  - send() never copies more than it must and never blocks the caller's receives: it hands the data to the
//    transport and resolves once `data` may be reused. The transport has finished reading `data` by the
//    time the receiver sees the message (consumed-before-delivered): a receiver cannot observe a message
//    whose bytes the sender still reads. send() rejects with a WolfpackError once the link has failed.
//  - recv(tag, count, into) waits for the message with that tag and checks that it has exactly `count`
//    elements (a mismatch is E_PROTOCOL). `into` is either a Float32Array of `count` elements, which the
//    payload is written into (a transport may read the wire straight into it), or a callback, called
//    once, synchronously, with a view of the payload that is valid only during the call (the transport
//    reuses the memory afterwards). The promise resolves after the payload is in place / the callback
//    returned; it rejects with what the callback threw, or with a WolfpackError when the link fails.
//    Several receives may be pending at once (the ring posts the next one before the current completes,
//    so that a transport always knows where the next payload goes). Messages that arrive before their
//    recv() are held (bounded, with backpressure on the wire).
//  - close() ends the link; pending and later sends and receives reject.

/** Largest tag a Link carries: tags are 53-bit non-negative integers (2^53 - 1). */
export const MAX_TAG = Number.MAX_SAFE_INTEGER;

/** Called with a received payload; the view is valid only until the callback returns. */
export type RecvSink = (chunk: Float32Array) => void;

export interface Link {
  /** Send `data` as one message with `tag` to the right neighbour; resolves when `data` may be reused. */
  send(tag: number, data: Float32Array): Promise<void>;
  /** Receive the message with `tag` (exactly `count` elements) from the left neighbour into `into`. */
  recv(tag: number, count: number, into: RecvSink | Float32Array): Promise<void>;
  /** Close the link; pending operations reject. Idempotent. */
  close(): void;
}

// Tag layout, the one place it is written: message number `seq` of collective call number `step` carries
// tag (step mod TAG_STEPS) * TAG_SEQS + seq. Both ends number a call's messages alike (ring.ts), so a tag
// names the same message on both sides; distinct steps keep collectives that share a link apart. The wire
// (shared/transport/ring/frame.ts) carries a tag as its two words.

/** Step numbers are taken modulo this in tags. */
export const TAG_STEPS = 2 ** 21;
/** Messages of one collective call are numbered below this. */
export const TAG_SEQS = 2 ** 32;

/** The tag of message `seq` of collective call `step`. */
export function composeTag(step: number, seq: number): number {
  return (step % TAG_STEPS) * TAG_SEQS + seq;
}

/** A tag as `step:seq`, for messages. */
export function formatTag(tag: number): string {
  return `${Math.floor(tag / TAG_SEQS)}:${tag % TAG_SEQS}`;
}

/** True when `tag` is a valid Link tag. */
export function isValidTag(tag: number): boolean {
  return Number.isSafeInteger(tag) && tag >= 0;
}
