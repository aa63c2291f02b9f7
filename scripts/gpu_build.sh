#!/usr/bin/env bash
# Builds build-gpu (or $1) here, with CUDA on, so that the directory can be
# carried to the GPU machine and run there by scripts/gpu_run.sh.
# cudart and LuaJIT are linked statically. gradspec links no other CUDA
# library: it opens cuBLAS (and NVRTC, and the driver) with dlopen on first
# use, from the library path or /usr/local/cuda/lib64 (GRADSPEC_CUBLAS names
# the file instead). The CUDA benchmarks link cuBLAS directly. OpenBLAS is a
# shared library the GPU machine needs too.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
JOBS=$(nproc 2>/dev/null || echo 2)

[ -d /usr/local/cuda/bin ] && export PATH="/usr/local/cuda/bin:$PATH"
cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGRADSPEC_CUDA=ON
cmake --build "$BUILD" -j"$JOBS"

echo "gpu_build: shared libraries the binaries need (all must exist on the GPU machine):"
for b in "$BUILD"/gradspec "$BUILD"/bench_*; do
  [ -x "$b" ] || continue
  echo "  $b:"
  ldd "$b" | sed 's/^/    /'
done
if ldd "$BUILD/gradspec" | grep -Eq 'libluajit|libcublas|libcudart|libcuda\.so'; then
  echo "gpu_build: $BUILD/gradspec links LuaJIT or a CUDA library dynamically; it is meant to open CUDA at run time" >&2
  exit 1
fi
echo "gpu_build: $BUILD/gradspec opens cuBLAS at run time; here it would load: $(
  "$BUILD/gradspec" -e 'local ffi = require("ffi"); local C = require("gradspec.ffi").C
    local e, p = ffi.new("gs_error"), ffi.new("char[512]")
    print(C.gs_cuda_blas_load(p, 512, e) == 1 and ffi.string(p) or ffi.string(e.msg))')"
du -sh "$BUILD"
