"""The metadata service, real binary, real clients (python3-grpcio, curl, promtool, h2load)."""
import os
import signal
import struct
import subprocess
import tempfile
import threading
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()


def metadata_stub(svc):
    channel = grpc.insecure_channel(svc.target)
    return channel, S.movie_pb2_grpc.MetadataServiceStub(channel)


class MetadataGrpcTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("metadata", "storage:\n  driver: memory\napi:\n"
                          "  max_message_bytes: 2KiB\nshutdown:\n  drain_delay: 0s\n")
        cls.svc.start()
        cls.channel, cls.stub = metadata_stub(cls.svc)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.svc.stop()
        cls.svc.__exit__()

    def put(self, **fields):
        return self.stub.PutMetadata(S.movie_pb2.PutMetadataRequest(
            metadata=S.movie_pb2.Metadata(**fields)), timeout=5)

    def test_put_then_get(self):
        self.put(id="m1", title="Dune", description="Desert planet.", director="Villeneuve")
        resp = self.stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="m1"), timeout=5)
        self.assertEqual(resp.metadata.id, "m1")
        self.assertEqual(resp.metadata.title, "Dune")
        self.assertEqual(resp.metadata.description, "Desert planet.")
        self.assertEqual(resp.metadata.director, "Villeneuve")

    def test_put_replaces(self):
        self.put(id="m2", title="Old")
        self.put(id="m2", title="New", director="X")
        resp = self.stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="m2"), timeout=5)
        self.assertEqual(resp.metadata.title, "New")
        self.assertEqual(resp.metadata.director, "X")

    def test_unicode_roundtrip(self):
        self.put(id="m-ü", title="Amélie 🎬", director="Jeunet")
        resp = self.stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="m-ü"), timeout=5)
        self.assertEqual(resp.metadata.title, "Amélie 🎬")

    def assertStatus(self, code, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as ctx:
            fn(*args, **kwargs)
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        return ctx.exception

    def test_not_found(self):
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.stub.GetMetadata,
                          S.movie_pb2.GetMetadataRequest(movie_id="nope"), timeout=5)

    def test_empty_ids(self):
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.stub.GetMetadata,
                          S.movie_pb2.GetMetadataRequest(movie_id=""), timeout=5)
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, id="", title="x")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.stub.PutMetadata,
                          S.movie_pb2.PutMetadataRequest(), timeout=5)

    def test_unimplemented(self):
        call = self.channel.unary_unary("/MetadataService/DeleteMetadata")
        self.assertStatus(grpc.StatusCode.UNIMPLEMENTED, call, b"", timeout=5)
        call = self.channel.unary_unary("/NoSuchService/Get")
        self.assertStatus(grpc.StatusCode.UNIMPLEMENTED, call, b"", timeout=5)

    def test_malformed_protobuf_keeps_connection(self):
        call = self.channel.unary_unary("/MetadataService/GetMetadata")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, call, b"\xff\xff\xff\xff", timeout=5)
        self.put(id="after-bad", title="still fine")
        resp = self.stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="after-bad"),
                                     timeout=5)
        self.assertEqual(resp.metadata.title, "still fine")

    def test_oversized_message_keeps_connection(self):
        e = self.assertStatus(grpc.StatusCode.RESOURCE_EXHAUSTED, self.put, id="big",
                              title="x" * 5000)
        self.assertIn("larger", e.details())
        self.put(id="small", title="ok")
        resp = self.stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="small"), timeout=5)
        self.assertEqual(resp.metadata.title, "ok")

    def test_health_check(self):
        health = S.health_pb2_grpc.HealthStub(self.channel)
        serving = S.health_pb2.HealthCheckResponse.SERVING
        for name in ("", "MetadataService", "readiness", "liveness"):
            resp = health.Check(S.health_pb2.HealthCheckRequest(service=name), timeout=5)
            self.assertEqual(resp.status, serving, name)
        self.assertStatus(grpc.StatusCode.NOT_FOUND, health.Check,
                          S.health_pb2.HealthCheckRequest(service="Nope"), timeout=5)

    def test_concurrent_calls_on_one_connection(self):
        self.put(id="conc", title="c")
        futures = [self.stub.GetMetadata.future(S.movie_pb2.GetMetadataRequest(movie_id="conc"),
                                                timeout=10) for _ in range(200)]
        self.assertEqual({f.result().metadata.title for f in futures}, {"c"})


class MetadataHttpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("metadata", "storage:\n  driver: memory\nshutdown:\n  drain_delay: 0s\n")
        cls.svc.start()
        cls.base = "http://127.0.0.1:%d" % cls.svc.port

    @classmethod
    def tearDownClass(cls):
        cls.svc.stop()
        cls.svc.__exit__()

    def curl(self, *args):
        p = subprocess.run(["curl", "-s", "-o", "-", "-w", "\n%{http_code}"] + list(args),
                           capture_output=True, timeout=10)
        body, _, code = p.stdout.decode().rpartition("\n")
        return int(code), body

    def test_put_get_json(self):
        code, body = self.curl("-X", "PUT", "-H", "Content-Type: application/json", "-d",
                               '{"id":"h1","title":"Heat","description":"LA","director":"Mann"}',
                               self.base + "/metadata")
        self.assertIn(code, (200, 204))
        code, body = self.curl(self.base + "/metadata?id=h1")
        self.assertEqual(code, 200)
        import json
        self.assertEqual(json.loads(body), {"id": "h1", "title": "Heat", "description": "LA",
                                            "director": "Mann"})

    def test_errors(self):
        self.assertEqual(self.curl(self.base + "/metadata?id=missing")[0], 404)
        self.assertEqual(self.curl(self.base + "/metadata")[0], 400)
        self.assertEqual(self.curl(self.base + "/metadata?id=")[0], 400)
        self.assertEqual(self.curl("-X", "PUT", "-d", "{not json", self.base + "/metadata")[0], 400)
        self.assertEqual(self.curl("-X", "PUT", "-d", '{"title":"no id"}',
                                   self.base + "/metadata")[0], 400)
        self.assertEqual(self.curl("-X", "PUT", "-d", '{"id":5}', self.base + "/metadata")[0], 400)
        self.assertEqual(self.curl("-X", "DELETE", self.base + "/metadata?id=1")[0], 405)
        self.assertEqual(self.curl(self.base + "/nope")[0], 404)

    def test_body_too_large(self):
        big = '{"id":"x","title":"' + "a" * (2 * 1024 * 1024) + '"}'
        path = os.path.join(self.svc.workdir, "big.json")
        with open(path, "w") as f:
            f.write(big)
        self.assertEqual(self.curl("-X", "PUT", "--data-binary", "@" + path,
                                   self.base + "/metadata")[0], 413)

    def test_probes(self):
        self.assertEqual(self.curl(self.base + "/healthz")[0], 200)
        self.assertEqual(self.curl(self.base + "/readyz")[0], 200)

    def test_keepalive_pipelined(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /metadata?id=missing HTTP/1.1\r\nHost: x\r\n\r\n"
                      b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
        import re
        statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", data)
        self.assertEqual(statuses, [b"200", b"404", b"200"])

    def test_long_pipeline(self):
        """Thousands of pipelined requests in one segment are all answered (no deep
        recursion per request, no stall after a fixed number of them)."""
        import socket
        n = 5000
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=10) as s:
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" * n)
            data = b""
            deadline = time.monotonic() + 20
            while data.count(b"HTTP/1.1 200 OK") < n and time.monotonic() < deadline:
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                data += chunk
        self.assertEqual(data.count(b"HTTP/1.1 200 OK"), n)

    def test_http10_short_request(self):
        import socket
        with socket.create_connection(("127.0.0.1", self.svc.port), timeout=5) as s:
            s.sendall(b"GET /healthz HTTP/1.0\r\n\r\n")
            data = s.recv(65536)
        self.assertTrue(data.startswith(b"HTTP/1.1 200"), data)

    def test_metrics_pass_promtool(self):
        # Traffic first, so every family has samples.
        self.curl(self.base + "/metadata?id=missing")
        code, body = self.curl(self.base + "/metrics")
        self.assertEqual(code, 200)
        self.assertIn('grpc_server_handled_total{grpc_type="unary",grpc_service="MetadataService",'
                      'grpc_method="GetMetadata",grpc_code="OK"}', body)
        p = subprocess.run(["promtool", "check", "metrics"], input=body.encode(),
                           capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def test_request_logs_are_json(self):
        self.curl(self.base + "/metadata?id=logcheck")
        time.sleep(0.1)
        lines = self.svc.log_lines()
        self.assertTrue(any(l.get("msg") == "http" and l.get("status") == 404 for l in lines))
        for l in lines:
            for key in ("time", "level", "msg"):
                self.assertIn(key, l)


class MetadataSqliteTest(unittest.TestCase):
    def test_data_survives_restart(self):
        workdir = tempfile.mkdtemp(prefix="movie-sqlite-")
        cfg = "storage:\n  driver: sqlite\n  sqlite:\n    path: db/meta.db\nshutdown:\n  drain_delay: 0s\n"
        with Service("metadata", cfg, workdir=workdir) as svc:
            svc.start()
            ch, stub = metadata_stub(svc)
            stub.PutMetadata(S.movie_pb2.PutMetadataRequest(metadata=S.movie_pb2.Metadata(
                id="keep", title="Persistent", director="D")), timeout=5)
            ch.close()
            self.assertEqual(svc.stop(), 0)
        self.assertTrue(os.path.exists(os.path.join(workdir, "db", "meta.db")))
        with Service("metadata", cfg, workdir=workdir) as svc:
            svc.start()
            ch, stub = metadata_stub(svc)
            resp = stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="keep"), timeout=5)
            ch.close()
            self.assertEqual(resp.metadata.title, "Persistent")
            self.assertEqual(svc.stop(), 0)


