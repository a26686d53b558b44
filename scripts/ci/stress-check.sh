#!/usr/bin/env bash
# The suite must pass on a busy machine: runs the end-to-end, security and auth tests while CPU hogs (two busy
# loops by default: one per core here) compete with them, ROUNDS times in a row (default 3), and prints
# each round's time. Exits non-zero on the first failing round. Not part of `npm test` (it takes a while);
# run it after touching timing, heartbeats, waits or e2e tests.
#   scripts/ci/stress-check.sh [ROUNDS] [HOGS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-3}
hogs=${2:-2}
npm run build >/dev/null

pids=()
stop_hogs() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap stop_hogs EXIT INT TERM
for _ in $(seq "$hogs"); do
  # Bounded even if this script is killed without its trap running.
  timeout 7200 sh -c 'while :; do :; done' &
  pids+=($!)
done
echo "stress-check: $hogs busy loop(s) running (pids ${pids[*]}); $(nproc) cores; ${rounds} round(s) of test/e2e, test/security and test/auth"

for r in $(seq "$rounds"); do
  start=$(date +%s)
  log=$(mktemp)
  set +e
  npx tap test/e2e test/security test/auth -R terse >"$log" 2>&1
  status=$?
  set -e
  secs=$(( $(date +%s) - start ))
  summary=$(grep -E '^# \{ total: ' "$log" | tail -n 1 || true)
  echo "round $r: exit $status in ${secs} s, load $(cut -d' ' -f1-3 /proc/loadavg): ${summary:-no summary}"
  if [ "$status" -ne 0 ]; then
    echo "round $r failed; its output: $log"
    tail -n 80 "$log"
    exit 1
  fi
  rm -f "$log"
done
echo "stress-check: ${rounds} round(s) passed under ${hogs} busy loop(s)"
