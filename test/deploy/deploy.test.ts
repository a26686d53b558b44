// The deployment files in deploy/, checked without a Docker engine or a cluster (none runs where wolfpack
// is tested): every compose file and Kubernetes manifest parses; the services, GPU reservations, health
// checks, volumes and the token secret are there; every command is a wolfpack subcommand that the CLI
// dispatches, whose argv the command's real parser accepts (its parse options, captured by mocking
// shared/config/args.js), whose WOLFPACK_<FLAG> environment variables reach it, and whose paths
// `wolfpack fetch` produces; every environment variable is one wolfpack reads; every compose variable is
// documented; every container's health check asks the process itself (`wolfpack health` on the file its
// --health-file names); the Dockerfiles build from `npm pack` (the package's files), check their backend,
// leave out what the image cannot use, and run as a non-root user. Where Docker Compose is installed
// (`docker compose`, or Debian's `docker-compose`), `config` validates each compose file too.
// scripts/ci/image-check.sh builds and runs the CPU image itself (podman).
import t, { type Test } from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml, parseAllDocuments } from 'yaml';
import { packageRoot } from '../../shared/paths.js';
import { envName } from '../../shared/config/config-file.js';
import { DATASETS, WEIGHTS } from '../../cli/commands/fetch.js';
import { parse, type Options } from '../../shared/config/args.js';
import { main } from '../../cli/wolfpack.js';

const deploy = join(packageRoot, 'deploy');
const read = (rel: string) => readFileSync(join(packageRoot, rel), 'utf8');
type Obj = Record<string, unknown>;
const obj = (v: unknown): Obj => (v && typeof v === 'object' ? (v as Obj) : {});
const list = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);

const TOKEN_PATH = '/run/secrets/wolfpack_token';
const HEALTH_PATH = '/tmp/wolfpack-health.json';

// ---- what the CLI accepts ----

interface ParseCall {
  options: Options;
  allowPositionals: boolean;
}

/**
 * The exact options (and positionals setting) a command passes to parse(), captured by mocking
 * shared/config/args.js.
 */
async function commandOptions(t: Test, name: string): Promise<ParseCall> {
  const real = await import('../../shared/config/args.js');
  let captured: ParseCall | undefined;
  const mod = await t.mockImport<Record<string, { run(argv: string[]): Promise<number> }>>(
    `../../cli/commands/${name}.js`,
    {
      '../../shared/config/args.js': {
        ...real,
        parse: (_argv: string[], options: Options, allowPositionals = false) => {
          captured = { options, allowPositionals };
          throw new Error('options captured');
        },
      },
    },
  );
  const cmd = mod[name];
  if (!cmd) throw new Error(`cli/commands/${name}.ts has no export '${name}'`);
  await cmd.run([]).catch(() => undefined);
  if (!captured) throw new Error(`cli/commands/${name}.ts did not call parse()`);
  return captured;
}

/**
 * Runs `fn` with exactly `env`'s WOLFPACK_* variables set (those of the test's own environment are
 * removed meanwhile) and restores the environment afterwards.
 */
async function withEnv<T>(env: Record<string, string>, fn: () => Promise<T> | T): Promise<T> {
  const saved = Object.entries(process.env).filter(([k]) => k.startsWith('WOLFPACK_'));
  for (const [k] of saved) delete process.env[k];
  Object.assign(process.env, env);
  try {
    return await fn();
  } finally {
    for (const k of Object.keys(process.env)) if (k.startsWith('WOLFPACK_')) delete process.env[k];
    for (const [k, v] of saved) process.env[k] = v;
  }
}

/**
 * `wolfpack ARGV` run in this process through the CLI's main() with `env`: its exit code and what it
 * wrote to stderr. Only for invocations that fail before doing any work; bounded at 60 s.
 */
async function cliFails(argv: string[], env: Record<string, string> = {}): Promise<{ code: number; stderr: string }> {
  let stderr = '';
  const write = process.stderr.write;
  process.stderr.write = ((chunk: string | Uint8Array) => {
    stderr += String(chunk);
    return true;
  }) as typeof process.stderr.write;
  let timer: NodeJS.Timeout | undefined;
  try {
    const bound = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`wolfpack ${argv.join(' ')} did not return within 60 s`)), 60_000);
    });
    const code = await withEnv(env, () => Promise.race([main(argv), bound]));
    return { code, stderr };
  } finally {
    clearTimeout(timer);
    process.stderr.write = write;
  }
}

