// `wolfpack fetch` against a local HTTP server on 127.0.0.1 (never the internet): a zip built here in the
// lab's layout, a connection that breaks halfway and is resumed with Range, a server without Range
// support, a wrong checksum, HTTP errors; and the zip reader on its own (layout, ZIP64, damaged zips).
import t, { type Test } from 'tap';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { crc32 as zlibCrc32, deflateRawSync } from 'node:zlib';
import sharp from 'sharp';
import { runFetch } from '../../cli/commands/fetch.js';
import { download, progressPrinter, type DownloadProgress } from '../../shared/fetch/download.js';
import { findImageFolderRoot, listZip, unzipImageFolder } from '../../shared/fetch/unzip.js';
import { serializeCkpt } from '../../shared/weights/ckpt.js';
import type { TensorMap } from '../../shared/weights/host-tensor.js';

// ---- a zip writer, written from the format (APPNOTE 4.3), independent of the reader under test ----

interface ZipFile {
  name: string;
  data: Buffer;
  method?: 0 | 8 | 12;
  badCrc?: boolean;
}

function makeZip(files: ZipFile[], opts: { zip64?: boolean } = {}): Buffer {
  const locals: Buffer[] = [];
  const centrals: Buffer[] = [];
  let offset = 0;
  for (const f of files) {
    const method = f.method ?? 8;
    const body = method === 8 ? deflateRawSync(f.data) : f.data;
    const crc = f.badCrc ? (zlibCrc32(f.data) ^ 1) >>> 0 : zlibCrc32(f.data);
    const name = Buffer.from(f.name, 'utf8');
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt16LE(0x800, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt16LE(0x21, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(body.length, 18);
    local.writeUInt32LE(f.data.length, 22);
    local.writeUInt16LE(name.length, 26);
    locals.push(local, name, body);
    const extra = opts.zip64 ? Buffer.alloc(28) : Buffer.alloc(0);
    if (opts.zip64) {
      extra.writeUInt16LE(0x0001, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(f.data.length), 4);
      extra.writeBigUInt64LE(BigInt(body.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const c = Buffer.alloc(46);
    c.writeUInt32LE(0x02014b50, 0);
    c.writeUInt16LE(0x031e, 4);
    c.writeUInt16LE(opts.zip64 ? 45 : 20, 6);
    c.writeUInt16LE(0x800, 8);
    c.writeUInt16LE(method, 10);
    c.writeUInt16LE(0x21, 14);
    c.writeUInt32LE(crc, 16);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : body.length, 20);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : f.data.length, 24);
    c.writeUInt16LE(name.length, 28);
    c.writeUInt16LE(extra.length, 30);
    c.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 42);
    centrals.push(c, name, extra);
    offset += 30 + name.length + body.length;
  }
  const cd = Buffer.concat(centrals);
  const tail: Buffer[] = [];
  if (opts.zip64) {
    const z = Buffer.alloc(56);
    z.writeUInt32LE(0x06064b50, 0);
    z.writeBigUInt64LE(44n, 4);
    z.writeUInt16LE(45, 12);
    z.writeUInt16LE(45, 14);
    z.writeBigUInt64LE(BigInt(files.length), 24);
    z.writeBigUInt64LE(BigInt(files.length), 32);
    z.writeBigUInt64LE(BigInt(cd.length), 40);
    z.writeBigUInt64LE(BigInt(offset), 48);
    const loc = Buffer.alloc(20);
    loc.writeUInt32LE(0x07064b50, 0);
    loc.writeBigUInt64LE(BigInt(offset + cd.length), 8);
    loc.writeUInt32LE(1, 16);
    tail.push(z, loc);
  }
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 8);
  end.writeUInt16LE(opts.zip64 ? 0xffff : files.length, 10);
  end.writeUInt32LE(opts.zip64 ? 0xffffffff : cd.length, 12);
  end.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...locals, cd, ...tail, end]);
}

