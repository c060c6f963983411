"""kafka_harness.py - processes and protocols for the Kafka ingestion tests.

Starts the real binaries (kafka-dev, rating, ratingingester) on 127.0.0.1,
every wait bounded in time. Used by test_rating_kafka.py and bench/ingest.sh.
Run with /usr/bin/python3 (Debian's, which has the packages the tests use).
"""
import json
import os
import random
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import harness


def free_port():
    """A TCP port on 127.0.0.1 below 32768 (outside the ephemeral range) that binds now."""
    rng = random.Random(os.getpid() ^ int(time.time() * 1000))
    for _ in range(200):
        port = rng.randrange(20000, 32000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port below 32768")


def wait_for(predicate, timeout, what, interval=0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError("timed out after %.0f s waiting for %s (last: %r)" % (timeout, what, last))


class KafkaDev:
    """kafka-dev: the mock cluster, its bootstrap address read from a file."""

    def __init__(self, bin_dir, work, topics=("ratings:4", "ratings-dlq:1")):
        self.boot_file = os.path.join(work, "kafka.bootstrap")
        args = [os.path.join(bin_dir, "kafka-dev"), "--bootstrap-file", self.boot_file]
        for t in topics:
            args += ["--topic", t]
        self.log = open(os.path.join(work, "kafka-dev.log"), "w")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT)
        self.bootstrap = wait_for(self._read, 15, "kafka-dev bootstrap file")

    def _read(self):
        if self.proc.poll() is not None:
            raise RuntimeError("kafka-dev exited with %d" % self.proc.returncode)
        try:
            with open(self.boot_file) as f:
                return f.read().strip()
        except FileNotFoundError:
            return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise RuntimeError("kafka-dev ignored SIGTERM")
            if rc != 0:
                raise RuntimeError("kafka-dev exited %d on SIGTERM" % rc)
        self.log.close()


class Rating:
    """The real rating service binary, configured through the environment."""

    def __init__(self, bin_dir, work, env_overrides, name="rating"):
        self.port = free_port()
        self.base = "http://127.0.0.1:%d" % self.port
        env = dict(os.environ)
        env.update({
            "RATING_API_HOST": "127.0.0.1",
            "RATING_API_PORT": str(self.port),
            "RATING_KAFKA_SESSION_TIMEOUT": "6s",
            "RATING_SHUTDOWN_DRAIN_DELAY": "0s",
            "RATING_LOG_REQUESTS": "false",
        })
        env.update(env_overrides)
        self.log_path = os.path.join(work, "%s.log" % name)
        self.log = open(self.log_path, "a")
        self.proc = subprocess.Popen([os.path.join(bin_dir, "rating")], env=env,
                                     stdout=self.log, stderr=subprocess.STDOUT)
        wait_for(self.ready, 30, "rating /readyz")

    def ready(self):
        if self.proc.poll() is not None:
            raise RuntimeError("rating exited with %d, see %s" % (self.proc.returncode, self.log_path))
        try:
            with urllib.request.urlopen(self.base + "/readyz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def metrics(self):
        """{name or name{labels}: value} from /metrics."""
        with urllib.request.urlopen(self.base + "/metrics", timeout=5) as r:
            return harness.parse_metrics(r.read().decode())

    def metric(self, name, **labels):
        """Sum of the series of `name` whose labels include `labels`."""
        return harness.metric(self.metrics(), name, **labels)

    def rating(self, record_id, record_type):
        """The mean rating, or None when unrated (404)."""
        url = "%s/rating?id=%s&type=%s" % (self.base, urllib.request.quote(record_id),
                                          urllib.request.quote(record_type))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return float(json.loads(r.read()))
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return None
            raise

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        self.log.close()

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                raise RuntimeError("rating did not stop within 30 s of SIGTERM")
        self.log.close()
        return self.proc.returncode


def ingest(bin_dir, bootstrap, events, work, name="events", allow_invalid=True, timeout=60):
    """Produce `events` (dicts, or strings sent verbatim) with ratingingester."""
    path = os.path.join(work, name + ".json")
    with open(path, "w") as f:
        json.dump(events, f)
    args = [os.path.join(bin_dir, "ratingingester"), "--brokers", bootstrap, "--file", path,
            "--timeout", str(timeout)]
    if allow_invalid:
        args.append("--allow-invalid")
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout + 30)
    if r.returncode != 0:
        raise RuntimeError("ratingingester exited %d: %s" % (r.returncode, r.stderr[-2000:]))
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    if summary["delivered"] != len(events):
        raise RuntimeError("ratingingester delivered %r of %d" % (summary, len(events)))
    return summary


def make_events(seed, count, records, users, malformed=0, dup_every=0):
    """Random puts/deletes over records x users, exact duplicates every
    `dup_every` events, and `malformed` invalid messages spread through.
    Returns (events, expected) where expected maps (type, id) -> mean or None."""
    rng = random.Random(seed)
    events = []
    for i in range(count):
        rec = "m%d" % rng.randrange(records)
        ev = {"userId": "u%d" % rng.randrange(users), "recordId": rec, "recordType": "movie",
              "providerId": "test-provider"}
        if rng.random() < 0.15:
            ev["eventType"] = "delete"
        else:
            ev["eventType"] = "put"
            ev["value"] = rng.randint(1, 5)
        events.append(ev)
        if dup_every and i % dup_every == 0:
            events.append(dict(ev))
    bad = ["not json", "{\"userId\":", "[1,2]",
           {"userId": "", "recordId": "m1", "recordType": "movie", "value": 3, "eventType": "put"},
           {"userId": "u1", "recordId": "m1", "recordType": "movie", "value": 9, "eventType": "put"},
           {"userId": "u1", "recordId": "m1", "recordType": "movie", "value": 2.5, "eventType": "put"},
           {"userId": "u1", "recordId": "m1", "recordType": "movie", "value": 3, "eventType": "upsert"},
           {"userId": "u\u0001", "recordId": "m1", "recordType": "movie", "value": 3, "eventType": "put"}]
    for i in range(malformed):
        events.insert(rng.randrange(len(events) + 1), bad[i % len(bad)])
    return events, expected_state(events)


def expected_state(events):
    state = {}
    for ev in events:
        if not isinstance(ev, dict) or not _valid(ev):
            continue
        key = (ev["recordType"], ev["recordId"], ev["userId"])
        if ev["eventType"] == "put":
            state[key] = ev["value"]
        else:
            state.pop(key, None)
    sums = {}
    for (rtype, rid, _), v in state.items():
        s = sums.setdefault((rtype, rid), [0, 0])
        s[0] += v
        s[1] += 1
    records = {(ev["recordType"], ev["recordId"]) for ev in events
               if isinstance(ev, dict) and _valid(ev)}
    return {r: (sums[r][0] / sums[r][1] if r in sums else None) for r in records}


def _valid(ev):
    ids = [ev.get("userId"), ev.get("recordId"), ev.get("recordType")]
    if not all(isinstance(i, str) and i and all(ord(c) >= 0x20 for c in i) for i in ids):
        return False
    if ev.get("eventType") == "delete":
        return True
    v = ev.get("value")
    return ev.get("eventType") == "put" and type(v) is int and 1 <= v <= 5


def state_mismatches(rating, expected):
    """Records whose served mean differs from the expected one."""
    bad = []
    for (rtype, rid), want in sorted(expected.items()):
        got = rating.rating(rid, rtype)
        if (want is None) != (got is None) or (want is not None and abs(want - got) > 1e-9):
            bad.append(((rtype, rid), want, got))
    return bad