/** Environment variables the code reads directly (process.env.WOLFPACK_X) in the shipped sources. */
function codeEnv(): Set<string> {
  const found = new Set<string>();
  const walk = (dir: string) => {
    for (const e of readdirSync(join(packageRoot, dir), { withFileTypes: true })) {
      const rel = join(dir, e.name);
      if (e.isDirectory()) walk(rel);
      else if (e.name.endsWith('.ts'))
        for (const m of read(rel).matchAll(/process\.env\.(WOLFPACK_[A-Z0-9_]+)/g)) found.add(m[1]!);
    }
  };
  for (const dir of ['cli', 'shared', 'coordinator', 'worker']) walk(dir);
  return found;
}

// ---- reading commands out of compose services and pod specs ----

/** Shell words of `script`, split into simple commands at ; && || and newlines; quotes and $(...) kept whole. */
function shellCommands(script: string): string[][] {
  const cmds: string[][] = [[]];
  let word = '';
  let inWord = false;
  const end = () => {
    if (inWord) cmds[cmds.length - 1]!.push(word);
    word = '';
    inWord = false;
  };
  for (let i = 0; i < script.length; i++) {
    const c = script[i]!;
    if (c === "'") {
      const j = script.indexOf("'", i + 1);
      word += script.slice(i + 1, j);
      inWord = true;
      i = j;
    } else if (c === '"') {
      let j = i + 1;
      for (let depth = 0; j < script.length && (script[j] !== '"' || depth > 0); j++) {
        if (script.startsWith('$(', j)) depth++;
        else if (script[j] === ')' && depth > 0) depth--;
      }
      word += script.slice(i + 1, j);
      inWord = true;
      i = j;
    } else if (c === ';' || c === '\n' || c === '&' || script.startsWith('||', i)) {
      end();
      if (script.startsWith('&&', i) || script.startsWith('||', i)) i++;
      cmds.push([]);
    } else if (c === '>' || (c === '2' && script[i + 1] === '>')) {
      // a redirection: skip it and its target
      end();
      const m = /^2?>>?(&[0-9-]+|\s*[^\s;&|]+)/.exec(script.slice(i));
      i += (m ? m[0].length : 1) - 1;
    } else if (/\s/.test(c)) {
      end();
    } else {
      word += c;
      inWord = true;
    }
  }
  end();
  return cmds.filter((c) => c.length > 0).map((c) => (c[0] === 'exec' ? c.slice(1) : c));
}

/** The wolfpack argv(s) a container runs: the image's ENTRYPOINT is `wolfpack`, unless replaced by a shell. */
function wolfpackRuns(entrypoint: unknown, command: unknown): string[][] {
  const ep = list(entrypoint).map(String);
  const cmd = typeof command === 'string' ? [command] : list(command).map(String);
  if (ep.length === 0) return [typeof command === 'string' ? shellCommands(command)[0]! : cmd];
  if (ep[0] === '/bin/sh' && ep[1] === '-c') {
    return shellCommands(cmd.join(' '))
      .filter((c) => c[0] === 'wolfpack')
      .map((c) => c.slice(1));
  }
  return [];
}

interface Run {
  where: string;
  argv: string[];
}

/** Flags of an argv: name -> value (undefined for a flag with no value). */
function flagsOf(argv: string[], options: Options): Map<string, string | undefined> {
  const flags = new Map<string, string | undefined>();
  for (let i = 1; i < argv.length; i++) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(argv[i]!);
    if (!m) continue;
    const takesValue = options[m[1]!]?.type !== 'boolean';
    flags.set(m[1]!, m[2] ?? (takesValue ? argv[++i] : undefined));
  }
  return flags;
}

const parseCache = new Map<string, ParseCall>();
const optionsCache = new Map<string, Options>();

async function parseCallOf(t: Test, sub: string): Promise<ParseCall> {
  if (!parseCache.has(sub)) {
    const call = await commandOptions(t, sub);
    parseCache.set(sub, call);
    optionsCache.set(sub, call.options);
  }
  return parseCache.get(sub)!;
}

const dispatched = new Map<string, { code: number; stderr: string }>();

