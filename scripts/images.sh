#!/usr/bin/env bash
# images.sh - build the container images (make images).
#
# Builds movie-metadata, movie-rating, movie-movie and movie-tools from the
# Containerfile with podman (preferred) or docker, whichever works, each tagged
# <image>:<git describe> (never only latest). With podman on a machine without
# a registry, the debian:bookworm base is made first (scripts/container-base.sh).
#
# Usage: scripts/images.sh [IMAGE...]    (default: every image whose sources exist)
# Env:   MOVIE_IMAGE_TAG  tag to use (default: git describe --tags --always --dirty)
#        CONTAINER_ENGINE podman|docker (default: detect)
# Prints "image tag size" lines at the end; exit status non-zero on any failure.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

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

# Build only what has sources, so one unfinished service does not block the rest.
targets=()
available=()
for svc in metadata rating movie; do
	if [[ -f services/$svc/CMakeLists.txt ]]; then
		targets+=("$svc")
		available+=("$svc")
	fi
done
for t in ratingingester kafka-dev moviectl; do
	[[ -f tools/$t/CMakeLists.txt ]] && targets+=("$t")
done
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

for img in "${images[@]}"; do
	size=$("$engine" image inspect --format '{{.Size}}' "movie-$img:$tag")
	printf 'movie-%s %s %s\n' "$img" "$tag" "$size"
done
