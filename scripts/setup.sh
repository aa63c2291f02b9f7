#!/usr/bin/env bash
# Installs what gradspec needs on Debian 12 and builds it into build/.
# CUDA kernels are compiled when nvcc is found (/usr/local/cuda/bin is searched).
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(build-essential cmake pkg-config luajit libluajit-5.1-dev libopenblas-dev libedit2 tmux python3 libxml2-utils)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  echo "setup: installing ${missing[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B "${BUILD_DIR:-build}" -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "${BUILD_DIR:-build}" -j"$(nproc)"
