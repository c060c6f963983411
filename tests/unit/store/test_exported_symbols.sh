#!/usr/bin/env bash
# The link contract (movie/db_module.h): a service binary exports none of our
# symbols (only copy-relocated library data such as stderr@GLIBC), and each
# MariaDB driver module exports exactly its table, movie_db_module.
#   test_exported_symbols.sh BUILD_DIR plain|sanitized MODULES SERVICE...
# MODULES: comma-separated services that build a MariaDB module; SERVICE...:
# every service binary (ctest passes both from the build, services/services.txt).
# Counts come from `nm -D --defined-only`. Our symbols are the global ones
# defined by the static libraries and object files of the build; sanitizer
# runtimes add exports of their own (interceptors), which are not ours.
set -uo pipefail
usage="usage: test_exported_symbols.sh BUILD_DIR plain|sanitized MODULES SERVICE..."
build=${1:?$usage}
mode=${2:?$usage}
IFS=, read -r -a modules <<<"${3:?$usage}"
shift 3
[ $# -gt 0 ] || { echo "$usage" >&2; exit 2; }
services=("$@")
# A plain service binary exports only copy-relocated library data (environ,
# stdout, stderr, protobuf_c_empty_string: 5 today, each with its library's
# version); -rdynamic exported 288 of ours plus _start, _end, ... unversioned.
max_plain_exports=16
passed=0
failed=0
ok() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1"; failed=$((failed + 1)); }

# A binary's exported definitions, without version suffixes.
exported() { nm -D --defined-only "$1" | awk '{print $NF}' | sed 's/@.*//' | sort -u; }

ours=$(mktemp)
trap 'rm -f "$ours"' EXIT
find "$build" \( -name '*.a' -o -name '*.c.o' \) -print0 |
	xargs -0 nm -g --defined-only 2>/dev/null | awk 'NF >= 3 {print $3}' | sort -u >"$ours"
if [ "$(wc -l <"$ours")" -lt 100 ]; then
	fail "found the build's own symbols ($(wc -l <"$ours") in $build)"
fi

for svc in "${services[@]}"; do
	exe=$build/bin/$svc
	if [ ! -x "$exe" ]; then
		fail "$svc: $exe missing"
		continue
	fi
	all=$(nm -D --defined-only "$exe" | wc -l)
	# Unversioned exports in a plain build can only be ours (-rdynamic,
	# default visibility); copy relocations always carry a version.
	leaked=$(exported "$exe" | comm -12 - "$ours")
	if [ "$mode" = sanitized ]; then
		# TSan builds compile C11 thread functions into programs that link
		# librdkafka, exported on purpose (tests/tsan/c11_threads.c).
		leaked=$(echo "$leaked" | grep -Ev '^(thrd_|mtx_|cnd_|call_once$)' || true)
	fi
	if [ -n "$leaked" ]; then
		fail "$svc exports $(echo "$leaked" | wc -l) of our symbols ($all exported):"
		echo "$leaked" | head -20 | sed 's/^/    /'
	elif [ "$mode" = plain ] && [ "$all" -gt "$max_plain_exports" ]; then
		fail "$svc exports $all definitions (at most $max_plain_exports in a plain build)"
	elif [ "$mode" = plain ] && nm -D --defined-only "$exe" | awk '{print $NF}' | grep -qv '@'; then
		fail "$svc exports unversioned definitions (linked with -rdynamic?): $(nm -D --defined-only "$exe" | awk '{print $NF}' | grep -v '@' | head -10 | tr '\n' ' ')"
	else
		ok "$svc exports none of our symbols ($all exported definitions)"
	fi
done

for svc in "${modules[@]}"; do
	so=$build/lib/movie/movie-mysql-$svc.so
	if [ ! -f "$so" ]; then
		fail "module $so missing"
		continue
	fi
	names=$(exported "$so" | tr '\n' ' ')
	if [ "$names" = "movie_db_module " ]; then
		ok "movie-mysql-$svc.so exports exactly movie_db_module"
	else
		fail "movie-mysql-$svc.so exports $(exported "$so" | wc -l) symbols: ${names:0:300}"
	fi
	# Nothing the module needs may come from the program: none of its
	# undefined symbols is one of ours, and in a plain build every one is
	# versioned (from a shared library) or weak. Sanitizer builds resolve
	# malloc, memcpy, ... against their runtime, unversioned.
	undefined=$(nm -D --undefined-only "$so" | awk '$1 == "U" {print $2}')
	from_program=$(echo "$undefined" | sed 's/@.*//' | sort -u | comm -12 - "$ours")
	if [ "$mode" = plain ] && [ -z "$from_program" ]; then
		from_program=$(echo "$undefined" | grep -v '@' || true)
	fi
	if [ -n "$from_program" ]; then
		fail "movie-mysql-$svc.so resolves against the program: $(echo $from_program | head -c 300)"
	else
		ok "movie-mysql-$svc.so resolves nothing against the program"
	fi
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
