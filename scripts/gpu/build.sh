#!/usr/bin/env bash
# Prepares .gpu/ (git-ignored) for a GPU host that has the NVIDIA driver but no Node.js, no internet and
# no node_modules: the kit (Node, Vulkan loader, libEGL; ../shared/gpu/make-kit.sh), bench/webgpu.ts and
# bench/webgpu-compare.ts (`wolfpack bench webgpu`) bundled, and the `webgpu` package with its dawn.node (xz-compressed; run.sh unpacks it).
#   usage: scripts/gpu/build.sh [OUTDIR=.gpu]      then on the GPU host: scripts/gpu/run.sh
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/.gpu}
mkdir -p "$out"
kit=${WOLFPACK_KIT_SRC:-$root/../shared/gpu}
[ -f "$out/kit/gpu-env.sh" ] && [ -f "$out/kit/node.xz" ] && [ -f "$out/kit/gpu-libs.tar.xz" ] || bash "$kit/make-kit.sh" "$out/kit"
cd "$root"
bundle() { # entry outfile
  npx --yes esbuild@0.24.2 "$1" --bundle --platform=node --format=esm --target=node20 \
    --external:webgpu --outfile="$2" --log-level=warning \
    --banner:js="import { createRequire as __wpCreateRequire } from 'node:module'; const require = __wpCreateRequire(import.meta.url);"
}
bundle bench/webgpu.ts "$out/bench-webgpu.mjs"                  # the phases one by one, for experiments (--dx-mm, --submit-batch)
bundle bench/webgpu-compare.ts "$out/bench-webgpu-compare.mjs"  # = `wolfpack bench webgpu`: wolfpack beside PyTorch
pkg=$root/node_modules/webgpu
dst=$out/node_modules/webgpu
rm -rf "$dst"
mkdir -p "$dst/dist/linux-x64"
cp "$pkg/package.json" "$pkg/index.js" "$pkg/LICENSE.md" "$dst/"
xz -T2 -6 -c "$pkg/dist/linux-x64/dawn.node" > "$out/dawn.node.xz"
du -sh "$out"/* | sort -h
du -sh "$out"
