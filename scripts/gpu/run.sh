#!/usr/bin/env bash
# On a GPU host, from the repository root, after scripts/gpu/build.sh (or with .gpu/ copied there):
# `wolfpack bench webgpu` (bench/webgpu-compare.ts, bundled: wolfpack's ResNet-50 on webgpu and PyTorch's
# on CUDA, same GPU, same run), then three experiments with bench/webgpu.ts (TF.js's tiled input gradient,
# wolfpack's implicit-GEMM one, a larger submit batch). Writes into $OUT (default ./gpu-out):
# webgpu-latest.{md,json}, webgpu-{dxmm,dxgemm,submit64}.json,
# env.txt, log.txt (progress and every stderr). Never stops at a failed part.
# Seen on an H100 (2026-11): about 95 s in all.
#   usage: OUT=dir scripts/gpu/run.sh [BATCH=32]
# Without a GPU (lavapipe): VK_ICD_FILENAMES=... WEBGPU_BENCH_ARGS="--software --image-size 64 --reps 1" scripts/gpu/run.sh 2
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
G=${GPU_DIR:-$root/.gpu}
OUT=${OUT:-$root/gpu-out}
batch=${1:-32}
mkdir -p "$OUT"
t0=$(date +%s)
stamp() { echo "[$(( $(date +%s) - t0 ))s] $*" | tee -a "$OUT/log.txt" >&2; }
# shellcheck source=/dev/null
KIT=$G/kit source "$G/kit/gpu-env.sh" 2>>"$OUT/env.txt"
dawn=$G/node_modules/webgpu/dist/linux-x64/dawn.node
[ -f "$dawn" ] || xz -dc "$G/dawn.node.xz" > "$dawn"
{
  echo "node $(node --version)"; uname -a; nproc
  nvidia-smi --query-gpu=name,driver_version,memory.total,pci.bus_id --format=csv 2>&1
  env | grep -E '^(VK_|__EGL|LD_LIBRARY_PATH)' ; ls /usr/share/vulkan/icd.d /etc/vulkan/icd.d 2>&1
} >>"$OUT/env.txt" 2>&1
py=
for c in python3 /usr/bin/python3 /opt/conda/bin/python python /usr/local/bin/python3; do
  if command -v "$c" >/dev/null 2>&1 && "$c" -c 'import torch' >/dev/null 2>&1; then py=$(command -v "$c"); break; fi
done
echo "python with torch: ${py:-none}" >>"$OUT/env.txt"
bench() { # name timeout args...
  local name=$1 limit=$2; shift 2
  stamp "webgpu $name: $*"
  # shellcheck disable=SC2086
  timeout "$limit" node "$G/bench-webgpu.mjs" --batch "$batch" --out "$OUT/webgpu-$name.json" "$@" ${WEBGPU_BENCH_ARGS:-} \
    >/dev/null 2>>"$OUT/log.txt"
  stamp "webgpu $name: exit $?"
}
stamp "compare: wolfpack bench webgpu --batch $batch --profile"
# shellcheck disable=SC2086
timeout "${MAIN_LIMIT:-330}" node "$G/bench-webgpu-compare.mjs" --batch "$batch" --profile ${py:+--python "$py"} --out "$OUT" ${WEBGPU_BENCH_ARGS:-} \
  >/dev/null 2>>"$OUT/log.txt"
stamp "compare: exit $?"
bench dxmm 60 --dx-mm --phases forward-fused,train-fused-single,profile-gpu --reps 3
bench dxgemm 60 --dx-gemm --phases train-fused-single,profile-gpu --reps 3
bench submit64 45 --submit-batch 64 --phases train-fused-single,forward-fused --reps 3
