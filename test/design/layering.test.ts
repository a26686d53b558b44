// The folder map of docs/DESIGN.md, enforced: every relative import in the source (not the tests) goes
// from a folder to one that the map lets it import. A new cycle or a layer reaching upward fails here,
// naming the file and the import.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import t from 'tap';
import { packageRoot } from '../../shared/paths.js';

/**
 * Who may import whom. A unit is a top-level folder, or a folder of shared/; `shared` is shared/'s own
 * files (errors.ts, log.ts, paths.ts), which every unit may import and which import no other unit.
 */
export const MAY_IMPORT: Record<string, readonly string[]> = {
  shared: [],
  'shared/time': [],
  'shared/fs': [],
  'shared/config': [],
  'shared/health': ['shared/fs'],
  'shared/backend': [],
  'shared/weights': ['shared/fs'],
  'shared/model': ['shared/backend', 'shared/weights'],
  'shared/allreduce': [],
  'shared/train': ['shared/backend', 'shared/model', 'shared/allreduce'],
  'shared/data': ['shared/fs'],
  'shared/report': ['shared/fs'],
  'shared/fetch': ['shared/fs'],
  'shared/demo': ['shared/data', 'shared/model', 'shared/backend', 'shared/weights', 'shared/fs'],
  'shared/protocol': ['shared/time'],
  'shared/transport': ['shared/allreduce', 'shared/time'],
  'shared/auth': ['shared/protocol', 'shared/transport'],
  coordinator: ['shared/*'],
  worker: ['shared/*'],
  api: ['coordinator', 'worker', 'shared/*'],
  bench: ['api', 'coordinator', 'worker', 'shared/*'],
  cli: ['api', 'bench', 'coordinator', 'worker', 'shared/*'],
  'index.ts': ['api', 'coordinator', 'shared/*'],
};

const SOURCE_ROOTS = ['shared', 'coordinator', 'worker', 'api', 'bench', 'cli', 'index.ts'];

function unitOf(path: string): string {
  const parts = path.split('/');
  if (parts[0] === 'shared') return parts.length > 2 ? `shared/${parts[1]}` : 'shared';
  return parts[0]!;
}

function allowed(from: string, to: string): boolean {
  if (from === to || to === 'shared') return true;
  return (MAY_IMPORT[from] ?? []).some((u) => u === to || (u === 'shared/*' && to.startsWith('shared/')));
}

function sources(path: string): string[] {
  const abs = join(packageRoot, path);
  let st;
  try {
    st = statSync(abs);
  } catch {
    return [];
  }
  if (st.isFile()) return path.endsWith('.ts') ? [path] : [];
  return readdirSync(abs)
    .filter((n) => n !== 'results')
    .flatMap((n) => sources(`${path}/${n}`));
}

const IMPORT = /(?:from|import)\s*\(?\s*['"](\.{1,2}\/[^'"]+)['"]/g;

t.test('every unit of the source has a row in the map', async (t) => {
  for (const f of SOURCE_ROOTS.flatMap(sources))
    t.ok(unitOf(f) in MAY_IMPORT, `${f}: its unit ${unitOf(f)} is in the map`);
});

t.test('every import follows the map (no cycle between folders, no layer reaching upward)', async (t) => {
  const bad: string[] = [];
  let count = 0;
  for (const f of SOURCE_ROOTS.flatMap(sources)) {
    for (const m of readFileSync(join(packageRoot, f), 'utf8').matchAll(IMPORT)) {
      const target = relative(packageRoot, normalize(join(packageRoot, dirname(f), m[1]!)));
      count++;
      if (!allowed(unitOf(f), unitOf(target))) bad.push(`${f} imports ${m[1]} (${unitOf(f)} -> ${unitOf(target)})`);
    }
  }
  t.ok(count > 500, `read ${count} imports`);
  t.same(bad, [], 'imports against the map');
});

t.test('the map itself has no cycle', async (t) => {
  const units = Object.keys(MAY_IMPORT);
  const expand = (u: string) =>
    (MAY_IMPORT[u] ?? []).flatMap((d) => (d === 'shared/*' ? units.filter((x) => x.startsWith('shared/')) : [d]));
  const reaches = (from: string, to: string, seen = new Set<string>()): boolean =>
    expand(from).some((d) => d === to || (!seen.has(d) && (seen.add(d), reaches(d, to, seen))));
  for (const u of units) t.notOk(reaches(u, u), `${u} cannot reach itself`);
});
