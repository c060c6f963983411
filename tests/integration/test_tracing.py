"""W3C Trace Context and OTLP/HTTP span export, end to end: the three real
binaries, python3-grpcio and curl as clients, and a small OTLP/HTTP JSON
receiver in this test (python's http.server on 127.0.0.1) standing in for an
OpenTelemetry Collector (it decodes exactly what a collector's otlphttp
receiver accepts: ExportTraceServiceRequest in protobuf-JSON).

Checked: a GetMovieDetails trace crosses movie -> metadata and rating with the
right parents; an incoming traceparent is continued (same trace id, parent =
the caller's span) and its tracestate reaches the peers; an invalid one starts
a new trace and the request still succeeds; an unsampled one is propagated
but not exported; HTTP/1.1 and h2c requests take part too; request log lines
carry trace_id/span_id; a collector that never answers does not slow requests
and the drain stays bounded."""
import concurrent.futures
import http.server
import json
import os
import random
import socket
import subprocess
import threading
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2

DRAIN = "shutdown:\n  drain_delay: 100ms\n  grace_period: 5s\n"
FAST = DRAIN + "storage:\n  driver: memory\n"  # metadata and rating


def tracing_cfg(endpoint, extra=""):
    return ("tracing:\n  otlp_endpoint: \"%s\"\n  batch_interval: 50ms\n  batch_size: 64\n%s"
            % (endpoint, extra))


