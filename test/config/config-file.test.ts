// Flag sources and their order: command line > WOLFPACK_<FLAG> environment variables > config file
// (--config or WOLFPACK_CONFIG, JSON or YAML) > defaults, and the errors a user sees for a bad file.
import t from 'tap';
import { join } from 'node:path';
import { envName, resolveArgv, type FlagOptions } from '../../shared/config/config-file.js';
import { parse } from '../../shared/config/args.js';
import { TRAIN_FLAGS } from '../../cli/commands/train-flags.js';

const OPTS: FlagOptions = {
  data: { type: 'string' },
  'batch-size': { type: 'string' },
  lr: { type: 'string' },
  json: { type: 'boolean' },
  tag: { type: 'string', multiple: true },
};

/** The values a command would see after resolution. */
const values = (argv: string[], env: NodeJS.ProcessEnv = {}, opts: FlagOptions = OPTS) =>
  parse(resolveArgv(argv, opts, env), opts, true).values;

const usageError = (message: RegExp) => ({ name: 'WolfpackError', code: 'E_USAGE', message });

t.test('env var names', async (t) => {
  t.equal(envName('batch-size'), 'WOLFPACK_BATCH_SIZE');
  t.equal(envName('data'), 'WOLFPACK_DATA');
  t.equal(envName('log-format'), 'WOLFPACK_LOG_FORMAT');
  t.equal(envName('token-file'), 'WOLFPACK_TOKEN_FILE');
});

t.test('nothing to add leaves argv as it is', async (t) => {
  t.same(resolveArgv(['--data', 'd', 'x.jpg'], OPTS, {}), ['--data', 'd', 'x.jpg']);
  t.same(resolveArgv([], OPTS, { OTHER: '1', WOLFPACK_UNRELATED: 'z' }), []);
});

t.test('precedence: flag > env > config file > default', async (t) => {
  const dir = t.testdir({ 'c.json': JSON.stringify({ data: 'from-file', 'batch-size': 32, lr: 0.01 }) });
  const file = join(dir, 'c.json');
  const env = { WOLFPACK_BATCH_SIZE: '24', WOLFPACK_DATA: 'from-env' };
  const v = values(['--config', file, '--data', 'from-flag'], env);
  t.equal(v.data, 'from-flag', 'a flag beats env and file');
  t.equal(v['batch-size'], '24', 'env beats the file');
  t.equal(v.lr, '0.01', 'the file beats the default');
  t.equal(v.json, undefined, 'nothing anywhere: the command default applies');
  t.equal(v.config, undefined, '--config is consumed');
  t.equal(values([`--config=${file}`]).data, 'from-file', '--config=FILE works too');
  t.equal(values([], { WOLFPACK_CONFIG: file }).lr, '0.01', 'WOLFPACK_CONFIG names the file when --config is absent');
  t.equal(values(['--data=x'], { WOLFPACK_DATA: 'from-env' }).data, 'x', '--flag=value counts as given');
  t.equal(values([], { WOLFPACK_DATA: '' }).data, undefined, 'an empty env var counts as unset');
});

t.test('inserted flags go before a -- terminator and keep positionals', async (t) => {
  t.same(resolveArgv(['a.jpg', '--', '--data'], OPTS, { WOLFPACK_LR: '0.5' }), [
    'a.jpg',
    '--lr',
    '0.5',
    '--',
    '--data',
  ]);
  const r = parse(resolveArgv(['a.jpg', 'b.jpg'], OPTS, { WOLFPACK_LR: '0.5' }), OPTS, true);
  t.same(r.positionals, ['a.jpg', 'b.jpg']);
  t.equal(r.values.lr, '0.5');
});

t.test('YAML config, booleans and lists', async (t) => {
  const dir = t.testdir({
    'c.yaml': '# training\ndata: data/Canidae\nbatch-size: 18\nlr: 1.0e-3\njson: true\ntag: [a, b]\n',
    'off.yml': 'json: false\n',
    'empty.yaml': '# nothing\n',
  });
  const v = values(['--config', join(dir, 'c.yaml')]);
  t.same(v, { data: 'data/Canidae', 'batch-size': '18', lr: '0.001', json: true, tag: ['a', 'b'] });
  t.equal(values(['--config', join(dir, 'off.yml')]).json, undefined, 'false adds nothing');
  t.same(values(['--config', join(dir, 'empty.yaml')]), {}, 'an empty file is an empty mapping');
  t.equal(values([], { WOLFPACK_JSON: 'yes' }).json, true);
  t.equal(values([], { WOLFPACK_JSON: '0' }).json, undefined);
  t.equal(values(['--tag', 'x'], { WOLFPACK_TAG: 'y' }).tag?.toString(), 'x', 'a given multiple flag is not extended');
});

