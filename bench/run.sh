#!/usr/bin/env bash
# `make bench`: every benchmark, results as JSON lines in bench/out/ (not committed).
# Numbers worth keeping go into bench/RESULTS.md by hand, with the command.
set -euo pipefail
build_dir=$(cd "${1:-build}" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
out="$here/out"
mkdir -p "$out"
export MOVIE_BUILD_DIR="$build_dir"
run() { local name=$1; shift; echo "bench: $name"; /usr/bin/python3 "$@" | tee "$out/$name.json"; }
run metadata "$here/grpc_bench.py" metadata --requests 500000
run rating-5 "$here/grpc_bench.py" rating --ratings 5 --requests 500000
run rating-1m "$here/grpc_bench.py" rating --ratings 1000000 --requests 500000
run movie "$here/grpc_bench.py" movie --requests 500000
if [ -x "$here/ingest.sh" ]; then
  echo "bench: ingest"; "$here/ingest.sh" "$build_dir/bin" | tee "$out/ingest.txt"
fi
