#!/usr/bin/python3
"""A scripted test double of the Kubernetes API server, for moviectl's client
unit tests only (no real API server can run here; kubesim is the integration
double). It replays recorded responses: the test POSTs a script to /__script
and reads what the client sent from /__log.

Script: {"routes": [{"method": "GET", "path": "/apis/...", "query": {"watch": "1"},
                     "responses": [RESPONSE, ...]}]}
A route matches on method, exact path and a subset of the query; its responses
are used in order and the last one repeats. RESPONSE:
  {"status": 200, "headers": {...}, "body": <JSON value or string>,
   "delay_ms": N,                      # before the status line (slow server)
   "chunks": ["...", ...],             # chunked body (watch streams)
   "chunk_delay_ms": N, "close_early": true}  # no final chunk: connection lost

Run: fake_apiserver.py PORT_FILE [CERT KEY [CLIENT_CA]]  (TLS when CERT given).
Binds 127.0.0.1 on a free port below 32768 and writes it to PORT_FILE.
"""
import json
import os
import random
import socket
import ssl
import sys
import tempfile
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class State:
    def __init__(self):
        self.lock = threading.Lock()
        self.routes = []
        self.used = []
        self.log = []


STATE = State()


def status_body(code, reason, message):
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason, "code": code}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n).decode("utf-8", "replace") if n else ""

    def _send(self, status, body, headers=None):
        data = body if isinstance(body, (bytes, bytearray)) else (
            body.encode() if isinstance(body, str) else json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self):
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        body = self._body()
        if url.path == "/__script" and self.command == "POST":
            script = json.loads(body)
            with STATE.lock:
                STATE.routes = script.get("routes", [])
                STATE.used = [0] * len(STATE.routes)
                STATE.log = []
            return self._send(200, {"ok": True})
        if url.path == "/__log":
            with STATE.lock:
                return self._send(200, STATE.log)
        peer_cert = None
        if isinstance(self.connection, ssl.SSLSocket):
            c = self.connection.getpeercert()
            if c:
                peer_cert = dict(x[0] for x in c.get("subject", ()))
        with STATE.lock:
            STATE.log.append({"method": self.command, "path": url.path, "query": query,
                              "headers": {k.lower(): v for k, v in self.headers.items()},
                              "body": body, "client_cert": peer_cert})
            resp = None
            for i, r in enumerate(STATE.routes):
                if r.get("method", "GET") != self.command or r["path"] != url.path:
                    continue
                if any(query.get(k) != v for k, v in r.get("query", {}).items()):
                    continue
                if any(k in query for k in r.get("absent", [])):
                    continue
                rs = r["responses"]
                resp = rs[min(STATE.used[i], len(rs) - 1)]
                STATE.used[i] += 1
                break
        if resp is None:
            return self._send(404, status_body(404, "NotFound", "no route for %s %s" % (
                self.command, url.path)))
        if resp.get("delay_ms"):
            time.sleep(resp["delay_ms"] / 1000.0)
        if "chunks" not in resp:
            return self._send(resp.get("status", 200), resp.get("body", {}), resp.get("headers"))
        self.send_response(resp.get("status", 200))
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        for k, v in resp.get("headers", {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        for chunk in resp["chunks"]:
            data = chunk.encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
            if resp.get("chunk_delay_ms"):
                time.sleep(resp["chunk_delay_ms"] / 1000.0)
        if resp.get("close_early"):
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")

    def _safe(self):
        try:
            self._handle()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (timeout tests)

    do_GET = do_POST = do_PATCH = do_PUT = do_DELETE = _safe


def serve(port_file, cert=None, key=None, client_ca=None):
    """Start on a free loopback port below 32768; returns the server."""
    rnd = random.Random(os.getpid())
    for _ in range(200):
        port = rnd.randrange(20000, 32000)
        try:
            srv = ThreadingHTTPServer(("127.0.0.1", port), Handler)
            break
        except OSError:
            continue
    else:
        raise SystemExit("no free port")
    srv.daemon_threads = True
    if cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        if client_ca:
            ctx.load_verify_locations(client_ca)
            ctx.verify_mode = ssl.CERT_OPTIONAL
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    if port_file:
        tmp = port_file + ".tmp"
        with open(tmp, "w") as f:
            f.write(str(srv.server_address[1]))
        os.rename(tmp, port_file)
    return srv


if __name__ == "__main__":
    a = sys.argv[1:]
    s = serve(a[0], *(a[1:4]))
    s.serve_forever()


# ---- for the CLI test scripts that drive moviectl against this server in-process ----

def script(routes):
    """Replace the scripted routes and clear the request log."""
    with STATE.lock:
        STATE.routes = routes
        STATE.used = [0] * len(routes)
        STATE.log = []


def request_log():
    """A copy of the requests seen since the last script()."""
    with STATE.lock:
        return list(STATE.log)


def load_fixture(fixture_dir, name):
    with open(os.path.join(fixture_dir, name)) as f:
        return json.load(f)


class Checks:
    """check(cond, what): counts every check, keeps and prints the failed ones."""

    def __init__(self):
        self.count = 0
        self.failures = []

    def __call__(self, cond, what):
        self.count += 1
        if not cond:
            self.failures.append(what)
            print("FAIL:", what, file=sys.stderr)


def serve_in_thread_with_kubeconfig(tmp_prefix, token):
    """Serve (plain HTTP) from a daemon thread and write a kubeconfig for it
    (context namespace `prod`, bearer `token`) into a new temporary directory.
    Returns (server, that directory, the kubeconfig's path)."""
    srv = serve(None)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    tmp = tempfile.mkdtemp(prefix=tmp_prefix)
    kubeconfig = os.path.join(tmp, "config")
    with open(kubeconfig, "w") as f:
        f.write("apiVersion: v1\nkind: Config\ncurrent-context: t\n"
                "clusters:\n- name: c\n  cluster: {server: 'http://127.0.0.1:%d'}\n"
                "users:\n- name: u\n  user: {token: %s}\n"
                "contexts:\n- name: t\n  context: {cluster: c, user: u, namespace: prod}\n"
                % (srv.server_address[1], token))
    return srv, tmp, kubeconfig
