"""Issue 13: the JSON API, /healthz, /readyz and /metrics answer over HTTP/2 with
prior knowledge (h2c), as gateways speak to Services declaring appProtocol
kubernetes.io/h2c, through the same routes, handlers and caps as HTTP/1.1; every
error answer is {"error": ...} JSON. Client: the real curl (--http2-prior-knowledge).

    /usr/bin/python3 test_h2c_http.py
"""
import json
import os
import socket
import struct
import subprocess
import tempfile
import time
import unittest

import grpc
import h2.config
import h2.connection
import h2.events

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2

CONFIG = "shutdown:\n  drain_delay: 100ms\n  grace_period: 5s\napi:\n  max_body_bytes: 4096\n"


class H2cHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("metadata", CONFIG).start()
        cls.base = "http://%s" % cls.svc.target

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        cls.svc.__exit__()

    def curl(self, *args):
        """(status, headers dict, body bytes, http version) of one h2c request."""
        curl = harness.require_program(self, "curl", "curl")
        fd, hdr = tempfile.mkstemp(prefix="h2c-headers-")
        os.close(fd)
        try:
            p = subprocess.run([curl, "-sS", "--http2-prior-knowledge", "-D", hdr,
                                "-w", "\n%{http_code} %{http_version}"] + list(args),
                               capture_output=True, timeout=30)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            body, _, tail = p.stdout.rpartition(b"\n")
            code, version = tail.decode().split()
            headers = {}
            with open(hdr) as f:
                for line in f:
                    name, sep, value = line.partition(":")
                    if sep:
                        headers[name.strip().lower()] = value.strip()
            return int(code), headers, body, version
        finally:
            os.unlink(hdr)

    def test_probes_and_metrics(self):
        code, _, body, version = self.curl(self.base + "/healthz")
        self.assertEqual((code, version, body), (200, "2", b"ok\n"))
        code, _, body, _ = self.curl(self.base + "/readyz")
        self.assertEqual((code, body), (200, b"ready\n"))
        code, headers, body, _ = self.curl(self.base + "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers["content-type"].startswith("text/plain; version=0.0.4"))
        self.assertIn(b'http_requests_total{handler="/healthz",code="200"}', body)

    def test_json_api_and_error_bodies(self):
        doc = {"id": "h2", "title": "T", "description": "D", "director": "X"}
        code, headers, body, version = self.curl(
            "-X", "PUT", "-H", "content-type: application/json", "--data-binary",
            json.dumps(doc), self.base + "/metadata")
        self.assertEqual((code, version), (200, "2"), body)
        code, headers, body, _ = self.curl(self.base + "/metadata?id=h2")
        self.assertEqual(code, 200)
        self.assertEqual(headers["content-type"], "application/json")
        self.assertEqual(json.loads(body), doc)
        # Served by the same handler as HTTP/1.1: the same answer.
        status, h1_body = self.svc.http("GET", "/metadata?id=h2")
        self.assertEqual((status, json.loads(h1_body)), (200, doc))

        code, headers, body, _ = self.curl(self.base + "/metadata?id=missing")
        self.assertEqual(code, 404)
        self.assertIn("error", json.loads(body))
        code, headers, body, _ = self.curl(self.base + "/no-such-path")
        self.assertEqual((code, json.loads(body)), (404, {"error": "Not Found"}))
        code, headers, body, _ = self.curl("-X", "DELETE", self.base + "/healthz")
        self.assertEqual(code, 405)
        self.assertEqual(headers["allow"], "GET, HEAD")
        self.assertEqual(json.loads(body), {"error": "Method Not Allowed"})
        # api.max_body_bytes holds on HTTP/2 too.
        code, headers, body, _ = self.curl("-X", "PUT", "--data-binary", "x" * 10000,
                                           self.base + "/metadata")
        self.assertEqual((code, json.loads(body)), (413, {"error": "Payload Too Large"}))
        # HTTP/1.1 errors are JSON as well.
        status, h1_body = self.svc.http("GET", "/no-such-path")
        self.assertEqual((status, json.loads(h1_body)), (404, {"error": "Not Found"}))

    def test_counted_in_http_metrics_not_grpc(self):
        before = harness.scrape(self.svc)
        self.curl(self.base + "/metadata?id=counted-missing")
        after = harness.scrape(self.svc)
        key = 'http_requests_total{handler="/metadata",code="404"}'
        self.assertEqual(after[key] - before.get(key, 0), 1)
        self.assertEqual(harness.metric(after, "grpc_server_handled_total"),
                         harness.metric(before, "grpc_server_handled_total"))

    def test_grpc_still_served_on_the_same_port(self):
        with grpc.insecure_channel(self.svc.target) as ch:
            stub = S.movie_pb2_grpc.MetadataServiceStub(ch)
            with self.assertRaises(grpc.RpcError) as e:
                stub.GetMetadata(pb.GetMetadataRequest(movie_id="missing-grpc"), timeout=5)
            self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_grpc_and_plain_http_on_one_connection(self):
        """A gateway multiplexes both kinds of request on one h2c connection:
        each stream is answered by its own protocol (python3-h2 client)."""
        msg = pb.GetMetadataRequest(movie_id="missing-mixed").SerializeToString()
        grpc_frame = b"\x00" + struct.pack(">I", len(msg)) + msg
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        common = [(":scheme", "http"), (":authority", self.svc.target)]
        http_id = conn.get_next_available_stream_id()
        conn.send_headers(http_id, [(":method", "GET"), (":path", "/metadata?id=missing-mixed")]
                          + common, end_stream=True)
        grpc_id = conn.get_next_available_stream_id()
        conn.send_headers(grpc_id, [(":method", "POST"),
                                    (":path", "/MetadataService/GetMetadata")] + common
                          + [("content-type", "application/grpc"), ("te", "trailers")])
        conn.send_data(grpc_id, grpc_frame, end_stream=True)
        headers = {http_id: {}, grpc_id: {}}
        body = {http_id: b"", grpc_id: b""}
        ended = set()
        with socket.create_connection((self.svc.host, self.svc.port), timeout=10) as sock:
            sock.sendall(conn.data_to_send())
            deadline = time.monotonic() + 20
            while ended != {http_id, grpc_id} and time.monotonic() < deadline:
                data = sock.recv(65536)
                if not data:
                    break
                for ev in conn.receive_data(data):
                    if isinstance(ev, (h2.events.ResponseReceived, h2.events.TrailersReceived)):
                        headers[ev.stream_id].update(
                            (k.decode(), v.decode()) for k, v in ev.headers)
                    elif isinstance(ev, h2.events.DataReceived):
                        body[ev.stream_id] += ev.data
                        conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset)):
                        ended.add(ev.stream_id)
                sock.sendall(conn.data_to_send())
        self.assertEqual(ended, {http_id, grpc_id}, (headers, body))
        self.assertEqual(headers[http_id][":status"], "404", body[http_id])
        self.assertEqual(headers[http_id]["content-type"], "application/json")
        self.assertIn("error", json.loads(body[http_id]))
        self.assertEqual(headers[grpc_id][":status"], "200")
        self.assertEqual(headers[grpc_id]["grpc-status"], str(grpc.StatusCode.NOT_FOUND.value[0]))

