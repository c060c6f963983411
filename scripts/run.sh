#!/usr/bin/env bash
# `make run`: start metadata, rating and movie locally on the embedded defaults
# (SQLite under .run/data), load a demo catalogue on first start, stream the
# logs, stop all three cleanly on Ctrl-C. KAFKA=1 also starts the Kafka dev
# broker and rating ingestion from the topic `ratings`.
#   scripts/run.sh BUILD_DIR
set -euo pipefail
build_dir=$(cd "${1:-build}" && pwd)
bin="$build_dir/bin"
root=$(cd "$(dirname "$0")/.." && pwd)
run_dir="$root/.run"
mkdir -p "$run_dir/data"
cd "$run_dir"

pids=()
kafka_pid=
stop_all() {
  trap - INT TERM
  echo "run: stopping (SIGTERM)..." >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  # The broker last, so that rating commits its offsets and leaves the group.
  if [ -n "$kafka_pid" ]; then kill -TERM "$kafka_pid" 2>/dev/null || true; wait "$kafka_pid" 2>/dev/null || true; fi
  echo "run: stopped" >&2
  exit 0
}
trap stop_all INT TERM

export METADATA_API_HOST=127.0.0.1 RATING_API_HOST=127.0.0.1 MOVIE_API_HOST=127.0.0.1
export METADATA_STORAGE_SQLITE_PATH="$run_dir/data/metadata.db"
export RATING_STORAGE_SQLITE_PATH="$run_dir/data/rating.db"

if [ "${KAFKA:-0}" = "1" ]; then
  rm -f "$run_dir/kafka.bootstrap"
  setsid "$bin/kafka-dev" --bootstrap-file "$run_dir/kafka.bootstrap" &
  kafka_pid=$!
  for _ in $(seq 1 100); do [ -s "$run_dir/kafka.bootstrap" ] && break; sleep 0.05; done
  [ -s "$run_dir/kafka.bootstrap" ] || { echo "run: kafka-dev did not start" >&2; stop_all; }
  export RATING_KAFKA_BROKERS="$(cat "$run_dir/kafka.bootstrap")"
fi

# Each service runs in its own session: Ctrl-C reaches only this script, which
# then sends exactly one SIGTERM to each (a second signal would force a stop).
for svc in metadata rating movie; do
  setsid "$bin/$svc" --config "$root/configs/$svc/base.yaml" --config "$root/configs/$svc/dev.yaml" &
  pids+=($!)
done

wait_ready() {
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$1/readyz" 2>/dev/null && return 0
    sleep 0.05
  done
  echo "run: service on port $1 did not become ready" >&2
  stop_all
}
wait_ready 8081; wait_ready 8082; wait_ready 8083

if [ ! -e "$run_dir/data/.demo-loaded" ]; then
  put() { curl -fsS -o /dev/null -X PUT -H 'Content-Type: application/json' \
            --data-binary "$1" http://127.0.0.1:8081/metadata; }
  put '{"id":"1","title":"The Shawshank Redemption","description":"Two imprisoned men bond over a number of years.","director":"Frank Darabont"}'
  put '{"id":"2","title":"Spirited Away","description":"A girl wanders into a world ruled by gods and witches.","director":"Hayao Miyazaki"}'
  put '{"id":"3","title":"Seven Samurai","description":"Farmers hire seven ronin to defend their village.","director":"Akira Kurosawa"}'
  put '{"id":"4","title":"Amelie","description":"A shy waitress decides to change the lives of those around her.","director":"Jean-Pierre Jeunet"}'
  put '{"id":"5","title":"Stalker","description":"A guide leads two men through the Zone.","director":"Andrei Tarkovsky"}'
  rate() { curl -fsS -o /dev/null -X PUT "http://127.0.0.1:8082/rating?id=$1&type=movie&userId=$2&value=$3"; }
  rate 1 alice 5; rate 1 bob 5; rate 1 carol 4
  rate 2 alice 5; rate 2 dave 4
  rate 3 bob 4; rate 3 erin 5; rate 3 frank 3
  rate 4 carol 4
  # movie 5 stays unrated on purpose: its details come back with "rating": null.
  touch "$run_dir/data/.demo-loaded"
fi

cat >&2 <<MSG

  metadata  127.0.0.1:8081   gRPC MetadataService + HTTP /metadata
  rating    127.0.0.1:8082   gRPC RatingService   + HTTP /rating
  movie     127.0.0.1:8083   gRPC MovieService    + HTTP /movie
  each also serves /healthz /readyz /metrics and grpc.health.v1

  try:  curl 'http://127.0.0.1:8083/movie?id=1'
        curl -X PUT 'http://127.0.0.1:8082/rating?id=5&type=movie&userId=you&value=4'
        curl 'http://127.0.0.1:8083/movie?id=5'
  data: $run_dir/data   (delete it to reload the demo catalogue)
  Ctrl-C stops all three (graceful drain).

MSG
wait