t.test('errors name the file and the key', async (t) => {
  const dir = t.testdir({
    'unknown.json': JSON.stringify({ data: 'd', batch_size: 4 }),
    'camel.json': JSON.stringify({ batchSize: 4 }),
    'other.json': JSON.stringify({ nope: 1 }),
    'nested.json': JSON.stringify({ config: 'x.json' }),
    'obj.json': JSON.stringify({ data: { path: 'd' } }),
    'list.json': JSON.stringify({ lr: [1, 2] }),
    'bool.json': JSON.stringify({ lr: true }),
    'notbool.json': JSON.stringify({ json: 'yes' }),
    'null.yaml': 'data:\n',
    'top.json': '[1, 2]',
    'bad.json': '{ "data": ',
    'bad.yaml': 'data: [unclosed\n',
    'dup.yaml': 'lr: 1\nlr: 2\n',
    'c.toml': 'data = "x"',
  });
  const f = (n: string) => join(dir, n);
  t.throws(
    () => resolveArgv(['--config', f('unknown.json')], OPTS, {}),
    usageError(/unknown\.json: unknown key 'batch_size'.*did you mean 'batch-size'/),
  );
  t.throws(
    () => resolveArgv(['--config', f('camel.json')], OPTS, {}),
    usageError(/key 'batchSize'.*did you mean 'batch-size'/),
  );
  t.throws(
    () => resolveArgv(['--config', f('other.json')], OPTS, {}),
    usageError(/unknown key 'nope'.*valid keys: data, batch-size, lr, json, tag/),
  );
  t.throws(
    () => resolveArgv(['--config', f('nested.json')], OPTS, {}),
    usageError(/unknown key 'config'.*cannot name another config file/),
  );
  t.throws(
    () => resolveArgv(['--config', f('obj.json')], OPTS, {}),
    usageError(/obj\.json: key 'data': expected a string or a number, got a mapping/),
  );
  t.throws(
    () => resolveArgv(['--config', f('list.json')], OPTS, {}),
    usageError(/list\.json: key 'lr': expected one value, got a list/),
  );
  t.throws(
    () => resolveArgv(['--config', f('bool.json')], OPTS, {}),
    usageError(/key 'lr': expected a string or a number, got boolean true/),
  );
  t.throws(
    () => resolveArgv(['--config', f('notbool.json')], OPTS, {}),
    usageError(/key 'json': expected true or false, got the string 'yes'/),
  );
  t.throws(
    () => resolveArgv(['--config', f('null.yaml')], OPTS, {}),
    usageError(/null\.yaml: key 'data': expected a string or a number, got null/),
  );
  t.throws(
    () => resolveArgv(['--config', f('top.json')], OPTS, {}),
    usageError(/top\.json: expected a mapping .* got a list/),
  );
  t.throws(() => resolveArgv(['--config', f('bad.json')], OPTS, {}), usageError(/bad\.json: not valid JSON/));
  t.throws(() => resolveArgv(['--config', f('bad.yaml')], OPTS, {}), usageError(/bad\.yaml: not valid YAML/));
  t.throws(() => resolveArgv(['--config', f('dup.yaml')], OPTS, {}), usageError(/dup\.yaml: not valid YAML/));
  t.throws(() => resolveArgv(['--config', f('c.toml')], OPTS, {}), usageError(/c\.toml: unknown format '\.toml'/));
  t.throws(() => resolveArgv(['--config', f('missing.json')], OPTS, {}), usageError(/missing\.json: cannot read it/));
  t.throws(() => resolveArgv(['--config'], OPTS, {}), usageError(/--config: expected a file name/));
  t.throws(
    () => resolveArgv([], OPTS, { WOLFPACK_JSON: 'maybe' }),
    usageError(/WOLFPACK_JSON: expected true or false for --json, got 'maybe'/),
  );
  // A key that is wrong stays wrong even when a flag overrides it: the file is checked as a whole.
  t.throws(() => resolveArgv(['--config', f('other.json'), '--data', 'd'], OPTS, {}), usageError(/unknown key 'nope'/));
});

t.test('environment variables of other commands are ignored, values are validated by the command', async (t) => {
  // WOLFPACK_WORKERS is a coordinator flag; a command without --workers ignores it.
  t.same(resolveArgv([], { connect: { type: 'string' } }, { WOLFPACK_WORKERS: '4', WOLFPACK_CONNECT: 'ws://c:7070' }), [
    '--connect',
    'ws://c:7070',
  ]);
  // With the real training flags: the numbers are checked by the same code as typed flags.
  const dir = t.testdir({
    'train.yaml': 'data: data/Canidae\nweights: data/resnet50.ckpt\nepochs: 3\nfreeze: backbone\n',
  });
  const argv = resolveArgv(['--config', join(dir, 'train.yaml'), '--epochs', '5'], TRAIN_FLAGS, {
    WOLFPACK_BATCH_SIZE: '36',
  });
  const v = parse(argv, TRAIN_FLAGS).values;
  t.same(
    { data: v.data, weights: v.weights, epochs: v.epochs, freeze: v.freeze, bs: v['batch-size'] },
    { data: 'data/Canidae', weights: 'data/resnet50.ckpt', epochs: '5', freeze: 'backbone', bs: '36' },
  );
});
