#!/bin/sh
# ingest.sh - Kafka ingestion throughput: events/s from the topic into the
# rating store, SQLite and MariaDB, through the real consumer (ingest.c, via
# kafka-dev-consumer) and the real stores.
#
#   bench/ingest.sh [BIN_DIR] [EVENTS] [BATCH_MAX]
#       BIN_DIR    build/bin with kafka-dev, ratingingester, kafka-dev-consumer
#       EVENTS     default 200000 (puts 85% / deletes 15% over 1000 records x 1000 users)
#       BATCH_MAX  default 1000 (kafka.batch_max)
#
# The events are produced first (the producer rate is reported too), then
# consumed from offset 0 by a fresh consumer group per store, so the figure is
# pure ingestion: poll, parse, validate, one transaction per batch, commit.
# 16 partitions: the mock cluster keeps only about 5 MiB per partition (older
# messages are deleted, as retention would), and 200,000 events are ~25 MiB.
# Prints one JSON line per store. MariaDB comes from scripts/test-mariadb.sh
# on a free port below 32768 and is stopped afterwards.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=$(dirname "$here")
bin=$(cd "${1:-$src/build/bin}" && pwd)
events=${2:-200000}
batch=${3:-1000}
work=$(mktemp -d /tmp/bench-ingest.XXXXXX)
kafka_pid=
mariadb_dir=

cleanup() {
	if [ -n "$kafka_pid" ]; then kill -TERM "$kafka_pid" 2>/dev/null || true; wait "$kafka_pid" 2>/dev/null || true; fi
	if [ -n "$mariadb_dir" ]; then "$src/scripts/test-mariadb.sh" stop "$mariadb_dir" || true; fi
	rm -rf "$work"
}
trap cleanup EXIT INT TERM

"$bin/kafka-dev" --bootstrap-file "$work/boot" --topic ratings:16 >"$work/kafka-dev.log" 2>&1 &
kafka_pid=$!
i=0
while [ ! -s "$work/boot" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || { echo "kafka-dev did not start" >&2; exit 1; }
	sleep 0.1
done

PYTHONPATH="$src/tests/integration" /usr/bin/python3 -c '
import json, sys
import kafka_harness as h
events, _ = h.make_events(seed=42, count=int(sys.argv[2]), records=1000, users=1000)
json.dump(events, open(sys.argv[1], "w"))
' "$work/events.json" "$events"

t0=$(date +%s.%N)
"$bin/ratingingester" --bootstrap-file "$work/boot" --file "$work/events.json" --timeout 300 >"$work/produce.json"
t1=$(date +%s.%N)
echo "{\"step\":\"produce\",\"events\":$events,\"seconds\":$(echo "$t1 - $t0" | bc -l | cut -c1-6)}"

mkdir -p "$work/data"
printf '{"step":"ingest","store":"sqlite","batch_max":%s,"result":' "$batch"
"$bin/kafka-dev-consumer" --bootstrap-file "$work/boot" --group bench-sqlite --batch-max "$batch" \
	--driver sqlite --sqlite-path "$work/data/rating.db" --expect "$events" --timeout 600 | tr -d '\n'
echo "}"

port=$(PYTHONPATH="$src/tests/integration" /usr/bin/python3 -c 'import kafka_harness as h; print(h.free_port())')
mariadb_dir="$work/mariadb"
"$src/scripts/test-mariadb.sh" start "$mariadb_dir" "$port"
mariadb --no-defaults -h127.0.0.1 -P"$port" -umovie -pmovie -e "CREATE DATABASE IF NOT EXISTS movie"
printf '{"step":"ingest","store":"mariadb","batch_max":%s,"result":' "$batch"
"$bin/kafka-dev-consumer" --bootstrap-file "$work/boot" --group bench-mysql --batch-max "$batch" \
	--driver mysql --mysql-host 127.0.0.1 --mysql-port "$port" --mysql-user movie \
	--mysql-password movie --mysql-database movie --expect "$events" --timeout 600 | tr -d '\n'
echo "}"
