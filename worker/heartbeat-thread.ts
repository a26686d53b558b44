// The heartbeat thread of a worker process. It keeps its own authenticated connection to the
// coordinator and sends `beat` every interval, from its own event loop: the main thread may compute
// for many seconds without yielding, and must not be taken for dead meanwhile. A process that is
// killed, frozen (SIGSTOP) or cut off stops beating, and the coordinator evicts it after --timeout.
// The thread is spawned early (loading its modules takes a while on a busy host) and connects when the
// main thread posts 'start', once the coordinator is known to be reachable.
import { parentPort, workerData } from 'node:worker_threads';
import WebSocket from 'ws';
import { workerSecurity, type SecurityFlags } from '../shared/auth/config.js';
import { authenticateToCoordinator } from '../shared/auth/handshake.js';
import { Channel } from '../shared/protocol/channel.js';

export interface HeartbeatData {
  url: string;
  memberId: string;
  intervalMs: number;
  timeoutMs: number;
  flags: SecurityFlags;
}

async function run(data: HeartbeatData, stopped: Promise<void>): Promise<void> {
  const security = workerSecurity(data.flags);
  const ch = await new Promise<Channel>((resolve, reject) => {
    const ws = new WebSocket(data.url, {
      perMessageDeflate: false,
      handshakeTimeout: data.timeoutMs,
      ...(security.ca ? { ca: security.ca } : {}),
    });
    ws.once('open', () => resolve(new Channel(ws, 'coordinator (heartbeat)')));
    ws.once('error', reject);
  });
  await authenticateToCoordinator(ch, security.secret, data.url, data.timeoutMs);
  const beat = () => ch.send({ type: 'beat', memberId: data.memberId }).catch(() => undefined);
  await beat();
  parentPort?.postMessage({ beating: true });
  const timer = setInterval(() => {
    void beat();
  }, data.intervalMs);
  ch.ws.once('close', () => clearInterval(timer));
  await stopped;
  clearInterval(timer);
  ch.close();
}

let stop: () => void = () => undefined;
const stopped = new Promise<void>((resolve) => {
  stop = resolve;
});
parentPort?.on('message', (m: unknown) => {
  if (m === 'start')
    run(workerData as HeartbeatData, stopped).catch((e: Error) => parentPort?.postMessage({ error: e.message }));
  if (m === 'stop') {
    stop();
    parentPort?.close();
  }
});
