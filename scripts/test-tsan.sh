#!/usr/bin/env bash
# The multi-threaded tests under ThreadSanitizer (what `make test-tsan` runs
# after building BUILD_DIR with -DMOVIE_TSAN=ON):
#   scripts/test-tsan.sh BUILD_DIR [ctest args...]
# Every instrumented process (test programs and the services the integration
# tests start) writes its reports to one directory; a process with a report
# also exits 66, which fails a unit test by name. Any report file fails the
# run, even from a service whose exit status no test reads.
set -uo pipefail
build_dir=${1:?usage: scripts/test-tsan.sh BUILD_DIR [ctest args]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
build_dir=$(cd "$build_dir" && pwd)

# The multi-threaded parts: store drivers with worker threads (the mysql pool,
# sqlite from many threads), the Kafka consumer, the gRPC client's loop
# thread, and the services' workers + thread pool behind real gRPC/HTTP calls
# (integration.movie runs all three services, the movie service's gRPC
# client to its peers and h2load). integration.metadata is left out: its
# connection-age test asserts a call rate that TSan's slowdown cannot reach.
tests=${MOVIE_TSAN_TESTS:-'^(unit\.test_(rating|metadata)_store\.(sqlite|mysql)|unit\.test_ingest|unit\.test_grpc_client|unit\.test_grpc_client_policy|integration\.rating|integration\.movie)$'}

# test_big_aggregate is a single-threaded volume test (a million ratings on
# sqlite): under TSan's 5-15x slowdown it outlasts its timeout and checks no
# concurrency. A tenth of the volume keeps it in the run.
export MOVIE_TEST_RATING_BIG=${MOVIE_TEST_RATING_BIG:-100000}

reports=$(mktemp -d /tmp/movie-tsan.XXXXXX)
trap 'rm -rf "$reports"' EXIT
export TSAN_OPTIONS="log_path=$reports/tsan:exitcode=66:second_deadlock_stack=1:history_size=4:suppressions=$here/scripts/tsan.supp${TSAN_OPTIONS:+:$TSAN_OPTIONS}"

"$here/scripts/test.sh" "$build_dir" -R "$tests" "$@"
status=$?

found=$(find "$reports" -type f -name 'tsan*' | wc -l)
if [ "$found" -gt 0 ]; then
  for f in "$reports"/tsan*; do
    echo "---- $f"
    head -60 "$f"
  done
  echo "tsan: $found report file(s): FAILED"
  exit 1
fi
echo "tsan: no reports"
exit $status
