"""moviectl guard against kubesim (the Kubernetes test double: no real cluster can run here)
with the production overlay, MariaDB, a real Prometheus discovering the pods and steady
GetMovieDetails load on movie. For each kind of bad metadata version guard rolls back within
its policy; detection and completion seconds and the failed user requests are printed. Good
versions are never rolled back; a version bad outside the window is only reported; a guard
killed right after its rollback patch is restarted and stays consistent; two guards racing
make one rollback (the loser's guarded patch gets 422 and it re-decides; the same race with
a `kubectl set image` is made deterministic in tests/unit/moviectl/test_guard_cli.py); the
controller rolls back and counts it in /metrics; every request guard made is allowed by the
shipped Role.

One cluster for the file; the steps run in order (test_01 ... ) and each asserts its own
outcome. Measurements go to stdout as "MEASURE ..." lines."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import ksharness as K
import ksstack
from ksstack import N, NS

MOVIECTL = os.path.join(K.BIN_DIR, "moviectl")
DEP = "metadata-production"
WINDOW = 15  # seconds: the test policy's window
POLICY = """\
window: %ds
interval: 1s
baseline: 2m
checks:
  progress-deadline: {max: 60s}
  restarts: {max: 1}
  readiness: {grace: 12s, max-unready-share: 0.5}
  error-ratio: {min-requests: 40, max-increase: 0.05}
  latency-p99: {min-requests: 20, max-ratio: 3, min-increase: 20ms}
