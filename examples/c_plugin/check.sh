#!/bin/sh
# The C plugin example, checked end to end (CI runs this):
#   - the clean libmy_ce.so passes its specs and gradspec conventions;
#   - each planted bug (my_ce.c, -DPLANT_BUG=N) makes gradspec fail with
#     exit status 1 and the message that names what went wrong.
# One line per case; the exit status is 0 only when every case went as
# expected.
#
#   GRADSPEC=path/to/gradspec examples/c_plugin/check.sh
#
# GRADSPEC defaults to build/gradspec of this repository. Works from any
# directory; the libraries are built in a temporary directory.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
gradspec=${GRADSPEC:-$repo/build/gradspec}
case $gradspec in
  /*) ;;
  */*) gradspec="$(cd "$(dirname "$gradspec")" && pwd)/$(basename "$gradspec")" ;;
esac
if ! command -v "$gradspec" >/dev/null 2>&1; then
  echo "check.sh: no gradspec binary at $gradspec (set GRADSPEC)" >&2
  exit 2
fi

# Only register.lua decides what is loaded, and no kernel is mutated.
unset GRADSPEC_LOAD GRADSPEC_MUTANT

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT INT TERM

cases=0
unexpected=0

# expect LABEL BUG STATUS TEXT ARGS...: builds libmy_ce.so with planted bug
# BUG (0: none), runs gradspec ARGS in this directory, and expects exit
# status STATUS and, unless TEXT is empty, TEXT in the output.
expect() {
  label=$1 bug=$2 want=$3 text=$4
  shift 4
  cases=$((cases + 1))
  lib="$tmp/bug$bug"
  if [ ! -f "$lib/libmy_ce.so" ] && ! "$here/build.sh" -o "$lib" "$bug" >"$tmp/build.log" 2>&1; then
    echo "FAIL  $label: libmy_ce.so (bug $bug) did not build"
    sed 's/^/      /' "$tmp/build.log"
    unexpected=$((unexpected + 1))
    return
  fi
  (cd "$here" && MY_CE_LIB="$lib/libmy_ce.so" "$gradspec" "$@") >"$tmp/out.log" 2>&1
  status=$?
  found=yes
  if [ -n "$text" ] && ! grep -qF -- "$text" "$tmp/out.log"; then found=no; fi
  if [ "$status" -eq "$want" ] && [ $found = yes ]; then
    echo "ok    $label: exit $status${text:+, \"$text\"}"
  else
    echo "FAIL  $label: exit $status${text:+, \"$text\" $([ $found = yes ] && echo found || echo missing)}; expected exit $want${text:+ with \"$text\"}"
    echo "      gradspec $*"
    tail -n 25 "$tmp/out.log" | sed 's/^/      | /'
    unexpected=$((unexpected + 1))
  fi
}

spec="run --load register.lua my_ce_spec.lua"
conventions="conventions --load register.lua --backends ref,my_ce"

# shellcheck disable=SC2086 # $spec and $conventions are word lists
{
  expect "clean: the specs pass" 0 0 "" $spec
  expect "clean: gradspec conventions" 0 0 "" $conventions
  expect "bug 1 (log_probs returns +CE)" 1 1 "+CE" $conventions
  expect "bug 2 (softcap chain term dropped)" 2 1 "disagrees with ref on grad" $spec
  expect "bug 3 (gradient negated)" 3 1 "disagrees with ref on grad" $spec
  expect "bug 4 (writes past each gradient row)" 4 1 "past" $spec
  expect "bug 5 (exit(1) on an ignored row)" 5 1 "exited with status 1" $spec
}

echo "$cases cases, $((cases - unexpected)) as expected, $unexpected unexpected"
[ "$unexpected" -eq 0 ]
