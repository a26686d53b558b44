#!/usr/bin/env bash
# Installs Mesa's CPU Vulkan driver (lavapipe) from Debian bookworm-backports, the Mesa (25.x) that gives
# Dawn (npm `webgpu`) an adapter; bookworm's own Mesa 22.3 gives none. Idempotent: does nothing when the
# backports driver is already installed. Prints the ICD file to export as VK_ICD_FILENAMES.
#   usage: scripts/ci/install-lavapipe.sh        (root; about a minute the first time)
#   then:  export VK_ICD_FILENAMES=$(scripts/ci/install-lavapipe.sh --icd)
set -euo pipefail
# Mesa 25 names it lvp_icd.json (22.x: lvp_icd.x86_64.json)
find_icd() { for f in /usr/share/vulkan/icd.d/lvp_icd.json /usr/share/vulkan/icd.d/lvp_icd.x86_64.json; do
  [ -f "$f" ] && { echo "$f"; return 0; }; done; return 1; }
installed_version() { dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true; }
is_new_enough() { # Mesa major >= 23 (backports); 22.x gives no adapter
  local v; v=$(installed_version); [ -n "$v" ] && find_icd >/dev/null && [ "${v%%.*}" -ge 23 ] 2>/dev/null
}
if [ "${1:-}" = "--icd" ]; then
  is_new_enough && { find_icd; exit 0; }
  echo "install-lavapipe: Mesa >= 23 lavapipe is not installed (found '$(installed_version)')" >&2; exit 1
fi
if is_new_enough; then
  echo "install-lavapipe: mesa-vulkan-drivers $(installed_version) already installed; VK_ICD_FILENAMES=$(find_icd)" >&2
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "install-lavapipe: needs root (apt-get)" >&2; exit 1; }
src=/etc/apt/sources.list.d/bookworm-backports.list
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' > "$src"
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq -o DPkg::Lock::Timeout=300 -o Dir::Etc::sourcelist="$src" -o Dir::Etc::sourceparts=- -o APT::Get::List-Cleanup=0 >/dev/null 2>&1 \
  || apt-get update -qq >/dev/null
apt-get install -o DPkg::Lock::Timeout=300 -y -qq --no-install-recommends -t bookworm-backports mesa-vulkan-drivers >/dev/null
is_new_enough || { echo "install-lavapipe: install finished but Mesa is $(installed_version)" >&2; exit 1; }
echo "install-lavapipe: mesa-vulkan-drivers $(installed_version); VK_ICD_FILENAMES=$(find_icd)" >&2