/** Checks one wolfpack invocation: a subcommand the CLI dispatches, and an argv its parser accepts. */
async function checkRun(t: Test, run: Run): Promise<Map<string, string | undefined>> {
  const sub = run.argv[0]!;
  t.ok(existsSync(join(packageRoot, 'cli', 'commands', `${sub}.ts`)), `${run.where}: 'wolfpack ${sub}' is a command`);
  // `wolfpack SUB --no-such-flag` reaches SUB's own parser (which refuses the flag) only if main() dispatches SUB
  if (!dispatched.has(sub)) dispatched.set(sub, await cliFails([sub, '--no-such-flag']));
  const d = dispatched.get(sub)!;
  t.equal(d.code, 2, `${run.where}: 'wolfpack ${sub} --no-such-flag' is a usage error`);
  t.match(
    d.stderr,
    new RegExp(`^wolfpack ${sub}: unknown flag --no-such-flag`),
    `${run.where}: the CLI dispatches '${sub}' to its command`,
  );
  const { options, allowPositionals } = await parseCallOf(t, sub);
  const flags = flagsOf(run.argv, options);
  for (const [name, value] of flags) {
    const known = Object.hasOwn(options, name);
    t.ok(known, `${run.where}: wolfpack ${sub} accepts --${name}`);
    if (known && options[name]!.type === 'string')
      t.ok(value !== undefined && !value.startsWith('--'), `${run.where}: --${name} has a value`);
  }
  // the command's real parser (shared/config/args.ts, strict) takes the whole argv, with no WOLFPACK_* variables set
  let parsed: ReturnType<typeof parse> | undefined;
  let error: string | undefined;
  await withEnv({}, () => {
    try {
      parsed = parse(run.argv.slice(1), options, allowPositionals);
    } catch (e) {
      error = (e as Error).message;
    }
  });
  t.equal(error, undefined, `${run.where}: wolfpack ${sub}'s parser accepts ${JSON.stringify(run.argv.slice(1))}`);
  for (const [name, value] of flags) {
    if (parsed && Object.hasOwn(options, name) && !options[name]!.multiple)
      t.same(parsed.values[name], options[name]!.type === 'boolean' ? true : value, `${run.where}: parsed --${name}`);
  }
  for (const w of run.argv.slice(1).filter((a) => !a.startsWith('--'))) {
    // every other word must be the value of the flag before it
    const i = run.argv.indexOf(w);
    t.ok(run.argv[i - 1]?.startsWith('--'), `${run.where}: '${w}' is a flag's value, not a stray argument`);
  }
  return flags;
}

/** Environment keys must be read by wolfpack: directly, or as WOLFPACK_<FLAG> of the container's command. */
function checkEnv(
  t: Test,
  where: string,
  keys: string[],
  sub: string | undefined,
  direct: Set<string>,
  referenced: Set<string> = new Set(),
) {
  const options = sub ? (optionsCache.get(sub) ?? {}) : {};
  const asFlag = new Map(Object.keys(options).map((f) => [envName(f), f]));
  for (const key of keys) {
    const ok = direct.has(key) || asFlag.has(key) || referenced.has(key);
    t.ok(
      ok,
      `${where}: environment variable ${key} is read by wolfpack${asFlag.has(key) ? ` (as --${asFlag.get(key)})` : ''}`,
    );
  }
}

/** Compose `${VAR...}` references in a file's text ($$ is an escaped dollar). */
function composeVars(text: string): Set<string> {
  return new Set([...text.replace(/\$\$/g, '').matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]!));
}

// ---- the tests ----

const COMPOSE_FILES = ['compose.yaml', 'compose.coordinator.yaml', 'compose.workers.yaml'];
const readme = readFileSync(join(deploy, 'README.md'), 'utf8');
const direct = codeEnv();

t.test('every deploy file is there', async (t) => {
  for (const f of [
    'Dockerfile.gpu',
    'Dockerfile.cpu',
    ...COMPOSE_FILES,
    'README.md',
    'fonts.conf',
    'check-backend.mjs',
    'k8s/coordinator.yaml',
    'k8s/workers.yaml',
    'k8s/secret.yaml',
    'k8s/volumes.yaml',
    'k8s/fetch-job.yaml',
    'k8s/kustomization.yaml',
  ]) {
    t.ok(existsSync(join(deploy, f)), `deploy/${f}`);
  }
  t.match(
    readme,
    /no Docker engine[^.]*runs on the machines/i,
    'the README says the images were validated by tests, not run',
  );
});

