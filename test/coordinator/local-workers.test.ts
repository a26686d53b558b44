// Single-node mode's --gpus: local worker k is started with --gpu LIST[k mod n], read back from the running
// processes' command lines; a list that is not GPU indices is refused before anything starts.
import { readFileSync } from 'node:fs';
import net from 'node:net';
import t from 'tap';
import { LocalWorkers, parseGpuList } from '../../coordinator/local-workers.js';
import { createLogger } from '../../shared/log.js';

t.test('parseGpuList', async (t) => {
  t.same(parseGpuList('0,1,2,3'), [0, 1, 2, 3]);
  t.same(parseGpuList(' 1 , 0 '), [1, 0]);
  t.equal(parseGpuList(undefined), undefined);
  t.equal(parseGpuList(''), undefined);
  t.throws(() => parseGpuList('a', 'train(): options.gpus'), {
    code: 'E_USAGE',
    message: /^train\(\): options\.gpus: expected GPU indices/,
  });
  for (const bad of ['0,,1', 'a', '1.5', '-1', '0;1'])
    t.throws(
      () => parseGpuList(bad),
      { code: 'E_USAGE', message: /--gpus: expected GPU indices separated by commas/ },
      bad,
    );
});

t.test('worker k runs with --gpu LIST[k mod n]', async (t) => {
  // A coordinator address that accepts connections and says nothing: the workers stay up, waiting.
  const sockets: net.Socket[] = [];
  const server = net.createServer((s) => sockets.push(s));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  const workers = new LocalWorkers(createLogger({ level: 'silent' }));
  t.teardown(async () => {
    await workers.stop(0);
    for (const s of sockets) s.destroy();
    server.close();
  });
  workers.start(3, `ws://127.0.0.1:${port}`, 'cpu', {}, [1, 0]);
  const gpuOf = (pid: number): string | undefined => {
    const args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    const i = args.indexOf('--gpu');
    return i < 0 ? undefined : args[i + 1];
  };
  t.same(workers.pids.map(gpuOf), ['1', '0', '1'], 'in turn');
});

t.test('without --gpus no worker is given --gpu', async (t) => {
  const workers = new LocalWorkers(createLogger({ level: 'silent' }));
  t.teardown(() => workers.stop(0));
  workers.start(1, 'ws://127.0.0.1:9', 'cpu');
  const args = readFileSync(`/proc/${workers.pids[0]!}/cmdline`, 'utf8').split('\0');
  t.notOk(args.includes('--gpu'));
});
