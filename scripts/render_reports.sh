#!/usr/bin/env bash
# Renders gradspec's HTML reports in headless Chromium: a screenshot of each
# page, and a failure when a page does not render or logs anything to the
# browser console (the reports hold no script, so any console message is an
# error: a broken page, or something that should not be there).
#
# usage: scripts/render_reports.sh [--size WxH] OUTDIR PAGE.html...   (OUTDIR/PAGE.png each)
#        scripts/render_reports.sh --self-test   (a page with console errors must fail, a clean one pass)
# CHROMIUM names the browser (default: chromium, else chromium-browser).
set -euo pipefail

size=1280,2400
if [ "${1:-}" = "--size" ]; then
  size=${2/x/,}
  shift 2
fi

browser=${CHROMIUM:-}
if [ -z "$browser" ]; then
  browser=$(command -v chromium || command -v chromium-browser || true)
fi
if [ -z "$browser" ]; then
  echo "render_reports: no chromium found (apt-get install chromium, or set CHROMIUM)" >&2
  exit 2
fi

# render PAGE PNG: 0 when the page rendered with a clean console, else 1
# with the reason on stderr.
render() {
  local page=$1 png=$2 log profile status=0
  if [ ! -s "$page" ]; then
    echo "render_reports: $page: no such page (or empty)" >&2
    return 1
  fi
  log=$(mktemp)
  profile=$(mktemp -d)
  rm -f "$png"
  # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
  timeout 120 "$browser" --headless --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$profile" --enable-logging=stderr --v=0 \
    --window-size="$size" --screenshot="$png" "file://$(realpath "$page")" > "$log" 2>&1 || status=$?
  rm -rf "$profile"
  if [ "$status" -ne 0 ]; then
    echo "render_reports: $page: chromium exited with status $status" >&2
    tail -20 "$log" >&2
    status=1
  elif [ ! -s "$png" ]; then
    echo "render_reports: $page: no screenshot was written" >&2
    status=1
  elif grep -E ':CONSOLE[:(]|Uncaught' "$log" >&2; then
    echo "render_reports: $page: the browser console logged the lines above" >&2
    status=1
  fi
  rm -f "$log"
  return "$status"
}

if [ "${1:-}" = "--self-test" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  printf '<!DOCTYPE html><html><body><p>broken</p><script>console.error("deliberate"); not_defined();</script></body></html>\n' > "$dir/broken.html"
  printf '<!DOCTYPE html><html><body><p>clean</p></body></html>\n' > "$dir/clean.html"
  if render "$dir/broken.html" "$dir/broken.png" 2> "$dir/why"; then
    echo "render_reports: self-test: a page with console errors rendered as clean" >&2
    exit 1
  fi
  grep -q "Uncaught ReferenceError" "$dir/why" || { echo "render_reports: self-test: the error was not reported:" >&2; cat "$dir/why" >&2; exit 1; }
  render "$dir/clean.html" "$dir/clean.png" || { echo "render_reports: self-test: a clean page failed" >&2; exit 1; }
  echo "render_reports: self-test passed: console errors are caught, a clean page renders"
  exit 0
fi

if [ $# -lt 2 ]; then
  echo "usage: scripts/render_reports.sh [--size WxH] OUTDIR PAGE.html... | --self-test" >&2
  exit 2
fi
out=$1
shift
mkdir -p "$out"
failed=0
for page in "$@"; do
  png="$out/$(basename "${page%.html}").png"
  if render "$page" "$png"; then
    echo "rendered $page -> $png ($(stat -c %s "$png") bytes)"
  else
    failed=1
  fi
done
exit "$failed"
