#!/usr/bin/env bash
# The tensor and kernel specs under valgrind's memcheck, in one process
# (--no-isolate) so that valgrind sees every allocation. Fails on any error
# or definite/indirect leak.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind > /dev/null || { echo "valgrind is not installed (apt-get install valgrind)"; exit 2; }
for spec in specs/tensor_spec.lua specs/cross_entropy_spec.lua "$@"; do
  echo "== valgrind: $spec"
  valgrind --quiet --suppressions=scripts/valgrind.supp --leak-check=full --errors-for-leak-kinds=definite,indirect --error-exitcode=99 \
    "${BUILD_DIR:-build}/gradspec" run "$spec" --no-isolate
done