const jpeg = (r: number) =>
  sharp({ create: { width: 8, height: 6, channels: 3, background: { r, g: 90, b: 30 } } })
    .jpeg()
    .toBuffer();

/** The lab's layout: data/Canidae/{train,val}/{dogs,wolves}/*.jpg, plus the junk archivers add. */
async function canidaeZip(): Promise<{ zip: Buffer; files: ZipFile[] }> {
  const files: ZipFile[] = [];
  for (const split of ['train', 'val']) {
    for (const [c, cls] of ['dogs', 'wolves'].entries()) {
      for (let i = 0; i < (split === 'train' ? 3 : 2); i++) {
        files.push({
          name: `data/Canidae/${split}/${cls}/${cls}${i}.jpg`,
          data: await jpeg(40 * c + 20 * i),
          method: i % 2 === 0 ? 8 : 0,
        });
      }
    }
  }
  files.push({ name: 'data/Canidae/README.txt', data: Buffer.from('dogs and wolves\n') });
  files.push({ name: '__MACOSX/data/Canidae/train/dogs/._dogs0.jpg', data: Buffer.from('resource fork') });
  files.push({ name: 'data/Canidae/train/dogs/.DS_Store', data: Buffer.alloc(0), method: 0 });
  return { zip: makeZip(files), files };
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const pseudoRandom = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  let x = seed;
  for (let i = 0; i < n; i++) {
    x = (x * 1103515245 + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
};

// ---- a local server whose routes misbehave on purpose ----

interface Route {
  body: Buffer;
  /** The first `breaks` requests send half the body and then drop the connection. */
  breaks?: number;
  /** Ignore Range and always send the whole file. */
  noRange?: boolean;
  status?: number;
  etag?: string;
  /** The first `stalls` requests send half the body and then go silent. */
  stalls?: number;
}

interface TestServer {
  base: string;
  hits: Map<string, (string | undefined)[]>;
  server: Server;
}

async function serve(t: Test, routes: Record<string, Route>): Promise<TestServer> {
  const hits = new Map<string, (string | undefined)[]>();
  const sockets = new Set<import('node:net').Socket>();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = req.url ?? '/';
    const route = routes[path];
    const seen = hits.get(path) ?? [];
    seen.push(req.headers.range);
    hits.set(path, seen);
    if (!route) {
      res.writeHead(404, 'Not Found').end('no such file');
      return;
    }
    if (route.status) {
      res.writeHead(route.status).end('error');
      return;
    }
    const full = route.body;
    let start = 0;
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    const headers: Record<string, string | number> = {
      'content-type': 'application/octet-stream',
      'accept-ranges': route.noRange ? 'none' : 'bytes',
    };
    if (route.etag) headers.etag = route.etag;
    if (m && !route.noRange) {
      start = Number(m[1]);
      if (start >= full.length) {
        res.writeHead(416, { 'content-range': `bytes */${full.length}` }).end();
        return;
      }
      res.writeHead(206, {
        ...headers,
        'content-length': full.length - start,
        'content-range': `bytes ${start}-${full.length - 1}/${full.length}`,
      });
    } else {
      res.writeHead(200, { ...headers, 'content-length': full.length });
    }
    const rest = full.subarray(start);
    if ((route.breaks ?? 0) > 0) {
      route.breaks!--;
      res.write(rest.subarray(0, rest.length >> 1), () => setTimeout(() => req.socket.destroy(), 20));
      return;
    }
    if ((route.stalls ?? 0) > 0) {
      route.stalls!--;
      res.write(rest.subarray(0, rest.length >> 1));
      return;
    }
    res.end(rest);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  );
  return { base: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, hits, server };
}

/** A stream that collects what is written. */
const sink = (isTTY = false) => {
  const s = {
    text: '',
    isTTY,
    columns: 100,
    write(x: string) {
      s.text += x;
      return true;
    },
  };
  return s;
};

// ---- the zip reader ----

t.test('finds the ImageFolder root', async (t) => {
  t.equal(findImageFolderRoot(['data/Canidae/train/dogs/a.jpg', 'data/Canidae/val/dogs/b.jpg']), 'data/Canidae');
  t.equal(findImageFolderRoot(['train/a/x.jpg', 'val/a/y.jpg']), '');
  t.equal(findImageFolderRoot(['x/train/a/1.jpg']), undefined, 'train without val');
  t.equal(findImageFolderRoot(['x/train/1.jpg', 'x/val/1.jpg']), undefined, 'no class folders');
  t.equal(findImageFolderRoot(['__MACOSX/train/a/1.jpg', '__MACOSX/val/a/1.jpg']), undefined, 'junk does not count');
});

t.test('unzips the lab layout into DEST/{train,val}/<class>', async (t) => {
  const { zip, files } = await canidaeZip();
  const dir = t.testdir({ 'c.zip': zip });
  const dest = join(dir, 'Canidae');
  const r = await unzipImageFolder(join(dir, 'c.zip'), dest);
  t.equal(r.rootInZip, 'data/Canidae');
  t.equal(r.files, 11, '10 images and the README; junk skipped');
  t.same(readdirSync(dest).sort(), ['README.txt', 'train', 'val']);
  t.same(readdirSync(join(dest, 'train', 'dogs')).sort(), ['dogs0.jpg', 'dogs1.jpg', 'dogs2.jpg']);
  for (const f of files.filter((x) => x.name.endsWith('.jpg') && !x.name.includes('__MACOSX'))) {
    t.same(readFileSync(join(dest, f.name.slice('data/Canidae/'.length))), f.data, f.name);
  }
  t.same(readdirSync(dir).sort(), ['Canidae', 'c.zip'], 'no temporary folder left');
  await t.rejects(unzipImageFolder(join(dir, 'c.zip'), dest), { code: 'E_IO', message: /already exists/ });
});

t.test('reads ZIP64 central directories', async (t) => {
  const data = pseudoRandom(3000, 7);
  const dir = t.testdir({
    'z.zip': makeZip(
      [
        { name: 'train/a/1.bin', data },
        { name: 'val/a/2.bin', data, method: 0 },
      ],
      { zip64: true },
    ),
  });
  const entries = await listZip(join(dir, 'z.zip'));
  t.same(
    entries.map((e) => [e.name, e.size, e.method]),
    [
      ['train/a/1.bin', 3000, 8],
      ['val/a/2.bin', 3000, 0],
    ],
  );
  const r = await unzipImageFolder(join(dir, 'z.zip'), join(dir, 'out'));
  t.equal(r.files, 2);
  t.same(readFileSync(join(dir, 'out', 'val', 'a', '2.bin')), data);
});

t.test('damaged or hostile zips are refused, and leave nothing behind', async (t) => {
  const img = await jpeg(10);
  const ok = (extra: ZipFile[]) =>
    makeZip([{ name: 'train/a/1.jpg', data: img }, { name: 'val/a/1.jpg', data: img }, ...extra]);
  const good = ok([]);
  const dir = t.testdir({
    'slip.zip': ok([{ name: '../../evil.jpg', data: img }]),
    'abs.zip': ok([{ name: '/etc/evil', data: img }]),
    'crc.zip': ok([{ name: 'train/a/2.jpg', data: img, method: 0, badCrc: true }]),
    'method.zip': ok([{ name: 'train/a/3.jpg', data: img, method: 12 }]),
    'flat.zip': makeZip([{ name: 'a.jpg', data: img }]),
    'cut.zip': good.subarray(0, good.length - 30),
    'text.zip': Buffer.from('<html>not found</html>'),
  });
  const cases: [string, { code: string; message: RegExp }][] = [
    ['slip.zip', { code: 'E_CORRUPT', message: /entry '\.\.\/\.\.\/evil\.jpg' points outside/ }],
    ['abs.zip', { code: 'E_CORRUPT', message: /entry '\/etc\/evil' points outside/ }],
    ['crc.zip', { code: 'E_CORRUPT', message: /train\/a\/2\.jpg': CRC-32 .* does not match/ }],
    ['method.zip', { code: 'E_CORRUPT', message: /compression method 12/ }],
    ['flat.zip', { code: 'E_DATA', message: /no folder with train\/<class>\/ and val\/<class>\/.*a\.jpg/ }],
    ['cut.zip', { code: 'E_CORRUPT', message: /cut\.zip/ }],
    ['text.zip', { code: 'E_CORRUPT', message: /text\.zip: not a zip file/ }],
  ];
  for (const [name, want] of cases) {
    await t.rejects(unzipImageFolder(join(dir, name), join(dir, `out-${name}`)), want, name);
    t.notOk(existsSync(join(dir, `out-${name}`)), `${name}: no output folder`);
  }
  t.same(
    readdirSync(dir).filter((n) => n.startsWith('.')),
    [],
    'no temporary folders left',
  );
});

// ---- downloads ----

t.test('a connection that breaks halfway is resumed with Range', async (t) => {
  const body = pseudoRandom(300_000, 1);
  const srv = await serve(t, { '/f.bin': { body, breaks: 1, etag: '"v1"' } });
  const dir = t.testdir({});
  const progress: DownloadProgress[] = [];
  const r = await download({
    url: `${srv.base}/f.bin`,
    dest: join(dir, 'f.bin'),
    sha256: sha(body),
    retryDelayMs: 10,
    onProgress: (p) => progress.push(p),
  });
  t.equal(r.connections, 2);
  t.equal(r.bytes, body.length);
  t.equal(r.sha256, sha(body));
  t.same(readFileSync(join(dir, 'f.bin')), body);
  const ranges = srv.hits.get('/f.bin')!;
  t.equal(ranges[0], undefined, 'first request: the whole file');
  t.match(ranges[1], /^bytes=\d+-$/, 'second request: from where it broke');
  const resumedAt = Number(/\d+/.exec(ranges[1]!)![0]);
  t.ok(resumedAt > 0 && resumedAt < body.length, `resumed at ${resumedAt}`);
  t.equal(progress.at(-1)!.done, true);
  t.equal(progress.at(-1)!.received, body.length);
  t.ok(
    progress.some((p) => p.resumedFrom === resumedAt),
    'progress reports the resume',
  );
  t.same(readdirSync(dir), ['f.bin'], 'no .part files left');
});

t.test('a broken download is resumed by the next run', async (t) => {
  const body = pseudoRandom(200_000, 2);
  const srv = await serve(t, { '/f.bin': { body, breaks: 1 } });
  const dir = t.testdir({});
  const dest = join(dir, 'f.bin');
  await t.rejects(download({ url: `${srv.base}/f.bin`, dest, retries: 0 }), {
    code: 'E_IO',
    message: /broke off after \d+ of 200000 bytes .*run the same command again to resume from byte \d+/,
  });
  t.notOk(existsSync(dest), 'no DEST while incomplete');
  const partial = statSync(`${dest}.part`).size;
  t.ok(partial > 0 && partial < body.length);
  const r = await download({ url: `${srv.base}/f.bin`, dest, retries: 0 });
  t.equal(r.resumedFrom, partial);
  t.same(readFileSync(dest), body);
  t.equal(srv.hits.get('/f.bin')![1], `bytes=${partial}-`);
  const again = await download({ url: `${srv.base}/f.bin`, dest, sha256: sha(body) });
  t.equal(again.skipped, true, 'a complete file is not fetched again');
  t.equal(srv.hits.get('/f.bin')!.length, 2);
});

t.test('a server that ignores Range sends the whole file again', async (t) => {
  const body = pseudoRandom(100_000, 4);
  const srv = await serve(t, { '/f.bin': { body, breaks: 1, noRange: true } });
  const dir = t.testdir({});
  const r = await download({ url: `${srv.base}/f.bin`, dest: join(dir, 'f.bin'), retryDelayMs: 10 });
  t.equal(r.connections, 2);
  t.same(readFileSync(join(dir, 'f.bin')), body);
});

t.test('a stalled connection is dropped and resumed', async (t) => {
  const body = pseudoRandom(100_000, 5);
  const srv = await serve(t, { '/f.bin': { body, stalls: 1 } });
  const dir = t.testdir({});
  const r = await download({
    url: `${srv.base}/f.bin`,
    dest: join(dir, 'f.bin'),
    retryDelayMs: 10,
    idleTimeoutMs: 300,
  });
  t.equal(r.connections, 2);
  t.same(readFileSync(join(dir, 'f.bin')), body);
});

t.test('a checksum mismatch deletes the download', async (t) => {
  const body = pseudoRandom(50_000, 6);
  const srv = await serve(t, { '/f.bin': { body } });
  const dir = t.testdir({});
  const wrong = sha(Buffer.from('something else'));
  await t.rejects(download({ url: `${srv.base}/f.bin`, dest: join(dir, 'f.bin'), sha256: wrong }), {
    code: 'E_CORRUPT',
    message: new RegExp(`checksum mismatch for ${srv.base}/f.bin: sha256 ${sha(body)}, expected ${wrong}.*deleted`),
  });
  t.same(readdirSync(dir), [], 'neither DEST nor .part remain');
});

t.test('size checks and HTTP errors', async (t) => {
  const body = pseudoRandom(1000, 8);
  const srv = await serve(t, { '/f.bin': { body }, '/down': { body, status: 503 } });
  const dir = t.testdir({});
  await t.rejects(download({ url: `${srv.base}/f.bin`, dest: join(dir, 'a'), size: 999 }), {
    code: 'E_CORRUPT',
    message: /the server has 1000 bytes, expected 999/,
  });
  await t.rejects(download({ url: `${srv.base}/missing`, dest: join(dir, 'b'), retryDelayMs: 1 }), {
    code: 'E_IO',
    message: /GET http:\/\/127\.0\.0\.1:\d+\/missing: HTTP 404 Not Found/,
  });
  t.equal(srv.hits.get('/missing')!.length, 1, 'a 404 is not retried');
  await t.rejects(download({ url: `${srv.base}/down`, dest: join(dir, 'c'), retries: 2, retryDelayMs: 1 }), {
    code: 'E_IO',
    message: /broke off after 0 bytes \(GET .*HTTP 503/,
  });
  t.equal(srv.hits.get('/down')!.length, 3, 'a 503 is retried');
  const closed = createServer();
  await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
  const port = (closed.address() as AddressInfo).port;
  await new Promise<void>((resolve) => closed.close(() => resolve()));
  await t.rejects(download({ url: `http://127.0.0.1:${port}/x`, dest: join(dir, 'd'), retries: 1, retryDelayMs: 1 }), {
    code: 'E_IO',
    message: /ECONNREFUSED/,
  });
  t.same(readdirSync(dir), [], 'nothing left behind');
});

t.test('progress: a bar on a terminal, plain lines elsewhere', async (t) => {
  let now = 0;
  const MiB = 1024 * 1024;
  const feed = (print: (p: DownloadProgress) => void, resumedFrom = 0) => {
    for (let r = resumedFrom; r <= 20 * MiB; r += MiB) {
      print({ url: 'u', received: r, total: 20 * MiB, resumedFrom, done: false });
      now += 50;
    }
    print({ url: 'u', received: 20 * MiB, total: 20 * MiB, resumedFrom, done: true });
  };
  const plain = sink(false);
  feed(progressPrinter(plain, 'f.zip', () => now));
  const lines = plain.text.trimEnd().split('\n');
  t.equal(lines.length, 11, 'one line per tenth, and one at the end');
  t.equal(lines[0], 'f.zip: 0.0 MiB / 20.0 MiB (0%)');
  t.equal(lines[5], 'f.zip: 10.0 MiB / 20.0 MiB (50%)');
  t.equal(lines.at(-2), 'f.zip: 18.0 MiB / 20.0 MiB (90%)');
  t.equal(lines.at(-1), 'f.zip: done, 20.0 MiB');
  t.notOk(plain.text.includes('\r') || plain.text.includes('\u001b'), 'no terminal control characters in logs');

  const tty = sink(true);
  feed(
    progressPrinter(tty, 'f.zip', () => now),
    4 * MiB,
  );
  t.match(tty.text, /^f\.zip: resuming at 4\.0 MiB\n/);
  t.match(tty.text, /\rf\.zip \[#{20}\.{20}\] {2}50% 10\.0 MiB \/ 20\.0 MiB/);
  t.match(tty.text, /\[#{40}\] 100% 20\.0 MiB \/ 20\.0 MiB .*\n$/);
  t.ok(tty.text.split('\r').length < 20, 'redrawn at most 10 times a second');
});

// ---- the command ----

t.test('wolfpack fetch: data set and weights from URLs, then the train command', async (t) => {
  const { zip } = await canidaeZip();
  const tensors: TensorMap = new Map([
    ['conv1.weight', { dtype: 'float32', shape: [2, 2], bytes: new Uint8Array(new Float32Array([1, 2, 3, 4]).buffer) }],
  ]);
  const ckpt = Buffer.from(serializeCkpt(tensors));
  const srv = await serve(t, { '/Canidae_data.zip': { body: zip, breaks: 1 }, '/m/resnet50.ckpt': { body: ckpt } });
  const dir = t.testdir({});
  const data = join(dir, 'data');
  const out = sink();
  const err = sink();
  const r = await runFetch(
    {
      dir: data,
      urlDataset: `${srv.base}/Canidae_data.zip`,
      urlWeights: `${srv.base}/m/resnet50.ckpt`,
      retryDelayMs: 10,
    },
    out,
    err,
  );
  t.equal(r.data, join(data, 'Canidae'));
  t.equal(r.weights, join(data, 'resnet50.ckpt'));
  t.equal(r.next, `wolfpack train --data ${join(data, 'Canidae')} --weights ${join(data, 'resnet50.ckpt')}`);
  t.match(out.text, /classes: dogs, wolves; train 6 images, val 4 images/);
  t.match(out.text, /ckpt file with 1 tensors/);
  t.match(out.text, new RegExp(`next, train with:\\n  wolfpack train --data ${join(data, 'Canidae')} --weights`));
  t.match(err.text, /Canidae_data\.zip: resuming at/);
  t.same(readdirSync(join(data, 'Canidae', 'val')).sort(), ['dogs', 'wolves']);
  t.same(readFileSync(join(data, 'resnet50.ckpt')), ckpt);

  const out2 = sink();
  await runFetch(
    { dir: data, urlDataset: `${srv.base}/Canidae_data.zip`, urlWeights: `${srv.base}/m/resnet50.ckpt` },
    out2,
    sink(),
  );
  t.match(out2.text, /Canidae is already there/);
  t.match(out2.text, /resnet50\.ckpt is already there/);
  t.equal(srv.hits.get('/m/resnet50.ckpt')!.length, 1, 'nothing fetched twice');

  // A weights URL that serves something else is caught before training starts.
  await writeFile(join(dir, 'x'), '');
  const srv2 = await serve(t, { '/bad.ckpt': { body: Buffer.from('<html>maintenance</html>') } });
  await t.rejects(
    runFetch({ dir: join(dir, 'd2'), dataset: 'none', urlWeights: `${srv2.base}/bad.ckpt` }, sink(), sink()),
    { code: /E_WEIGHTS|E_CORRUPT/ },
  );
  await t.rejects(runFetch({ dir: data, dataset: 'imagenet' }, sink(), sink()), {
    code: 'E_USAGE',
    message: /--dataset: unknown 'imagenet', expected one of canidae, none/,
  });
  const none = await runFetch({ dir: data, dataset: 'none', weights: 'none' }, sink(), sink());
  t.equal(none.next, 'wolfpack train --data DIR --weights FILE');
});
