#!/usr/bin/env bash
# container-base.sh - make the base images the Containerfile builds FROM, offline.
#
# There is no image registry on these machines, so `debian:bookworm` is built
# locally with debootstrap (Debian's mirror is reachable) and imported into
# podman as localhost/debian:bookworm, also tagged docker.io/library/debian:bookworm
# and ...:bookworm-slim so that an ordinary `FROM debian:bookworm` resolves to it.
# The minbase variant is already close to the size of the official -slim image;
# both names point at the same layer. Nothing is cached in the repository.
#
# Also installs podman/runc/debootstrap when missing. The podman settings this
# kind of machine needs (runc, cgroupfs, nofile limit) come from the project's
# deploy/container/containers.conf through CONTAINERS_CONF (unless already
# set); the host's /etc/containers/containers.conf is left alone.
#
# Usage: scripts/container-base.sh        (idempotent; exits 0 when ready)
# Env:   MOVIE_BASE_MIRROR  Debian mirror for debootstrap (default deb.debian.org)
set -euo pipefail

mirror="${MOVIE_BASE_MIRROR:-http://deb.debian.org/debian}"

log() { printf 'container-base: %s\n' "$*" >&2; }

need_pkgs=()
command -v podman >/dev/null 2>&1 || need_pkgs+=(podman)
command -v runc >/dev/null 2>&1 || need_pkgs+=(runc)
command -v debootstrap >/dev/null 2>&1 || need_pkgs+=(debootstrap)
if ((${#need_pkgs[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		log "missing ${need_pkgs[*]}; install them as root (apt-get install ${need_pkgs[*]})"
		exit 1
	fi
	log "installing ${need_pkgs[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null ||
		{ apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need_pkgs[@]}" >/dev/null; }
fi

# crun fails on this machine's hybrid cgroups, and podman's default nofile
# limit exceeds the hard limit: the project-local settings, never /etc.
export CONTAINERS_CONF=${CONTAINERS_CONF:-$(cd "$(dirname "$0")/.." && pwd)/deploy/container/containers.conf}

if podman image exists localhost/debian:bookworm; then
	log "localhost/debian:bookworm present"
else
	root=$(mktemp -d /tmp/movie-debootstrap.XXXXXX)
	trap 'rm -rf "$root"' EXIT
	log "debootstrap --variant=minbase bookworm (about 30 s)"
	debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
		{ tail -20 "$root.log" >&2; rm -f "$root.log"; exit 1; }
	rm -f "$root.log"
	rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
	tar -C "$root" -c . | podman import \
		--change 'CMD ["/bin/bash"]' --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
		- localhost/debian:bookworm >/dev/null
fi
for name in localhost/debian:bookworm-slim docker.io/library/debian:bookworm docker.io/library/debian:bookworm-slim; do
	podman image exists "$name" || podman tag localhost/debian:bookworm "$name"
done
log "ready: $(podman image inspect --format '{{.Size}}' localhost/debian:bookworm) bytes"
