#!/usr/bin/env bash
# Run the whole suite (what `make test` does): a throwaway MariaDB server on
# loopback for the tests that need one, then ctest over BUILD_DIR.
#   scripts/test.sh BUILD_DIR [ctest args...]
# When MOVIE_TEST_MYSQL_HOST is already set, that server is used instead.
set -euo pipefail
build_dir=${1:?usage: scripts/test.sh BUILD_DIR [ctest args]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)

if [ -z "${MOVIE_TEST_MYSQL_HOST:-}" ]; then
  datadir=$(mktemp -d /tmp/movie-test-mariadb.XXXXXX)
  # A free port below 32768 from the requested one (a per-run offset by
  # default, so that concurrent ctest runs rarely even try the same one):
  # bind-checked, and a start that loses a race for it retries on the next.
  port=${MOVIE_TEST_MYSQL_PORT:-$((23306 + $$ % 400))}
  port=$("$here/scripts/test-mariadb.sh" start-free "$datadir" "$port")
  trap '"$here/scripts/test-mariadb.sh" stop "$datadir"; rm -rf "$datadir"' EXIT
  export MOVIE_TEST_MYSQL_HOST=127.0.0.1 MOVIE_TEST_MYSQL_PORT=$port
  export MOVIE_TEST_MYSQL_USER=movie MOVIE_TEST_MYSQL_PASSWORD=movie
  echo "test: MariaDB on 127.0.0.1:$port ($datadir)"
fi

jobs=${MOVIE_TEST_JOBS:-2}
cd "$build_dir"
# MOVIE_TEST_REPEAT=N (CI sets 2): a failing test is run again, up to N runs in
# all; ctest prints every failed run, so an intermittent failure stays visible
# in the log while the stage passes. Unset: one run, as a developer expects.
repeat=()
if [ -n "${MOVIE_TEST_REPEAT:-}" ]; then
  repeat=(--repeat "until-pass:${MOVIE_TEST_REPEAT}")
fi
ctest --output-on-failure --timeout 900 -j "$jobs" "${repeat[@]}" "$@"
