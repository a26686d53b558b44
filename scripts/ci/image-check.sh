#!/usr/bin/env bash
# The CPU image as Docker and Kubernetes users meet it, checked on a machine with no Docker engine and no
# registry: builds deploy/Dockerfile.cpu with podman on a stand-in for node:20-bookworm-slim (a
# debootstrapped Debian bookworm with this host's Node where the official image keeps it), then checks the
# image: dist/index.js and `import('wolfpack')` are in it, no module it cannot use (webgpu), `wolfpack
# demo --epochs 1` runs with every line of its output JSON, its health file says healthy while it trains,
# `wolfpack bench` writes under the working directory; brings up deploy/compose.yaml (coordinator + 2 CPU
# workers) with Debian's docker-compose against podman's Docker-compatible socket and waits for the epoch;
# brings up the two-file layout (compose.coordinator.yaml + compose.workers.yaml with host networking) the
# same way; and, as a separate step, times `podman stop` of a training run. Not part of `npm test`.
#
#   scripts/ci/image-check.sh [--no-compose] [--no-signals] [--require-signals]
#
# WOLFPACK_BACKEND picks the image's backend (default wasm: this host cannot download libtensorflow, which
# the default `tensorflow` build needs; see deploy/README.md). The debootstrapped base is cached in .cache/
# (ignored by git), and podman keeps the build's layers, so a rerun is quick. Figures and logs go to
# .cache/image-check/. Exits non-zero when any step but the signal step fails; the signal step (clean stop
# on SIGTERM: <= 5 s, exit 0, a last.ckpt) fails the run only with --require-signals.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
CACHE=$ROOT/.cache/image-check
BACKEND=${WOLFPACK_BACKEND:-wasm}
IMAGE=localhost/wolfpack:cpu
BASE=docker.io/library/node:20-bookworm-slim
BASE_RECIPE=2 # bump when the base's recipe below changes: the cached base is then made again
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
PROJECT=wolfpack-check
COMPOSE=1
SIGNALS=1
REQUIRE_SIGNALS=0
for a in "$@"; do
  case "$a" in
    --no-compose) COMPOSE=0 ;;
    --no-signals) SIGNALS=0 ;;
    --require-signals) REQUIRE_SIGNALS=1 ;;
    *) echo "usage: $0 [--no-compose] [--no-signals] [--require-signals]" >&2; exit 2 ;;
  esac
done
mkdir -p "$CACHE"
RESULTS=$CACHE/results.txt
: >"$RESULTS"
FAILED=0

say() { echo "image-check: $*" >&2; }
# record STEP PASS|FAIL|SKIP TEXT: one line of the summary
record() {
  printf '%-10s %-5s %s\n' "$1" "$2" "$3" | tee -a "$RESULTS" >&2
  if [ "$2" = FAIL ] && { [ "$1" != signals ] || [ "$REQUIRE_SIGNALS" = 1 ]; }; then FAILED=1; fi
}
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
mib() { awk -v b="$1" 'BEGIN { printf "%.0f MiB", b / 1048576 }'; }

# ---- tools: podman, debootstrap and docker-compose are Debian packages ----
missing=()
for t in podman:podman debootstrap:debootstrap docker-compose:docker-compose; do
  command -v "${t%%:*}" >/dev/null || missing+=("${t#*:}")