class CheckConfigTest(unittest.TestCase):
    def write(self, text):
        fd, path = tempfile.mkstemp(suffix=".yaml")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        return path

    def test_repo_configs_are_valid(self):
        base = os.path.join(harness.SOURCE_DIR, "configs", "metadata")
        # Staging and production read the password from a mounted Secret.
        secret = self.write("s3cret\n")
        for env in ("dev", "staging", "production"):
            rc, err = harness.run_check_config(
                "metadata", [os.path.join(base, "base.yaml"), os.path.join(base, env + ".yaml")],
                env={"METADATA_STORAGE_MYSQL_PASSWORD_FILE": secret})
            self.assertEqual(rc, 0, err)
        rc, err = harness.run_check_config(
            "metadata", [os.path.join(base, "base.yaml"), os.path.join(base, "production.yaml")])
        self.assertEqual(rc, 1)
        self.assertIn("cannot read secret file", err)

    def test_errors_have_positions(self):
        cases = [
            ("api:\n  port: 70000\n", ":2:9:", "api.port"),
            ("api:\n  prot: 1\n", ":2:3:", "api.prot"),
            ("api:\n  port: eighty\n", ":2:9:", "api.port"),
            ("log:\n  level: loud\n", ":2:10:", "log.level"),
            ("api:\n  port: [1\n", ":", ""),
            ("storage:\n  driver: postgres\n", ":2:11:", "storage.driver"),
        ]
        for text, where, key in cases:
            path = self.write(text)
            rc, err = harness.run_check_config("metadata", [path])
            self.assertEqual(rc, 1, text)
            self.assertIn(path + where, err, text)
            self.assertIn(key, err, text)

    def test_env_override_and_error(self):
        path = self.write("api:\n  port: 9000\n")
        rc, err = harness.run_check_config("metadata", [path], env={"METADATA_API_PORT": "0"})
        self.assertEqual(rc, 1)
        self.assertIn("METADATA_API_PORT", err)
        rc, err = harness.run_check_config("metadata", [path], env={"METADATA_API_PROT": "1"})
        self.assertEqual(rc, 1)
        self.assertIn("METADATA_API_PROT", err)

    def test_missing_file(self):
        rc, err = harness.run_check_config("metadata", ["/nonexistent/x.yaml"])
        self.assertEqual(rc, 1)
        self.assertIn("/nonexistent/x.yaml", err)