t.test('WOLFPACK_<FLAG> variables reach the commands', async (t) => {
  // the compose files pass settings to the coordinator and the workers as WOLFPACK_<FLAG> variables
  const services = obj(obj(parseYaml(readFileSync(join(deploy, 'compose.yaml'), 'utf8'), { merge: true })).services);
  for (const sub of ['coordinator', 'worker']) {
    const { options, allowPositionals } = await parseCallOf(t, sub);
    const keys = Object.keys(obj(obj(services[sub]).environment));
    const viaFlag = Object.keys(options).filter((f) => keys.includes(envName(f)));
    t.ok(
      viaFlag.length > 0,
      `compose.yaml ${sub}: sets WOLFPACK_<FLAG> variables (${viaFlag.map(envName).join(', ')})`,
    );
    const sample = (f: string) => (options[f]!.type === 'boolean' ? 'true' : `from-env-${f}`);
    const { values } = await withEnv(Object.fromEntries(viaFlag.map((f) => [envName(f), sample(f)])), () =>
      parse([], options, allowPositionals),
    );
    for (const f of viaFlag)
      t.same(values[f], options[f]!.type === 'boolean' ? true : sample(f), `${sub}: ${envName(f)} reaches --${f}`);
    // compose passes `${VAR:-}`: an empty variable means "not set", so the command's own default applies
    const empty = await withEnv(Object.fromEntries(viaFlag.map((f) => [envName(f), ''])), () =>
      parse([], options, allowPositionals),
    );
    for (const f of viaFlag) t.equal(empty.values[f], undefined, `${sub}: an empty ${envName(f)} leaves --${f} unset`);
  }
  const coordinator = (await parseCallOf(t, 'coordinator')).options;
  const both = await withEnv({ WOLFPACK_EPOCHS: '5' }, () => parse(['--epochs', '3'], coordinator));
  t.equal(both.values.epochs, '3', 'the command line wins over the environment');

  // Through the whole CLI: a bad value in the environment is refused by the command, naming its flag.
  // Each argv also holds a bad flag that the command checks later, so that, were the variable not read,
  // the command would still stop there (with that flag's error) before listening or connecting.
  const epochs = await cliFails(['coordinator', '--workers', '2', '--data', '/nonexistent', '--backend', 'bogus'], {
    WOLFPACK_EPOCHS: 'zero',
  });
  t.equal(epochs.code, 2, 'wolfpack coordinator with WOLFPACK_EPOCHS=zero: a usage error');
  t.match(
    epochs.stderr,
    /^wolfpack coordinator: --epochs: expected an integer >= 1, got 'zero'/,
    'naming --epochs and the value from the environment',
  );
  const backend = await cliFails(
    ['worker', '--connect', 'ws://127.0.0.1:9', '--log-level', 'silent', '--timeout', '0'],
    { WOLFPACK_BACKEND: 'bogus' },
  );
  t.equal(backend.code, 2, 'wolfpack worker with WOLFPACK_BACKEND=bogus: a usage error');
  t.match(
    backend.stderr,
    /^wolfpack worker: --backend: expected one of auto, .*, got 'bogus'/,
    'naming --backend and the value from the environment',
  );
});

for (const file of COMPOSE_FILES) {
  t.test(`deploy/${file}`, async (t) => {
    const text = readFileSync(join(deploy, file), 'utf8');
    const doc = obj(parseYaml(text, { merge: true }));
    const services = obj(doc.services);
    const secrets = obj(doc.secrets);
    t.ok(obj(secrets.wolfpack_token).file, 'the token is a file-backed compose secret');
    const runs: { svc: string; flags: Map<string, string | undefined>; sub: string }[] = [];

    for (const [name, raw] of Object.entries(services)) {
      const svc = obj(raw);
      const where = `${file} ${name}`;
      t.match(String(svc.image), /wolfpack/, `${where}: runs the wolfpack image`);
      const found = wolfpackRuns(svc.entrypoint, svc.command);
      t.equal(found.length, 1, `${where}: runs one wolfpack command`);
      for (const argv of found) {
        const flags = await checkRun(t, { where, argv });
        runs.push({ svc: name, flags, sub: argv[0]! });
        checkEnv(t, where, Object.keys(obj(svc.environment)), argv[0], direct);
        if (flags.has('token-file')) {
          t.equal(flags.get('token-file'), TOKEN_PATH, `${where}: --token-file is the compose secret's path`);
          t.ok(list(svc.secrets).includes('wolfpack_token'), `${where}: mounts the wolfpack_token secret`);
        }
      }
      const isFetch = list(svc.profiles).length > 0;
      if (!isFetch) {
        // the process's own state, not the host's sockets
        const test = list(obj(svc.healthcheck).test).map(String);
        t.same(
          test,
          ['CMD', 'wolfpack', 'health', '--file', HEALTH_PATH],
          `${where}: health check is \`wolfpack health\` on its health file`,
        );
        t.equal(
          runs.at(-1)?.flags.get('health-file'),
          HEALTH_PATH,
          `${where}: which the command writes (--health-file)`,
        );
      }
    }

    const coordinator = runs.find((r) => r.sub === 'coordinator');
    const worker = runs.find((r) => r.sub === 'worker');
    const fetch = runs.find((r) => r.sub === 'fetch');
    if (file !== 'compose.workers.yaml') {
      t.ok(coordinator, 'has a coordinator service');
      const c = coordinator!.flags;
      t.equal(c.get('host'), '0.0.0.0', 'the coordinator listens on every interface of its container');
      t.equal(c.get('port'), '7070');
      t.ok(obj(services[coordinator!.svc]).deploy === undefined, 'the coordinator reserves no GPU');
      // the paths it trains on are the ones `wolfpack fetch --dir /data` writes
      t.ok(fetch, 'has a fetch service');
      t.equal(fetch!.flags.get('dir'), '/data');
      t.equal(c.get('data'), `/data/${DATASETS.canidae!.folder}`);
      t.equal(c.get('weights'), `/data/${WEIGHTS.resnet50!.file}`);
      const vols = list(obj(services[coordinator!.svc]).volumes).map(String);
      t.ok(
        vols.some((v) => /:\/data(:ro)?$/.test(v)),
        'the coordinator mounts the data volume at /data',
      );
      t.ok(
        vols.some((v) => /:\/runs$/.test(v)) && c.get('out')!.startsWith('/runs/'),
        'and writes its results to the runs volume',
      );
      t.ok(
        list(obj(services[fetch!.svc]).volumes)
          .map(String)
          .some((v) => /:\/data$/.test(v)),
        'fetch writes into the same data volume',
      );
    }
    if (file !== 'compose.coordinator.yaml') {
      t.ok(worker, 'has a worker service');
      const w = obj(services[worker!.svc]);
      const devices = list(obj(obj(obj(w.deploy).resources).reservations).devices).map(obj);
      t.equal(devices.length, 1, 'the worker reserves a device');
      t.equal(devices[0]?.driver, 'nvidia');
      t.equal(devices[0]?.count, 1, 'one GPU per worker');
      t.ok(list(devices[0]?.capabilities).includes('gpu'), 'capabilities: [gpu]');
      t.equal(worker!.flags.get('ring-bind'), '0.0.0.0', 'ring listeners are reachable from other containers');
      t.ok(worker!.flags.get('advertise'), 'workers advertise an address their neighbour can reach');
    }
    if (file === 'compose.yaml') {
      t.equal(
        obj(obj(obj(services.worker).depends_on).coordinator).condition,
        'service_healthy',
        'workers start once the coordinator listens',
      );
      t.equal(worker!.flags.get('connect'), 'ws://coordinator:7070', 'workers reach the coordinator service');
      t.equal(
        String(obj(obj(services.worker).deploy).replicas),
        coordinator!.flags.get('workers'),
        'worker containers = --workers',
      );
    }
    if (file === 'compose.workers.yaml') {
      t.match(
        worker!.flags.get('connect'),
        /^\$\{WOLFPACK_COORDINATOR[:}]/,
        'workers are pointed at the coordinator by WOLFPACK_COORDINATOR',
      );
      t.equal(obj(services.worker).network_mode, 'host', 'ring ports are reachable from other hosts');
    }
    if (file === 'compose.coordinator.yaml') {
      t.ok(
        list(obj(services.coordinator).ports)
          .map(String)
          .some((p) => p.endsWith(':7070')),
        'the coordinator port is published',
      );
    }
    for (const v of composeVars(text))
      t.match(readme, new RegExp('`' + v + '`'), `${file}: \${${v}} is documented in deploy/README.md`);
  });
}

