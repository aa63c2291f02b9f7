#!/bin/sh
# Builds libmy_ce.so against gradspec's contract headers:
#
#   build.sh [-I include_dir] [-o out_dir] [bug]
#
# include_dir holds cross_entropy.h and gs_types.h: the repository's kernels/
# (the default, ../../kernels next to this script) or PREFIX/include/gradspec
# of an installed gradspec. out_dir defaults to build/ next to this script.
# bug (1 to 5) compiles one of the planted bugs listed at the top of my_ce.c.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
include="$here/../../kernels"
out="$here/build"
while getopts "I:o:" opt; do
  case $opt in
    I) include=$OPTARG ;;
    o) out=$OPTARG ;;
    *) echo "usage: $0 [-I include_dir] [-o out_dir] [bug]" >&2; exit 2 ;;
  esac
done
shift $((OPTIND - 1))
bug=${1:-0}
case $bug in
  0 | 1 | 2 | 3 | 4 | 5) ;;
  *) echo "$0: bug must be 0 (none) to 5, got '$bug'" >&2; exit 2 ;;
esac
define=""
[ "$bug" != 0 ] && define="-DPLANT_BUG=$bug"
mkdir -p "$out"
set -x
${CC:-cc} -shared -fPIC -O2 ${define:+"$define"} -I"$include" "$here/my_ce.c" -o "$out/libmy_ce.so" -lm