class ConnectionAgeTest(unittest.TestCase):
    def test_max_connection_age_rebalances_without_errors(self):
        """api.max_connection_age: the server sends GOAWAY to old connections; a
        client reconnects (to whichever pod a Service picks) and loses no call."""
        with Service("metadata", "storage:\n  driver: memory\napi:\n  max_connection_age: 1s\n"
                     "shutdown:\n  drain_delay: 0s\n") as svc:
            svc.start()
            ch, stub = metadata_stub(svc)
            stub.PutMetadata(S.movie_pb2.PutMetadataRequest(metadata=S.movie_pb2.Metadata(
                id="age", title="t")), timeout=5)
            accepted_before = harness.scrape(svc)["server_connections_accepted_total"]
            deadline = time.monotonic() + 4.5
            calls = 0
            while time.monotonic() < deadline:
                resp = stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="age"), timeout=5)
                self.assertEqual(resp.metadata.title, "t")
                calls += 1
                time.sleep(0.01)
            accepted = harness.scrape(svc)["server_connections_accepted_total"] - accepted_before
            ch.close()
            self.assertGreater(calls, 100)
            # One scrape connection per scrape (HTTP/1.1) plus at least two gRPC
            # reconnections within 4.5 s of 1 s-old connections.
            self.assertGreaterEqual(accepted, 1 + 2)
            self.assertEqual(svc.stop(), 0)


class GracefulShutdownTest(unittest.TestCase):
    def test_watch_sees_not_serving_on_sigterm(self):
        with Service("metadata", "storage:\n  driver: memory\nshutdown:\n  drain_delay: 1s\n"
                     "  grace_period: 5s\n") as svc:
            svc.start()
            channel = grpc.insecure_channel(svc.target)
            health = S.health_pb2_grpc.HealthStub(channel)
            stream = health.Watch(S.health_pb2.HealthCheckRequest(service=""), timeout=20)
            first = next(stream)
            self.assertEqual(first.status, S.health_pb2.HealthCheckResponse.SERVING)
            t0 = time.monotonic()
            svc.signal(signal.SIGTERM)
            second = next(stream)
            self.assertEqual(second.status, S.health_pb2.HealthCheckResponse.NOT_SERVING)
            self.assertLess(time.monotonic() - t0, 0.9)  # at once, not after the drain delay
            # Still serving during the drain delay.
            stub = S.movie_pb2_grpc.MetadataServiceStub(channel)
            with self.assertRaises(grpc.RpcError) as ctx:
                stub.GetMetadata(S.movie_pb2.GetMetadataRequest(movie_id="x"), timeout=5)
            self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)
            status, _ = svc.http("GET", "/readyz")
            self.assertEqual(status, 503)
            self.assertEqual(svc.proc.wait(10), 0)
            channel.close()

    def test_sigterm_under_load_loses_nothing(self):
        harness.require_program(self, "h2load", "nghttp2-client")
        grace = 10
        with Service("metadata", "storage:\n  driver: memory\nlog:\n  requests: false\n"
                     "shutdown:\n  drain_delay: 4s\n  grace_period: %ds\n" % grace) as svc:
            svc.start()
            ch, stub = metadata_stub(svc)
            stub.PutMetadata(S.movie_pb2.PutMetadataRequest(metadata=S.movie_pb2.Metadata(
                id="1", title="t")), timeout=5)
            ch.close()
            body = S.movie_pb2.GetMetadataRequest(movie_id="1").SerializeToString()
            data = os.path.join(svc.workdir, "req.bin")
            with open(data, "wb") as f:
                f.write(struct.pack(">BI", 0, len(body)) + body)
            # 2 s of load; SIGTERM lands in the middle, inside the drain delay.
            load = subprocess.Popen(
                ["h2load", "-D", "2", "-c", "20", "-m", "10", "-t", "1", "-d", data,
                 "-H", "content-type: application/grpc", "-H", "te: trailers",
                 "http://%s/MetadataService/GetMetadata" % svc.target],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            time.sleep(0.5)
            t0 = time.monotonic()
            svc.signal(signal.SIGTERM)
            out = load.communicate(timeout=60)[0].decode()
            rc = svc.proc.wait(timeout=grace + 10)
            elapsed = time.monotonic() - t0
        self.assertEqual(rc, 0, svc.logs()[-2000:])
        self.assertLess(elapsed, 4 + grace + 1)
        import re
        m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                      r"(\d+) failed, (\d+) errored", out)
        self.assertIsNotNone(m, out)
        total, started, done, succeeded, failed, errored = map(int, m.groups())
        self.assertEqual(failed, 0, out)
        self.assertEqual(errored, 0, out)
        self.assertGreater(succeeded, 1000, out)
        self.assertEqual(succeeded, done, out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