t.test('compose.gpu-workers.yaml: one worker per GPU, each its own', async (t) => {
  const text = readFileSync(join(deploy, 'compose.gpu-workers.yaml'), 'utf8');
  const services = obj(obj(parseYaml(text, { merge: true })).services);
  const plain = obj(obj(obj(parseYaml(readFileSync(join(deploy, 'compose.workers.yaml'), 'utf8'))).services).worker);
  const names = Object.keys(services);
  t.same(
    names,
    Array.from({ length: 8 }, (_, i) => `worker-gpu${i}`),
    'worker-gpu0 .. worker-gpu7',
  );
  for (const [i, name] of names.entries()) {
    const s = obj(services[name]);
    const devices = list(obj(obj(obj(s.deploy).resources).reservations).devices).map(obj);
    t.same(devices, [{ driver: 'nvidia', device_ids: [String(i)], capabilities: ['gpu'] }], `${name}: GPU ${i} alone`);
    t.same(s.command, plain.command, `${name}: the command of compose.workers.yaml's worker`);
    t.same(s.environment, plain.environment, `${name}: and its environment`);
    t.equal(s.network_mode, 'host', `${name}: the host's network (ring ports reachable from other hosts)`);
    t.same(obj(s.healthcheck).test, obj(plain.healthcheck).test, `${name}: the same health check`);
    t.equal(s.init, true, `${name}: init forwards signals`);
  }
  for (const v of composeVars(text))
    t.match(readme, new RegExp('`' + v + '`'), `compose.gpu-workers.yaml: \${${v}} is documented in deploy/README.md`);
  t.match(readme, /compose\.gpu-workers\.yaml/, 'deploy/README.md says how to use it');
});

