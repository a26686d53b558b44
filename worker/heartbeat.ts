// Starts and stops a worker's heartbeat thread (heartbeat-thread.ts).
import { Worker } from 'node:worker_threads';
import type { Logger } from '../shared/log.js';
import type { HeartbeatData } from './heartbeat-thread.js';

export class Heartbeat {
  private readonly thread: Worker;

  constructor(data: HeartbeatData, logger: Logger) {
    this.thread = new Worker(new URL('./heartbeat-thread.js', import.meta.url), { workerData: data });
    this.thread.on('message', (m: { error?: string }) => {
      if (m.error) logger.warn({ reason: m.error }, 'heartbeat connection failed');
    });
    this.thread.on('error', (e) => logger.warn({ reason: e.message }, 'heartbeat thread failed'));
    this.thread.unref();
  }

  async stop(): Promise<void> {
    this.thread.postMessage('stop');
    await this.thread.terminate();
  }
}
