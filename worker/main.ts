// A worker: joins the coordinator, opens its ring links, receives the weights (from the coordinator
// if it is rank 0, else relayed along the ring), then runs the coordinator's steps: decode its share
// of the batch, compute gradients, ring all-reduce them with its peers, apply the same Momentum
// update as every other replica, and report. Evaluates its share of the validation set on request.
import { hostname } from 'node:os';
import { performance } from 'node:perf_hooks';
import WebSocket from 'ws';
import { selectBackend, type BackendChoice } from '../shared/backend/select.js';
import { chainBroadcast } from '../shared/allreduce/broadcast.js';
import type { Link } from '../shared/allreduce/link.js';
import { ringAllReduce } from '../shared/allreduce/ring.js';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import { resnet50Spec } from '../shared/model/spec.js';
import { ParamLayout, type ModelState } from '../shared/model/state.js';
import { Channel, type Received } from '../shared/protocol/channel.js';
import type { JobConfig, MessageOf, SampleRef } from '../shared/protocol/messages.js';
import { payloadFloats } from '../shared/protocol/codec.js';
import { connectRing, listenRing, wsLink, type RingListener } from '../shared/transport/ws-link.js';
import { argmaxRows } from '../shared/train/loss.js';
import { stateChecksum } from '../shared/train/checksum.js';
import { Replica, type Batch } from '../shared/train/replica.js';
import { ImageCache, loadBatch } from './batch-loader.js';

export interface WorkerOptions {
  connect: string;
  backend: BackendChoice;
  /** Address to bind the ring listener to (default 127.0.0.1). */
  ringBind?: string;
  /** Address peers use to reach this worker's ring port (default: ringBind, or 127.0.0.1). */
  advertise?: string;
  /** Give up on any single wait after this long (ms). */
  timeoutMs?: number;
  logger: Logger;
}

/** Largest frame a worker accepts from the coordinator. */
export const WORKER_MAX_PAYLOAD = 256 * 1024 * 1024;
/** Images per forward pass during evaluation (bounds memory). */
const EVAL_CHUNK = 16;
/** Floats per statePart frame. */
const STATE_CHUNK = 4 * 1024 * 1024;

function openSocket(url: string, timeoutMs: number): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, { maxPayload: WORKER_MAX_PAYLOAD, perMessageDeflate: false, handshakeTimeout: timeoutMs });
    ws.once('open', () => resolve(ws));
    ws.once('error', (e) => reject(new WolfpackError('E_WORKER', `cannot reach the coordinator at ${url}: ${e.message}`)));
  });
}

/** Receives weights parts from the coordinator until params, stats and accum are complete. */
async function receiveWeights(ch: Channel, bufs: Record<'params' | 'stats' | 'accum', Float32Array>, timeoutMs: number): Promise<void> {
  const left = { params: bufs.params.length, stats: bufs.stats.length, accum: bufs.accum.length };
  while (left.params + left.stats + left.accum > 0) {
    const { msg, payload } = await ch.expect('weightsPart', timeoutMs);
    const dst = bufs[msg.kind];
    const data = payloadFloats(payload);
    if (msg.total !== dst.length || msg.offset + data.length > dst.length) {
      throw new WolfpackError('E_PROTOCOL', `weightsPart ${msg.kind}: offset ${msg.offset} + ${data.length} floats does not fit ${dst.length} (total ${msg.total})`);
    }
    dst.set(data, msg.offset);
    left[msg.kind] -= data.length;
  }
}

