"""`make run` (scripts/run.sh) fails fast and stops everything it started
(issue 12, item 15).

- A service that cannot start (its port taken by a listener that never
  answers, so a curl without a timeout hangs) makes the script exit non-zero
  within seconds, naming the service and the reason; it used to wait ~40 s and
  exit 0.
- A SIGTERM to the process group of `make run` (what a terminal closing, a
  supervisor or `kill -- -PGID` sends) stops every process the script started;
  the movie service used to outlive it because make's own second SIGTERM killed
  the script in the middle of its stop.

The script prints "run: started NAME pid N port P" for each service: those are
the PIDs checked. Ports are chosen free (below 32768) through RUN_*_PORT; data
and logs go to a temporary RUN_DIR."""
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import grpc

import harness

BUILD_DIR = os.path.dirname(os.path.abspath(harness.BIN_DIR))
S = harness.stubs()
RUN_SH = os.path.join(harness.SOURCE_DIR, "scripts", "run.sh")


def alive(pid):
    """True while pid exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def parent_pid(pid):
    with open("/proc/%d/stat" % pid) as f:
        return int(f.read().rsplit(")", 1)[1].split()[1])


def wait_gone(pids, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


class MakeRunTest(unittest.TestCase):
    def setUp(self):
        self.run_dir = tempfile.mkdtemp(prefix="movie-run-")
        self.ports = {}
        for name in harness.SERVICES:
            port = harness.free_port()
            while port in self.ports.values():
                port = harness.free_port()
            self.ports[name] = port
        # The services' own prefixes are reserved for their options (ctest sets
        # MOVIE_BIN_DIR and MOVIE_SOURCE_DIR): keep them out of the services' way.
        self.env = {k: v for k, v in os.environ.items()
                    if not k.startswith(tuple(f"{n.upper()}_" for n in harness.SERVICES))}
        self.env.update(RUN_DIR=self.run_dir, RUN_READY_TIMEOUT="30")
        self.env.update({f"RUN_{name.upper()}_PORT": str(port) for name, port in self.ports.items()})
        self.proc = None
        self.pids = []

    def tearDown(self):
        # Whatever the outcome, nothing of this test survives it.
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        # The services run in sessions of their own: the group kill misses them.
        if self.proc:
            self.started_pids()
        for pid in self.pids:
            if alive(pid):
                os.kill(pid, signal.SIGKILL)

    def start(self, args):
        self.err_path = os.path.join(self.run_dir, "run.stderr")
        self.err = open(self.err_path, "wb")
        self.proc = subprocess.Popen(args, env=self.env, stdout=subprocess.DEVNULL,
                                     stderr=self.err, start_new_session=True)
        self.addCleanup(self.err.close)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def started_pids(self):
        pids = [int(p) for p in re.findall(r"^run: started \w+ pid (\d+)", self.stderr(), re.M)]
        self.pids = pids
        return pids

    def wait_for(self, text, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.stderr():
                return True
            if self.proc.poll() is not None:
                return text in self.stderr()
            time.sleep(0.1)
        return False

    def check_port_taken(self, victim):
        # Listening but never accepting: a connection is queued and a request
        # on it is never answered.
        blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        blocker.bind(("127.0.0.1", self.ports[victim]))
        blocker.listen(16)
        self.addCleanup(blocker.close)
        t0 = time.monotonic()
        self.start([RUN_SH, BUILD_DIR])
        try:
            status = self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.fail("run.sh still waiting after 60 s:\n" + self.stderr())
        elapsed = time.monotonic() - t0
        err = self.stderr()
        self.assertNotEqual(status, 0, err)
        self.assertLess(elapsed, 15, err)
        self.assertRegex(err, r"run: %s \(port %d\) exited with status 1 before it was ready"
                         % (victim, self.ports[victim]))
        self.assertIn("Address already in use", err)
        pids = self.started_pids()
        self.assertEqual(len(pids), 3, err)
        self.assertEqual(wait_gone(pids, 10), [], err)

    def test_metadata_port_taken_fails_fast(self):
        self.check_port_taken("metadata")

    def test_movie_port_taken_fails_fast(self):
        self.check_port_taken("movie")

    def check_group_sigterm(self, args, extra_terms, freeze_movie=False):
        self.start(args)
        self.assertTrue(self.wait_for("run: ready", 90), self.stderr())
        pids = self.started_pids()
        self.assertEqual(len(pids), 3, self.stderr())
        for pid in pids:
            self.assertTrue(alive(pid))
        script = parent_pid(pids[0])  # run.sh itself (under make: make's child)
        # An open health Watch keeps movie draining for its grace period (5 s in
        # dev.yaml): the stop takes long enough for a second signal to land in it.
        channel = grpc.insecure_channel("127.0.0.1:%d" % self.ports["movie"])
        self.addCleanup(channel.close)
        watch = S.health_pb2_grpc.HealthStub(channel).Watch(
            S.health_pb2.HealthCheckRequest(service=""))
        self.addCleanup(watch.cancel)
        self.assertEqual(next(watch).status, S.health_pb2.HealthCheckResponse.SERVING)
        if freeze_movie:
            # A service that does not stop by itself (hung): the script must
            # still end it, after RUN_STOP_TIMEOUT, with SIGKILL.
            os.kill(pids[2], signal.SIGSTOP)
        os.killpg(self.proc.pid, signal.SIGTERM)
        # Whoever forwards signals (make, a supervisor, an impatient user) may
        # send more while the script stops; it must still finish its stop.
        for _ in range(extra_terms):
            time.sleep(0.02)
            if alive(script):
                os.kill(script, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while alive(script) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(script), "still running 60 s after SIGTERM:\n" + self.stderr())
        # The script's contract: it exits only once everything it started is
        # gone (and reaped), so this is checked at once, not polled.
        left = [p for p in pids if alive(p)]
        self.assertEqual(left, [], "outlived the script: %r\n%s" % (left, self.stderr()))
        self.assertIn("run: stopped", self.stderr())
        self.proc.wait(timeout=30)

    def test_make_run_process_group_sigterm_stops_everything(self):
        self.check_group_sigterm(["make", "-s", "-C", harness.SOURCE_DIR, "run",
                                  "BUILD_DIR=" + BUILD_DIR], 0)

    def test_repeated_sigterm_during_stop(self):
        self.check_group_sigterm([RUN_SH, BUILD_DIR], 50)

    def test_repeated_sigterm_during_stop_of_a_hung_service(self):
        self.env["RUN_STOP_TIMEOUT"] = "3"
        self.check_group_sigterm([RUN_SH, BUILD_DIR], 50, freeze_movie=True)

    def test_demo_catalogue_served_on_chosen_ports(self):
        self.start([RUN_SH, BUILD_DIR])
        self.assertTrue(self.wait_for("run: ready", 90), self.stderr())
        self.started_pids()
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["movie"], timeout=5)
        conn.request("GET", "/movie?id=1")
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        self.assertEqual(resp.status, 200, body)
        self.assertIn(b"Shawshank", body)
        os.killpg(self.proc.pid, signal.SIGINT)
        self.assertEqual(self.proc.wait(timeout=60), 0, self.stderr())
        self.assertEqual(wait_gone(self.pids, 10), [])


if __name__ == "__main__":
    unittest.main()