class H2cTimeoutTest(unittest.TestCase):
    """An h2c request whose body does not arrive within api.request_timeout is
    answered 408 and counted in http_requests_total, as over HTTP/1.1."""

    def test_request_timeout_is_counted(self):
        svc = Service("metadata", CONFIG.replace("api:\n", "api:\n  request_timeout: 1s\n"))
        svc.start()
        try:
            before = harness.scrape(svc)
            conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
            conn.initiate_connection()
            sid = conn.get_next_available_stream_id()
            conn.send_headers(sid, [(":method", "PUT"), (":path", "/metadata"),
                                    (":scheme", "http"), (":authority", svc.target),
                                    ("content-type", "application/json"),
                                    ("content-length", "1000")])
            conn.send_data(sid, b'{"id": "slow"')  # and the rest never comes
            status = None
            with socket.create_connection((svc.host, svc.port), timeout=10) as sock:
                sock.sendall(conn.data_to_send())
                deadline = time.monotonic() + 20
                while status is None and time.monotonic() < deadline:
                    data = sock.recv(65536)
                    if not data:
                        break
                    for ev in conn.receive_data(data):
                        if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == sid:
                            status = dict(ev.headers)[b":status"].decode()
                    sock.sendall(conn.data_to_send())
            self.assertEqual(status, "408")
            # Counted once, by the time the answer is out (one scrape later at most).
            after = harness.scrape(svc)
            self.assertEqual(harness.metric(after, "http_requests_total", code="408")
                             - harness.metric(before, "http_requests_total", code="408"), 1)
        finally:
            svc.stop()
            svc.__exit__()


if __name__ == "__main__":
    unittest.main()