done
# the compose files' `init: true` runs podman's init, catatonit: only a Recommends of podman, so
# --no-install-recommends leaves it out ("container-init binary not found on the host")
[ -x /usr/libexec/podman/catatonit ] || missing+=(catatonit)
# compose's services find each other by name: podman's CNI networks need the dnsname plugin for that, also a
# Recommends left out ("getaddrinfo ENOTFOUND coordinator")
[ -x /usr/lib/cni/dnsname ] || missing+=(golang-github-containernetworking-plugin-dnsname)
if [ ${#missing[@]} -gt 0 ]; then
  say "installing ${missing[*]}"
  apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null \
    || { record tools FAIL "cannot install ${missing[*]}"; exit 1; }
fi

# runc refuses to start a container whose default ulimits exceed this VM's hard limits; crun (podman's
# default where installed) does not start containers at all on this VM's hybrid cgroup v1/v2 mounts
nofile=$(ulimit -Hn)
nproc=$(ulimit -Hu)
{ [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
command -v runc >/dev/null || { apt-get install -y -q --no-install-recommends runc >/dev/null || { record tools FAIL "no runc"; exit 1; }; }
cat >"$CACHE/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]

[engine]
runtime = "runc"
EOF
export CONTAINERS_CONF=$CACHE/containers.conf

# ---- base: a stand-in for node:20-bookworm-slim, cached as a tarball ----
if [ "$(podman image inspect "$BASE" --format '{{index .Config.Labels "io.wolfpack.check-base"}}' 2>/dev/null)" != "$BASE_RECIPE" ]; then
  if [ ! -s "$CACHE/base-$BASE_RECIPE.tar" ]; then
    rm -f "$CACHE"/base*.tar
    t0=$(now)
    rootfs=$CACHE/rootfs
    rm -rf "$rootfs"
    say "debootstrap --variant=minbase bookworm (once; cached in $CACHE/base-$BASE_RECIPE.tar)"
    debootstrap --variant=minbase bookworm "$rootfs" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
      || { record base FAIL "debootstrap failed, see $CACHE/debootstrap.log"; exit 1; }
    # the official image's package sources
    rm -f "$rootfs/etc/apt/sources.list"
    cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: ${MIRROR}
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: ${MIRROR%/debian}/debian-security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
    # as Debian's own slim images: apt keeps no downloaded packages, dpkg installs no docs, man pages or locales
    cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'APT'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
APT
    cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'DPKG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
DPKG
    # (inside the rootfs only: a check of $rootfs keeps these off the host whatever happens above)
    if [ -n "$rootfs" ] && [ -d "$rootfs/usr/share" ] && [ "$rootfs" != / ]; then
      find "$rootfs/usr/share/doc" -mindepth 1 -type f -not -name copyright -delete
      rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/locale/*
      rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb
    fi
    # this host's Node and npm where the official image keeps them
    node_bin=$(readlink -f "$(command -v node)")
    npm_dir=$(dirname "$(dirname "$(readlink -f "$(command -v npm)")")")
    install -D -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
    mkdir -p "$rootfs/usr/local/lib/node_modules" "$rootfs/usr/local/include" "$rootfs/usr/local/etc"
    cp -a "$npm_dir" "$rootfs/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
    [ -d /usr/include/node ] && cp -a /usr/include/node "$rootfs/usr/local/include/node"
    # npm inside reaches the registry as this host does: its CA bundle and npm settings (not nodedir)
    cp /etc/ssl/certs/ca-certificates.crt "$rootfs/usr/local/share/host-ca-certificates.crt"
    for f in "$(npm config get globalconfig)" "$(npm config get userconfig)"; do
      [ -f "$f" ] && grep -v -E '^\s*(nodedir|cafile)\s*=' "$f"
    done >"$rootfs/usr/local/etc/npmrc"
    echo "cafile=/usr/local/share/host-ca-certificates.crt" >>"$rootfs/usr/local/etc/npmrc"
    chroot "$rootfs" /usr/local/bin/node --version >/dev/null || { record base FAIL "this host's node does not run in the bookworm rootfs"; exit 1; }
    tar -C "$rootfs" --numeric-owner -cf "$CACHE/base.tar.tmp" . && mv "$CACHE/base.tar.tmp" "$CACHE/base-$BASE_RECIPE.tar"
    rm -rf "$rootfs"
    say "base made in $(secs "$t0" "$(now)") s"
  fi
  podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change "ENV NODE_VERSION=$(node --version | tr -d v)" \
    --change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/host-ca-certificates.crt' \
    --change 'CMD ["node"]' \
    --change "LABEL io.wolfpack.check-base=$BASE_RECIPE" \
    "$CACHE/base-$BASE_RECIPE.tar" "$BASE" >/dev/null || { record base FAIL "podman import failed"; exit 1; }
fi
record base PASS "$BASE = debootstrap minbase bookworm + node $(podman run --rm --network=host "$BASE" node --version 2>/dev/null), $(mib "$(podman image inspect "$BASE" --format '{{.Size}}')")"

# ---- build ----
t0=$(now)
say "podman build -f deploy/Dockerfile.cpu --build-arg WOLFPACK_BACKEND=$BACKEND (log: $CACHE/build.log)"
if podman build --pull=never --network=host -f deploy/Dockerfile.cpu --build-arg WOLFPACK_BACKEND="$BACKEND" -t "$IMAGE" . >"$CACHE/build.log" 2>&1; then
  size=$(podman image inspect "$IMAGE" --format '{{.Size}}')
  record build PASS "$(secs "$t0" "$(now)") s, image $(mib "$size") ($size bytes), backend $BACKEND"
else
  record build FAIL "$(secs "$t0" "$(now)") s: $(grep -E 'Error|error|backend check' "$CACHE/build.log" | tail -3 | tr '\n' ' ')"
  exit 1
fi

# ---- contents: what the package holds, and nothing the image cannot use ----
contents=$(podman run --rm --entrypoint /bin/sh "$IMAGE" -c '
  set -e
  test -f /app/dist/index.js || { echo "no /app/dist/index.js"; exit 1; }
  cd /app && node -e "import(\"wolfpack\").then((m) => { if (typeof m.train !== \"function\") process.exit(1); })" || { echo "import(wolfpack) fails in /app"; exit 1; }
  cd /work && node -e "import(\"wolfpack\").then((m) => { if (typeof m.predict !== \"function\") process.exit(1); })" || { echo "import(wolfpack) fails in /work"; exit 1; }
  for m in webgpu @tensorflow/tfjs-backend-webgpu @tensorflow/tfjs-node-gpu; do
    if [ -e /app/node_modules/$m ]; then echo "$m is in the image"; exit 1; fi
  done
  if [ "$WOLFPACK_BACKEND" = tensorflow ] && [ ! -e /app/node_modules/@tensorflow/tfjs-node ]; then echo "no tfjs-node"; exit 1; fi
  echo "dist/index.js, import(wolfpack) from /app and /work, no webgpu/tfjs-node-gpu, WOLFPACK_BACKEND=$WOLFPACK_BACKEND, node_modules $(du -sm /app/node_modules | cut -f1) MiB"
' 2>&1)
if [ $? -eq 0 ]; then record contents PASS "$contents"; else record contents FAIL "$contents"; fi

# all-json FILE...: every non-empty line of the files parses as JSON; prints the first offenders
all_json() {
  node -e '
    const fs = require("fs"); let bad = [], n = 0;
    for (const f of process.argv.slice(1)) for (const l of fs.readFileSync(f, "utf8").split("\n")) {
      if (!l.trim()) continue; n++;
      try { JSON.parse(l); } catch { bad.push(`${f.split("/").pop()}: ${l.slice(0, 160)}`); }
    }
    if (bad.length) { console.log(`${bad.length} of ${n} line(s) not JSON: ${bad.slice(0, 4).join(" | ")}`); process.exit(1); }
    console.log(`${n} lines, all JSON`);' "$@"
}

# state_of CONTAINER: the state in its health file (/tmp/health.json)
state_of() {
  podman exec "$1" node -e 'try { process.stdout.write(JSON.parse(require("fs").readFileSync("/tmp/health.json", "utf8")).state) } catch {}' 2>/dev/null
}

# ---- demo: `wolfpack demo --epochs 1`, its output, its health file ----
podman rm -f -v wp-check-demo >/dev/null 2>&1
podman volume rm -f wp-check-work >/dev/null 2>&1
t0=$(now)
say "wolfpack demo --epochs 1 in the image"
podman run --name wp-check-demo -v wp-check-work:/work "$IMAGE" demo --epochs 1 --health-file /tmp/health.json \
  >"$CACHE/demo.stdout" 2>"$CACHE/demo.stderr" &
demo_pid=$!
healthy_seen=0
states=""
while kill -0 "$demo_pid" 2>/dev/null; do
  sleep 5
  state=$(state_of wp-check-demo)
  [ -n "$state" ] && case " $states " in *" $state "*) ;; *) states="$states $state" ;; esac
  if [ "$state" = training ] && podman exec wp-check-demo wolfpack health --file /tmp/health.json --max-age 60 >/dev/null 2>&1; then healthy_seen=1; fi
done
wait "$demo_pid"
demo_rc=$?
demo_s=$(secs "$t0" "$(now)")
rm -rf "$CACHE/demo-out" && podman cp wp-check-demo:/work/runs/demo/out "$CACHE/demo-out" >/dev/null 2>&1
podman cp wp-check-demo:/tmp/health.json "$CACHE/demo-health.json" >/dev/null 2>&1
podman rm -f -v wp-check-demo >/dev/null 2>&1
epoch_line=$(grep -o 'Epoch: 1/1[^"]*' "$CACHE/demo.stdout" | head -1)
if [ "$demo_rc" = 0 ] && [ -f "$CACHE/demo-out/last.ckpt" ] && [ -f "$CACHE/demo-out/curves.png" ]; then
  record demo PASS "$demo_s s, exit 0, last.ckpt + curves.png; $epoch_line"
else
  record demo FAIL "$demo_s s, exit $demo_rc; $(tail -c 300 "$CACHE/demo.stderr" | tr '\n' ' ')"
fi
if j=$(all_json "$CACHE/demo.stdout" "$CACHE/demo.stderr"); then record json PASS "demo stdout + stderr: $j"; else record json FAIL "demo: $j"; fi
final=$(node -e 'try { const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); console.log(r.state) } catch { console.log("none") }' "$CACHE/demo-health.json")
if [ "$healthy_seen" = 1 ] && [ "$final" = done ]; then
  record health PASS "states seen:$states; \`wolfpack health\` exit 0 while training; final state $final"
else
  record health FAIL "states seen:${states:- none}; healthy while training: $healthy_seen; final state $final"
fi

# ---- bench: writes under the working directory, not under /app ----
t0=$(now)
bench=$(podman run --rm -v wp-check-work:/work "$IMAGE" bench scaling --freeze backbone --workers 1 --repeats 1 --image-size 32 --batch-per-worker 6 --json 2>"$CACHE/bench.stderr")
bench_rc=$?
listing=$(podman run --rm -v wp-check-work:/work --entrypoint /bin/sh "$IMAGE" -c 'ls -d /work/runs/bench/* 2>/dev/null | head -3; ls -d /app/runs 2>/dev/null')
if [ "$bench_rc" = 0 ] && echo "$listing" | grep -q '^/work/runs/bench/' && ! echo "$listing" | grep -q '^/app/runs'; then
  record bench PASS "$(secs "$t0" "$(now)") s, wrote $(echo "$listing" | tr '\n' ' ')"
else
  record bench FAIL "exit $bench_rc: $(tail -c 300 "$CACHE/bench.stderr" | tr '\n' ' ') ${bench:0:100}"
fi

# healthy_count PROJECT SERVICE: how many of the service's containers pass their health check now (no
# systemd here: podman runs no health checks by itself, so they are run by hand, as Docker would)
healthy_count() {
  local n=0
  for c in $(podman ps -q --filter "label=com.docker.compose.project=$1" --filter "label=com.docker.compose.service=$2"); do
    podman healthcheck run "$c" >/dev/null 2>&1 && n=$((n + 1))
  done
  echo "$n"
}

# ---- compose: deploy/compose.yaml, a coordinator + 2 CPU workers, through podman's Docker API ----
if [ "$COMPOSE" = 1 ]; then
  sock=$CACHE/podman.sock
  rm -f "$sock"
  podman system service --time=0 "unix://$sock" >"$CACHE/podman-service.log" 2>&1 &
  service_pid=$!
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
  export DOCKER_HOST=unix://$sock
  printf 'check-token-%s\n' "$RANDOM$RANDOM" >"$CACHE/token" && chmod 0644 "$CACHE/token"
  export WOLFPACK_TOKEN_FILE=$CACHE/token WOLFPACK_IMAGE=$IMAGE WOLFPACK_WORKERS=2 WOLFPACK_BACKEND=$BACKEND \
    WOLFPACK_EPOCHS=1 WOLFPACK_IMAGE_SIZE=64 WOLFPACK_FREEZE=backbone WOLFPACK_BN=frozen WOLFPACK_LR=0.0002 WOLFPACK_TIMEOUT=120
  dc() { docker-compose -p "$PROJECT" -f deploy/compose.yaml "$@"; }
  dc down -v >/dev/null 2>&1
  # the data volume holds what `wolfpack fetch` would put there: here the demo's data set and checkpoint
  podman volume create "${PROJECT}_data" >/dev/null 2>&1
  podman run --rm --user 0 -v wp-check-work:/src:ro -v "${PROJECT}_data:/data" --entrypoint /bin/sh "$IMAGE" \
    -c 'rm -rf /data/Canidae && cp -r /src/runs/demo/data /data/Canidae && cp /src/runs/demo/resnet50.ckpt /data/resnet50.ckpt && chown -R 10001:10001 /data'
  t0=$(now)
  say "docker-compose up: coordinator + 2 workers (log: $CACHE/compose.log)"
  dc up --no-build --scale worker=2 >"$CACHE/compose.log" 2>&1 &
  up_pid=$!
  # no systemd here: podman runs no health checks by itself, so they are run by hand, as Docker would
  coord_healthy=0
  workers_healthy=0
  while kill -0 "$up_pid" 2>/dev/null; do
    sleep 5
    c=$(podman ps -q --filter "label=com.docker.compose.project=$PROJECT" --filter label=com.docker.compose.service=coordinator | head -1)
    [ -n "$c" ] && podman healthcheck run "$c" >/dev/null 2>&1 && coord_healthy=1
    n=$(healthy_count "$PROJECT" worker)
    [ "$n" -gt "$workers_healthy" ] && workers_healthy=$n
    if [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -gt 1200 ]; then say "compose: 20 minutes, giving up"; break; fi
  done
  compose_s=$(secs "$t0" "$(now)")
  # what the containers wrote (docker-compose prefixes each line with the container's name)
  sed -E 's/\x1b\[[0-9;]*m//g' "$CACHE/compose.log" | grep -E '^[a-z0-9_-]+ +\| ' | sed -E 's/^[^|]*\| //' >"$CACHE/compose-containers.log"
  compose_json=$(all_json "$CACHE/compose-containers.log")
  compose_json_ok=$?
  coord_rc=$(podman inspect "${PROJECT}_coordinator_1" --format '{{.State.ExitCode}}' 2>/dev/null)
  epoch=$(grep -o 'Epoch: 1/1[^"]*' "$CACHE/compose.log" | head -1)
  dc down -v >/dev/null 2>&1
  kill "$service_pid" 2>/dev/null
  unset DOCKER_HOST
  if [ -n "$epoch" ] && [ "$coord_rc" = 0 ] && [ "$coord_healthy" = 1 ] && [ "$workers_healthy" = 2 ] && [ "$compose_json_ok" = 0 ]; then
    record compose PASS "$compose_s s, coordinator exit 0, healthy coordinator and 2 healthy workers seen, containers' output: $compose_json; $epoch"
  else
    record compose FAIL "$compose_s s, coordinator exit ${coord_rc:-?}, coordinator healthy $coord_healthy, workers healthy $workers_healthy, epoch '${epoch}', containers' output: $compose_json; $(grep -iE 'error|fail' "$CACHE/compose.log" | tail -2 | tr '\n' ' ')"
  fi
  # ---- compose, two files: the coordinator's host (compose.coordinator.yaml, port published) and a worker
  # host (compose.workers.yaml, host networking), both on this machine, the workers reaching the coordinator
  # at the published port and each other's ring ports over the host's loopback ----
  service_pid2=
  podman system service --time=0 "unix://$sock" >>"$CACHE/podman-service.log" 2>&1 &
  service_pid2=$!
  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.2; done
  export DOCKER_HOST=unix://$sock WOLFPACK_PORT=17070
  dcc() { docker-compose -p "${PROJECT}-c" -f deploy/compose.coordinator.yaml "$@"; }
  dcw() { WOLFPACK_COORDINATOR=ws://127.0.0.1:$WOLFPACK_PORT WOLFPACK_ADVERTISE=127.0.0.1 docker-compose -p "${PROJECT}-w" -f deploy/compose.workers.yaml "$@"; }
  dcc down -v >/dev/null 2>&1; dcw down -v >/dev/null 2>&1
  podman volume create "${PROJECT}-c_data" >/dev/null 2>&1
  podman run --rm --user 0 -v wp-check-work:/src:ro -v "${PROJECT}-c_data:/data" --entrypoint /bin/sh "$IMAGE" \
    -c 'rm -rf /data/Canidae && cp -r /src/runs/demo/data /data/Canidae && cp /src/runs/demo/resnet50.ckpt /data/resnet50.ckpt && chown -R 10001:10001 /data'
  t0=$(now)
  say "docker-compose up: compose.coordinator.yaml, then compose.workers.yaml with 2 workers (logs: $CACHE/compose-c.log, compose-w.log)"
  dcc up --no-build coordinator >"$CACHE/compose-c.log" 2>&1 &
  upc_pid=$!
  dcw up --no-build --scale worker=2 >"$CACHE/compose-w.log" 2>&1 &
  upw_pid=$!
  workers_healthy2=0
  while kill -0 "$upc_pid" 2>/dev/null; do
    sleep 5
    n=$(healthy_count "${PROJECT}-w" worker)
    [ "$n" -gt "$workers_healthy2" ] && workers_healthy2=$n
    if [ "$(secs "$t0" "$(now)" | cut -d. -f1)" -gt 1200 ]; then say "compose (two files): 20 minutes, giving up"; break; fi
  done
  hosts_s=$(secs "$t0" "$(now)")
  coord2_rc=$(podman inspect "${PROJECT}-c_coordinator_1" --format '{{.State.ExitCode}}' 2>/dev/null)
  epoch2=$(grep -o 'Epoch: 1/1[^"]*' "$CACHE/compose-c.log" | head -1)
  ring2=$(grep -c '"msg":"ring formed; state in place"' "$CACHE/compose-w.log")
  dcw down -v >/dev/null 2>&1; dcc down -v >/dev/null 2>&1
  kill "$upw_pid" "$service_pid2" 2>/dev/null
  unset DOCKER_HOST WOLFPACK_PORT
  if [ -n "$epoch2" ] && [ "$coord2_rc" = 0 ] && [ "$workers_healthy2" = 2 ] && [ "$ring2" -ge 2 ]; then
    record hosts PASS "$hosts_s s: coordinator exit 0, 2 healthy workers on host networking, ring formed on both; $epoch2"
  else
    record hosts FAIL "$hosts_s s: coordinator exit ${coord2_rc:-?}, workers healthy $workers_healthy2, ring formed on $ring2 worker(s), epoch '${epoch2}'; $(grep -iE 'error|fail' "$CACHE/compose-c.log" "$CACHE/compose-w.log" | tail -2 | tr '\n' ' ')"
  fi
else
  record compose SKIP "--no-compose"
fi

# ---- signals: `podman stop` of a training run (SIGTERM, SIGKILL after 10 s) ----
if [ "$SIGNALS" = 1 ]; then
  podman rm -f -v wp-check-stop >/dev/null 2>&1
  podman run -d --name wp-check-stop -v wp-check-work:/work "$IMAGE" demo --epochs 3 --out /work/runs/stop --health-file /tmp/health.json >/dev/null
  for _ in $(seq 120); do
    sleep 2
    [ "$(state_of wp-check-stop)" = training ] && break
  done
  sleep 10 # a few steps into the first epoch
  t0=$(now)
  podman stop -t 10 wp-check-stop >/dev/null 2>&1
  stop_s=$(secs "$t0" "$(now)")
  stop_rc=$(podman inspect wp-check-stop --format '{{.State.ExitCode}}')
  podman logs wp-check-stop >"$CACHE/stop.log" 2>&1
  ckpt=$(podman run --rm -v wp-check-work:/work --entrypoint /bin/sh "$IMAGE" -c 'test -f /work/runs/stop/last.ckpt && echo yes || echo no')
  podman rm -f -v wp-check-stop >/dev/null 2>&1
  fast=$(awk -v s="$stop_s" 'BEGIN { print (s <= 5) ? "yes" : "no" }')
  stopped=$(grep -o '"msg":"stopped (SIGTERM)[^"]*' "$CACHE/stop.log" | head -1 | cut -d'"' -f4)
  if [ "$fast" = yes ] && [ "$stop_rc" = 0 ] && [ "$ckpt" = yes ]; then
    record signals PASS "podman stop took $stop_s s, exit 0, last.ckpt written; '$stopped'"
  else
    record signals FAIL "podman stop took $stop_s s (<= 5 s: $fast), exit $stop_rc (want 0), last.ckpt: $ckpt"
  fi
else
  record signals SKIP "--no-signals"
fi

podman volume rm -f wp-check-work >/dev/null 2>&1
echo "---- image-check summary ($CACHE/results.txt) ----"
cat "$RESULTS"
exit "$FAILED"