t.test('deploy/k8s', async (t) => {
  const docs = readdirSync(join(deploy, 'k8s'))
    .filter((f) => f.endsWith('.yaml'))
    .flatMap((f) =>
      parseAllDocuments(readFileSync(join(deploy, 'k8s', f), 'utf8')).map((d) => {
        t.same(d.errors, [], `${f} parses`);
        return { file: f, doc: obj(d.toJS()) };
      }),
    );
  const find = (kind: string, name: string) =>
    docs.find((d) => d.doc.kind === kind && obj(d.doc.metadata).name === name)?.doc;
  const kust = docs.find((d) => d.doc.kind === 'Kustomization')!.doc;
  for (const r of list(kust.resources).map(String))
    t.ok(existsSync(join(deploy, 'k8s', r)), `kustomization resource ${r} exists`);

  const secret = find('Secret', 'wolfpack-token');
  t.ok(secret && obj(secret.stringData).token, 'a Secret holds the token');
  const deployment = find('Deployment', 'wolfpack-coordinator');
  const service = find('Service', 'wolfpack-coordinator');
  const job = find('Job', 'wolfpack-workers');
  t.ok(deployment && service && job, 'coordinator Deployment + Service and workers Job');
  t.equal(obj(job!.spec).completionMode, 'Indexed', 'the workers are an Indexed Job');

  const podLabels = obj(obj(obj(obj(deployment!.spec).template).metadata).labels);
  for (const [k, v] of Object.entries(obj(obj(service!.spec).selector)))
    t.equal(podLabels[k], v, `the Service selects the coordinator pod (${k})`);
  t.equal(list(obj(service!.spec).ports).map(obj)[0]?.port, 7070);

  const podOf = (d: Obj) => obj(obj(obj(d.spec).template).spec);
  const check = async (where: string, d: Obj) => {
    const pod = podOf(d);
    const c = obj(list(pod.containers)[0]);
    t.match(String(c.image), /wolfpack/, `${where}: runs the wolfpack image`);
    t.equal(obj(pod.securityContext).runAsNonRoot, true, `${where}: runs as non-root`);
    const found = wolfpackRuns(c.command, c.args);
    t.equal(found.length, 1, `${where}: runs one wolfpack command`);
    const flags = await checkRun(t, { where, argv: found[0]! });
    const envNames = list(c.env).map((e) => String(obj(e).name));
    const referenced = new Set([...JSON.stringify(c.args ?? []).matchAll(/\$\(([A-Z_]+)\)/g)].map((m) => m[1]!));
    checkEnv(t, where, envNames, found[0]![0], direct, referenced);
    for (const r of referenced) t.ok(envNames.includes(r), `${where}: $(${r}) is defined in env`);
    if (flags.has('token-file')) {
      t.equal(flags.get('token-file'), TOKEN_PATH, `${where}: --token-file is the mounted Secret`);
      const mount = list(c.volumeMounts)
        .map(obj)
        .find((m) => TOKEN_PATH.startsWith(String(m.mountPath) + '/'));
      const vol = list(pod.volumes)
        .map(obj)
        .find((v) => v.name === mount?.name);
      t.equal(obj(vol?.secret).secretName, 'wolfpack-token', `${where}: the token volume is the Secret`);
      t.ok(
        list(obj(vol?.secret).items)
          .map(obj)
          .some((i) => `${mount?.mountPath}/${i.path}` === TOKEN_PATH),
        `${where}: at ${TOKEN_PATH}`,
      );
    }
    return { flags, container: c };
  };
  const coord = await check('k8s coordinator', deployment!);
  const work = await check('k8s workers', job!);
  for (const [where, r] of [
    ['k8s coordinator', coord],
    ['k8s workers', work],
  ] as const) {
    t.equal(r.flags.get('health-file'), HEALTH_PATH, `${where}: writes its health file`);
    const probes = ['readinessProbe', 'startupProbe', 'livenessProbe']
      .map((k) => obj(r.container[k]))
      .filter((p) => Object.keys(p).length > 0);
    t.ok(probes.length > 0, `${where}: has probes`);
    for (const p of probes)
      t.same(
        obj(p.exec).command,
        ['wolfpack', 'health', '--file', HEALTH_PATH],
        `${where}: probes ask \`wolfpack health\``,
      );
  }
  t.equal(coord.flags.get('host'), '0.0.0.0');
  t.equal(coord.flags.get('port'), '7070');
  t.equal(coord.flags.get('data'), `/data/${DATASETS.canidae!.folder}`);
  t.equal(coord.flags.get('weights'), `/data/${WEIGHTS.resnet50!.file}`);
  t.equal(Number(coord.flags.get('workers')), obj(job!.spec).completions, "--workers = the Job's completions");
  t.equal(obj(job!.spec).parallelism, obj(job!.spec).completions, 'all workers run at once');
  t.equal(
    work.flags.get('connect'),
    `ws://${obj(service!.metadata).name}:7070`,
    'workers reach the coordinator Service',
  );
  t.equal(work.flags.get('advertise'), '$(POD_IP)', 'workers advertise their pod IP');
  t.equal(obj(obj(work.container.resources).limits)['nvidia.com/gpu'], 1, 'each worker has one GPU');
  t.notOk(obj(obj(coord.container.resources).limits)['nvidia.com/gpu'], 'the coordinator has none');
  const fetchJob = find('Job', 'wolfpack-fetch');
  const fetchRun = await check('k8s fetch', fetchJob!);
  t.equal(fetchRun.flags.get('dir'), '/data');
});

