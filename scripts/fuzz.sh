#!/usr/bin/env bash
# Run every libFuzzer target in BUILD_DIR/fuzz for SECONDS each, starting from
# its committed seed corpus (fuzz/corpus/<name without fuzz_>), on a scratch
# copy so the repository stays clean. Exits non-zero on the first crash.
set -euo pipefail
build_dir=${1:?usage: scripts/fuzz.sh BUILD_DIR SECONDS}
seconds=${2:-30}
root=$(cd "$(dirname "$0")/.." && pwd)
passed=0; failed=0
for target in "$build_dir"/fuzz/fuzz_*; do
  [ -x "$target" ] || continue
  name=$(basename "$target")
  corpus="$root/fuzz/corpus/${name#fuzz_}"
  work=$(mktemp -d)
  [ -d "$corpus" ] && cp -r "$corpus"/. "$work"/ 2>/dev/null || true
  echo "fuzz: $name for ${seconds}s"
  if "$target" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$work/" "$work" > "$work/log" 2>&1; then
    passed=$((passed + 1))
    grep -E "stat::number_of_executed_units" "$work/log" || true
  else
    failed=$((failed + 1))
    echo "fuzz: $name FAILED"; tail -50 "$work/log"
  fi
  rm -rf "$work"
done
echo "fuzz: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
