#!/usr/bin/env bash
# Builds build-gpu (or $1) here, with CUDA on, so that the directory can be
# carried to the GPU machine and run there by scripts/gpu_run.sh.
# cudart and LuaJIT are linked statically; OpenBLAS (and cuBLAS, when a
# binary still needs it) are shared libraries the GPU machine has.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
JOBS=$(nproc 2>/dev/null || echo 2)

cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGRADSPEC_CUDA=ON
cmake --build "$BUILD" -j"$JOBS"

echo "gpu_build: shared libraries the binaries need (all must exist on the GPU machine):"
for b in "$BUILD"/gradspec "$BUILD"/bench_*; do
  [ -x "$b" ] || continue
  echo "  $b:"
  ldd "$b" | sed 's/^/    /'
done
du -sh "$BUILD"
