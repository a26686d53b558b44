// Starts and stops a worker's heartbeat thread (heartbeat-thread.ts).
import { Worker } from 'node:worker_threads';
import { WolfpackError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { HeartbeatData } from './heartbeat-thread.js';

export class Heartbeat {
  private readonly thread: Worker;
  private readonly beating: Promise<void>;

  constructor(data: HeartbeatData, logger: Logger) {
    this.thread = new Worker(new URL('./heartbeat-thread.js', import.meta.url), { workerData: data });
    this.beating = new Promise((resolve, reject) => {
      this.thread.on('message', (m: { error?: string; beating?: boolean }) => {
        if (m.beating) resolve();
        if (m.error) {
          logger.warn({ reason: m.error }, 'heartbeat connection failed');
          reject(new WolfpackError('E_WORKER', `heartbeat connection to the coordinator failed: ${m.error}`));
        }
      });
      this.thread.on('error', (e) => {
        logger.warn({ reason: e.message }, 'heartbeat thread failed');
        reject(new WolfpackError('E_WORKER', `heartbeat thread failed: ${e.message}`));
      });
    });
    this.beating.catch(() => undefined); // observed by the worker's await; later failures are logged above
    this.thread.unref();
  }

  /**
   * Connects and resolves once the first beat is sent; rejects if the thread cannot connect. A worker
   * awaits it before its hello, so the coordinator never admits a member whose heartbeat is still
   * starting (on a loaded host the thread's start and handshake took seconds, counted as silence).
   */
  start(): Promise<void> {
    this.thread.postMessage('start');
    return this.beating;
  }

  async stop(): Promise<void> {
    this.thread.postMessage('stop');
    await this.thread.terminate();
  }
}
