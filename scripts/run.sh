#!/usr/bin/env bash
# `make run`: start the services (services/services.txt) locally on the embedded defaults
# (SQLite under .run/data), load a demo catalogue on first start, stream the
# logs, stop them all cleanly on Ctrl-C or SIGTERM. KAFKA=1 also starts the
# Kafka dev broker and rating ingestion from the topic `ratings`.
#   scripts/run.sh BUILD_DIR
# Environment (all optional):
#   RUN_<SERVICE>_PORT  a service's port (RUN_MOVIE_PORT; default: services.txt's)
#   RUN_DIR            data and logs (default: .run in the repository)
#   RUN_READY_TIMEOUT  seconds a service may take to become ready (default 20)
#   RUN_STOP_TIMEOUT   seconds a service may take to stop before SIGKILL (default 30)
# Exits 0 after a requested stop; non-zero, naming the service and the reason,
# when a service fails to start. Nothing it started outlives it (unless it is
# itself SIGKILLed).
set -euo pipefail
build_dir=$(cd "${1:-build}" && pwd)
bin="$build_dir/bin"
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir=${RUN_DIR:-"$root/.run"}
# <name>_port for each service, in start order in services[].
services=()
while read -r svc _ default_port; do
  services+=("$svc")
  port_env="RUN_${svc^^}_PORT"
  printf -v "${svc}_port" '%s' "${!port_env:-$default_port}"
done < <("$root/scripts/services.sh")
ready_timeout=${RUN_READY_TIMEOUT:-20}
stop_timeout=${RUN_STOP_TIMEOUT:-30}
mkdir -p "$run_dir/data" "$run_dir/logs"
run_dir=$(cd "$run_dir" && pwd)
cd "$run_dir"

pids=()
names=()
kafka_pid=
tail_pid=

