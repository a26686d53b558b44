// The live dashboard in a real browser (headless Chromium through playwright-core) during a real run:
// `wolfpack coordinator --dashboard-port 0` is started first and the page loaded while it waits, then
// two `wolfpack worker` processes join. Without a reload, the loss curve must gain points as steps
// complete, the worker table must list both workers (pid, backend, in the ring), the ring must show
// them, and the accuracy curve its first epoch; a screenshot of the finished page must be a PNG. The
// live state is read while the run holds after step 2 (--hold-at), so it is read mid-run on any machine.
// Skips, saying why, where Chromium (apt-get install -y chromium) or playwright-core is missing.
// WOLFPACK_TEST_SCREENSHOT=FILE keeps a copy of the screenshot.
import { copyFileSync, existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { Hold } from '../helpers/hold.js';
import { exited, Output, startCli } from '../helpers/processes.js';
import { makeTinyJob, tinyTrainArgs } from '../helpers/tiny-job.js';

const CHROMIUM = process.env.WOLFPACK_CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

type Playwright = typeof import('playwright-core');

async function loadPlaywright(): Promise<Playwright | string> {
  if (!existsSync(CHROMIUM)) return `Chromium not found at ${CHROMIUM} (install it: apt-get install -y chromium)`;
  try {
    return await import('playwright-core');
  } catch (e) {
    return `playwright-core is not installed (npm install): ${(e as Error).message}`;
  }
}

const loaded = await loadPlaywright();

t.test(
  'the dashboard updates live during a run (headless Chromium)',
  { skip: typeof loaded === 'string' ? loaded : false },
  async (t) => {
    const pw = loaded as Playwright;
    const job = await makeTinyJob();
    t.teardown(job.cleanup);
    const profile = mkdtempSync(join(tmpdir(), 'wolfpack-chromium-'));
    t.teardown(() => rmSync(profile, { recursive: true, force: true }));

    const hold = new Hold(job.dir);
    const coord = startCli([
      'coordinator',
      '--workers',
      '2',
      '--port',
      '0',
      '--dashboard-port',
      '0',
      ...tinyTrainArgs(job, join(job.dir, 'out'), ['--epochs', '3', ...hold.args('1:2')]),
    ]);
    t.teardown(() => {
      coord.kill('SIGKILL');
    });
    const log = new Output(coord);
    const url = (await log.waitFor(/"url":"(http:\/\/127\.0\.0\.1:\d+\/)"[^\n]*"msg":"dashboard: /, 30_000))[1]!;
    const port = Number((await log.waitFor(/"port":(\d+)[^\n]*"msg":"listening for workers"/, 30_000))[1]);

    const context = await pw.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
    });
    t.teardown(() => context.close());
    const page = await context.newPage();
    const pageErrors: string[] = [];
    page.on('pageerror', (e) => pageErrors.push(e.message));
    const requests: string[] = [];
    page.on('request', (r) => requests.push(r.url()));
    await page.goto(url, { timeout: 15_000 });
    await page.waitForFunction(() => document.getElementById('connection')?.textContent === 'live', undefined, {
      timeout: 15_000,
    });
    t.equal(await page.locator('#loss-chart').getAttribute('data-points'), '0', 'no step yet: no points');
    t.match(await page.locator('#workers tbody').textContent(), /no workers yet/);
    // Every value the loss chart's point count takes from now on, and a mark that a reload would wipe.
    await page.evaluate(() => {
      const w = window as unknown as { loadedOnce: boolean; seen: number[] };
      w.loadedOnce = true;
      w.seen = [];
      const svg = document.getElementById('loss-chart')!;
      new MutationObserver(() => w.seen.push(Number(svg.dataset.points))).observe(svg, {
        attributes: true,
        attributeFilter: ['data-points'],
      });
    });

    const workers = [0, 1].map(() =>
      startCli(['worker', '--connect', `ws://127.0.0.1:${port}`, '--backend', 'wasm', '--timeout', '60']),
    );
    t.teardown(() => {
      for (const w of workers) w.kill('SIGKILL');
    });

    await hold.reached(log, 'epoch 1 step 2');
    await page.waitForFunction(() => Number(document.getElementById('loss-chart')?.dataset.points) === 2, undefined, {
      timeout: 30_000,
    });
    t.not(await page.locator('#status').textContent(), 'finished', 'points appear while the run goes on');
    t.ok((await page.locator('#loss-chart polyline').count()) >= 1, 'the curve is drawn');

    await page.waitForFunction(
      () => document.querySelectorAll('#workers tbody tr[data-member-id]').length === 2,
      undefined,
      { timeout: 30_000 },
    );
    const rows = await page
      .locator('#workers tbody tr')
      .evaluateAll((trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent ?? '')));
    t.same(rows.map((r) => r[0]).sort(), ['0', '1'], 'ranks 0 and 1');
    t.same(rows.map((r) => Number(r[2])).sort(), workers.map((w) => w.pid!).sort(), 'the worker processes, by pid');
    for (const r of rows) {
      t.equal(r[1], hostname(), 'host');
      t.equal(r[3], 'wasm', 'backend');
      t.equal(r[6], 'in ring', 'state');
    }
    t.equal(await page.locator('#ring circle[r="15"]').count(), 2, 'the ring shows both workers');
    hold.release();

    await page.waitForFunction(() => Number(document.getElementById('acc-chart')?.dataset.points) >= 1, undefined, {
      timeout: 120_000,
    });
    t.pass('the accuracy curve has its first epoch');
    await page.waitForFunction(() => document.getElementById('status')?.textContent === 'finished', undefined, {
      timeout: 180_000,
    });
    t.match(await page.locator('#message').textContent(), /best accuracy [\d.]+ at epoch \d/);
    t.ok(
      Number(await page.locator('#loss-chart').getAttribute('data-points')) === 12,
      'every step of the 3 epochs is plotted',
    );
    const seen = await page.evaluate(() => (window as unknown as { seen: number[] }).seen);
    const counts = seen.filter((n, i) => n > 0 && n !== seen[i - 1]);
    t.ok(counts.length >= 3, `the loss curve grew step by step, without a reload: ${counts.join(' -> ')} point(s)`);
    t.same(
      counts,
      [...counts].sort((a, b) => a - b),
      'only ever growing',
    );
    t.equal(
      await page.evaluate(() => (window as unknown as { loadedOnce?: boolean }).loadedOnce),
      true,
      'the page was never reloaded',
    );
    const events = await page
      .locator('#events li')
      .evaluateAll((lis) => lis.map((li) => (li as HTMLElement).dataset.kind));
    for (const kind of ['joined', 'ring', 'best'])
      t.ok(events.includes(kind), `the events list shows a '${kind}' event`);

    const shot = join(profile, 'dashboard.png');
    await page.screenshot({ path: shot, fullPage: true });
    const png = readFileSync(shot);
    t.ok(statSync(shot).size > 1000, `screenshot of ${png.length} bytes`);
    t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG');
    if (process.env.WOLFPACK_TEST_SCREENSHOT) copyFileSync(shot, process.env.WOLFPACK_TEST_SCREENSHOT);

    t.equal(
      await exited(coord, 30_000),
      0,
      `the coordinator exits 0${coord.exitCode ? `: ${log.text.slice(-2000)}` : ''}`,
    );
    for (const w of workers) await exited(w, 15_000);
    t.same(pageErrors, [], 'no script errors in the page');
    t.same(
      requests.filter((r) => !r.startsWith(url)),
      [],
      'the page requested nothing from another origin',
    );
  },
);
