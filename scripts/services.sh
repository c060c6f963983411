#!/usr/bin/env bash
# The services of the movie system, read from services/services.txt (the one
# list; CMake, moviectl lint and the tests read it too).
#   scripts/services.sh          one line each: NAME GRPC_SERVICE PORT
#   scripts/services.sh names    the names only, in start order
set -euo pipefail
list="$(cd "$(dirname "$0")/.." && pwd)/services/services.txt"
case "${1:-lines}" in
lines) awk '!/^#/ && NF {print $1, $2, $3}' "$list" ;;
names) awk '!/^#/ && NF {print $1}' "$list" ;;
*) echo "usage: scripts/services.sh [lines|names]" >&2; exit 2 ;;
esac
