"""The command-line surface of every binary: --version everywhere (the version
and commit the build was configured with), ratingingester's documented input
format and its example file, kafka-dev --port (a fixed address) with a real
producer (ratingingester, librdkafka) and a real consumer (python3-confluent-kafka)."""
import json
import os
import subprocess
import tempfile
import time
import unittest

import harness
import kafka_harness

BIN = harness.BIN_DIR
SRC = harness.SOURCE_DIR
BINARIES = tuple(harness.SERVICES) + ("moviectl", "ratingingester", "kafka-dev",
                                       "kafka-dev-consumer")
EXAMPLE = os.path.join(SRC, "tools", "ratingingester", "events.json")


def run(args, timeout=30, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, **kw)


class KafkaDevPort:
    """kafka-dev --port PORT, stopped by its PID."""

    def __init__(self, port, brokers=1):
        self.work = tempfile.mkdtemp(prefix="movie-kafka-dev-")
        self.log_path = os.path.join(self.work, "kafka-dev.log")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen([os.path.join(BIN, "kafka-dev"), "--port", str(port),
                                      "--brokers", str(brokers), "--topic", "ratings:2"],
                                     stdout=self.log, stderr=subprocess.STDOUT)
        harness._started.append(self.proc)

    def ready_line(self, timeout=15):
        def ready():
            if self.proc.poll() is not None:
                raise RuntimeError("kafka-dev exited %d: %s" % (self.proc.returncode,
                                                                 open(self.log_path).read()))
            for line in open(self.log_path):
                rec = json.loads(line)
                if rec.get("msg") == "mock kafka cluster ready":
                    return rec
            return None
        return kafka_harness.wait_for(ready, timeout, "kafka-dev ready line")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)
        self.log.close()


class ToolsTest(unittest.TestCase):
    def test_version_on_every_binary(self):
        version = os.environ.get("MOVIE_EXPECTED_VERSION")
        commit = os.environ.get("MOVIE_EXPECTED_COMMIT")
        self.assertTrue(version and commit, "ctest passes the configured version and commit")
        for name in BINARIES:
            with self.subTest(binary=name):
                p = run([os.path.join(BIN, name), "--version"])
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout, "%s %s (commit %s)\n" % (name, version, commit))

    def test_ratingingester_help_documents_the_input(self):
        p = run([os.path.join(BIN, "ratingingester"), "--help"])
        self.assertEqual(p.returncode, 0)
        for word in ("JSON array", "eventType", "\"put\"", "\"delete\"", "userId", "recordId",
                     "recordType", "value", "providerId", "tools/ratingingester/events.json"):
            self.assertIn(word, p.stdout)
        # The example in --help is itself a valid input: take it out and parse it.
        text = p.stdout
        start = text.index("  [\n")
        end = text.index("  ]\n", start) + 4
        events = json.loads(text[start:end])
        self.assertEqual([e["eventType"] for e in events], ["put", "delete"])
        with open(EXAMPLE) as f:
            self.assertIsInstance(json.load(f), list)

    def test_kafka_dev_fixed_port_with_real_clients(self):
        port = kafka_harness.free_port()
        kd = KafkaDevPort(port, brokers=2)
        self.addCleanup(kd.stop)
        self.assertEqual(kd.ready_line()["bootstrap"],
                         "127.0.0.1:%d,127.0.0.1:%d" % (port, port + 1))
        p = run([os.path.join(BIN, "ratingingester"), "--brokers", "127.0.0.1:%d" % port,
                 "--file", EXAMPLE, "--timeout", "20"], timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(EXAMPLE) as f:
            n = len(json.load(f))
        self.assertEqual(json.loads(p.stdout), {"events": n, "invalid": 0, "produced": n,
                                                "delivered": n, "failed": 0, "undelivered": 0})
        from confluent_kafka import Consumer
        c = Consumer({"bootstrap.servers": "127.0.0.1:%d" % port, "group.id": "t",
                      "auto.offset.reset": "earliest", "session.timeout.ms": 6000})
        self.addCleanup(c.close)
        c.subscribe(["ratings"])
        got = []
        deadline = time.monotonic() + 30
        while len(got) < n and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and not m.error():
                got.append(json.loads(m.value()))
        self.assertEqual(sorted(json.dumps(e, sort_keys=True) for e in got),
                         sorted(json.dumps(e, sort_keys=True) for e in json.load(open(EXAMPLE))))

    def test_kafka_dev_port_errors(self):
        port = kafka_harness.free_port()
        first = KafkaDevPort(port)
        self.addCleanup(first.stop)
        first.ready_line()
        p = run([os.path.join(BIN, "kafka-dev"), "--port", str(port)])
        self.assertEqual(p.returncode, 1)
        self.assertIn("port in use", p.stdout + p.stderr)
        for bad in ("0", "70000", "x"):
            p = run([os.path.join(BIN, "kafka-dev"), "--port", bad])
            self.assertEqual(p.returncode, 2, bad)
            self.assertIn("--port", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