t.test('Dockerfiles', async (t) => {
  const pkg = JSON.parse(read('package.json')) as {
    optionalDependencies?: Record<string, string>;
    files?: string[];
    main?: string;
  };
  t.match(
    pkg.optionalDependencies?.['@tensorflow/tfjs-node-gpu'] ?? '',
    /^\^?4\./,
    'tfjs-node-gpu is 4.x (libtensorflow 2.9: CUDA 11.2, cuDNN 8)',
  );
  // the images hold what the package holds: package.json "files", which must cover what the image runs
  for (const f of ['dist', 'bin', 'deploy', '!deploy/wolfpack_token'])
    t.ok(pkg.files?.includes(f), `package.json files: ${f}`);
  t.equal(pkg.main, './dist/index.js');
  const ignore = read('.dockerignore').split('\n');
  for (const f of ['.git', '**/node_modules', 'dist', 'deploy/wolfpack_token'])
    t.ok(ignore.includes(f), `.dockerignore: ${f}`);
  for (const [file, base] of [
    ['Dockerfile.gpu', /nvidia\/cuda:11\.2[.\d]*-cudnn8-runtime-ubuntu20\.04/],
    ['Dockerfile.cpu', /node:20-bookworm-slim/],
  ] as const) {
    const text = readFileSync(join(deploy, file), 'utf8');
    t.match(text, base, `${file}: base image`);
    t.match(text, /node:20/, `${file}: Node 20`);
    t.match(text, /npm run build[^\n]*\n[^\n]*npm pack --ignore-scripts/, `${file}: compiles, then packs the package`);
    t.match(text, /tar -xzf \/tmp\/wolfpack\.tgz --strip-components=1 -C \/app/, `${file}: /app is the packed package`);
    t.match(
      text,
      /npm ci --omit=dev --include=optional --ignore-scripts/,
      `${file}: production dependencies; no install script runs unasked`,
    );
    if (file === 'Dockerfile.cpu')
      t.match(
        text,
        /rm -rf [^\n]*node_modules\/webgpu/,
        `${file}: no webgpu (it needs a Vulkan loader the image has not got)`,
      );
    t.match(text, /FONTCONFIG_FILE=\/app\/deploy\/fonts\.conf/, `${file}: a fontconfig for the text of curves.png`);
    t.match(text, /WOLFPACK_LOG_FORMAT=json/, `${file}: JSON logs`);
    const users = [...text.matchAll(/^USER\s+(\S+)/gm)].map((m) => m[1]);
    t.ok(
      users.length > 0 && !['root', '0'].includes(users.at(-1)!),
      `${file}: runs as a non-root user (${users.at(-1)})`,
    );
    t.match(text, /^ENTRYPOINT \["wolfpack"\]$/m, `${file}: ENTRYPOINT wolfpack`);
    for (const m of text.matchAll(/^COPY (?!--from)(.+) (\S+)$/gm)) {
      for (const src of m[1]!.split(/\s+/).filter((s) => !s.startsWith('--')))
        t.ok(existsSync(join(packageRoot, src)), `${file}: COPY ${src} exists`);
    }
  }
  // each image checks the backend it is for after installing it, so a failed download fails the build
  const cpu = readFileSync(join(deploy, 'Dockerfile.cpu'), 'utf8');
  t.match(cpu, /^ARG WOLFPACK_BACKEND=tensorflow$/m, "Dockerfile.cpu: TensorFlow's CPU build unless asked otherwise");
  t.match(cpu, /node deploy\/check-backend\.mjs "\$WOLFPACK_BACKEND"/, 'Dockerfile.cpu: checks that backend');
  t.match(cpu, /WOLFPACK_BACKEND=\$\{WOLFPACK_BACKEND\}/, "Dockerfile.cpu: and makes it the workers' --backend");
  const gpu = readFileSync(join(deploy, 'Dockerfile.gpu'), 'utf8');
  t.match(
    gpu,
    /ls node_modules\/@tensorflow\/tfjs-node-gpu\/lib\/napi-v\*\/tfjs_binding\.node/,
    'Dockerfile.gpu: checks the GPU backend installed',
  );
  t.match(gpu, /WOLFPACK_BACKEND=tensorflow-gpu/, "Dockerfile.gpu: the workers' --backend");
  // one image for both GPU backends: webgpu stays, with what it needs on an NVIDIA host
  t.notMatch(
    gpu,
    /rm -rf [^\n]*node_modules\/(webgpu|@tensorflow\/tfjs-backend-webgpu)/,
    'Dockerfile.gpu: keeps webgpu',
  );
  t.match(gpu, /install [^\n]*\n\s*libvulkan1 libegl1/, 'Dockerfile.gpu: the Vulkan loader and libEGL');
  t.match(
    gpu,
    /NVIDIA_DRIVER_CAPABILITIES=compute,utility,graphics/,
    "Dockerfile.gpu: the driver's Vulkan ICD is mounted (graphics)",
  );
});

