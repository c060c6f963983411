"""Faults on purpose (issue 9, faults.*) against the real binaries: the error
ratio measured over hundreds of calls within a statistical bound, the error
code honoured on gRPC and HTTP, the delay measured against a fault-free
process side by side (and not blocking the loop), not_ready, exit_after, the
environment layer, and the endpoints faults must never touch (health,
/readyz, /metrics).
"""
import concurrent.futures
import math
import json
import os
import socket
import subprocess
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2
hpb = S.health_pb2

BASE = "storage:\n  driver: memory\nshutdown:\n  drain_delay: 100ms\n  grace_period: 5s\n" \
       "log:\n  requests: false\n"


def wait_for(pred, timeout, what):
    """Poll pred() until it returns a true value or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def get_code(stub, movie_id="nope", timeout=10):
    try:
        stub.GetMetadata(pb.GetMetadataRequest(movie_id=movie_id), timeout=timeout)
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Faulty:
    """A metadata process and its stubs."""

    def __init__(self, yaml="", env=None, wait_ready=True):
        self.svc = Service("metadata", BASE + yaml, env=env).start(wait_ready=wait_ready)
        if not wait_ready:
            wait_for(lambda: self._healthz(), 15, "/healthz")
        self.channel = grpc.insecure_channel(self.svc.target)
        self.stub = S.movie_pb2_grpc.MetadataServiceStub(self.channel)
        self.health = S.health_pb2_grpc.HealthStub(self.channel)

    def _healthz(self):
        try:
            return self.svc.http("GET", "/healthz", timeout=1)[0] == 200
        except OSError:
            return False

    def close(self):
        self.channel.close()
        self.svc.kill()
        self.svc.log.close()


class ErrorRatioTest(unittest.TestCase):
    """Set through the environment, as in a Deployment."""

    CALLS = 400
    RATIO = 0.3

    @classmethod
    def setUpClass(cls):
        cls.f = Faulty(env={"METADATA_FAULTS_ERROR_RATIO": str(cls.RATIO),
                            "METADATA_FAULTS_ERROR_CODE": "ABORTED"})

    @classmethod
    def tearDownClass(cls):
        cls.f.close()

    def bounds(self, n):
        # Binomial(n, p): five standard deviations either side (a false failure
        # about once in 1.7 million runs).
        mean = n * self.RATIO
        sd = math.sqrt(n * self.RATIO * (1 - self.RATIO))
        return mean - 5 * sd, mean + 5 * sd

    def test_grpc_ratio_and_code(self):
        before = harness.metric(harness.scrape(self.f.svc), "movie_faults_injected_total", fault="error")
        codes = [get_code(self.f.stub) for _ in range(self.CALLS)]
        aborted = codes.count(grpc.StatusCode.ABORTED)
        # The rest are the real answer: unknown id -> NOT_FOUND.
        self.assertEqual(aborted + codes.count(grpc.StatusCode.NOT_FOUND), self.CALLS, codes)
        lo, hi = self.bounds(self.CALLS)
        self.assertTrue(lo <= aborted <= hi, "%d of %d aborted, expected %.0f..%.0f"
                        % (aborted, self.CALLS, lo, hi))
        after = harness.metric(harness.scrape(self.f.svc), "movie_faults_injected_total", fault="error")
        self.assertEqual(after - before, aborted)

    def test_http_ratio_and_status(self):
        n = 200
        statuses = [self.f.svc.http("GET", "/metadata?id=nope")[0] for _ in range(n)]
        conflict = statuses.count(409)  # ABORTED's HTTP status
        self.assertEqual(conflict + statuses.count(404), n, statuses)
        lo, hi = self.bounds(n)
        self.assertTrue(lo <= conflict <= hi, "%d of %d faulted" % (conflict, n))

    def test_runtime_endpoints_not_faulted(self):
        for _ in range(100):
            resp = self.f.health.Check(hpb.HealthCheckRequest(service=""), timeout=10)
            self.assertEqual(resp.status, hpb.HealthCheckResponse.SERVING)
            self.assertEqual(self.f.svc.http("GET", "/readyz")[0], 200)
            self.assertEqual(self.f.svc.http("GET", "/healthz")[0], 200)

    def test_metric_and_log(self):
        samples = harness.scrape(self.f.svc)
        self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault="error_ratio"), 1)
        self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault="delay"), 0)
        self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault="not_ready"), 0)
        self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault="exit_after"), 0)
        lines = [l for l in self.f.svc.log_lines() if "FAULTS ENABLED" in l.get("msg", "")]
        self.assertEqual(len(lines), 1, self.f.svc.logs())
        self.assertEqual(lines[0]["level"], "warn")
        self.assertEqual(lines[0]["error_code"], "ABORTED")
        self.assertAlmostEqual(lines[0]["error_ratio"], self.RATIO)


class NoFaultsTest(unittest.TestCase):
    def test_off_by_default(self):
        f = Faulty()
        try:
            codes = [get_code(f.stub) for _ in range(100)]
            self.assertEqual(codes, [grpc.StatusCode.NOT_FOUND] * 100)
            samples = harness.scrape(f.svc)
            for fault in ("error_ratio", "delay", "not_ready", "exit_after"):
                self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault=fault), 0)
            self.assertEqual(harness.metric(samples, "movie_faults_injected_total"), 0)
            self.assertFalse([l for l in f.svc.log_lines() if "FAULTS" in l.get("msg", "")])
        finally:
            f.close()


class DelayTest(unittest.TestCase):
    DELAY = 1.0

    @classmethod
    def setUpClass(cls):
        # One loop each, so that a blocking delay would serialise the calls.
        cls.slow = Faulty("api:\n  workers: 1\nfaults:\n  delay: %dms\n" % (cls.DELAY * 1000))
        cls.fast = Faulty("api:\n  workers: 1\n")

    @classmethod
    def tearDownClass(cls):
        cls.slow.close()
        cls.fast.close()

    @staticmethod
    def median_latency(fn, n=15):
        times = []
        for _ in range(n):
            t = time.monotonic()
            fn()
            times.append(time.monotonic() - t)
        times.sort()
        return times[n // 2]

    def test_delay_added_side_by_side(self):
        for f in (self.slow, self.fast):
            get_code(f.stub)  # connect first
        plain = self.median_latency(lambda: get_code(self.fast.stub))
        slow = self.median_latency(lambda: get_code(self.slow.stub))
        self.assertGreaterEqual(slow - plain, self.DELAY * 0.95, (slow, plain))
        self.assertLess(slow - plain, self.DELAY + 2.0, (slow, plain))
        http_plain = self.median_latency(lambda: self.fast.svc.http("GET", "/metadata?id=x"))
        http_slow = self.median_latency(lambda: self.slow.svc.http("GET", "/metadata?id=x"))
        self.assertGreaterEqual(http_slow - http_plain, self.DELAY * 0.95)
        self.assertEqual(self.slow.svc.http("GET", "/metadata?id=x")[0], 404)  # then the real answer

    def test_health_not_delayed(self):
        t = self.median_latency(
            lambda: self.slow.health.Check(hpb.HealthCheckRequest(service=""), timeout=10))
        self.assertLess(t, self.DELAY / 2)
        t = self.median_latency(lambda: self.slow.svc.http("GET", "/readyz"))
        self.assertLess(t, self.DELAY / 2)

    def test_delay_does_not_block_the_loop(self):
        n = 20
        get_code(self.slow.stub)
        t = time.monotonic()
        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            codes = list(pool.map(lambda _: get_code(self.slow.stub), range(n)))
        elapsed = time.monotonic() - t
        self.assertEqual(codes, [grpc.StatusCode.NOT_FOUND] * n)
        # Serialised by a sleep this would take n * DELAY (8 s).
        self.assertLess(elapsed, n * self.DELAY / 4, elapsed)
        samples = harness.scrape(self.slow.svc)
        self.assertGreaterEqual(harness.metric(samples, "movie_faults_injected_total", fault="delay"), n)

    def test_client_gone_during_delay_ends_the_call(self):
        before = harness.metric(harness.scrape(self.slow.svc), "server_requests_in_flight")
        with self.assertRaises(grpc.RpcError) as ctx:
            self.slow.stub.GetMetadata(pb.GetMetadataRequest(movie_id="x"), timeout=0.1)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.DEADLINE_EXCEEDED)
        # The client's RST_STREAM ends the call at once, not when the delay ends.
        wait_for(lambda: harness.metric(harness.scrape(self.slow.svc), "server_requests_in_flight")
                 <= before, self.DELAY * 0.75, "the cancelled call to leave in-flight")


    def test_http_client_gone_during_delay_ends_the_request(self):
        first = harness.scrape(self.slow.svc)
        before = harness.metric(first, "server_requests_in_flight")
        closed_before = harness.metric(first, "http_requests_total", handler="/metadata", code="499")
        sock = socket.create_connection(("127.0.0.1", self.slow.svc.port), timeout=5)
        sock.sendall(b"GET /metadata?id=x HTTP/1.1\r\nHost: x\r\n\r\n")
        wait_for(lambda: harness.metric(harness.scrape(self.slow.svc), "server_requests_in_flight")
                 > before, self.DELAY * 0.75, "the request to be in flight")
        sock.close()
        wait_for(lambda: harness.metric(harness.scrape(self.slow.svc), "server_requests_in_flight")
                 <= before, self.DELAY * 0.75, "the abandoned request to leave in-flight")
        samples = harness.scrape(self.slow.svc)
        # Recorded as 499 (client closed the request), not as a 404 after the delay.
        self.assertEqual(harness.metric(samples, "http_requests_total", handler="/metadata", code="499")
                         - closed_before, 1)


class NotReadyTest(unittest.TestCase):
    def test_never_ready(self):
        f = Faulty("faults:\n  not_ready: true\n", wait_ready=False)
        try:
            deadline = time.monotonic() + 2
            while time.monotonic() < deadline:
                self.assertEqual(f.svc.http("GET", "/readyz")[0], 503)
                resp = f.health.Check(hpb.HealthCheckRequest(service=""), timeout=10)
                self.assertEqual(resp.status, hpb.HealthCheckResponse.NOT_SERVING)
                resp = f.health.Check(hpb.HealthCheckRequest(service="MetadataService"),
                                      timeout=10)
                self.assertEqual(resp.status, hpb.HealthCheckResponse.NOT_SERVING)
                time.sleep(0.1)  # pacing the checks, not synchronisation
            resp = f.health.Check(hpb.HealthCheckRequest(service="liveness"), timeout=10)
            self.assertEqual(resp.status, hpb.HealthCheckResponse.SERVING)
            # Calls are still answered: only readiness lies.
            self.assertEqual(get_code(f.stub), grpc.StatusCode.NOT_FOUND)
            samples = harness.scrape(f.svc)
            self.assertEqual(harness.metric(samples, "movie_faults_enabled", fault="not_ready"), 1)
            self.assertEqual(harness.metric(samples, "server_ready"), 0)
        finally:
            f.close()


class ExitAfterTest(unittest.TestCase):
    def test_exits_1(self):
        start = time.monotonic()
        f = Faulty(env={"METADATA_FAULTS_EXIT_AFTER": "1500ms"})
        try:
            self.assertEqual(get_code(f.stub), grpc.StatusCode.NOT_FOUND)  # serving meanwhile
            rc = f.svc.proc.wait(timeout=20)
            elapsed = time.monotonic() - start
            self.assertEqual(rc, 1)
            self.assertGreaterEqual(elapsed, 1.5)
            self.assertLess(elapsed, 15)
            self.assertTrue([l for l in f.svc.log_lines()
                             if "faults.exit_after" in l.get("msg", "")], f.svc.logs())
        finally:
            f.close()


def h2c_get(testcase, svc, paths):
    """GET each path over h2c with the real curl (--http2-prior-knowledge), one
    connection per request (Debian 12's curl 7.88 fails reusing an h2c
    connection: "Error in the HTTP2 framing layer"; h2load reuses one fine):
    [(status, http version, seconds, body)]."""
    curl = harness.require_program(testcase, "curl", "curl")
    out = []
    for path in paths:
        p = subprocess.run([curl, "-sS", "--http2-prior-knowledge", "--max-time", "30",
                            "-w", "\n%{http_code} %{http_version} %{time_total}",
                            "http://%s%s" % (svc.target, path)],
                           capture_output=True, timeout=60)
        testcase.assertEqual(p.returncode, 0, p.stderr.decode())
        body, _, tail = p.stdout.decode().rpartition("\n")
        code, version, seconds = tail.split()
        out.append((int(code), version, float(seconds), body))
    return out


class H2cFaultsTest(unittest.TestCase):
    """Faults apply to the JSON routes over h2c (non-gRPC HTTP/2) exactly as over
    HTTP/1.1, and never to /healthz, /readyz, /metrics."""

    N = 20
    DELAY = 1.0
    RUNTIME = ("/healthz", "/readyz", "/metrics")

    def test_error_ratio(self):
        f = Faulty(env={"METADATA_FAULTS_ERROR_RATIO": "1",
                        "METADATA_FAULTS_ERROR_CODE": "ABORTED"})
        try:
            before = harness.scrape(f.svc)
            answers = h2c_get(self, f.svc, ["/metadata?id=nope"] * self.N)
            self.assertEqual({(a[0], a[1]) for a in answers}, {(409, "2")}, answers)
            for a in answers:
                self.assertIn("fault injected (faults.error_ratio): ABORTED",
                              json.loads(a[3])["error"])
            runtime = h2c_get(self, f.svc, list(self.RUNTIME) * 5)
            self.assertEqual({a[0] for a in runtime}, {200}, runtime)
            after = harness.scrape(f.svc)
            delta = lambda name, **l: (harness.metric(after, name, **l)
                                       - harness.metric(before, name, **l))
            self.assertEqual(delta("movie_faults_injected_total", fault="error"), self.N)
            self.assertEqual(delta("http_requests_total", handler="/metadata", code="409"),
                             self.N)
            self.assertEqual(delta("http_requests_total", handler="/metadata", code="404"), 0)
        finally:
            f.close()

    def test_delay(self):
        f = Faulty("faults:\n  delay: %dms\n" % (self.DELAY * 1000))
        try:
            before = harness.metric(harness.scrape(f.svc), "movie_faults_injected_total",
                                    fault="delay")
            answers = h2c_get(self, f.svc, ["/metadata?id=nope"] * 3)
            self.assertEqual({(a[0], a[1]) for a in answers}, {(404, "2")}, answers)
            for a in answers:
                self.assertGreaterEqual(a[2], self.DELAY * 0.95, answers)
            mid = harness.metric(harness.scrape(f.svc), "movie_faults_injected_total",
                                 fault="delay")
            self.assertEqual(mid - before, 3)
            runtime = h2c_get(self, f.svc, list(self.RUNTIME) * 2)
            self.assertEqual({a[0] for a in runtime}, {200}, runtime)
            for a in runtime:
                self.assertLess(a[2], self.DELAY / 2, runtime)
            after = harness.metric(harness.scrape(f.svc), "movie_faults_injected_total",
                                   fault="delay")
            self.assertEqual(after, mid)
        finally:
            f.close()

    def test_reset_during_delay_counted_499(self):
        """An h2c request reset while its delay runs ends at once, recorded as
        499 (client closed request), as an abandoned HTTP/1.1 request is."""
        import h2.config
        import h2.connection
        f = Faulty("faults:\n  delay: %dms\n" % (self.DELAY * 1000 * 5))
        sock = None
        try:
            first = harness.scrape(f.svc)
            before = harness.metric(first, "server_requests_in_flight")
            closed = harness.metric(first, "http_requests_total", handler="/metadata",
                                    code="499")
            sock = socket.create_connection(("127.0.0.1", f.svc.port), timeout=5)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "GET"), (":scheme", "http"),
                                    (":path", "/metadata?id=x"), (":authority", "x")],
                              end_stream=True)
            sock.sendall(conn.data_to_send())
            wait_for(lambda: harness.metric(harness.scrape(f.svc), "server_requests_in_flight")
                     > before, self.DELAY * 3, "the request to be in flight")
            conn.reset_stream(sid)
            sock.sendall(conn.data_to_send())
            wait_for(lambda: harness.metric(harness.scrape(f.svc), "server_requests_in_flight")
                     <= before, self.DELAY * 3, "the reset request to leave in-flight")
            samples = harness.scrape(f.svc)
            self.assertEqual(harness.metric(samples, "http_requests_total", handler="/metadata",
                                            code="499") - closed, 1)
            self.assertEqual(harness.metric(samples, "http_requests_total", handler="/metadata",
                                            code="404"), 0)
        finally:
            if sock:
                sock.close()
            f.close()


class ConfigTest(unittest.TestCase):
    def check(self, yaml, env=None):
        path = os.path.join(harness.tempfile.mkdtemp(prefix="movie-faults-"), "c.yaml")
        with open(path, "w") as fh:
            fh.write(yaml)
        return harness.run_check_config("metadata", [path], env)

    def test_bad_values_refused(self):
        rc, err = self.check("faults:\n  error_ratio: 1.5\n")
        self.assertEqual(rc, 1)
        self.assertIn("faults.error_ratio", err)
        rc, err = self.check("faults:\n  error_code: OK\n")
        self.assertEqual(rc, 1)
        self.assertIn("faults.error_code", err)
        rc, err = self.check("", {"METADATA_FAULTS_DELAY": "1fortnight"})
        self.assertEqual(rc, 1)
        self.assertIn("METADATA_FAULTS_DELAY", err)
        rc, err = self.check("faults:\n  error_code: INTERNAL\n  delay: 10ms\n")
        self.assertEqual(rc, 0, err)

    def test_every_service_has_faults(self):
        for program in ("metadata", "rating", "movie"):
            p = subprocess.run([os.path.join(harness.BIN_DIR, program), "--help-config"],
                               capture_output=True, timeout=30)
            text = p.stdout.decode() + p.stderr.decode()
            for key in ("faults.error_ratio", "faults.error_code", "faults.delay",
                        "faults.not_ready", "faults.exit_after"):
                self.assertIn(key, text, program)


if __name__ == "__main__":
    unittest.main(verbosity=2)
