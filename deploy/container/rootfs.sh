#!/bin/sh
# rootfs.sh - lay out the root filesystem of one `FROM scratch` runtime image.
#
# Runs in the Containerfile's build stage. Copies the binaries, exactly the
# shared libraries `ldd` lists for them (symlinks resolved, so the image needs
# no ldconfig) plus the dynamic loader, a passwd/group naming the non-root user
# 65532, the configs under /etc/movie/config and the writable working directory
# /var/lib/movie/data. No shell, no package manager, no libc tools.
#
# Usage: rootfs.sh OUT_DIR CONFIG_DIR|- BINARY...
set -eu
out=$1 configs=$2
shift 2
mkdir -p "$out/usr/local/bin" "$out/etc/movie/config" "$out/var/lib/movie/data" "$out/tmp"
chmod 1777 "$out/tmp"
# copy_libs FILE: exactly the shared libraries `ldd` lists for FILE, plus the loader.
copy_libs() {
	# "libfoo.so.1 => /lib/.../libfoo.so.1 (0x...)" and "/lib64/ld-linux-x86-64.so.2 (0x...)"
	ldd "$1" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }' |
		while read -r lib; do
			mkdir -p "$out$(dirname "$lib")"
			cp -L "$lib" "$out$lib"
		done
}
files=""
for bin in "$@"; do
	install -m 0755 "$bin" "$out/usr/local/bin/"
	files="$files $bin"
	# A store's MariaDB driver is a module loaded on demand from ../lib/movie
	# (include/movie/db_module.h); ldd cannot see it.
	module="$(dirname "$bin")/../lib/movie/movie-mysql-$(basename "$bin").so"
	if [ -f "$module" ]; then
		mkdir -p "$out/usr/local/lib/movie"
		install -m 0644 "$module" "$out/usr/local/lib/movie/"
		files="$files $module"
	fi
done
for f in $files; do
	copy_libs "$f"
done
# libmariadb loads authentication plugins at run time (dlopen), invisible to ldd.
for f in $files; do
	if ldd "$f" | grep -q libmariadb; then
		plugins=$(find /usr/lib -type d -path '*libmariadb3/plugin' | head -n 1)
		[ -n "$plugins" ] && mkdir -p "$out$plugins" && cp -L "$plugins"/*.so "$out$plugins/"
	fi
done
# Span export (tracing.otlp_endpoint) loads libcurl at run time (dlopen,
# lib/obs/trace_export.c), invisible to ldd: services carry it and its libraries.
if [ "$configs" != "-" ]; then
	curl=$(ldconfig -p | awk '$1 == "libcurl.so.4" { print $NF; exit }')
	if [ -n "$curl" ]; then
		mkdir -p "$out$(dirname "$curl")"
		cp -L "$curl" "$out$curl"
		copy_libs "$curl"
	fi
	cp "$configs"/*.yaml "$out/etc/movie/config/"
fi
printf 'root:x:0:0:root:/root:/nonexistent\nmovie:x:65532:65532:movie:/var/lib/movie:/nonexistent\n' >"$out/etc/passwd"
printf 'root:x:0:\nmovie:x:65532:\n' >"$out/etc/group"
# glibc's defaults are fine; an explicit file keeps name lookups predictable.
printf 'hosts: files dns\n' >"$out/etc/nsswitch.conf"
chown -R 65532:65532 "$out/var/lib/movie"