export async function runWorker(opts: WorkerOptions): Promise<void> {
  const timeoutMs = opts.timeoutMs ?? 120_000;
  const sel = await selectBackend(opts.backend, opts.logger);
  const ringBind = opts.ringBind ?? '127.0.0.1';
  const listener: RingListener = await listenRing({ host: ringBind, port: 0, logger: opts.logger });
  const ws = await openSocket(opts.connect, timeoutMs);
  let log = opts.logger.child({ component: 'worker' });
  const ch = new Channel(ws, 'coordinator', log, WORKER_MAX_PAYLOAD);
  const cache = new ImageCache();
  let link: Link | undefined;
  let replica: Replica | undefined;
  let myRank = 0;
  try {
    await ch.send({ type: 'hello', host: hostname(), ringHost: opts.advertise ?? (ringBind === '0.0.0.0' ? '127.0.0.1' : ringBind), ringPort: listener.port, backend: sel.backend, pid: process.pid });
    const { msg: welcome } = await ch.expect('welcome', timeoutMs);
    const { rank, world, config } = welcome;
    myRank = rank;
    log = log.child({ rank });
    log.info({ world, right: welcome.rightUrl, backend: sel.backend }, 'joined');

    if (world > 1) {
      const [outgoing, incoming] = await Promise.all([
        connectRing(welcome.rightUrl, { rank, size: world, jobId: config.jobId }, { timeoutMs, logger: log }),
        listener.accept({ rank: welcome.leftRank, jobId: config.jobId }, timeoutMs),
      ]);
      link = wsLink(outgoing, incoming);
    }
    await listener.close();

    const layout = new ParamLayout(resnet50Spec({ flavour: config.flavour, width: config.width, numClasses: config.numClasses }));
    const state: ModelState = { layout, params: new Float32Array(layout.paramCount), stats: new Float32Array(layout.statCount) };
    const accum = new Float32Array(layout.paramCount);
    let collective = 0; // numbers every collective on the ring, so tags never collide
    if (rank === 0) await receiveWeights(ch, { params: state.params, stats: state.stats, accum }, timeoutMs);
    for (const buf of [state.params, state.stats, accum]) {
      if (link) await chainBroadcast(buf, rank, world, link, { step: collective++, chunkElems: config.chunkElems });
    }
    replica = new Replica(state, { lr: config.lr, momentum: config.momentum, freeze: config.freeze, bn: config.bn }, accum);
    await ch.send({ type: 'ready', rank });
    log.info({ params: layout.paramCount, reduceFloats: replica.reduce.size }, 'weights received; ready');

    // Steps are decoded as soon as they arrive, so decoding overlaps the previous step's compute.
    const decoding = new Map<number, Promise<Batch>>();
    ch.onMessage = (r: Received) => {
      if (r.msg.type === 'blobs') {
        cache.addAll(r.msg.items, r.payload);
        return true;
      }
      if (r.msg.type === 'step') {
        const p = loadBatch(cache, r.msg.samples, { size: config.imageSize, seed: config.seed, epoch: r.msg.epoch, train: true });
        p.catch(() => undefined); // surfaced when the step is run
        decoding.set(r.msg.step, p);
      }
      return false;
    };

    for (;;) {
      const { msg } = await ch.next(timeoutMs * 10);
      if (msg.type === 'shutdown') {
        log.info({ reason: msg.reason }, 'shutdown');
        break;
      }
      if (msg.type === 'step') {
        await runStep(msg, decoding, replica, link, rank, world, config, collective++, ch);
      } else if (msg.type === 'eval') {
        await runEval(msg.epoch, msg.samples, replica, cache, config, rank, ch);
      } else if (msg.type === 'stateRequest') {
        for (const [kind, buf] of [['params', state.params], ['stats', state.stats], ['accum', replica.accum]] as const) {
          for (let off = 0; off < buf.length || (off === 0 && buf.length === 0); off += STATE_CHUNK) {
            const part = buf.subarray(off, Math.min(buf.length, off + STATE_CHUNK));
            await ch.send({ type: 'statePart', rank, kind, offset: off, total: buf.length }, new Uint8Array(part.buffer, part.byteOffset, part.byteLength));
            if (buf.length === 0) break;
          }
        }
      } else {
        throw new WolfpackError('E_PROTOCOL', `unexpected message ${msg.type} from the coordinator`);
      }
    }
  } catch (e) {
    log.error({ err: (e as Error).message }, 'worker failed');
    if (!ch.closed) await ch.send({ type: 'failure', rank: myRank, message: (e as Error).message }).catch(() => undefined);
    throw e;
  } finally {
    replica?.dispose();
    link?.close();
    await listener.close().catch(() => undefined);
    ch.close();
  }
}

async function runStep(msg: MessageOf<'step'>, decoding: Map<number, Promise<Batch>>, replica: Replica, link: Link | undefined,
  rank: number, world: number, config: JobConfig, collective: number, ch: Channel): Promise<void> {
  const t0 = performance.now();
  const batch = await (decoding.get(msg.step) ?? Promise.reject(new Error(`step ${msg.step} was never decoded`)));
  decoding.delete(msg.step);
  const t1 = performance.now();
  await replica.computeGradients(batch, config.globalBatch);
  const t2 = performance.now();
  if (link) await ringAllReduce(replica.buffer, rank, world, link, { step: collective, chunkElems: config.chunkElems });
  const t3 = performance.now();
  const m = replica.applyReduced();
  const t4 = performance.now();
  await ch.send({
    type: 'stepDone', rank, step: msg.step, loss: m.loss, correct: m.correct, samples: m.samples, skipped: m.skipped,
    timings: { data: t1 - t0, compute: t2 - t1, allreduce: t3 - t2, update: t4 - t3 },
  });
}

async function runEval(epoch: number, samples: SampleRef[], replica: Replica, cache: ImageCache, config: JobConfig, rank: number, ch: Channel): Promise<void> {
  let correct = 0;
  for (let i = 0; i < samples.length; i += EVAL_CHUNK) {
    const part = samples.slice(i, i + EVAL_CHUNK);
    const batch = await loadBatch(cache, part, { size: config.imageSize, seed: config.seed, epoch, train: false });
    const predicted = argmaxRows(await replica.predict(batch), config.numClasses);
    for (let k = 0; k < part.length; k++) if (predicted[k] === part[k].l) correct++;
  }
  await ch.send({ type: 'evalResult', rank, epoch, correct, total: samples.length, checksum: stateChecksum(replica.state) });
}