""" % WINDOW
BAD = {
    "movie-metadata:good1": {"METADATA_LOG_LEVEL": "info"},
    "movie-metadata:good2": {"METADATA_LOG_LEVEL": "info"},
    "movie-metadata:errors": {"METADATA_FAULTS_ERROR_RATIO": "0.3"},
    "movie-metadata:never-ready": {"METADATA_FAULTS_NOT_READY": "true"},
    "movie-metadata:crash-later": {"METADATA_FAULTS_EXIT_AFTER": "6s"},
    "movie-metadata:slow": {"METADATA_FAULTS_DELAY": "1s"},
    "movie-metadata:late-crash": {"METADATA_FAULTS_EXIT_AFTER": "45s"},
    "movie-metadata:errors2": {"METADATA_FAULTS_ERROR_RATIO": "0.3"},
    "movie-metadata:never-ready2": {"METADATA_FAULTS_NOT_READY": "true"},
    "movie-metadata:crash-later2": {"METADATA_FAULTS_EXIT_AFTER": "6s"},
}


def image_of(d):
    return d["spec"]["template"]["spec"]["containers"][0]["image"]


class Guard(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = ksstack.Stack(extra_images=BAD)
        cls.addClassCleanup(cls.stack.stop)
        cls.stack.start()
        cls.ks = cls.stack.ks
        cls.stack.apply_production()
        cls.prom = cls.stack.start_prometheus()
        cls.load = cls.stack.start_load()
        cls.work = tempfile.mkdtemp(prefix="guard-", dir=cls.ks.dir)
        cls.policy = os.path.join(cls.work, "policy.yaml")
        with open(cls.policy, "w") as f:
            f.write(POLICY)
        # The same with a 2 s window: a version that turns bad later is outside it.
        cls.short_policy = os.path.join(cls.work, "short.yaml")
        with open(cls.short_policy, "w") as f:
            f.write(POLICY.replace("window: %ds" % WINDOW, "window: 2s"))
        cls.results = []

    @classmethod
    def tearDownClass(cls):
        for r in cls.results:
            print("MEASURE " + json.dumps(r, sort_keys=True))

    # -- helpers ------------------------------------------------------------------------------
    def guard_cmd(self, *args, policy=None):
        return [MOVIECTL, "guard", "--kubeconfig", self.ks.kubeconfig, "-n", NS,
                "--policy", policy or self.policy, "--prometheus", self.prom.url] + list(args)

    def guard_once(self, *deps, timeout=240, policy=None):
        p = subprocess.run(self.guard_cmd("--once", "--timeout", "%ds" % (timeout - 30),
                                          *deps, policy=policy),
                           capture_output=True, text=True, timeout=timeout)
        lines = [json.loads(x) for x in p.stdout.splitlines() if x.strip()]
        return p.returncode, lines, p.stderr

    def deploy(self, name=DEP):
        return self.ks.get_json("deployment", name, *N)

    def set_image(self, tag, name=DEP):
        self.stack.kubectl("set", "image", "deployment/" + name, "metadata=movie-metadata:" + tag,
                           *N)

    def wait_traffic(self, tag, n=60):
        """Until Prometheus has n user calls counted on the pods of image tag's RS (so the
        metric checks have samples). Bounded."""
        d = self.deploy()
        h = d["spec"]["template"]["metadata"]["labels"].get("pod-template-hash")
        del h  # the hash is only known from the RS; poll by image below

        def counted():
            rss = self.ks.get_json("rs", "-l", "app.kubernetes.io/name=metadata,track=production",
                                   *N)["items"]
            hs = [r["metadata"]["labels"]["pod-template-hash"] for r in rss
                  if image_of(r).endswith(":" + tag)]
            if not hs:
                return False
            q = ('sum(grpc_server_handled_total{pod_template_hash="%s",'
                 'grpc_service!~"grpc.health.v1.Health"})' % hs[0])
            r = self.prom.query(q)
            return bool(r) and float(r[0]["value"][1]) >= n
        K.wait_for(counted, 90, "Prometheus to count traffic on %s" % tag, interval=0.5)

    def failures_since(self, mark):
        ok, failures = self.load.snapshot()
        return len(failures) - mark[1], ok - mark[0]

    def mark(self):
        ok, failures = self.load.snapshot()
        return ok, len(failures)

    def bad_version(self, tag, check, before_guard=None):
        """Deploy tag on metadata-production, run guard --once, expect a rollback by `check`
        back to the previous template; returns the measurement."""
        before = self.deploy()
        good_image = image_of(before)
        m0 = self.mark()
        t0 = time.monotonic()
        self.set_image(tag)
        if before_guard:
            before_guard()
        rc, lines, err = self.guard_once(DEP)
        t_exit = time.monotonic()
        self.assertEqual(rc, 1, "guard exit %d\n%s\n%s" % (rc, lines, err))
        self.assertEqual(len(lines), 1, lines)
        v = lines[0]
        self.assertEqual((v["outcome"], v["action"], v["check"]), ("failed", "rollback", check),
                         v)
        self.assertEqual(v["rollback"], "complete", v)
        after = self.deploy()
        self.assertEqual(image_of(after), good_image, "back on the previous template")
        ann = after["metadata"]["annotations"]
        rec = json.loads(ann["movie.dev/guard-rollback"])
        self.assertEqual((rec["from"], rec["to"], rec["check"]),
                         (v["new_hash"], v["previous_hash"], check))
        self.assertIn(v["new_hash"], json.loads(ann["movie.dev/guard-bad-templates"]))
        evs = [e for e in self.ks.get_json("events", *N)["items"]
               if e.get("reason") == "GuardRollback" and e["involvedObject"]["name"] == DEP
               and v["new_hash"] in e.get("message", "")]
        self.assertEqual(len(evs), 1, "one Event for the rollback")
        self.assertEqual(evs[0]["involvedObject"]["kind"], "Deployment")
        # Detection: the rollback record's time (RFC 3339, whole seconds) vs the apply.
        from datetime import datetime, timezone
        at = datetime.strptime(rec["at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
        detect = at.timestamp() - (time.time() - (time.monotonic() - t0))
        failed, ok = self.failures_since(m0)
        r = {"kind": tag, "check": check, "value": v.get("value"), "threshold": v.get("threshold"),
             "samples": v.get("samples"), "detect_s": round(detect, 1),
             "complete_s": round(t_exit - t0, 1), "failed_requests": failed, "ok_requests": ok}
        self.results.append(r)
        print("MEASURE " + json.dumps(r, sort_keys=True), flush=True)
        return v

    # -- steps ------------------------------------------------------------------------------
    def test_01_good_versions_never_rolled_back(self):
        for tag in ("good1", "good2"):
            m0 = self.mark()
            self.set_image(tag)
            rc, lines, err = self.guard_once(DEP)
            self.assertEqual(rc, 0, "%s: guard exit %d\n%s\n%s" % (tag, rc, lines, err))
            self.assertEqual(lines[0]["outcome"], "healthy", lines)
            self.assertEqual(lines[0]["action"], "none", lines)
            self.assertTrue(lines[0]["prometheus"], lines)
            self.assertTrue(image_of(self.deploy()).endswith(":" + tag))
            failed, _ = self.failures_since(m0)
            self.results.append({"kind": tag, "rolled_back": False, "failed_requests": failed})
        self.assertNotIn("movie.dev/guard-rollback",
                         self.deploy()["metadata"].get("annotations", {}))

    def test_02_error_ratio(self):
        self.bad_version("errors", "error-ratio")

    def test_03_never_ready(self):
        self.bad_version("never-ready", "readiness")

    def test_04_crash_loop_after_ready(self):
        self.bad_version("crash-later", "restarts")

    def test_05_latency(self):
        self.bad_version("slow", "latency-p99")

    def test_06_bad_outside_window_reported_only(self):
        self.set_image("late-crash")  # exits 45 s after it started (the rollout takes ~25 s); window 2 s
        rc, lines, err = self.guard_once(DEP, policy=self.short_policy)
        self.assertEqual(rc, 0, "healthy while the window lasts\n%s\n%s" % (lines, err))

        def crashed():
            pods = self.ks.get_json("pods", "-l", "app.kubernetes.io/name=metadata,"
                                    "track=production", *N)["items"]
            return any(cs.get("restartCount", 0) >= 1 for p in pods
                       for cs in p["status"].get("containerStatuses", []))
        K.wait_for(crashed, 120, "the late crash")
        rc, lines, err = self.guard_once(DEP, policy=self.short_policy)
        self.assertEqual(rc, 2, "%s\n%s" % (lines, err))
        self.assertEqual((lines[0]["outcome"], lines[0]["action"]), ("failed", "reported"))
        self.assertIn("outside", lines[0]["reason"])
        self.assertTrue(image_of(self.deploy()).endswith(":late-crash"), "not rolled back")
        self.set_image("good2")  # back to a good version by hand (a new template)
        self.stack.rollout_ok(DEP)

    def test_07_killed_after_patch_then_restarted(self):
        self.stack.rollout_ok(DEP)
        good_image = image_of(self.deploy())
        self.set_image("errors2")
        p = subprocess.Popen(self.guard_cmd("--once", DEP), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            def patched():
                ann = self.deploy()["metadata"].get("annotations", {})
                rec = ann.get("movie.dev/guard-rollback")
                return rec and json.loads(rec)["from"] != "" and \
                    image_of(self.deploy()) == good_image
            K.wait_for(patched, 120, "guard's rollback patch", interval=0.05)
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate(timeout=30)
        rc, lines, err = self.guard_once(DEP)
        self.assertEqual(rc, 1, "%s\n%s" % (lines, err))
        self.assertEqual(lines[0]["outcome"], "rolled-back", lines)
        self.assertEqual(lines[0]["rollback"], "complete", lines)
        d = self.deploy()
        self.assertEqual(image_of(d), good_image)
        bad = json.loads(d["metadata"]["annotations"]["movie.dev/guard-bad-templates"])
        self.assertEqual(len(bad), len(set(bad)), "each bad template recorded once")
        # Restarted again long after: still consistent, no second rollback.
        rc, lines, err = self.guard_once(DEP)
        self.assertIn(rc, (0, 1), "%s\n%s" % (lines, err))
        self.assertEqual(image_of(self.deploy()), good_image)

    def test_08_same_template_never_twice(self):
        self.stack.rollout_ok(DEP)
        self.set_image("errors")  # rolled back in test_02: guard must not touch it again
        rc, lines, err = self.guard_once(DEP, timeout=120)
        self.assertEqual(rc, 2, "%s\n%s" % (lines, err))
        self.assertEqual((lines[0]["check"], lines[0]["action"]), ("error-ratio", "skipped"),
                         lines)
        self.assertIn("rolled back once already", lines[0]["reason"])
        self.assertTrue(image_of(self.deploy()).endswith(":errors"))
        self.set_image("good1")
        self.stack.rollout_ok(DEP)

    def test_09_two_guards_one_rollback(self):
        log = os.path.join(self.ks.dir, "api.log")
        self.set_image("never-ready2")
        start = os.path.getsize(log)
        ps = [subprocess.Popen(self.guard_cmd("--once", DEP), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
              for _ in range(2)]
        outs = [p.communicate(timeout=240) for p in ps]
        for p, (out, err) in zip(ps, outs):
            self.assertEqual(p.returncode, 1, out + err)
        self.assertTrue(image_of(self.deploy()).endswith(":good1"))
        with open(log) as f:
            f.seek(start)
            patches = [x for x in f.read().splitlines()
                       if " PATCH /apis/apps/v1/namespaces/%s/deployments/%s" % (NS, DEP) in x]
        ok = [x for x in patches if x.split()[3].startswith("2")]
        self.assertEqual(len(ok), 1, "exactly one rollback patch applied: %s" % patches)
        d = self.deploy()
        bad = json.loads(d["metadata"]["annotations"]["movie.dev/guard-bad-templates"])
        self.assertEqual(len(bad), len(set(bad)))
        self.results.append({"kind": "two guards", "patches": len(patches),
                             "applied": len(ok)})

    def test_10_controller_and_rbac(self):
        log = os.path.join(self.ks.dir, "api.log")
        start = os.path.getsize(log)
        port = ksstack.harness.free_port()
        p = subprocess.Popen(self.guard_cmd("--listen", "127.0.0.1:%d" % port),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             start_new_session=True)
        try:
            def healthy():
                try:
                    with urllib.request.urlopen("http://127.0.0.1:%d/healthz" % port,
                                                timeout=3) as r:
                        return r.status == 200
                except OSError:
                    return False
            K.wait_for(healthy, 60, "guard /healthz")

            def decided():
                with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                            timeout=3) as r:
                    text = r.read().decode()
                return "moviectl_guard_decisions_total{" in text and text
            K.wait_for(decided, 60, "decisions in /metrics")
            m0 = self.mark()
            self.set_image("crash-later2")
            K.wait_for(lambda: image_of(self.deploy()).endswith(":good1"), 180,
                       "the controller to roll crash-later back")
            self.stack.rollout_ok(DEP)
            failed, _ = self.failures_since(m0)
            self.results.append({"kind": "crash-later (controller)", "failed_requests": failed})
            with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=3) as r:
                text = r.read().decode()
            self.assertIn('moviectl_guard_decisions_total{check="restarts",outcome="failed",'
                          'action="rollback"} 1', text)
        finally:
            p.send_signal(signal.SIGTERM)
            out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        with open(log) as f:
            f.seek(start)
            lines = f.read().splitlines()
        self.assert_rbac_allows(lines)

    def assert_rbac_allows(self, lines):
        import yaml
        with open(os.path.join(K.SOURCE_DIR, "deploy", "k8s", "guard", "rbac.yaml")) as f:
            role = [o for o in yaml.safe_load_all(f) if o and o["kind"] == "Role"][0]
        allowed = set()
        for rule in role["rules"]:
            for g in rule["apiGroups"]:
                for r in rule["resources"]:
                    for v in rule["verbs"]:
                        allowed.add((g, r, v))
        used = set()
        for line in lines:
            parts = line.split()
            if len(parts) < 3 or parts[2].startswith("/kubesim/"):
                continue
            verb = request_verb(parts[1], parts[2])
            if verb:
                used.add(verb)
        self.assertTrue(used, "guard made API requests")
        self.assertIn(("apps", "deployments", "patch"), used)
        self.assertIn(("", "events", "create"), used)
        self.assertEqual(used - allowed, set(), "requests the Role does not allow")


def request_verb(method, target):
    """(apiGroup, resource, verb) of an API request as the RBAC authorizer sees it."""
    path, _, query = target.partition("?")
    seg = [s for s in path.split("/") if s]
    if seg[:2] == ["api", "v1"]:
        group, rest = "", seg[2:]
    elif seg[:1] == ["apis"] and len(seg) >= 3:
        group, rest = seg[1], seg[3:]
    else:
        return None
    if rest[:1] == ["namespaces"] and len(rest) >= 3:
        rest = rest[2:]
    if not rest:
        return None
    resource, named = rest[0], len(rest) > 1
    if len(rest) > 2:
        resource += "/" + rest[2]
    watch = "watch=true" in query or "watch=1" in query
    verb = {"GET": "watch" if watch else ("get" if named else "list"), "PATCH": "patch",
            "POST": "create", "PUT": "update", "DELETE": "delete"}.get(method)
    return (group, resource, verb)


if __name__ == "__main__":
    unittest.main(verbosity=2, failfast=True)
