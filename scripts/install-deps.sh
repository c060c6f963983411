#!/usr/bin/env bash
# Install the Debian 12 packages the build, the tests and `make run` need.
# Fast when everything is there already (one dpkg-query); otherwise one
# apt-get update + install (root, or through sudo).
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config clang
  libnghttp2-dev libprotobuf-c-dev protobuf-c-compiler libuv1-dev libyaml-dev
  libsqlite3-dev libmariadb-dev librdkafka-dev libjansson-dev libcurl4-openssl-dev
  libhttp-parser-dev
  # tests: real peers and tools
  python3 python3-grpcio python3-grpc-tools python3-confluent-kafka python3-yaml
  nghttp2-client mariadb-server prometheus curl wrk iproute2
  nghttp2-server  # bench/log_bench.py: nghttpd, the HTTP/2 floor
  python3-h2 grpc-proto protobuf-compiler
  openssl  # moviectl kube client TLS tests make a CA on the fly
  # continuous deployment (scripts/cd.sh): JSON records; a real OCI registry in its tests
  jq docker-registry
)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
  [ "$status" = "installed" ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "install-deps: installing ${missing[*]}" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: run as root or install sudo" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
