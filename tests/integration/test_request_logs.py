"""Request logs (issue 13): a stdout nobody reads never stalls requests, and the
dropped lines are counted and reported; log.requests_sample samples successes
and logs every error. The real metadata binary, python3-grpcio and HTTP/1.1.

The stuck-stdout test fails against the old logger (one blocking write(2) per
line on the event loop): the pipe fills after a few hundred lines and every
later call hangs until its deadline.
"""
import json
import os
import signal
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2


class PipedService(Service):
    """A service whose stdout is a pipe this test reads only when it wants to."""

    def start(self, wait_ready=True, timeout=15):
        self.proc = subprocess.Popen(
            [os.path.join(harness.BIN_DIR, self.program), "--config", self.config_path],
            cwd=self.workdir, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        harness._started.append(self.proc)
        self.log_path = os.devnull
        if wait_ready:
            self.wait_ready(timeout)
        return self


class Reader(threading.Thread):
    """Reads a pipe to EOF, keeping the parsed JSON lines."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines, self.bad = stream, [], []
        self.lock = threading.Lock()

    def run(self):
        for raw in self.stream:
            try:
                line = json.loads(raw)
            except ValueError:
                with self.lock:
                    self.bad.append(raw)
                continue
            with self.lock:
                self.lines.append(line)

    def snapshot(self):
        with self.lock:
            return list(self.lines)


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)  # polling a condition with a deadline
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def put(stub, movie_id):
    stub.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
        id=movie_id, title="T", description="D", director="X")), timeout=10)


CONFIG = "storage:\n  driver: memory\napi:\n  workers: 1\nshutdown:\n  drain_delay: 0s\n"


class StuckStdoutTest(unittest.TestCase):
    def test_requests_flow_while_nobody_reads_stdout(self):
        svc = PipedService("metadata", CONFIG)
        svc.start()
        try:
            ch = grpc.insecure_channel(svc.target)
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            put(stub, "1")
            # ~150 bytes a line: 6,000 lines are ~14 pipe buffers (64 KiB) and
            # the writer's 1 MiB queue is not enough for more than ~7,000; the
            # calls go in parallel through futures to finish quickly.
            started = time.monotonic()
            calls = 12000
            for batch in range(calls // 500):
                futures = [stub.GetMetadata.future(pb.GetMetadataRequest(movie_id="1"),
                                                   timeout=10) for _ in range(500)]
                for f in futures:
                    self.assertEqual(f.result().metadata.id, "1")
            elapsed = time.monotonic() - started
            # Bounded: with the old logger the 500th call or so already blocks
            # until its 10 s deadline. Generous for a loaded machine.
            self.assertLess(elapsed, 120, "calls took %.1fs with stdout stuck" % elapsed)
            samples = harness.scrape(svc)
            dropped = samples.get("log_lines_dropped_total", 0)
            self.assertGreater(dropped, 0)
            self.assertLess(dropped, calls + 1)
            ch.close()

            # Now somebody reads: the writer drains and says what it dropped.
            reader = Reader(svc.proc.stdout)
            reader.start()
            report = wait_for(lambda: [l for l in reader.snapshot()
                                       if l.get("msg") == "log lines dropped: output too slow"],
                              30, "the dropped-lines report")
            self.assertEqual(report[0]["level"], "warn")
            self.assertEqual(report[0]["service"], "metadata")
            self.assertEqual(sum(l["dropped"] for l in report), report[-1]["dropped_total"])
            self.assertGreaterEqual(report[-1]["dropped_total"], dropped)

            # Lines flow again: a failing call is logged and seen promptly.
            ch = grpc.insecure_channel(svc.target)
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            with self.assertRaises(grpc.RpcError):
                stub.GetMetadata(pb.GetMetadataRequest(movie_id="missing-after"), timeout=10)
            ch.close()
            wait_for(lambda: [l for l in reader.snapshot()
                              if l.get("msg") == "grpc" and l.get("code") == "NOT_FOUND"],
                     30, "the NOT_FOUND line after the drain")

            # Shutdown lines come out, last and whole.
            svc.proc.send_signal(signal.SIGTERM)
            self.assertEqual(svc.proc.wait(30), 0)
            reader.join(30)
            lines = reader.snapshot()
            self.assertEqual(reader.bad, [])
            self.assertEqual(lines[-1]["msg"], "stopped")
            ok = sum(1 for l in lines if l.get("msg") == "grpc" and l.get("code") == "OK")
            scrapes = sum(1 for l in lines if l.get("msg") == "http" and l.get("path") == "/metrics")
            # Every request line that was not dropped came out (the report
            # counts the rest): the calls, the PutMetadata, and the scrape of
            # /metrics while stdout was stuck.
            self.assertEqual(ok + scrapes + report[-1]["dropped_total"], calls + 1 + 1)
        finally:
            svc.kill()
            svc.proc.stdout.close()


def count_lines(svc, pred):
    return sum(1 for l in svc.log_lines() if pred(l))


class SamplingTest(unittest.TestCase):
    def run_sampled(self, sample, ok_calls, error_calls):
        svc = Service("metadata", CONFIG + "log:\n  requests_sample: %s\n" % sample)
        svc.start()
        try:
            ch = grpc.insecure_channel(svc.target)
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            put(stub, "1")
            for batch in range(ok_calls // 500):
                futures = [stub.GetMetadata.future(pb.GetMetadataRequest(movie_id="1"),
                                                   timeout=10) for _ in range(500)]
                for f in futures:
                    f.result()
            futures = [stub.GetMetadata.future(pb.GetMetadataRequest(movie_id="nope"),
                                               timeout=10) for _ in range(error_calls)]
            for f in futures:
                self.assertEqual(f.exception().code(), grpc.StatusCode.NOT_FOUND)
            ch.close()
            http_ok = http_404 = 0
            for i in range(100):
                status, _ = svc.http("GET", "/metadata?id=1")
                http_ok += status == 200
                status, _ = svc.http("GET", "/metadata?id=nope")
                http_404 += status == 404
            self.assertEqual((http_ok, http_404), (100, 100))

            def grpc_code(code):
                return lambda l: l.get("msg") == "grpc" and l.get("code") == code

            def http_status(st):
                return lambda l: l.get("msg") == "http" and l.get("status") == st
            # Errors: every one, and only once the writer wrote them all.
            wait_for(lambda: count_lines(svc, grpc_code("NOT_FOUND")) >= error_calls and
                     count_lines(svc, http_status(404)) >= 100, 30, "the error lines")
            self.assertEqual(svc.stop(), 0)
            return (count_lines(svc, grpc_code("OK")), count_lines(svc, grpc_code("NOT_FOUND")),
                    count_lines(svc, http_status(200)), count_lines(svc, http_status(404)))
        finally:
            svc.__exit__()

    def test_sampled_successes_and_every_error(self):
        ok, not_found, http_ok, http_404 = self.run_sampled(0.1, 4000, 300)
        # Binomial(4001, 0.1): mean 400, sd 19; +-6 sd fails by chance
        # about once in 10^9 runs.
        self.assertGreater(ok, 400 - 6 * 19)
        self.assertLess(ok, 400 + 6 * 19)
        self.assertEqual(not_found, 300)
        self.assertEqual(http_404, 100)
        self.assertLess(http_ok, 40)  # Binomial(100, 0.1): mean 10, sd 3

    def test_sample_zero_logs_only_errors(self):
        ok, not_found, http_ok, http_404 = self.run_sampled(0, 500, 50)
        self.assertEqual((ok, http_ok), (0, 0))
        self.assertEqual((not_found, http_404), (50, 100))

    def test_default_logs_every_request(self):
        ok, not_found, http_ok, http_404 = self.run_sampled(1, 500, 50)
        self.assertEqual((ok, not_found, http_ok, http_404), (501, 50, 100, 100))

    def test_bad_values_are_rejected(self):
        for value in ("1.5", "-0.1", "abc", "nan"):
            path = os.path.join(tempfile.mkdtemp(), "c.yaml")
            with open(path, "w") as f:
                f.write("log:\n  requests_sample: %s\n" % value)
            status, err = harness.run_check_config("metadata", [path])
            self.assertNotEqual(status, 0, value)
            self.assertIn("log.requests_sample", err, value)


if __name__ == "__main__":
    unittest.main()
