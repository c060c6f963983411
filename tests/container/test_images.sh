#!/usr/bin/env bash
# test_images.sh - run each service image as Kubernetes would and check it.
#
# For metadata, rating and movie (those whose image builds): start the image
# with --network host on a free loopback port below 32768 (port and host set by
# env, <SERVICE>_API_PORT / _API_HOST, as in a pod), ask grpc.health.v1 for
# "liveness" and the readiness name "" with python3-grpcio, then
# `podman stop -t GRACE` and require exit code 0 (SIGTERM handled as PID 1),
# not 137 (SIGKILL after the grace period). Also: non-root user, no shell in the
# image, and the image sizes.
#
# Usage: tests/container/test_images.sh     (builds missing images via scripts/images.sh)
# Env:   MOVIE_IMAGE_TAG   tag to test (default: as images.sh)
#        MOVIE_REBUILD=1   rebuild even when the images exist
# Ends with "N passed, N failed"; exit 0 only when everything passed.
set -u
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
export CONTAINERS_CONF=${CONTAINERS_CONF:-$root/deploy/container/containers.conf}
tmp=$(mktemp -d /tmp/movie-images-test.XXXXXX)
containers=()
cleanup() {
	for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1; done
	rm -rf "$tmp"
}
trap cleanup EXIT
pass=0 fail=0
ok() { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; }
finish() { echo "$pass passed, $fail failed"; [[ $fail == 0 ]]; exit $?; }

