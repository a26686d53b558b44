// The WebSocket transport of the ring all-reduce: one implementation of Link (shared/allreduce/link.ts).
// Every rank listens on its ring port (listener.ts) and connects one client to its LEFT neighbour's port
// (connect.ts). Data flows one way on each connection, server -> client: a rank sends to its right
// neighbour on the server side of the connection that neighbour opened (outgoing.ts) and receives from
// its left neighbour on its own client connection (incoming.ts, reading the wire straight into the
// caller's memory). The connecting rank's first frame is its hello (hello.ts); data messages carry a
// 16-byte header (frame.ts). With TLS the listener serves a self-signed certificate (certificate.ts) whose
// fingerprint the connecting rank pins.
export {
  certificateFingerprint,
  FINGERPRINT_PATTERN,
  generateRingCertificate,
  type RingCertificate,
} from './certificate.js';
export { connectRing, wsLink, type RingConnectOptions } from './connect.js';
export {
  DEFAULT_MAX_CHUNK_BYTES,
  DEFAULT_MAX_EARLY_BYTES,
  DEFAULT_MAX_IN_FLIGHT_BYTES,
  RING_CLOSE_AUTH,
  RING_CLOSE_BAD_HELLO,
  RING_CLOSE_UNEXPECTED_PEER,
  RING_FRAME_KIND_DATA,
  RING_FRAME_MAGIC,
  RING_FRAME_VERSION,
  RING_HEADER_BYTES,
} from './frame.js';
export { RING_HELLO_MAX_BYTES, type RingHello } from './hello.js';
export { RingIncoming } from './incoming.js';
export { listenRing, type RingAcceptExpectation, type RingListener, type RingListenOptions } from './listener.js';
export { RingOutgoing } from './outgoing.js';
