#!/usr/bin/env bash
# Vocabulary-parallel cross entropy on GPUs, end to end. Run ON the GPU
# machine, from the repository root:
#
#   scripts/gpu_nccl.sh [BUILD]       BUILD defaults to build-gpu
#
# Uses BUILD/gradspec when it is there (built elsewhere with CUDA, e.g. by
# scripts/gpu_build.sh, and carried over); otherwise configures and builds
# it here (needs CMake, nvcc, OpenBLAS and the LuaJIT development files).
# NCCL: GRADSPEC_NCCL when set; else the copy in the Python packages
# (nvidia-nccl-cu13, as PyTorch installs it); else libnccl.so.2 from the
# library path. Runs the GPU vocab-parallel specs (tags cuda_ranks,
# nccl_1gpu and nccl: those whose GPUs are missing are skipped with the
# reason), the CPU-rank specs, and bench/vocab_parallel.lua (8192 x 128256
# bf16; 2 GPUs against 1 where 2 are visible). Logs go to
# ${OUT:-gpu-results}/: nccl_summary.log, nccl_specs.log, nccl_bench.log.
# BENCH_ARGS adds benchmark options (--reps 20, ...).
set -u -o pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
SUMMARY="$OUT/nccl_summary.log"
: >"$SUMMARY"
note() { echo "== $*" | tee -a "$SUMMARY"; }
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
# NCCL's own warnings land in the logs; INFO when NCCL_DEBUG asks for more
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}

if [ -z "${GRADSPEC_NCCL:-}" ]; then
  found=$(python3 - <<'PY' 2>/dev/null
import glob, os
try:
    import nvidia.nccl as m
except ImportError:
    raise SystemExit
for d in list(m.__path__):
    for f in sorted(glob.glob(os.path.join(d, "lib", "libnccl.so*"))):
        print(f)
        raise SystemExit
PY
)
  if [ -n "$found" ]; then export GRADSPEC_NCCL=$found; fi
fi
note "NCCL: ${GRADSPEC_NCCL:-libnccl.so.2 from the library path}"

if [ ! -x "$BUILD/gradspec" ]; then
  note "no gradspec in $BUILD: building here"
  if ! { cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/nccl_build.log" 2>&1 &&
         cmake --build "$BUILD" --target gradspec -j"$(nproc)" >>"$OUT/nccl_build.log" 2>&1; }; then
    note "build failed: see $OUT/nccl_build.log"
    exit 1
  fi
fi
GS="$BUILD/gradspec"

{ nvidia-smi -L 2>&1 || echo "nvidia-smi not found"; } | tee "$OUT/nccl_device.log"
"$GS" -e 'local i, why = gs.dist.nccl_info()
print(i and ("NCCL " .. i.version .. " loaded from " .. i.path) or ("NCCL unavailable: " .. why))
print(gs.dist.gpu_count() .. " GPU(s) visible to gs.dist")
print("2-GPU specs: " .. (gs.dist.nccl_unavailable_reason(2) or "will run"))' 2>&1 | tee -a "$SUMMARY"

step() {  # name, log, timeout (s), command...
  local name=$1 log=$2 limit=$3
  shift 3
  local t0=$SECONDS
  timeout "$limit" "$@" >"$OUT/$log" 2>&1
  local rc=$?
  note "$name: exit $rc ($((SECONDS - t0)) s); last line: $(tail -n 1 "$OUT/$log")"
}

step "GPU vocab-parallel specs" nccl_specs.log "${SPECS_TIMEOUT:-900}" \
  "$GS" run specs/vocab_parallel_nccl_spec.lua -v --timeout 600
grep -E "^ *[0-9]+: needs|skip" "$OUT/nccl_specs.log" | head -n 20 | tee -a "$SUMMARY"
step "CPU-rank specs" nccl_cpu_specs.log 600 "$GS" run specs/dist_spec.lua specs/vocab_parallel_spec.lua
# shellcheck disable=SC2086
step "benchmark" nccl_bench.log "${BENCH_TIMEOUT:-900}" "$GS" bench/vocab_parallel.lua ${BENCH_ARGS:-}
cat "$OUT/nccl_bench.log" | tee -a "$SUMMARY"
