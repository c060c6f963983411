#!/usr/bin/python3
"""test_rating_kafka.py - Kafka ingestion end to end with the real binaries.

    /usr/bin/python3 test_rating_kafka.py BIN_DIR [TEST_NAME...]

kafka-dev (mock cluster) -> ratingingester -> the rating service (real store:
SQLite, or a MariaDB started here with scripts/test-mariadb.sh) -> GET /rating.
The expected final state is computed here from the produced events and
compared exactly for every record. Prints "N passed, N failed"; exit 1 on any
failure.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import kafka_harness as h  # noqa: E402

SRC = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
BIN = None


def sqlite_env(work):
    return {"RATING_STORAGE_DRIVER": "sqlite",
            "RATING_STORAGE_SQLITE_PATH": os.path.join(work, "data", "rating.db")}


def kafka_env(kafka, batch_max=500):
    return {"RATING_KAFKA_BROKERS": kafka.bootstrap,
            "RATING_KAFKA_DEAD_LETTER_TOPIC": "ratings-dlq",
            "RATING_KAFKA_BATCH_MAX": str(batch_max)}


def wait_state(rating, expected, timeout):
    """Wait until every record serves its expected mean; fail with the diff."""
    deadline = time.monotonic() + timeout
    bad = None
    while time.monotonic() < deadline:
        bad = h.state_mismatches(rating, expected)
        if not bad:
            return
        time.sleep(1)
    raise AssertionError("%d records differ, e.g. %r" % (len(bad), bad[:5]))


def test_exact_state_sqlite(work):
    """Puts, replacing puts, deletes, duplicates and malformed events: the
    served state equals the computed one; malformed ones are counted."""
    kafka = h.KafkaDev(BIN, work)
    rating = None
    try:
        events, expected = h.make_events(seed=1, count=3000, records=40, users=30,
                                         malformed=16, dup_every=10)
        rating = h.Rating(BIN, work, {**sqlite_env(work), **kafka_env(kafka, batch_max=200)})
        h.ingest(BIN, kafka.bootstrap, events, work)
        h.wait_for(lambda: rating.metric("rating_ingest_events_consumed_total") >= len(events),
                   60, "all events consumed")
        wait_state(rating, expected, 30)
        assert rating.metric("rating_ingest_events_consumed_total") == len(events)
        rejected = rating.metric("rating_ingest_events_rejected_total")
        assert rejected == 16, "rejected %r, want 16" % rejected
        stored = rating.metric("rating_ingest_events_stored_total")
        assert stored == len(events) - 16, "stored %r of %d" % (stored, len(events) - 16)
        assert rating.metric("rating_ingest_paused") == 0
        assert rating.stop() == 0, "rating did not exit 0 on SIGTERM"
        rating = None
    finally:
        if rating:
            rating.stop()
        kafka.stop()


def test_kill9_midstream_sqlite(work):
    """kill -9 while a large backlog is being ingested; after a restart every
    event is reflected exactly once (the final state equals the expected one)."""
    kafka = h.KafkaDev(BIN, work)
    rating = None
    try:
        events, expected = h.make_events(seed=2, count=60000, records=300, users=200,
                                         malformed=5, dup_every=50)
        h.ingest(BIN, kafka.bootstrap, events, work, timeout=120)
        env = {**sqlite_env(work), **kafka_env(kafka, batch_max=100)}
        rating = h.Rating(BIN, work, env)
        total = len(events)
        # Kill it somewhere in the middle of the backlog.
        h.wait_for(lambda: rating.metric("rating_ingest_events_consumed_total") >= total // 5,
                   90, "a fifth of the backlog consumed", interval=0.05)
        consumed_at_kill = rating.metric("rating_ingest_events_consumed_total")
        assert consumed_at_kill < total, "the whole backlog went through before the kill"
        rating.kill9()
        rating = h.Rating(BIN, work, env, name="rating-restarted")
        wait_state(rating, expected, 120)
        assert rating.stop() == 0
        rating = None
    finally:
        if rating:
            rating.stop()
        kafka.stop()


def test_mariadb_stop_start(work):
    """MariaDB stops mid-stream: ingestion pauses (rating_ingest_paused 1,
    retries counted), resumes once it is back, and nothing is lost."""
    port = h.free_port()
    datadir = os.path.join(work, "mariadb")
    script = os.path.join(SRC, "scripts", "test-mariadb.sh")
    subprocess.run([script, "start", datadir, str(port)], check=True, timeout=60)
    kafka = rating = None
    try:
        subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", "-P%d" % port, "-umovie",
                        "-pmovie", "-e", "CREATE DATABASE IF NOT EXISTS movie_kafka"],
                       check=True, timeout=30)
        kafka = h.KafkaDev(BIN, work)
        env = {"RATING_STORAGE_DRIVER": "mysql", "RATING_STORAGE_MYSQL_HOST": "127.0.0.1",
               "RATING_STORAGE_MYSQL_PORT": str(port), "RATING_STORAGE_MYSQL_USER": "movie",
               "RATING_STORAGE_MYSQL_PASSWORD": "movie",
               "RATING_STORAGE_MYSQL_DATABASE": "movie_kafka",
               "RATING_STORAGE_MYSQL_CONNECT_TIMEOUT": "1s",
               "RATING_STORAGE_MYSQL_QUERY_TIMEOUT": "2s",
               **kafka_env(kafka, batch_max=100)}
        rating = h.Rating(BIN, work, env)
        events, _ = h.make_events(seed=3, count=6000, records=50, users=40, malformed=4,
                                  dup_every=25)
        first, second = events[:3000], events[3000:]
        h.ingest(BIN, kafka.bootstrap, first, work, name="first")
        h.wait_for(lambda: rating.metric("rating_ingest_events_consumed_total") >= len(first),
                   60, "first half consumed")
        subprocess.run([script, "stop", datadir], check=True, timeout=60)
        h.ingest(BIN, kafka.bootstrap, second, work, name="second")
        h.wait_for(lambda: rating.metric("rating_ingest_paused") == 1, 30,
                   "ingestion paused while MariaDB is down")
        retries_down = rating.metric("rating_ingest_store_retries_total")
        time.sleep(3)
        assert rating.metric("rating_ingest_store_retries_total") > retries_down
        assert rating.proc.poll() is None, "rating died while MariaDB was down"
        subprocess.run([script, "start", datadir, str(port)], check=True, timeout=60)
        h.wait_for(lambda: rating.metric("rating_ingest_paused") == 0, 60,
                   "ingestion resumed after MariaDB restarted")
        wait_state(rating, h.expected_state(events), 60)
        assert rating.stop() == 0
        rating = None
    finally:
        if rating:
            rating.stop()
        if kafka:
            kafka.stop()
        subprocess.run([script, "stop", datadir], timeout=60)


def test_stop_with_kafka_gone(work):
    """SIGTERM after the broker vanished: the service still exits 0, within a
    bounded time (the commit and the group leave are bounded in ingest.c)."""
    kafka = h.KafkaDev(BIN, work)
    rating = h.Rating(BIN, work, {**sqlite_env(work), **kafka_env(kafka)})
    try:
        events, expected = h.make_events(seed=4, count=200, records=10, users=10)
        h.ingest(BIN, kafka.bootstrap, events, work)
        wait_state(rating, expected, 30)
    finally:
        kafka.stop()
    time.sleep(2)
    t0 = time.monotonic()
    rc = rating.stop()
    took = time.monotonic() - t0
    assert rc == 0, "exit status %d" % rc
    assert took < 20, "stop took %.1f s" % took


def test_ingester_cli(work):
    """ratingingester's exit status: 2 for invalid events (the valid ones are
    still produced) and for input that is not an array, 1 when the broker is
    unreachable within --timeout, 0 when everything was delivered."""
    kafka = h.KafkaDev(BIN, work)
    try:
        tool = os.path.join(BIN, "ratingingester")
        path = os.path.join(work, "mixed.json")
        with open(path, "w") as f:
            f.write('[{"userId":"u","recordId":"r","recordType":"movie","value":3,'
                    '"eventType":"put"}, "garbage", {"userId":"u","recordId":"r",'
                    '"recordType":"movie","eventType":"delete"}]')
        r = subprocess.run([tool, "--bootstrap-file", kafka.boot_file, "--file", path],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        assert "event 1: bad_json" in r.stderr, r.stderr
        summary = h.json.loads(r.stdout)
        assert (summary["invalid"], summary["produced"], summary["delivered"]) == (1, 2, 2), summary
        r = subprocess.run([tool, "--brokers", kafka.bootstrap, "--file", path, "--allow-invalid"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and h.json.loads(r.stdout)["delivered"] == 3, r
        r = subprocess.run([tool, "--brokers", kafka.bootstrap], input='{"not":"an array"}',
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        r = subprocess.run([tool, "--topic", "ratings"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2, r
        dead = "127.0.0.1:%d" % h.free_port()
        r = subprocess.run([tool, "--brokers", dead, "--file", path, "--allow-invalid",
                            "--timeout", "2"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1, r
        assert h.json.loads(r.stdout)["delivered"] == 0, r.stdout
    finally:
        kafka.stop()


TESTS = [test_ingester_cli, test_exact_state_sqlite, test_stop_with_kafka_gone, test_kill9_midstream_sqlite, test_mariadb_stop_start]


def main():
    global BIN
    if len(sys.argv) < 2:
        print("usage: test_rating_kafka.py BIN_DIR [TEST...]", file=sys.stderr)
        return 2
    BIN = os.path.abspath(sys.argv[1])
    wanted = set(sys.argv[2:])
    passed = failed = 0
    for t in TESTS:
        if wanted and t.__name__ not in wanted:
            continue
        work = tempfile.mkdtemp(prefix="kafka-it-")
        os.makedirs(os.path.join(work, "data"))
        t0 = time.monotonic()
        try:
            t(work)
            passed += 1
            print("ok   %s (%.1f s)" % (t.__name__, time.monotonic() - t0), flush=True)
            shutil.rmtree(work, ignore_errors=True)
        except Exception:
            failed += 1
            traceback.print_exc()
            print("FAIL %s (%.1f s), logs in %s" % (t.__name__, time.monotonic() - t0, work),
                  flush=True)
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
