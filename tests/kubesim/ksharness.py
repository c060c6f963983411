"""Test harness for kubesim: start `tests/kubesim/run`, drive it with the real
kubectl, watch the API, stop it (SIGTERM: a node drain) and check nothing is left.

kubesim is the Kubernetes API test double (no real cluster can run here): the pods
are the real binaries under test."""
import atexit
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MOVIE_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
BIN_DIR = os.environ.get("MOVIE_BIN_DIR", os.path.join(SOURCE_DIR, "build", "bin"))
sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "integration"))
KUBECTL = "/usr/bin/kubectl"

_started = []


@atexit.register
def _kill_leftovers():
    for p in _started:
        if p.poll() is None:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except OSError:
                pass
            p.wait()


def wait_for(pred, timeout, what, interval=0.1):
    """Poll pred() until it returns a true value; AssertionError after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            v = pred()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - report the last error on timeout
            last = e
        time.sleep(interval)
    raise AssertionError("timed out after %ss waiting for %s%s" % (
        timeout, what, (" (last error: %r)" % last) if last else ""))


class Kubesim:
    def __init__(self, images=None, workdir=None):
        self.dir = workdir or tempfile.mkdtemp(prefix="kubesim-")
        self.images = images
        self.proc = None

    def start(self, timeout=30):
        args = ["/usr/bin/python3", os.path.join(HERE, "run"), self.dir, "--bin-dir", BIN_DIR]
        if self.images:
            path = os.path.join(self.dir, "images.yaml")
            import yaml
            with open(path, "w") as f:
                yaml.safe_dump(self.images, f)
            args += ["--images", path]
        self.out = open(os.path.join(self.dir + ".out"), "ab")
        self.proc = subprocess.Popen(args, stdout=self.out, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        _started.append(self.proc)
        wait_for(lambda: os.path.exists(os.path.join(self.dir, "ready")) or
                 self.proc.poll() is not None, timeout, "kubesim ready")
        if self.proc.poll() is not None:
            raise RuntimeError("kubesim exited %s: %s" % (self.proc.returncode, self.output()))
        self.kubeconfig = os.path.join(self.dir, "kubeconfig")
        with open(os.path.join(self.dir, "ready")) as f:
            url = f.read().strip()
        self.port = int(url.rsplit(":", 1)[1])
        return self

    def output(self):
        try:
            with open(self.dir + ".out", "rb") as f:
                return f.read().decode("utf-8", "replace")[-5000:]
        except OSError:
            return ""

    def kubectl(self, *args, check=True, timeout=120, input=None):
        env = dict(os.environ, KUBECONFIG=self.kubeconfig)
        p = subprocess.run([KUBECTL] + list(args), capture_output=True, text=True, env=env,
                           timeout=timeout, input=input)
        if check and p.returncode != 0:
            raise AssertionError("kubectl %s failed (%d):\n%s%s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p

    def get_json(self, *args):
        return json.loads(self.kubectl("get", "-o", "json", *args).stdout)

    def api(self, method, path, body=None, ctype="application/json"):
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            c.request(method, path, body=json.dumps(body) if body is not None else None,
                      headers={"Content-Type": ctype})
            r = c.getresponse()
            data = r.read()
            return r.status, (json.loads(data) if data[:1] in (b"{", b"[") else data)
        finally:
            c.close()

    def pod_processes(self):
        """PIDs whose working directory is inside this kubesim's pod directories."""
        pods_dir = os.path.join(self.dir, "pods")
        out = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                cwd = os.readlink("/proc/%s/cwd" % d)
            except OSError:
                continue
            if cwd.startswith(pods_dir + "/"):
                out.append(int(d))
        return out

    def stop(self, timeout=150):
        """SIGTERM (node drain), wait; returns the exit status."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            raise
        finally:
            self.out.close()


class Watch(threading.Thread):
    """A raw watch on the API (list, then watch from its resourceVersion): every event is
    passed to on_event(type, obj) in order, on this thread."""

    def __init__(self, ks, path, on_event):
        super().__init__(daemon=True)
        self.ks, self.path, self.on_event = ks, path, on_event
        self.stop_ev = threading.Event()
        self.errors = []
        self.synced = False  # the initial list has been delivered

    def run(self):
        try:
            st, lst = self.ks.api("GET", self.path)
            for it in lst["items"]:
                self.on_event("ADDED", it)
            self.synced = True
            rv = lst["metadata"]["resourceVersion"]
            while not self.stop_ev.is_set():
                c = http.client.HTTPConnection("127.0.0.1", self.ks.port, timeout=30)
                sep = "&" if "?" in self.path else "?"
                c.request("GET", "%s%swatch=1&resourceVersion=%s&timeoutSeconds=20&"
                          "allowWatchBookmarks=true" % (self.path, sep, rv))
                r = c.getresponse()
                buf = b""
                while not self.stop_ev.is_set():
                    chunk = r.read1(65536) if hasattr(r, "read1") else r.read(1)
                    if not chunk:
                        break
                    buf += chunk
                    while b"\n" in buf:
                        line, buf = buf.split(b"\n", 1)
                        if not line.strip():
                            continue
                        ev = json.loads(line)
                        if ev["type"] == "ERROR":
                            raise RuntimeError("watch error: %r" % ev)
                        rv = ev["object"]["metadata"]["resourceVersion"]
                        if ev["type"] != "BOOKMARK":
                            self.on_event(ev["type"], ev["object"])
                c.close()
        except Exception as e:  # noqa: BLE001 - surfaced by the test
            if not self.stop_ev.is_set():
                self.errors.append(e)

    def stop(self):
        self.stop_ev.set()
        self.join(35)
