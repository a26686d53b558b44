// Bad input, end to end: what the `wolfpack` command does with a damaged data folder, damaged
// checkpoints, a run folder that is not this job's, and frames a worker should never send. Each case
// checks that the error names the thing that is wrong (a path, a class, a field) and that nothing
// is left half done. docs/RELIABILITY.md lists these next to the other faults.
import { cpSync, mkdirSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import sharp from 'sharp';
import t from 'tap';
import WebSocket from 'ws';
import { CoordinatorServer } from '../../coordinator/server.js';
import { authenticateToCoordinator } from '../../shared/auth/handshake.js';
import { SharedSecret } from '../../shared/auth/secret.js';
import { scanImageFolder } from '../../shared/data/imagefolder.js';
import type { Logger } from '../../shared/log.js';
import { initModel, tensorsFromModel } from '../../shared/model/weights.js';
import { ParamLayout } from '../../shared/model/state.js';
import { resnet50Spec } from '../../shared/model/spec.js';
import { Channel, CLOSE_PROTOCOL } from '../../shared/protocol/channel.js';
import { decodeFrame, encodeFrame } from '../../shared/protocol/codec.js';
import { PROTOCOL_VERSION } from '../../shared/protocol/messages.js';
import { writeCkpt } from '../../shared/weights/ckpt.js';
import { runCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs, type TinyJob } from '../helpers/tiny-job.js';

let job: TinyJob;
t.before(async () => {
  job = await makeTinyJob();
});
t.teardown(() => job.cleanup());

/** A copy of the tiny data set to damage. */
function dataCopy(name: string): string {
  const dir = join(job.dir, name);
  cpSync(job.data, dir, { recursive: true });
  return dir;
}

function firstImage(dir: string): string {
  return join(
    dir,
    readdirSync(dir)
      .filter((f) => f.endsWith('.jpg'))
      .sort()[0]!,
  );
}

function lines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

t.test('a corrupt or empty image in the data folder is reported by path and training goes on', async (t) => {
  const data = dataCopy('data-corrupt');
  const garbage = join(data, 'train', 'dogs', 'broken.jpg');
  const empty = join(data, 'train', 'wolves', 'empty.png');
  writeFileSync(garbage, 'this is not a jpeg at all');
  writeFileSync(empty, '');
  const out = join(job.dir, 'out-corrupt');
  const r = await runCli(['train', '--workers', '2', ...tinyTrainArgs(job, out, ['--data', data])], 120_000);
  t.equal(r.code, 0, `training finishes${r.code ? `: ${r.stderr.slice(-1500)}` : ''}`);
  const skipped = lines(r.stderr)
    .filter((l) => l.msg === 'skipping unreadable image')
    .map((l) => l.path);
  t.same(skipped.sort(), [garbage, empty].sort(), 'each unreadable file is named in a warning');
  const prepared = lines(r.stderr).find((l) => l.msg === 'job prepared');
  t.equal(prepared?.train, 24, 'the readable 24 training images are used');
  t.equal(readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').length, 1, 'the epoch has its metrics');
});

// An image whose header is intact but whose compressed data is cut short: the scan decodes every
// image fully, so it is reported by path and skipped rather than failing later in a worker.
t.test('an image cut short after a valid header', async (t) => {
  const data = dataCopy('data-truncated');
  const cut = firstImage(join(data, 'train', 'dogs'));
  const bytes = readFileSync(cut);
  writeFileSync(cut, bytes.subarray(0, bytes.length - 40));
  const meta = await sharp(cut).metadata();
  t.equal(meta.width, 48, 'the fixture: its header still reads');
  await t.rejects(
    sharp(cut, { failOn: 'error' }).raw().toBuffer(),
    /premature end/,
    'the fixture: its pixels do not decode',
  );
  const ds = await scanImageFolder(join(data, 'train'));
  t.ok(
    ds.skipped.some((s) => s.path === cut),
    'the scan reports it by path and skips it',
  );
});

t.test('a class folder with no readable image is an error naming the class folder', async (t) => {
  const data = dataCopy('data-empty-class');
  const wolves = join(data, 'train', 'wolves');
  rmSync(wolves, { recursive: true });
  mkdirSync(wolves);
  writeFileSync(join(wolves, 'notes.txt'), 'no images here');
  writeFileSync(join(wolves, 'bad.jpg'), 'garbage');
  const r = await runCli(
    ['train', '--workers', '1', ...tinyTrainArgs(job, join(job.dir, 'out-empty'), ['--data', data])],
    60_000,
  );
  t.equal(r.code, 1, 'exits 1');
  t.match(r.stderr, `class folder ${wolves} has no readable images`);
  t.match(r.stderr, /1 unreadable file\(s\) skipped/);
});

t.test('a class missing from val is an error naming the class and both folders', async (t) => {
  const data = dataCopy('data-missing-class');
  rmSync(join(data, 'val', 'wolves'), { recursive: true });
  const r = await runCli(
    ['train', '--workers', '1', ...tinyTrainArgs(job, join(job.dir, 'out-missing'), ['--data', data])],
    60_000,
  );
  t.equal(r.code, 1, 'exits 1');
  t.match(r.stderr, `train and val class folders differ (only in ${join(data, 'train')}: wolves)`);
});

t.test('a truncated or corrupt --weights checkpoint is an error naming the file; nothing is written', async (t) => {
  const bytes = readFileSync(job.weights);
  for (const [name, content] of [
    ['cut.ckpt', bytes.subarray(0, Math.floor(bytes.length / 2))],
    ['garbage.ckpt', Buffer.from('not a checkpoint, just text\n')],
  ] as const) {
    const file = join(job.dir, name);
    writeFileSync(file, content);
    const out = join(job.dir, `out-${name}`);
    const r = await runCli(['train', '--workers', '1', ...tinyTrainArgs(job, out, ['--weights', file])], 60_000);
    t.equal(r.code, 1, `${name}: exits 1`);
    t.match(r.stderr, `file ${file}: corrupt or truncated MindSpore checkpoint`, `${name}: and says it is damaged`);
    t.notOk(
      readdirSafe(out).some((f) => f.endsWith('.ckpt')),
      `${name}: no checkpoint was written`,
    );
  }
});

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}

t.test('--resume: a damaged run folder, or one of another model, is refused naming the file', async (t) => {
  const run = join(job.dir, 'run');
  const a = await runCli(['train', '--workers', '1', ...tinyTrainArgs(job, run)], 120_000);
  t.equal(a.code, 0, `the first run finishes${a.code ? `: ${a.stderr.slice(-1500)}` : ''}`);
  const resume = (dir: string) =>
    runCli(['train', '--workers', '1', ...tinyTrainArgs(job, dir, ['--epochs', '2', '--resume', dir])], 60_000);

  const cut = join(job.dir, 'run-cut-ckpt');
  cpSync(run, cut, { recursive: true });
  const ckpt = join(cut, 'last.ckpt');
  truncateSync(ckpt, Math.floor(readFileSync(ckpt).length / 3));
  let r = await resume(cut);
  t.equal(r.code, 1, 'truncated last.ckpt: exits 1');
  t.match(
    r.stderr,
    `file ${ckpt}: corrupt or truncated MindSpore checkpoint`,
    'truncated last.ckpt: named, and said to be truncated',
  );

  const badState = join(job.dir, 'run-cut-state');
  cpSync(run, badState, { recursive: true });
  const state = join(badState, 'train-state.json');
  writeFileSync(state, readFileSync(state, 'utf8').slice(0, 20));
  r = await resume(badState);
  t.equal(r.code, 1, 'truncated train-state.json: exits 1');
  t.match(r.stderr, `--resume ${badState}: cannot read ${state}`, 'truncated train-state.json: named');

  const other = join(job.dir, 'run-other-model');
  cpSync(run, other, { recursive: true });
  const config = { flavour: 'mindspore' as const, width: 8, numClasses: 2 };
  const layout = new ParamLayout(resnet50Spec(config));
  await writeCkpt(
    join(other, 'last.ckpt'),
    tensorsFromModel(initModel(config, 5), new Float32Array(layout.paramCount)),
  );
  r = await resume(other);
  t.equal(r.code, 1, 'last.ckpt of another model: exits 1');
  t.match(
    r.stderr,
    /last\.ckpt is a mindspore ResNet-50 \(width 8, 2 classes\), train-state\.json says mindspore \(width 4, 2 classes\)/,
    'another model: both sides named',
  );
  t.equal(
    readFileSync(join(other, 'metrics.jsonl'), 'utf8').trim().split('\n').length,
    1,
    'the refused run folder is left as it was',
  );
});

// --- frames a worker should never send (the coordinator's side; the fuzzer covers the decoder) ---

const TOKEN = 'bad-input-test-token-' + 'q9'.repeat(12);

function capturingLogger(): { logger: Logger; text: () => string } {
  const chunks: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString());
      cb();
    },
  });
  return { logger: pino({ level: 'info' }, sink) as unknown as Logger, text: () => chunks.join('') };
}

