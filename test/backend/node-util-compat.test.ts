// tfjs-node 4.22 calls node:util checks that Node 23 removed; they are put back, with Node's documented
// semantics, only where missing (here, on Node 20, node:util still has them: they must stay Node's own).
import { createRequire } from 'node:module';
import t from 'tap';
import { LEGACY_UTIL_CHECKS, restoreLegacyUtilChecks } from '../../shared/backend/node-util-compat.js';

const require = createRequire(import.meta.url);

t.test("a util without the legacy checks gets them, with Node's semantics", (t) => {
  const util: Record<string, unknown> = { inspect: () => '' };
  const added = restoreLegacyUtilChecks(util);
  t.same(added.sort(), Object.keys(LEGACY_UTIL_CHECKS).sort(), 'every missing check is added');
  const values: unknown[] = [
    undefined,
    null,
    0,
    1.5,
    '',
    'a',
    true,
    false,
    [],
    [1],
    {},
    new Date(0),
    new Error('x'),
    /x/,
    Symbol('s'),
    () => 1,
    Buffer.alloc(1),
  ];
  // Node 20 still has the originals: the replacements must agree with them on every value
  const node = require('node:util') as Record<string, (v: unknown) => boolean>;
  for (const name of Object.keys(LEGACY_UTIL_CHECKS)) {
    if (typeof node[name] !== 'function') continue;
    for (const v of values)
      t.equal(
        (util[name] as (v: unknown) => boolean)(v),
        node[name](v),
        `${name}(${typeof v === 'symbol' ? 'symbol' : (JSON.stringify(v) ?? typeof v)}) as Node's`,
      );
  }
  t.end();
});

t.test('a util that has them is left alone', (t) => {
  const own = () => true;
  const util: Record<string, unknown> = Object.fromEntries(Object.keys(LEGACY_UTIL_CHECKS).map((k) => [k, own]));
  t.same(restoreLegacyUtilChecks(util), []);
  t.equal(util.isNullOrUndefined, own);
  t.end();
});
