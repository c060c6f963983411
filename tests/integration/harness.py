"""Integration-test harness: start the real binaries on loopback with an inline
YAML config, speak real protocols to them (python3-grpcio, HTTP/1.1), stop them.

Run with Debian's /usr/bin/python3 (it sees python3-grpcio). Environment:
  MOVIE_BIN_DIR    where the binaries are (default: ../../build/bin)
  MOVIE_SOURCE_DIR the repository (default: ../..)
"""
import atexit
import http.client
import json
import os
import shutil
import random
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MOVIE_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
BIN_DIR = os.environ.get("MOVIE_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))


def _read_services():
    """services/services.txt: {name: (grpc_service, default_port)}, in start order."""
    out = {}
    with open(os.path.join(SOURCE_DIR, "services", "services.txt")) as f:
        for line in f:
            fields = line.split()
            if fields and not fields[0].startswith("#"):
                out[fields[0]] = (fields[1], int(fields[2]))
    return out


# The services of the movie system (the one list, services/services.txt).
SERVICES = _read_services()

_stubs = None

# Every process a test started, so that none outlives the test run, even when a
# setUp or setUpClass fails before its cleanup was registered.
_started = []


@atexit.register
def _kill_leftovers():
    for proc in _started:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def stubs():
    """Generate (once per process) and import the gRPC stubs of api/*.proto."""
    global _stubs
    if _stubs is not None:
        return _stubs
    out = tempfile.mkdtemp(prefix="movie-stubs-")
    from grpc_tools import protoc
    api = os.path.join(SOURCE_DIR, "api")
    for proto in ("movie.proto", "health.proto"):
        rc = protoc.main(["protoc", "-I" + api, "--python_out=" + out, "--grpc_python_out=" + out,
                          os.path.join(api, proto)])
        if rc != 0:
            raise RuntimeError("protoc failed for " + proto)
    sys.path.insert(0, out)
    import movie_pb2, movie_pb2_grpc, health_pb2, health_pb2_grpc  # noqa: E401
    _stubs = type("Stubs", (), dict(movie_pb2=movie_pb2, movie_pb2_grpc=movie_pb2_grpc,
                                     health_pb2=health_pb2, health_pb2_grpc=health_pb2_grpc))
    return _stubs


def require_program(testcase, name, package):
    """The path of program `name`. A missing tool fails the test, never skips
    it: a suite that passes by skipping proves nothing (issue 14)."""
    path = shutil.which(name)
    if path is None:
        testcase.fail("%s is required (Debian package %s: scripts/install-deps.sh)"
                      % (name, package))
    return path


def free_port():
    """A free TCP port on 127.0.0.1 below 32768 (never the ephemeral range)."""
    for _ in range(200):
        port = random.randint(20000, 32000)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


class Service:
    """One running service process."""

    def __init__(self, program, config_yaml="", env=None, args=None, workdir=None, port=None,
                 host="127.0.0.1"):
        self.program = program
        self.host = host
        self.port = port or free_port()
        self.workdir = workdir or tempfile.mkdtemp(prefix="movie-%s-" % program)
        self.config_path = os.path.join(self.workdir, "config.yaml")
        with open(self.config_path, "w") as f:
            f.write(config_yaml)
        prefix = program.upper().replace("-", "_")
        # The service's own prefix is reserved for its options (an unknown one is an
        # error): drop variables of the test environment that share it (MOVIE_...).
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(prefix + "_")}
        # Loopback only, on the chosen port; the environment layer wins over the file.
        self.env[prefix + "_API_HOST"] = host
        self.env[prefix + "_API_PORT"] = str(self.port)
        self.env.update(env or {})
        self.args = args or []
        self.log_path = os.path.join(self.workdir, "%s.log" % program)
        self.proc = None

    def start(self, wait_ready=True, timeout=15):
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN_DIR, self.program), "--config", self.config_path] + self.args,
            cwd=self.workdir, env=self.env, stdout=self.log, stderr=subprocess.STDOUT)
        _started.append(self.proc)
        if wait_ready:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=15):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("%s exited with %s:\n%s" % (self.program, self.proc.returncode,
                                                               self.logs()))
            try:
                status, _ = self.http("GET", "/readyz", timeout=1)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("%s not ready after %ss:\n%s" % (self.program, timeout, self.logs()))

    def http(self, method, path, body=None, timeout=5, headers=None):
        conn = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def http_json(self, method, path, body=None):
        status, data = self.http(method, path, body=json.dumps(body) if body is not None else None)
        return status, (json.loads(data) if data and data[:1] in (b"{", b"[", b"n") or
                        data[:1].isdigit() else data)

    @property
    def target(self):
        return "%s:%d" % (self.host, self.port)

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=30):
        """SIGTERM and wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        if rc != 0:
            # A failed stop is often a sanitizer report at exit: show it, the
            # work directory is gone by the time anyone looks.
            sys.stderr.write("--- %s exited %s; last lines of its log:\n%s\n" % (
                self.program, rc, self.logs()[-8000:]))
        return rc

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def logs(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def log_lines(self):
        lines = []
        for line in self.logs().splitlines():
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
        return lines

    def wait_log_line(self, pred, timeout=10):
        """The first log line (parsed) for which pred holds, polled until timeout.
        Lines reach stdout through the logger's writer thread, a few ms after
        the request that logged them was answered (docs/internals/log.md)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.log_lines():
                if pred(line):
                    return line
            if time.monotonic() >= deadline:
                return None
            time.sleep(0.02)  # polling a condition with a deadline

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        if self.proc is not None and hasattr(self, "log"):
            self.log.close()


def run_check_config(program, files, env=None):
    """Run PROGRAM --check-config with the given config files; (status, stderr)."""
    args = [os.path.join(BIN_DIR, program)]
    for f in files:
        args += ["--config", f]
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.run(args + ["--check-config"], capture_output=True, env=e, timeout=30)
    return p.returncode, p.stderr.decode()


def parse_metrics(text):
    """Prometheus text exposition as {'name{labels}': value} (comments skipped)."""
    samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        key, _, value = line.rpartition(" ")
        samples[key] = float(value)
    return samples


def scrape(svc):
    """Prometheus text from /metrics as {'name{labels}': value}."""
    status, data = svc.http("GET", "/metrics")
    assert status == 200
    return parse_metrics(data.decode())


_SAMPLE_KEY = re.compile(r"([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def metric(samples, name, **labels):
    """Sum of the samples of `name` (exactly that name) whose labels include
    `labels` (exact values); 0 when none matches. `samples` as scrape returns."""
    total = 0.0
    for key, value in samples.items():
        m = _SAMPLE_KEY.match(key)
        if not m or m.group(1) != name:
            continue
        have = dict(_LABEL.findall(m.group(3) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            total += value
    return total