tag=${MOVIE_IMAGE_TAG:-$(git describe --tags --always --dirty 2>/dev/null || true)}
tag=${tag:-0.1.0-dev}
tag=${tag//[^A-Za-z0-9_.-]/-}
export MOVIE_IMAGE_TAG=$tag

services=()
for svc in $("$root/scripts/services.sh" names); do
	[[ -f services/$svc/CMakeLists.txt ]] && services+=("$svc")
done
if ((${#services[@]} == 0)); then
	bad "no service sources to build images from"
	finish
fi

command -v podman >/dev/null 2>&1 || scripts/container-base.sh >/dev/null
need=()
for img in "${services[@]}" tools; do
	if [[ ${MOVIE_REBUILD:-0} == 1 ]] || ! podman image exists "movie-$img:$tag"; then need+=("$img"); fi
done
host_conf_before=$(sha256sum /etc/containers/containers.conf 2>/dev/null || echo absent)
if ((${#need[@]})); then
	if scripts/images.sh "${need[@]}" >"$tmp/build.log" 2>&1; then
		ok "images build (${need[*]})"
	else
		tail -30 "$tmp/build.log"
		bad "images build (${need[*]})"
		finish
	fi
	host_conf_after=$(sha256sum /etc/containers/containers.conf 2>/dev/null || echo absent)
	if [[ $host_conf_before == "$host_conf_after" ]]; then
		ok "the host's /etc/containers/containers.conf is untouched (${host_conf_after%% *})"
	else
		bad "images.sh changed /etc/containers/containers.conf"
	fi
	left=$(podman images -a -q --filter label=io.movie.stage=build | wc -l)
	[[ $left == 0 ]] && ok "no build-stage image left behind" ||
		bad "$left build-stage images left behind"
	grep -q 'removed the build stage images' "$tmp/build.log" &&
		ok "images.sh reports the build stage removal" || bad "images.sh reports the build stage removal"
	if grep -Eq '^movie-[a-z]+ [^ ]+ [0-9]+\.[0-9] MB$' "$tmp/build.log"; then
		ok "sizes printed in MB"
	else
		bad "sizes printed in MB"; tail -5 "$tmp/build.log"
	fi
fi

# The tools image carries every tool docs/deploy.md lists for it.
tools_row=$(grep -E '^\| `movie-tools:' docs/deploy.md | cut -d'|' -f3)
listed=$(grep -o '`[a-z-]*`' <<<"$tools_row" | tr -d '`')
if [[ -n $listed ]]; then ok "docs list the tools image's content: $(echo $listed)"; else bad "docs/deploy.md lists the tools image's content"; fi
for t in $listed; do
	if out=$(podman run --rm --entrypoint "/usr/local/bin/$t" "movie-tools:$tag" --version 2>&1) &&
		[[ $out == "$t "* ]]; then
		ok "movie-tools carries $t ($out)"
	else
		bad "movie-tools carries $t: $out"
	fi
done

# Health stubs from the project's own proto.
if ! /usr/bin/python3 -m grpc_tools.protoc -I api --python_out="$tmp" --grpc_python_out="$tmp" api/health.proto; then
	bad "generate health stubs (python3-grpc-tools)"
	finish
fi
cat >"$tmp/health.py" <<'PY'
# health.py PORT NAME TIMEOUT_S: exit 0 once Check(NAME) answers SERVING.
import sys, time
import grpc
sys.path.insert(0, sys.argv[4])
import health_pb2, health_pb2_grpc
port, name, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline = time.monotonic() + timeout
last = "no answer"
with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
    stub = health_pb2_grpc.HealthStub(ch)
    while time.monotonic() < deadline:
        try:
            r = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=1)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                sys.exit(0)
            last = health_pb2.HealthCheckResponse.ServingStatus.Name(r.status)
        except grpc.RpcError as e:
            last = f"{e.code().name}: {e.details()}"
        time.sleep(0.2)
print(f"health {name!r} on {port}: {last}", file=sys.stderr)
sys.exit(1)
PY

# A free loopback port in 20000..29999 (below the ephemeral range).
free_port() {
	/usr/bin/python3 - <<'PY'
import random, socket
for _ in range(200):
    p = random.randint(20000, 29999)
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); s.close(); print(p); break
    except OSError:
        s.close()
PY
}

declare -A port
for svc in "${services[@]}"; do port[$svc]=$(free_port); done
grace=10
# Short drain so the test is quick; the order (not ready, then GOAWAY) is the same.
for svc in "${services[@]}"; do
	{
		printf 'shutdown:\n  drain_delay: 1s\n  grace_period: 3s\n'
		if [[ $svc == movie ]]; then
			printf 'peers:\n  metadata:\n    addresses: ["127.0.0.1:%s"]\n' "${port[metadata]:-8081}"
			printf '  rating:\n    addresses: ["127.0.0.1:%s"]\n' "${port[rating]:-8082}"
		fi
	} >"$tmp/$svc-test.yaml"
	chmod 0644 "$tmp/$svc-test.yaml"
done
chmod 0755 "$tmp"

for svc in "${services[@]}"; do
	img=movie-$svc:$tag
	up=${svc^^}
	name=movie-test-$svc-$$
	containers+=("$name")
	if ! podman run -d --name "$name" --network host \
		-e "${up}_API_HOST=127.0.0.1" -e "${up}_API_PORT=${port[$svc]}" \
		-v "$tmp/$svc-test.yaml:/etc/movie/config/test.yaml:ro" \
		"$img" --config /etc/movie/config/base.yaml --config /etc/movie/config/test.yaml >/dev/null; then
		bad "$svc starts"
		continue
	fi
	if /usr/bin/python3 "$tmp/health.py" "${port[$svc]}" liveness 20 "$tmp"; then
		ok "$svc health liveness SERVING on 127.0.0.1:${port[$svc]}"
	else
		bad "$svc health liveness"; podman logs --tail 20 "$name" 2>&1
	fi
	if /usr/bin/python3 "$tmp/health.py" "${port[$svc]}" "" 20 "$tmp"; then
		ok "$svc health \"\" (readiness) SERVING"
	else
		bad "$svc health \"\" (readiness)"; podman logs --tail 20 "$name" 2>&1
	fi
	user=$(podman inspect --format '{{.Config.User}}' "$name")
	[[ $user == 65532:65532 ]] && ok "$svc runs as 65532" || bad "$svc runs as 65532 (got $user)"
done

# Stop in reverse order (movie first, its peers last).
for ((i = ${#services[@]} - 1; i >= 0; i--)); do
	svc=${services[$i]}
	name=movie-test-$svc-$$
	podman container exists "$name" || continue
	start=$(date +%s%N)
	podman stop -t "$grace" "$name" >/dev/null
	ms=$((($(date +%s%N) - start) / 1000000))
	code=$(podman inspect --format '{{.State.ExitCode}}' "$name")
	if [[ $code == 0 ]] && ((ms < grace * 1000)); then
		ok "$svc stops on SIGTERM: exit 0 after ${ms} ms (grace ${grace} s)"
	else
		bad "$svc stops on SIGTERM: exit $code after ${ms} ms (137 = SIGKILL after grace)"
		podman logs --tail 20 "$name" 2>&1
	fi
done

# The MariaDB driver is a module loaded on demand (include/movie/db_module.h):
# with storage.driver mysql and no database reachable, the image must load it,
# stay alive (liveness SERVING) and report not ready.
for svc in metadata rating; do
	[[ " ${services[*]} " == *" $svc "* ]] || continue
	up=${svc^^}
	name=movie-test-$svc-mysql-$$
	containers+=("$name")
	p=$(free_port)
	if ! podman run -d --name "$name" --network host \
		-e "${up}_API_HOST=127.0.0.1" -e "${up}_API_PORT=$p" \
		-e "${up}_STORAGE_DRIVER=mysql" -e "${up}_STORAGE_MYSQL_HOST=127.0.0.1" \
		-e "${up}_STORAGE_MYSQL_PORT=1" -e "${up}_SHUTDOWN_DRAIN_DELAY=0s" \
		"movie-$svc:$tag" --config /etc/movie/config/base.yaml >/dev/null; then
		bad "$svc starts with the mysql driver"
		continue
	fi
	if /usr/bin/python3 "$tmp/health.py" "$p" liveness 20 "$tmp" &&
		! /usr/bin/python3 "$tmp/health.py" "$p" "" 2 "$tmp" 2>/dev/null; then
		ok "$svc loads its MariaDB driver module (alive, not ready without a database)"
	else
		bad "$svc with the mysql driver"; podman logs --tail 20 "$name" 2>&1
	fi
	podman rm -f "$name" >/dev/null 2>&1 || true
done

for img in "${services[@]}" tools; do
	if podman run --rm --entrypoint /bin/sh "movie-$img:$tag" -c true >/dev/null 2>&1; then
		bad "movie-$img has no shell"
	else
		ok "movie-$img has no shell"
	fi
done

echo "image sizes:"
for img in "${services[@]}" tools; do
	printf '  movie-%-8s %s  %s MB\n' "$img" "$tag" \
		"$(podman image inspect --format '{{.Size}}' "movie-$img:$tag" | awk '{ printf "%.1f", $1 / 1e6 }')"
done
finish