class Receiver:
    """OTLP/HTTP JSON receiver: POST /v1/traces, spans kept per service."""

    def __init__(self):
        self.lock = threading.Lock()
        self.spans = []  # (service.name, span dict)
        self.bad = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                ok = self.path == "/v1/traces" and \
                    self.headers.get("Content-Type") == "application/json"
                try:
                    doc = json.loads(body)
                    for rs in doc["resourceSpans"]:
                        attrs = {a["key"]: a["value"] for a in rs["resource"]["attributes"]}
                        name = attrs["service.name"]["stringValue"]
                        for ss in rs["scopeSpans"]:
                            for sp in ss["spans"]:
                                with receiver.lock:
                                    receiver.spans.append((name, sp))
                except (ValueError, KeyError) as e:
                    ok = False
                    with receiver.lock:
                        receiver.bad.append(repr(e))
                self.send_response(200 if ok else 400)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.port = harness.free_port()
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def endpoint(self):
        return "http://127.0.0.1:%d" % self.port

    def trace(self, trace_id):
        with self.lock:
            return [(svc, sp) for svc, sp in self.spans if sp["traceId"] == trace_id]

    def wait_trace(self, trace_id, count, timeout=20):
        """Poll until `count` spans of the trace arrived (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.trace(trace_id)
            if len(got) >= count:
                return got
            time.sleep(0.05)
        raise AssertionError("trace %s: %d spans after %ss, want %d: %r"
                             % (trace_id, len(self.trace(trace_id)), timeout, count,
                                self.trace(trace_id)))

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class RecordingRating(S.movie_pb2_grpc.RatingServiceServicer):
    """A RatingService peer (python3-grpcio) that records the metadata of each
    call: what movie really sends on the wire."""

    def __init__(self):
        self.calls = []

    def GetAggregatedRating(self, request, context):
        self.calls.append(dict(context.invocation_metadata()))
        return pb.GetAggregatedRatingResponse(rating_value=4.5)


def attrs(span):
    out = {}
    for a in span.get("attributes", []):
        v = a["value"]
        out[a["key"]] = v.get("stringValue", v.get("intValue"))
    return out


def rand_hex(n):
    return "".join(random.choice("0123456789abcdef") for _ in range(n))


def one(spans, service, name, kind):
    found = [sp for svc, sp in spans if svc == service and sp["name"] == name
             and sp["kind"] == kind]
    assert len(found) == 1, "want one %s span %s kind %d in %r" % (service, name, kind, spans)
    return found[0]


def log_line(svc, msg, trace_id, timeout=10):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in svc.log_lines():
            if line.get("msg") == msg and line.get("trace_id") == trace_id:
                return line
        time.sleep(0.05)
    raise AssertionError("%s: no %r line with trace_id %s:\n%s"
                         % (svc.program, msg, trace_id, svc.logs()[-3000:]))


class TracingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.receiver = Receiver()
        tc = tracing_cfg(cls.receiver.endpoint)
        cls.metadata = Service("metadata", FAST + tc).start()
        cls.rating = Service("rating", FAST + tc).start()
        peers = ("peers:\n  metadata:\n    addresses: [\"%s\"]\n  rating:\n"
                 "    addresses: [\"%s\"]\n  timeout: 2s\n" % (cls.metadata.target,
                                                                 cls.rating.target))
        cls.movie = Service("movie", DRAIN + tc + peers).start()
        ch = grpc.insecure_channel(cls.metadata.target)
        S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
            metadata=pb.Metadata(id="m1", title="T", description="d", director="x")), timeout=5)
        ch.close()
        cls.channel = grpc.insecure_channel(cls.movie.target)
        cls.stub = S.movie_pb2_grpc.MovieServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        for s in (cls.movie, cls.metadata, cls.rating):
            rc = s.stop()
            s.__exit__()
            assert rc == 0, "%s exited %s" % (s.program, rc)
        cls.receiver.close()

    def details(self, metadata=None):
        resp, call = self.stub.GetMovieDetails.with_call(
            pb.GetMovieDetailsRequest(movie_id="m1"), timeout=5, metadata=metadata)
        self.assertEqual(resp.movie_details.metadata.title, "T")
        return call

    def check_crossing(self, spans, movie_server):
        """movie's server span -> two client spans -> metadata's and rating's
        server spans, each the child of the one before."""
        meta_client = one(spans, "movie", "MetadataService/GetMetadata", 3)
        rating_client = one(spans, "movie", "RatingService/GetAggregatedRating", 3)
        meta_server = one(spans, "metadata", "MetadataService/GetMetadata", 2)
        rating_server = one(spans, "rating", "RatingService/GetAggregatedRating", 2)
        self.assertEqual(meta_client["parentSpanId"], movie_server["spanId"])
        self.assertEqual(rating_client["parentSpanId"], movie_server["spanId"])
        self.assertEqual(meta_server["parentSpanId"], meta_client["spanId"])
        self.assertEqual(rating_server["parentSpanId"], rating_client["spanId"])
        ids = {sp["spanId"] for _, sp in spans}
        self.assertEqual(len(ids), 5)  # every span its own id
        a = attrs(meta_client)
        self.assertEqual(a["rpc.system"], "grpc")
        self.assertEqual(a["rpc.service"], "MetadataService")
        self.assertEqual(a["rpc.method"], "GetMetadata")
        self.assertEqual(a["rpc.grpc.status_code"], "0")
        self.assertEqual(a["server.address"], "metadata")
        a = attrs(meta_server)
        self.assertEqual(a["rpc.grpc.status_code"], "0")
        for _, sp in spans:
            start, end = int(sp["startTimeUnixNano"]), int(sp["endTimeUnixNano"])
            self.assertLessEqual(start, end)
            self.assertLess(abs(start / 1e9 - time.time()), 120)
        # The client spans lie inside the server span that made them.
        self.assertGreaterEqual(int(meta_client["startTimeUnixNano"]),
                                int(movie_server["startTimeUnixNano"]) - 2000000)
        return meta_server, rating_server

    def test_new_trace_crosses_the_services(self):
        before = {sp["traceId"] for _, sp in self.receiver.spans}
        self.details()
        deadline = time.monotonic() + 20
        trace_id = None
        while time.monotonic() < deadline and trace_id is None:
            with self.receiver.lock:
                for svc, sp in self.receiver.spans:
                    if (svc == "movie" and sp["kind"] == 2 and sp["traceId"] not in before
                            and sp["name"] == "MovieService/GetMovieDetails"):
                        trace_id = sp["traceId"]
            time.sleep(0.05)
        self.assertIsNotNone(trace_id, "no movie server span exported")
        spans = self.receiver.wait_trace(trace_id, 5)
        movie_server = one(spans, "movie", "MovieService/GetMovieDetails", 2)
        self.assertNotIn("parentSpanId", movie_server)  # a root
        a = attrs(movie_server)
        self.assertEqual((a["rpc.service"], a["rpc.method"], a["rpc.grpc.status_code"]),
                         ("MovieService", "GetMovieDetails", "0"))
        meta_server, _ = self.check_crossing(spans, movie_server)
        # The request log lines carry the ids of their service's span.
        line = log_line(self.movie, "grpc", trace_id)
        self.assertEqual(line["span_id"], movie_server["spanId"])
        line = log_line(self.metadata, "grpc", trace_id)
        self.assertEqual(line["span_id"], meta_server["spanId"])

    def test_incoming_traceparent_is_continued(self):
        trace_id, parent = rand_hex(32), rand_hex(16)
        self.details(metadata=(("traceparent", "00-%s-%s-01" % (trace_id, parent)),
                               ("tracestate", "congo=t61rcWkgMzE")))
        spans = self.receiver.wait_trace(trace_id, 5)
        movie_server = one(spans, "movie", "MovieService/GetMovieDetails", 2)
        self.assertEqual(movie_server["parentSpanId"], parent)
        self.check_crossing(spans, movie_server)
        line = log_line(self.movie, "grpc", trace_id)
        self.assertEqual(line["span_id"], movie_server["spanId"])
        self.assertEqual(line["code"], "OK")
        log_line(self.rating, "grpc", trace_id)

    def test_invalid_traceparent_starts_a_new_trace(self):
        bad = [
            "00-%s-%s-01" % (rand_hex(32).upper(), rand_hex(16)),  # uppercase
            "00-%s-%s-01" % ("0" * 32, rand_hex(16)),              # all-zero trace id
            "00-%s-%s-01" % (rand_hex(32), "0" * 16),              # all-zero parent id
            "ff-%s-%s-01" % (rand_hex(32), rand_hex(16)),          # version ff
            "00-%s-%s-01-extra" % (rand_hex(32), rand_hex(16)),    # 00 with more
            "00-%s-%s-1" % (rand_hex(32), rand_hex(16)),           # short
            "garbage",
        ]
        for value in bad:
            trace_id = value[3:35].lower()
            before = self.grpc_lines()
            call = self.details(metadata=(("traceparent", value),))
            self.assertEqual(call.code(), grpc.StatusCode.OK)
            deadline = time.monotonic() + 10
            while len(self.grpc_lines()) <= len(before) and time.monotonic() < deadline:
                time.sleep(0.05)
            new = self.grpc_lines()[len(before):]
            self.assertEqual(len(new), 1, value)
            # A new trace: fresh ids, not the rejected value's.
            self.assertRegex(new[0]["trace_id"], "^[0-9a-f]{32}$")
            self.assertRegex(new[0]["span_id"], "^[0-9a-f]{16}$")
            self.assertNotEqual(new[0]["trace_id"], trace_id, value)
            self.assertFalse(any(l["trace_id"] == trace_id for l in self.grpc_lines()), value)

    def grpc_lines(self):
        return [l for l in self.movie.log_lines() if l.get("msg") == "grpc"]

    def test_unsampled_is_propagated_not_exported(self):
        trace_id, parent = rand_hex(32), rand_hex(16)
        self.details(metadata=(("traceparent", "00-%s-%s-00" % (trace_id, parent)),))
        # metadata got the trace (its log line), but nobody exported it.
        log_line(self.metadata, "grpc", trace_id)
        log_line(self.rating, "grpc", trace_id)
        # A later sampled trace is exported: by then the unsampled one would be too.
        marker = rand_hex(32)
        self.details(metadata=(("traceparent", "00-%s-%s-01" % (marker, parent)),))
        self.receiver.wait_trace(marker, 5)
        self.assertEqual(self.receiver.trace(trace_id), [])

    def test_http1_and_h2c(self):
        trace_id, parent = rand_hex(32), rand_hex(16)
        status, _ = self.movie.http("GET", "/movie?id=m1", headers={
            "traceparent": "00-%s-%s-01" % (trace_id, parent)})
        self.assertEqual(status, 200)
        spans = self.receiver.wait_trace(trace_id, 5)
        server = one(spans, "movie", "GET /movie", 2)
        self.assertEqual(server["parentSpanId"], parent)
        a = attrs(server)
        self.assertEqual(a["http.response.status_code"], "200")
        self.assertEqual(a["http.route"], "/movie")
        self.assertEqual(a["http.request.method"], "GET")
        self.check_crossing(spans, server)
        line = log_line(self.movie, "http", trace_id)
        self.assertEqual(line["span_id"], server["spanId"])
        # h2c prior knowledge (curl), a non-gRPC request on the gRPC port.
        trace_id = rand_hex(32)
        p = subprocess.run(["curl", "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
                            "-w", "%{http_code}", "-H",
                            "traceparent: 00-%s-%s-01" % (trace_id, parent),
                            "http://%s/movie?id=m1" % self.movie.target],
                           capture_output=True, timeout=30)
        self.assertEqual(p.stdout, b"200", p.stderr)
        spans = self.receiver.wait_trace(trace_id, 5)
        server = one(spans, "movie", "GET /movie", 2)
        self.assertEqual(server["parentSpanId"], parent)
        self.check_crossing(spans, server)
        log_line(self.movie, "http", trace_id)
        # Health checks, probes and scrapes are logged with ids, never exported.
        quiet = rand_hex(32)
        hdr = {"traceparent": "00-%s-%s-01" % (quiet, parent)}
        for path in ("/healthz", "/readyz", "/metrics"):
            self.assertEqual(self.movie.http("GET", path, headers=hdr)[0], 200)
        hch = grpc.insecure_channel(self.movie.target)
        S.health_pb2_grpc.HealthStub(hch).Check(
            S.health_pb2.HealthCheckRequest(service=""), timeout=5,
            metadata=(("traceparent", hdr["traceparent"]),))
        hch.close()
        marker = rand_hex(32)
        self.assertEqual(self.movie.http("GET", "/movie?id=m1", headers={
            "traceparent": "00-%s-%s-01" % (marker, parent)})[0], 200)
        self.receiver.wait_trace(marker, 5)
        self.assertEqual(self.receiver.trace(quiet), [])
        # Every request line of every service has both ids, probes included.
        status, _ = self.metadata.http("GET", "/nope")
        self.assertEqual(status, 404)
        for svc in (self.movie, self.metadata, self.rating):
            for line in svc.log_lines():
                if line.get("msg") in ("grpc", "http"):
                    self.assertRegex(line.get("trace_id", ""), "^[0-9a-f]{32}$", line)
                    self.assertRegex(line.get("span_id", ""), "^[0-9a-f]{16}$", line)
        self.assertEqual(self.receiver.bad, [])


class WireTest(unittest.TestCase):
    """What movie sends its peers, seen by a python3-grpcio RatingService."""

    def test_traceparent_and_tracestate_on_the_wire(self):
        peer = RecordingRating()
        server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=2))
        S.movie_pb2_grpc.add_RatingServiceServicer_to_server(peer, server)
        port = harness.free_port()
        server.add_insecure_port("127.0.0.1:%d" % port)
        server.start()
        self.addCleanup(server.stop, None)
        with Service("metadata", FAST).start() as metadata:
            mch = grpc.insecure_channel(metadata.target)
            S.movie_pb2_grpc.MetadataServiceStub(mch).PutMetadata(pb.PutMetadataRequest(
                metadata=pb.Metadata(id="x", title="T", description="d", director="x")), timeout=5)
            mch.close()
            peers = ("peers:\n  metadata:\n    addresses: [\"%s\"]\n  rating:\n"
                     "    addresses: [\"127.0.0.1:%d\"]\n  timeout: 2s\n" % (metadata.target, port))
            with Service("movie", DRAIN + peers).start() as movie:
                ch = grpc.insecure_channel(movie.target)
                self.addCleanup(ch.close)
                stub = S.movie_pb2_grpc.MovieServiceStub(ch)
                trace_id, parent = rand_hex(32), rand_hex(16)
                # Two tracestate headers make one list.
                stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id="x"), timeout=5,
                                     metadata=(("traceparent", "00-%s-%s-01" % (trace_id, parent)),
                                               ("tracestate", "congo=t61rcWkgMzE"),
                                               ("tracestate", "rojo=00f067aa0ba902b7")))
                self.assertEqual(len(peer.calls), 1)
                md = peer.calls[0]
                version, tid, sid, flags = md["traceparent"].split("-")
                self.assertEqual((version, tid, flags), ("00", trace_id, "01"))
                self.assertRegex(sid, "^[0-9a-f]{16}$")
                self.assertNotEqual(sid, parent)  # the client span, not the caller's
                self.assertEqual(md["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7")
                line = log_line(movie, "grpc", trace_id)
                self.assertNotEqual(line["span_id"], sid)
                # Without a traceparent: a new trace, flag 00 (no exporter).
                stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id="x"), timeout=5,
                                     metadata=(("tracestate", "congo=t61rcWkgMzE"),))
                md = peer.calls[1]
                version, tid, sid, flags = md["traceparent"].split("-")
                self.assertNotEqual(tid, trace_id)
                self.assertEqual(flags, "00")
                self.assertNotIn("tracestate", md)  # only with a valid parent
                # 33 members over 512 bytes: capped before it goes on.
                members = ",".join("k%02d=%s" % (i, "v" * 20) for i in range(33))
                stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id="x"), timeout=5,
                                     metadata=(("traceparent", "00-%s-%s-01" % (trace_id, parent)),
                                               ("tracestate", members)))
                state = peer.calls[2]["tracestate"]
                self.assertLessEqual(len(state), 512)
                self.assertTrue(state.startswith("k00="))
                self.assertLessEqual(state.count(",") + 1, 32)
                self.assertEqual(movie.stop(), 0)
            self.assertEqual(metadata.stop(), 0)


class FlushOnDrainTest(unittest.TestCase):
    """Spans still queued at SIGTERM are exported by the graceful drain: the
    batch interval (1 min) and size (10000) never send them before."""

    def test_queued_spans_flushed_at_shutdown(self):
        receiver = Receiver()
        self.addCleanup(receiver.close)
        tc = ('tracing:\n  otlp_endpoint: "%s"\n  batch_interval: 1m\n  batch_size: 10000\n'
              % receiver.endpoint)
        with Service("metadata", FAST + tc).start() as metadata:
            ch = grpc.insecure_channel(metadata.target)
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            trace_id = rand_hex(32)
            for _ in range(3):
                with self.assertRaises(grpc.RpcError) as cm:
                    stub.GetMetadata(pb.GetMetadataRequest(movie_id="none"), timeout=5,
                                     metadata=(("traceparent", "00-%s-%s-01"
                                                % (trace_id, rand_hex(16))),))
                self.assertEqual(cm.exception.code(), grpc.StatusCode.NOT_FOUND)
            ch.close()
            self.assertEqual(receiver.trace(trace_id), [])
            self.assertEqual(metadata.stop(), 0)
        spans = receiver.trace(trace_id)
        self.assertEqual(len(spans), 3)
        for _, sp in spans:
            self.assertEqual(attrs(sp)["rpc.grpc.status_code"], "5")  # NOT_FOUND
            self.assertEqual(sp["status"]["code"], 0)  # a client error, not the server's


class ConfigTest(unittest.TestCase):
    """tracing.* is validated by --check-config (the same checks as start-up)."""

    def check(self, text):
        import tempfile
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(text)
        self.addCleanup(os.unlink, f.name)
        return harness.run_check_config("metadata", [f.name])

    def test_bad_values_are_refused(self):
        for bad, why in (('otlp_endpoint: "ftp://collector:4318"', "http:// or https://"),
                         ('otlp_endpoint: "http://"', "no host"),
                         ('otlp_endpoint: "http:///v1"', "no host"),
                         ('otlp_endpoint: "http://a b:4318"', "spaces"),
                         ('otlp_endpoint: "http://c:4318/?x=1"', "query"),
                         ("sample_ratio: 1.5", ""), ("batch_size: 0", ""),
                         ("queue_size: 0", ""), ("export_timeout: 10ms", ""),
                         ("batch_interval: 0", ""), ("bogus: 1", "")):
            rc, err = self.check("tracing:\n  %s\n" % bad)
            self.assertEqual(rc, 1, bad)
            self.assertIn("tracing.", err, bad)
            self.assertIn(why, err, bad)
        rc, err = self.check('tracing:\n  otlp_endpoint: "https://otel.example:4318/base"\n'
                             '  sample_ratio: 0.25\n')
        self.assertEqual(rc, 0, err)


class DeadCollectorTest(unittest.TestCase):
    """A collector that accepts connections and never answers: requests keep
    their latency, spans are dropped and counted, the drain stays bounded."""

    def test_black_hole_collector(self):
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(1024)  # never accepted: connections hang in the backlog
        self.addCleanup(hole.close)
        endpoint = "http://127.0.0.1:%d" % hole.getsockname()[1]
        tc = ("tracing:\n  otlp_endpoint: \"%s\"\n  batch_interval: 10ms\n  batch_size: 1\n"
              "  queue_size: 16\n  export_timeout: 2s\n" % endpoint)
        with Service("metadata", FAST + tc).start() as metadata:
            ch = grpc.insecure_channel(metadata.target)
            self.addCleanup(ch.close)
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            stub.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
                id="m1", title="T", description="d", director="x")), timeout=5)
            # 300 calls while the exporter is stuck on its first POST (2 s):
            # each answered well within its deadline, none waits for it.
            worst = 0.0
            t0 = time.monotonic()
            for _ in range(300):
                t = time.monotonic()
                stub.GetMetadata(pb.GetMetadataRequest(movie_id="m1"), timeout=5)
                worst = max(worst, time.monotonic() - t)
            total = time.monotonic() - t0
            self.assertLess(worst, 1.5, "a call waited %.3fs" % worst)
            self.assertLess(total, 30)
            samples = harness.scrape(metadata)
            self.assertGreater(samples.get('trace_spans_dropped_total{reason="queue_full"}', 0),
                               0, {k: v for k, v in samples.items() if "trace" in k})
            # Drain: drain_delay 100ms + at most one export_timeout (2 s).
            t = time.monotonic()
            self.assertEqual(metadata.stop(timeout=30), 0)
            self.assertLess(time.monotonic() - t, 15)


if __name__ == "__main__":
    unittest.main()
