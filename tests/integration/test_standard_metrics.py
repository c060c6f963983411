"""Issue 13: metrics as go-grpc-prometheus names and labels them, HTTP status codes
in `code`, cheap and well-formed logs, checked with the real tools: python3-grpcio
clients, curl, promtool check metrics.

    /usr/bin/python3 test_standard_metrics.py
"""
import json
import subprocess
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2

QUIET = "shutdown:\n  drain_delay: 100ms\n  grace_period: 5s\n"


def wait_for(fn, timeout=15):
    """Poll fn() until truthy (bounded); returns its last value."""
    deadline = time.monotonic() + timeout
    value = fn()
    while not value and time.monotonic() < deadline:
        time.sleep(0.05)
        value = fn()
    return value


def no_duplicate_keys(line):
    """json.loads that fails on a repeated key."""
    def pairs(items):
        keys = [k for k, _ in items]
        if len(keys) != len(set(keys)):
            raise ValueError("duplicate keys in %r" % line)
        return dict(items)
    return json.loads(line, object_pairs_hook=pairs)


class ServerMetricsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("metadata", QUIET).start()
        cls.channel = grpc.insecure_channel(cls.svc.target)
        cls.stub = S.movie_pb2_grpc.MetadataServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.svc.stop()
        cls.svc.__exit__()

    def test_started_handled_and_messages_count_the_same_calls(self):
        before = harness.scrape(self.svc)
        self.stub.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
            id="m1", title="T", description="D", director="X")), timeout=5)
        for _ in range(3):
            self.stub.GetMetadata(pb.GetMetadataRequest(movie_id="m1"), timeout=5)
        for _ in range(2):
            with self.assertRaises(grpc.RpcError) as e:
                self.stub.GetMetadata(pb.GetMetadataRequest(movie_id="missing"), timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        nope = self.channel.unary_unary("/MetadataService/Nope")
        for _ in range(3):
            with self.assertRaises(grpc.RpcError) as e:
                nope(b"", timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

        after = harness.scrape(self.svc)
        s = {k: v - before.get(k, 0) for k, v in after.items()}
        get = dict(grpc_type="unary", grpc_service="MetadataService", grpc_method="GetMetadata")
        self.assertEqual(harness.metric(s, "grpc_server_started_total", **get), 5)
        self.assertEqual(harness.metric(s, "grpc_server_handled_total", **get), 5)
        self.assertEqual(harness.metric(s, "grpc_server_handled_total", grpc_code="NotFound", **get), 2)
        self.assertEqual(harness.metric(s, "grpc_server_handling_seconds_count", **get), 5)
        # One request message per call; one response message per OK call.
        self.assertEqual(harness.metric(s, "grpc_server_msg_received_total", **get), 5)
        self.assertEqual(harness.metric(s, "grpc_server_msg_sent_total", **get), 3)
        # Before: an unknown method was handled 3 and started 0.
        unknown = dict(grpc_type="unary", grpc_service="unknown", grpc_method="unknown")
        self.assertEqual(harness.metric(s, "grpc_server_started_total", **unknown), 3)
        self.assertEqual(harness.metric(s, "grpc_server_handled_total", grpc_code="Unimplemented",
                                **unknown), 3)
        # Every family carries grpc_type (unary here, bidi_stream for reflection).
        for key in after:
            if key.startswith("grpc_server_"):
                self.assertIn('grpc_type="', key)
        self.assertTrue(any('grpc_type="bidi_stream"' in k and "ServerReflection" in k
                            for k in after))

    def test_http_code_is_the_status(self):
        self.svc.http("GET", "/metadata?id=missing-http")
        self.svc.http("GET", "/healthz")
        s = harness.scrape(self.svc)
        self.assertGreaterEqual(harness.metric(s, "http_requests_total", handler="/metadata", code="404"), 1)
        self.assertGreaterEqual(harness.metric(s, "http_requests_total", handler="/healthz", code="200"), 1)
        self.assertFalse([k for k in s if k.startswith("http_requests_total") and 'xx"' in k])

    def test_exposition_passes_promtool(self):
        promtool = harness.require_program(self, "promtool", "prometheus")
        self.stub.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
            id="p1", title="T", description="D", director="X")), timeout=5)
        self.stub.GetMetadata(pb.GetMetadataRequest(movie_id="p1"), timeout=5)
        status, body = self.svc.http("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"grpc_server_msg_received_total", body)
        self.assertIn(b"grpc_server_msg_sent_total", body)
        p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                           timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())