/** An authenticated connection to the coordinator, before its hello. */
function connect(port: number, secret: SharedSecret): Promise<Channel> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}`, { perMessageDeflate: false, handshakeTimeout: 5000 });
    ws.once('open', () => {
      const ch = new Channel(ws, 'coordinator');
      authenticateToCoordinator(ch, secret, `ws://127.0.0.1:${port}`, 5000).then(() => resolve(ch), reject);
    });
    ws.once('error', reject);
  });
}

function withVersion(frame: Buffer, version: number): Buffer {
  const f = Buffer.from(frame);
  f[1] = version;
  return f;
}

t.test('unknown message types, another protocol version and oversized frames close that connection only', async (t) => {
  const secret = new SharedSecret(TOKEN, 'test');
  const hello = {
    type: 'hello' as const,
    host: 'test',
    ringHost: '127.0.0.1',
    ringPort: 9,
    backend: 'cpu',
    pid: 1,
    memberId: 'a'.repeat(32),
  };

  // The decoder names what is wrong.
  const unknown = encodeFrame(hello);
  const patched = Buffer.from(unknown.toString('latin1').replace('hello', 'hxllo'), 'latin1');
  t.throws(() => decodeFrame(patched), { code: 'E_PROTOCOL', message: /unknown message type "hxllo"/ });
  t.throws(() => decodeFrame(withVersion(unknown, PROTOCOL_VERSION + 1)), {
    code: 'E_PROTOCOL',
    message: new RegExp(
      `protocol version ${PROTOCOL_VERSION + 1} is not supported \\(this build speaks ${PROTOCOL_VERSION}\\)`,
    ),
  });
  t.throws(
    () =>
      decodeFrame(
        encodeFrame({ type: 'statePart', rank: 0, kind: 'params', offset: 0, total: 4 }, new Uint8Array(16)),
        8,
      ),
    { code: 'E_PROTOCOL', message: /payload of 16 bytes exceeds 8/ },
  );

  // A real coordinator closes each such connection, logs why, and keeps admitting good workers.
  const log = capturingLogger();
  const server = await CoordinatorServer.listen('127.0.0.1', 0, log.logger, {
    security: { secret },
    handshakeTimeoutMs: 5000,
  });
  t.teardown(() => server.close());
  const cases: [string, Buffer, number, RegExp][] = [
    ['unknown message type', patched, CLOSE_PROTOCOL, /unknown message type \\"hxllo\\"/],
    [
      'another protocol version',
      withVersion(unknown, PROTOCOL_VERSION + 1),
      CLOSE_PROTOCOL,
      /protocol version 2 is not supported/,
    ],
    ['a frame over the 64 MiB limit', Buffer.alloc(64 * 1024 * 1024 + 64), 1009, /Max payload size exceeded|1009/],
  ];
  for (const [what, frame, code, logged] of cases) {
    const ch = await connect(server.port, secret);
    const closed = new Promise<number>((resolve) => ch.ws.once('close', (c: number) => resolve(c)));
    ch.ws.send(frame, { binary: true }, () => undefined);
    const timer = new Promise<string>((resolve) => setTimeout(() => resolve('no close within 10 s'), 10_000).unref());
    t.equal(await Promise.race([closed, timer]), code, `${what}: closed with ${code}`);
    const deadline = Date.now() + 5000;
    while (!logged.test(log.text()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    t.match(log.text(), logged, `${what}: the reason is logged`);
  }
  const good = await connect(server.port, secret);
  await good.send(hello);
  const member = (await server.members(1, 5000))[0]!;
  t.equal(member.hello.memberId, hello.memberId, 'a good worker is still admitted');
  good.close();
});
