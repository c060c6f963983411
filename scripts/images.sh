#!/usr/bin/env bash
# images.sh - build the container images (make images).
#
# Builds movie-<service> for each service of services/services.txt and
# movie-tools from the
# Containerfile with podman (preferred) or docker, whichever works, each tagged
# <image>:<git describe> (never only latest). With podman on a machine without
# a registry, the debian:bookworm base is made first (scripts/container-base.sh).
#
# Podman runs with the project's deploy/container/containers.conf (through
# CONTAINERS_CONF, unless set): the host's container configuration is never
# changed. The build stage's images (~800 MB: the -dev packages and the
# compiler) are removed at the end unless MOVIE_KEEP_BUILD_STAGE=1 (keeps the
# layer cache for faster rebuilds).
#
# Usage: scripts/images.sh [IMAGE...]    (default: every image whose sources exist)
# Env:   MOVIE_IMAGE_TAG  tag to use (default: git describe --tags --always --dirty)
#        CONTAINER_ENGINE podman|docker (default: detect)
#        MOVIE_KEEP_BUILD_STAGE=1  keep the build stage's images
# Prints "image tag size MB" lines at the end; exit status non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/deploy/container/containers.conf}

engine=${CONTAINER_ENGINE:-}
if [[ -z $engine ]]; then
	if command -v podman >/dev/null 2>&1; then
		engine=podman
	elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
		engine=docker
	elif [[ $(id -u) -eq 0 ]]; then
		engine=podman # container-base.sh installs it
	else
		echo "images.sh: neither podman nor a working docker found" >&2
		exit 1
	fi
fi
if [[ $engine == podman ]]; then
	scripts/container-base.sh
fi

tag=${MOVIE_IMAGE_TAG:-$(git describe --tags --always --dirty 2>/dev/null || true)}
tag=${tag:-0.1.0-dev}
tag=${tag//[^A-Za-z0-9_.-]/-}

# Every service of services/services.txt and every tool the docs list.
mapfile -t services < <(scripts/services.sh names)
targets=("${services[@]}" ratingingester kafka-dev moviectl)
available=("${services[@]}")
available+=(tools)
images=("$@")
((${#images[@]})) || images=("${available[@]}")

for img in "${images[@]}"; do
	echo "images.sh: building movie-$img:$tag with $engine" >&2
	"$engine" build -f Containerfile --target "$img" \
		--build-arg TARGETS="${targets[*]}" \
		--build-arg VERSION="$tag" \
		--build-arg COMMIT="$(git rev-parse HEAD 2>/dev/null || echo unknown)" \
		--label org.opencontainers.image.version="$tag" \
		--label org.opencontainers.image.title="movie-$img" \
		-t "movie-$img:$tag" .
done

# The build stage is labelled io.movie.stage=build in the Containerfile; its
# images are intermediate layers nothing else uses.
if [[ ${MOVIE_KEEP_BUILD_STAGE:-0} != 1 ]]; then
	stage=$("$engine" images -a -q --filter label=io.movie.stage=build | sort -u)
	if [[ -n $stage ]]; then
		freed=0
		for id in $stage; do
			s=$("$engine" image inspect --format '{{.Size}}' "$id" 2>/dev/null || echo 0)
			((s > freed)) && freed=$s
		done
		# shellcheck disable=SC2086
		"$engine" rmi -f $stage >/dev/null 2>&1 || true
		printf 'images.sh: removed the build stage images (%s MB; MOVIE_KEEP_BUILD_STAGE=1 keeps them)\n' \
			"$(awk -v b="$freed" 'BEGIN { printf "%.0f", b / 1e6 }')" >&2
	fi
fi

for img in "${images[@]}"; do
	size=$("$engine" image inspect --format '{{.Size}}' "movie-$img:$tag")
	printf 'movie-%s %s %s MB\n' "$img" "$tag" "$(awk -v b="$size" 'BEGIN { printf "%.1f", b / 1e6 }')"
done