t.test('the health check command', async (t) => {
  // `wolfpack health` itself is tested in test/health/health.test.ts; here, that the CLI dispatches it
  const d = await cliFails(['health', '--no-such-flag']);
  t.equal(d.code, 2);
  t.match(d.stderr, /^wolfpack health: unknown flag --no-such-flag/);
  const missing = await cliFails(['health', '--file', '/nonexistent/wolfpack-health.json']);
  t.equal(missing.code, 1, 'no health file: unhealthy');
});

t.test('shell command parsing used above', async (t) => {
  t.same(shellCommands(`exec wolfpack worker --advertise "$(hostname -i | cut -d' ' -f1)" --x 'a b'`), [
    ['wolfpack', 'worker', '--advertise', "$(hostname -i | cut -d' ' -f1)", '--x', 'a b'],
  ]);
  t.same(shellCommands('wolfpack a --b c || exit $?; echo "done" >&2; exec sleep infinity'), [
    ['wolfpack', 'a', '--b', 'c'],
    ['exit', '$?'],
    ['echo', 'done'],
    ['sleep', 'infinity'],
  ]);
  t.same(shellCommands(`trap 'kill "$pid"' TERM; wolfpack a --b c & pid=$!; wait "$pid" && echo ok`), [
    ['trap', 'kill "$pid"', 'TERM'],
    ['wolfpack', 'a', '--b', 'c'],
    ['pid=$!'],
    ['wait', '$pid'],
    ['echo', 'ok'],
  ]);
});

// ---- docker compose config, where a Compose is installed ----

function composeTool(): string[] | undefined {
  for (const cmd of [['docker', 'compose'], ['docker-compose']]) {
    const r = spawnSync(cmd[0]!, [...cmd.slice(1), 'version'], { encoding: 'utf8', timeout: 20_000 });
    if (r.status === 0) return cmd;
  }
  return undefined;
}

const tool = composeTool();
t.test(
  'docker compose config',
  {
    skip: tool ? false : 'neither `docker compose` nor `docker-compose` is installed (apt-get install docker-compose)',
  },
  async (t) => {
    const dir = t.testdir({ token: 'test-token\n' });
    const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('WOLFPACK_')));
    const env = {
      ...baseEnv,
      WOLFPACK_TOKEN_FILE: join(dir, 'token'),
      WOLFPACK_WORKERS: '3',
      WOLFPACK_COORDINATOR: 'ws://10.0.0.1:7070',
      WOLFPACK_ADVERTISE: '10.0.0.2',
      WOLFPACK_EPOCHS: '5',
    };
    const config = (file: string, e: NodeJS.ProcessEnv) =>
      spawnSync(tool![0]!, [...tool!.slice(1), '-f', join(deploy, file), 'config'], {
        encoding: 'utf8',
        env: e,
        timeout: 30_000,
        cwd: dir,
      });
    for (const file of [...COMPOSE_FILES, 'compose.gpu-workers.yaml']) {
      const r = config(file, env);
      t.equal(r.status, 0, `${tool!.join(' ')} config: ${file} is valid${r.status ? `\n${r.stderr}` : ''}`);
      const out = obj(parseYaml(r.stdout));
      const services = obj(out.services);
      if (services.coordinator) {
        t.ok(
          list(obj(services.coordinator).command).map(String).includes('3'),
          `${file}: WOLFPACK_WORKERS reaches --workers`,
        );
        t.equal(
          obj(obj(services.coordinator).environment).WOLFPACK_EPOCHS,
          '5',
          `${file}: WOLFPACK_EPOCHS passes through`,
        );
      }
      if (file === 'compose.workers.yaml') {
        t.ok(
          list(obj(services.worker).command).includes('ws://10.0.0.1:7070'),
          'WOLFPACK_COORDINATOR reaches --connect',
        );
      }
    }
    const missing = config('compose.workers.yaml', { ...baseEnv, WOLFPACK_TOKEN_FILE: join(dir, 'token') });
    t.not(missing.status, 0, 'compose.workers.yaml without WOLFPACK_COORDINATOR is refused');
    t.match(missing.stderr, /WOLFPACK_COORDINATOR/, 'with a message naming the variable');
  },
);