class ClientMetricsTest(unittest.TestCase):
    def test_peer_calls_have_the_standard_names_and_labels(self):
        meta = Service("metadata", QUIET).start()
        rating = Service("rating", QUIET).start()
        cfg = ("peers:\n  metadata:\n    addresses: [\"%s\"]\n  rating:\n    addresses: [\"%s\"]\n"
               % (meta.target, rating.target))
        movie = Service("movie", cfg + QUIET).start()
        try:
            with grpc.insecure_channel(meta.target) as ch:
                S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
                    metadata=pb.Metadata(id="c1", title="T", description="D", director="X")),
                    timeout=5)
            with grpc.insecure_channel(movie.target) as ch:
                stub = S.movie_pb2_grpc.MovieServiceStub(ch)
                for _ in range(2):
                    stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id="c1"), timeout=5)
            s = harness.scrape(movie)
            meta_get = dict(grpc_type="unary", grpc_service="MetadataService",
                            grpc_method="GetMetadata")
            self.assertEqual(harness.metric(s, "grpc_client_started_total", **meta_get), 2)
            self.assertEqual(harness.metric(s, "grpc_client_handled_total", grpc_code="OK", **meta_get), 2)
            self.assertEqual(harness.metric(s, "grpc_client_handling_seconds_count", **meta_get), 2)
            rating_get = dict(grpc_type="unary", grpc_service="RatingService",
                              grpc_method="GetAggregatedRating")
            self.assertEqual(harness.metric(s, "grpc_client_started_total", **rating_get), 2)
            self.assertEqual(harness.metric(s, "grpc_client_handled_total", **rating_get), 2)
            self.assertFalse([k for k in s if k.startswith("grpc_client_handled_total")
                              and "peer=" in k])
        finally:
            for svc in (movie, meta, rating):
                svc.stop()
                svc.__exit__()


class LogTest(unittest.TestCase):
    def test_no_duplicate_keys_and_probes_at_debug(self):
        with Service("metadata", QUIET + "log:\n  requests: true\n") as svc:
            svc.start()
            svc.http("GET", "/healthz")
            svc.http("GET", "/metadata?id=logged")
            with grpc.insecure_channel(svc.target) as ch:
                # An empty HealthCheckRequest is zero bytes on the wire.
                ch.unary_unary("/grpc.health.v1.Health/Check")(b"", timeout=5)
            self.assertTrue(wait_for(lambda: any(
                l.get("msg") == "http" and l.get("path") == "/metadata"
                for l in svc.log_lines())), svc.logs())
            svc.stop()
            lines = [no_duplicate_keys(l) for l in svc.logs().splitlines() if l.strip()]
            listening = [l for l in lines if l["msg"] == "listening"]
            self.assertEqual(len(listening), 1, lines)
            self.assertEqual(listening[0]["service"], "metadata")
            # /readyz (the harness' readiness polling), /healthz and the gRPC health
            # check are probes: debug level, not written at the default info.
            probes = [l for l in lines if l.get("path") in ("/healthz", "/readyz")
                      or "grpc.health" in str(l.get("method"))]
            self.assertEqual(probes, [])

    def test_startup_errors_are_json(self):
        with Service("metadata", "api:\n  port: not-a-number\n") as svc:
            svc.start(wait_ready=False)
            self.assertNotEqual(svc.proc.wait(10), 0)
            out = [l for l in svc.logs().splitlines() if l.strip()]
            self.assertTrue(out)
            for l in out:
                line = no_duplicate_keys(l)
                self.assertEqual(line["level"], "error", l)
                self.assertEqual(line["service"], "metadata", l)
            self.assertTrue(any("api.port" in l for l in out), out)


if __name__ == "__main__":
    unittest.main()