# Whether $1 is still running: a zombie (exited, not yet reaped) is not.
alive() {
  local stat
  stat=$(cat "/proc/$1/stat" 2>/dev/null) || return 1
  stat=${stat##*) }
  [ "${stat%% *}" != "Z" ]
}

# SIGTERM the given pids, wait for them up to stop_timeout, then SIGKILL the
# rest; reap them all.
stop_pids() {
  local pid deadline=$((SECONDS + stop_timeout)) left
  for pid in "$@"; do kill -TERM "$pid" 2>/dev/null || true; done
  while :; do
    left=0
    for pid in "$@"; do alive "$pid" && left=1; done
    [ "$left" = 0 ] && break
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "run: still running after ${stop_timeout}s, sending SIGKILL" >&2
      for pid in "$@"; do kill -KILL "$pid" 2>/dev/null || true; done
      break
    fi
    sleep 0.1
  done
  for pid in "$@"; do wait "$pid" 2>/dev/null || true; done
}

# Stop everything this script started and exit with $1 (default 0).
stop_all() {
  local status=${1:-0}
  # From here on INT and TERM are ignored, not reset to their default: under
  # `make run` a SIGTERM to the process group reaches this script and make,
  # and make then sends its own SIGTERM to this script, in the middle of this
  # stop. Dying there left the movie service running. The stop is bounded
  # (stop_timeout, then SIGKILL) instead.
  trap '' INT TERM
  echo "run: stopping (SIGTERM)..." >&2
  [ ${#pids[@]} -gt 0 ] && stop_pids "${pids[@]}"
  # The broker last, so that rating commits its offsets and leaves the group.
  [ -n "$kafka_pid" ] && stop_pids "$kafka_pid"
  [ -n "$tail_pid" ] && stop_pids "$tail_pid"
  echo "run: stopped" >&2
  exit "$status"
}
trap 'stop_all 0' INT TERM

# Why $1 (a service name) failed: its last error log line, else its last line.
failure_reason() {
  local log="$run_dir/logs/$1.log" line
  line=$(grep '"level":"error"' "$log" 2>/dev/null | tail -n 1 || true)
  [ -n "$line" ] || line=$(tail -n 1 "$log" 2>/dev/null || true)
  local msg err
  msg=$(printf '%s' "$line" | sed -n 's/.*"msg":"\([^"]*\)".*/\1/p')
  err=$(printf '%s' "$line" | sed -n 's/.*"error":"\([^"]*\)".*/\1/p')
  if [ -n "$msg" ]; then
    printf '%s%s' "$msg" "${err:+: $err}"
  else
    printf '%s' "${line:-no log output}"
  fi
}

for svc in "${services[@]}"; do
  port_var="${svc}_port"
  export "${svc^^}_API_HOST=127.0.0.1" "${svc^^}_API_PORT=${!port_var}"
done
export MOVIE_PEERS_METADATA_ADDRESSES="127.0.0.1:$metadata_port"
export MOVIE_PEERS_RATING_ADDRESSES="127.0.0.1:$rating_port"
export METADATA_STORAGE_SQLITE_PATH="$run_dir/data/metadata.db"
export RATING_STORAGE_SQLITE_PATH="$run_dir/data/rating.db"

if [ "${KAFKA:-0}" = "1" ]; then
  rm -f "$run_dir/kafka.bootstrap"
  setsid "$bin/kafka-dev" --bootstrap-file "$run_dir/kafka.bootstrap" &
  kafka_pid=$!
  for _ in $(seq 1 100); do [ -s "$run_dir/kafka.bootstrap" ] && break; sleep 0.05; done
  [ -s "$run_dir/kafka.bootstrap" ] || { echo "run: kafka-dev did not start" >&2; stop_all 1; }
  export RATING_KAFKA_BROKERS="$(cat "$run_dir/kafka.bootstrap")"
fi

# Each service runs in its own session: Ctrl-C reaches only this script, which
# then sends exactly one SIGTERM to each (a second signal would force a stop).
# Their logs go to logs/<service>.log, streamed here by one tail.
logs=()
for svc in "${services[@]}"; do
  : > "$run_dir/logs/$svc.log"
  logs+=("$run_dir/logs/$svc.log")
done
tail -q -n 0 -F "${logs[@]}" 2>/dev/null &
tail_pid=$!
for svc in "${services[@]}"; do
  setsid "$bin/$svc" --config "$root/configs/$svc/base.yaml" --config "$root/configs/$svc/dev.yaml" \
    > "$run_dir/logs/$svc.log" 2>&1 &
  pids+=($!)
  names+=("$svc")
  port_var="${svc}_port"
  echo "run: started $svc pid $! port ${!port_var}" >&2
done

# Wait until service $1 (index $2 in pids) on port $3 is ready; fail fast,
# naming it and why, when it exits or does not become ready in time.
wait_ready() {
  local name=$1 pid=${pids[$2]} port=$3 deadline=$((SECONDS + ready_timeout)) status
  while :; do
    if ! alive "$pid"; then
      status=0
      wait "$pid" 2>/dev/null || status=$?
      echo "run: $name (port $port) exited with status $status before it was ready:" \
           "$(failure_reason "$name")" >&2
      stop_all 1
    fi
    curl -fsS --max-time 1 -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && return 0
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "run: $name (port $port) not ready after ${ready_timeout}s:" \
           "$(failure_reason "$name")" >&2
      stop_all 1
    fi
    sleep 0.1
  done
}
for i in "${!services[@]}"; do
  port_var="${services[$i]}_port"
  wait_ready "${services[$i]}" "$i" "${!port_var}"
done

if [ ! -e "$run_dir/data/.demo-loaded" ]; then
  put() { curl -fsS --max-time 5 -o /dev/null -X PUT -H 'Content-Type: application/json' \
            --data-binary "$1" "http://127.0.0.1:$metadata_port/metadata"; }
  put '{"id":"1","title":"The Shawshank Redemption","description":"Two imprisoned men bond over a number of years.","director":"Frank Darabont"}'
  put '{"id":"2","title":"Spirited Away","description":"A girl wanders into a world ruled by gods and witches.","director":"Hayao Miyazaki"}'
  put '{"id":"3","title":"Seven Samurai","description":"Farmers hire seven ronin to defend their village.","director":"Akira Kurosawa"}'
  put '{"id":"4","title":"Amelie","description":"A shy waitress decides to change the lives of those around her.","director":"Jean-Pierre Jeunet"}'
  put '{"id":"5","title":"Stalker","description":"A guide leads two men through the Zone.","director":"Andrei Tarkovsky"}'
  rate() { curl -fsS --max-time 5 -o /dev/null -X PUT \
             "http://127.0.0.1:$rating_port/rating?id=$1&type=movie&userId=$2&value=$3"; }
  rate 1 alice 5; rate 1 bob 5; rate 1 carol 4
  rate 2 alice 5; rate 2 dave 4
  rate 3 bob 4; rate 3 erin 5; rate 3 frank 3
  rate 4 carol 4
  # movie 5 stays unrated on purpose: its details come back with "rating": null.
  touch "$run_dir/data/.demo-loaded"
fi

cat >&2 <<MSG

  metadata  127.0.0.1:$metadata_port   gRPC MetadataService + HTTP /metadata
  rating    127.0.0.1:$rating_port   gRPC RatingService   + HTTP /rating
  movie     127.0.0.1:$movie_port   gRPC MovieService    + HTTP /movie
  each also serves /healthz /readyz /metrics and grpc.health.v1

  try:  curl 'http://127.0.0.1:$movie_port/movie?id=1'
        curl -X PUT 'http://127.0.0.1:$rating_port/rating?id=5&type=movie&userId=you&value=4'
        curl 'http://127.0.0.1:$movie_port/movie?id=5'
  data: $run_dir/data   (delete it to reload the demo catalogue)
  logs: $run_dir/logs
  Ctrl-C stops them all (graceful drain).
MSG
echo "run: ready" >&2

# Until a signal (the trap stops everything and exits 0), or until a service
# exits on its own: then stop the others and fail, naming it.
while :; do
  done_pid=
  status=0
  wait -n -p done_pid "${pids[@]}" 2>/dev/null || status=$?
  # Only a trapped signal interrupts wait -n otherwise, and its trap exits.
  [ -n "$done_pid" ] || { echo "run: lost track of the services (wait: $status)" >&2; stop_all 1; }
  for i in "${!pids[@]}"; do
    if [ "${pids[$i]}" = "$done_pid" ]; then
      unset "pids[$i]"
      echo "run: ${names[$i]} exited with status $status: $(failure_reason "${names[$i]}")" >&2
    fi
  done
  stop_all 1
done
