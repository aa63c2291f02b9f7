#!/usr/bin/env bash
# One GPU run, end to end. Run ON the GPU machine, from the repository root:
#
#   scripts/gpu_run.sh [BUILD]        BUILD defaults to build-gpu
#
# Uses BUILD as it is when it holds the binaries (built elsewhere by
# scripts/gpu_build.sh and carried over); otherwise configures and builds it
# here, which needs CMake, nvcc, pkg-config, OpenBLAS and the LuaJIT
# development files (libluajit-5.1-dev) on this machine.
# Every log goes to ${OUT:-gpu-results}/. BENCH_ARGS adds benchmark options
# (--sweep, --reps N); SPECS_TIMEOUT, CHECK_TIMEOUT, BENCH_TIMEOUT and
# SANITIZER_TIMEOUT bound each step (seconds). RACECHECK=1 adds a racecheck
# pass over the check cases whose names contain RACECHECK_FILTER. RUN_BENCH=0
# leaves out the benchmarks and their --check runs (the specs, the users'
# kernel checks and the specs' memcheck still run); RUN_USER_KERNEL=0 the
# users' kernel checks. The cuda specs and their memcheck run twice, at the
# same time: with the default plans and with GRADSPEC_CUDA_PORTABLE=1 (the
# plans without thread-block clusters, those of every pre-Hopper GPU); the
# specs with SPECS_JOBS spec files at once (default 8).
set -u -o pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-build-gpu}
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
SUMMARY="$OUT/summary.log"
: >"$SUMMARY"
note() { echo "== $*" | tee -a "$SUMMARY"; }
# A binary built against CUDA's shared libraries finds them here.
export LD_LIBRARY_PATH=/usr/local/cuda/lib64${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

BENCH="$BUILD/bench_cross_entropy_cuda"
for b in "$BENCH" "$BUILD/gradspec"; do
  [ -x "$b" ] && ldd "$b" 2>&1 | grep -q "not found" && note "$b is missing shared libraries: $(ldd "$b" | grep "not found" | tr -s ' \t' ' ')"
done
if [ ! -x "$BENCH" ]; then
  note "no binaries in $BUILD: building here (needs LuaJIT development files and OpenBLAS)"
  if cmake -S . -B "$BUILD" -DCMAKE_BUILD_TYPE=Release >"$OUT/build.log" 2>&1 &&
     cmake --build "$BUILD" --target bench_cross_entropy_cuda -j"$(nproc)" >>"$OUT/build.log" 2>&1; then
    cmake --build "$BUILD" --target gradspec -j"$(nproc)" >>"$OUT/build.log" 2>&1 ||
      note "gradspec did not build here (see build.log)"
  else
    note "build failed (see $OUT/build.log; without LuaJIT, build here with scripts/gpu_build.sh and carry $BUILD)"
  fi
fi

if command -v nvidia-smi >/dev/null; then
  nvidia-smi 2>&1 | tee "$OUT/device.log"
else
  note "nvidia-smi not found"
fi

run_step() {  # name, log file, command...
  local name=$1 log=$2
  shift 2
  local t0=$SECONDS
  "$@" 2>&1 | tee "$OUT/$log"
  local rc=${PIPESTATUS[0]}
  note "$name: exit $rc ($((SECONDS - t0)) s)"
  return 0
}

# Both plan sets: "default" (clusters where the GPU has them) and
# "portable" (GRADSPEC_CUDA_PORTABLE=1). run_both NAME LOG_PREFIX PATTERN
# COMMAND... runs COMMAND once per set, the two at the same time, then
# summarises each log's lines that match PATTERN.
run_both() {
  local name=$1 prefix=$2 pattern=$3
  shift 3
  local t0=$SECONDS
  env GRADSPEC_CUDA_PORTABLE=0 "$@" >"$OUT/$prefix.log" 2>&1 &
  local p1=$!
  env GRADSPEC_CUDA_PORTABLE=1 "$@" >"$OUT/${prefix}_portable.log" 2>&1 &
  local p2=$!
  wait $p1; local rc1=$?
  wait $p2; local rc2=$?
  note "$name, default plans: exit $rc1; GRADSPEC_CUDA_PORTABLE=1: exit $rc2 ($((SECONDS - t0)) s for both)"
  for mode in "" _portable; do
    grep -E "$pattern" "$OUT/$prefix$mode.log" | sed "s/^/  ${mode:-_default}: /" | tee -a "$SUMMARY"
  done
  return 0
}

if [ -x "$BUILD/gradspec" ] && [ -d specs ] && ls specs/*_spec.lua >/dev/null 2>&1; then
  run_both "gradspec specs (cuda)" specs '^[0-9]+ passed' \
    timeout "${SPECS_TIMEOUT:-300}" "$BUILD/gradspec" run specs/ --tags cuda -v -j "${SPECS_JOBS:-8}"
else
  note "gradspec specs skipped: $BUILD/gradspec or specs/*_spec.lua missing"
fi

if [ -x "$BUILD/gradspec" ] && [ -d examples/cuda_kernel ] && [ "${RUN_USER_KERNEL:-1}" != 0 ]; then
  # A user's CUDA kernel (compiled with NVRTC, launched through the driver
  # API) as a backend: its specs, the conventions on every backend, and the
  # black-box mutants of it against its own specs.
  EX=examples/cuda_kernel
  run_step "user kernel: $EX specs" user_kernel.log timeout "${SPECS_TIMEOUT:-300}" \
    "$BUILD/gradspec" run "$EX/ce_kernel_spec.lua" -v
  grep -E '^[0-9]+ passed' "$OUT/user_kernel.log" | tee -a "$SUMMARY"
  run_step "conventions (every backend, cuda_example included)" conventions.log \
    timeout "${SPECS_TIMEOUT:-300}" "$BUILD/gradspec" conventions --load "$EX/register.lua"
  tail -n 1 "$OUT/conventions.log" | tee -a "$SUMMARY"
  run_step "mutate --backend cuda_example" mutate_user_kernel.log timeout "${SPECS_TIMEOUT:-300}" \
    "$BUILD/gradspec" mutate --backend cuda_example --load "$EX/register.lua" "$EX/ce_kernel_spec.lua"
  grep -E '^kill rate' "$OUT/mutate_user_kernel.log" | tee -a "$SUMMARY"
fi

SAN=/usr/local/cuda/bin/compute-sanitizer
command -v compute-sanitizer >/dev/null && SAN=$(command -v compute-sanitizer)
if [ -x "$SAN" ] && [ -x "$BUILD/gradspec" ]; then
  # The cuda specs in one process (--no-isolate) so the sanitizer sees
  # every launch; the 8 GiB offset spec (#big) is left out for time.
  # Spec files named one by one: the runner then starts no helper
  # process, which the sanitizer would follow. GRADSPEC_JIT=off: under the
  # sanitizer, LuaJIT's compiled traces end the process.
  run_both "compute-sanitizer memcheck (gradspec cuda specs)" memcheck_specs 'ERROR SUMMARY|^[0-9]+ passed' \
    env GRADSPEC_JIT=off timeout "${SANITIZER_TIMEOUT:-240}" "$SAN" --tool memcheck --error-exitcode 3 \
    --target-processes application-only \
    "$BUILD/gradspec" run specs/*_spec.lua --tags cuda --exclude-tags big --no-isolate -v
fi

if [ "${RUN_BENCH:-1}" = 0 ]; then
  note "RUN_BENCH=0: benchmarks left out"
  BENCH=/nonexistent
fi

if [ -x "$BENCH" ]; then
  run_step "bench --check" check.log timeout "${CHECK_TIMEOUT:-600}" "$BENCH" --check
  grep -E '^check:' "$OUT/check.log" | tee -a "$SUMMARY"
  grep -E '^FAIL' "$OUT/check.log" | head -40 | tee -a "$SUMMARY"
  # shellcheck disable=SC2086
  run_step "benchmark" bench.log timeout "${BENCH_TIMEOUT:-600}" "$BENCH" ${BENCH_ARGS:-}
  if [ -x "$SAN" ]; then
    # The 8 GiB offset check is left out: under memcheck it would take minutes.
    run_step "compute-sanitizer memcheck (--check --no-big)" memcheck.log \
      timeout "${SANITIZER_TIMEOUT:-240}" "$SAN" --tool memcheck --error-exitcode 3 "$BENCH" --check --no-big
    grep -E 'ERROR SUMMARY|^check:' "$OUT/memcheck.log" | tee -a "$SUMMARY"
    if [ "${RACECHECK:-0}" = 1 ]; then
      run_step "compute-sanitizer racecheck (--filter '${RACECHECK_FILTER:-V=4099}')" racecheck.log \
        timeout "${SANITIZER_TIMEOUT:-240}" "$SAN" --tool racecheck --error-exitcode 3 "$BENCH" --check --no-big \
        --filter "${RACECHECK_FILTER:-V=4099}"
      grep -E 'ERROR SUMMARY|RACECHECK SUMMARY|^check:' "$OUT/racecheck.log" | tee -a "$SUMMARY"
    fi
  else
    note "compute-sanitizer not found: memcheck skipped"
  fi
else
  note "$BENCH missing: nothing to run"
fi

LCE="$BUILD/bench_linear_cross_entropy_cuda"
if [ -x "$LCE" ] && [ "${RUN_BENCH:-1}" != 0 ]; then
  run_step "linear cross entropy --check" lce_check.log timeout "${CHECK_TIMEOUT:-600}" "$LCE" --check
  run_step "linear cross entropy benchmark" lce_bench.log timeout "${BENCH_TIMEOUT:-600}" "$LCE"
else
  note "$LCE missing: linear cross entropy not run"
fi
note "logs in $OUT/"
