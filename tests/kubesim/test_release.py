"""moviectl release end to end: kubesim (the Kubernetes test double: no real cluster can
run here) with the production overlay, MariaDB, a real Prometheus scraping the pods,
steady GetMovieDetails load through movie's Service, and the real moviectl binary.

One cluster for every scenario of issue 10, in an order where each starts from a
cluster at rest (every canary at its production's version):
  1+8 good release of metadata, rating and movie: promoted, zero failed user requests,
      verdict complete, metadata's canary share within 3 percentage points of 1/5;
  2   metadata canary answering 20 % UNAVAILABLE: aborted, production untouched, failed
      user requests within what the canary share implies;
  4   p99 regression (faults.delay): aborted;
  7   a second concurrent release refused; a release killed during analysis, then run
      again: the leftover is reverted and the new release goes through;
  3   movie canary bad after metadata and rating were promoted: all three reverted;
  6   Prometheus unreachable during analysis: error, reverted, never promoted;
  5   no user traffic: synthetic load decides, good promoted, bad aborted.
Measured decision times, failed-request counts and canary shares are printed.
RELEASE_SCENARIOS=1,2 runs a subset (debugging).
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ksharness as K  # noqa: E402
import ksstack  # noqa: E402

NS = ksstack.NS
MOVIECTL = os.path.join(K.BIN_DIR, "moviectl")
EXTRA = {
    "movie-metadata:0.2.0": {}, "movie-rating:0.2.0": {}, "movie-movie:0.2.0": {},
    "movie-metadata:0.3.0": {}, "movie-rating:0.3.0": {},
    "movie-metadata:0.4.0": {}, "movie-metadata:0.5.0": {}, "movie-metadata:0.6.0": {},
    "movie-metadata:bad": {"METADATA_FAULTS_ERROR_RATIO": "0.2"},
    "movie-metadata:bad2": {"METADATA_FAULTS_ERROR_RATIO": "0.5"},
    "movie-metadata:slow": {"METADATA_FAULTS_DELAY": "250ms"},
    "movie-movie:bad": {"MOVIE_FAULTS_ERROR_RATIO": "0.5"},
}
# Fast enough for the time budget, strict enough to mean something: 2 passing intervals
# of 3 s over a 30 s window (Prometheus scrapes every 3 s), 50 canary calls at least;
# p99 may double and grow by 150 ms (histogram buckets 0.1 | 0.25 s, a shared 2-core
# machine) while the slow version adds 250 ms to every call.
POLICY = """\
interval: 3s
window: 30s
passes: 2
failures: 2
latency_min_requests: 150
max_analysis: 120s
min_requests: 50
confidence: 0.99
error_floor: 0.01
latency_tolerance: 1.0
latency_floor: 150ms
rollout_timeout: 180s
lease: 60s
synthetic:
  rate: 25
  calls:
    - service: metadata
      method: /MetadataService/GetMetadata
      args: ["m1"]
    - service: rating
      method: /RatingService/GetAggregatedRating
      args: ["m1", "movie"]
    - service: movie
      method: /MovieService/GetMovieDetails
      args: ["m1"]
"""
SCENARIOS = os.environ.get("RELEASE_SCENARIOS")


def wanted(n):
    return SCENARIOS is None or str(n) in SCENARIOS.split(",")


class Release:
    """One moviectl release run in the background; stderr kept for progress checks."""

    def __init__(self, t, images, prometheus=None, extra=()):
        self.t = t
        self.verdict_path = tempfile.mktemp(prefix="verdict-", dir=t.stack.ks.dir)
        args = [MOVIECTL, "release", "-n", NS, "--policy", t.policy,
                "--verdict", self.verdict_path,
                "--prometheus", prometheus or t.stack.prom.url]
        for svc, img in images:
            args += ["--image", "%s=%s" % (svc, img)]
        args += list(extra)
        self.err_path = self.verdict_path + ".stderr"
        self.err = open(self.err_path, "wb")
        self.start = time.monotonic()
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.err,
                                     env=dict(os.environ, KUBECONFIG=t.stack.ks.kubeconfig))
        K._started.append(self.proc)

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode(errors="replace")

    def wait_stderr(self, text, timeout):
        K.wait_for(lambda: text in self.stderr() or self.proc.poll() is not None, timeout,
                   "moviectl release to print %r" % text, interval=0.2)
        if text not in self.stderr():
            raise AssertionError("moviectl release exited %s before %r:\n%s" % (
                self.proc.returncode, text, self.stderr()))

    def wait(self, timeout=400):
        self.proc.wait(timeout)
        self.seconds = time.monotonic() - self.start
        self.err.close()
        self.verdict = None
        if os.path.exists(self.verdict_path):
            with open(self.verdict_path) as f:
                self.verdict = json.load(f)
        return self.proc.returncode


class ReleaseTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = ksstack.Stack(extra_images=EXTRA)
        cls.addClassCleanup(cls.stack.stop)
        cls.stack.start()
        cls.stack.apply_production()
        cls.stack.start_prometheus()
        cls.stack.start_load()
        fd, cls.policy = tempfile.mkstemp(suffix=".yaml", dir=cls.stack.ks.dir)
        with os.fdopen(fd, "w") as f:
            f.write(POLICY)
        cls.report = []

    @classmethod
    def tearDownClass(cls):
        print("\n== release measurements ==")
        for line in cls.report:
            print(line)
        sys.stdout.flush()

    # ---- helpers ----

    def images(self):
        out = {}
        for d in ksstack.DEPLOYMENTS:
            dep = self.stack.ks.get_json("deployment", d, "-n", NS)
            out[d] = dep["spec"]["template"]["spec"]["containers"][0]["image"]
        return out

    def annotations(self, d):
        return self.stack.ks.get_json("deployment", d, "-n", NS)["metadata"].get(
            "annotations", {})

    def assert_at_rest(self):
        """Every canary at its production's version, no lock, no state left."""
        imgs = self.images()
        for svc in ("metadata", "rating", "movie"):
            self.assertEqual(imgs[svc + "-canary"], imgs[svc + "-production"], imgs)
        for d in ksstack.DEPLOYMENTS:
            a = self.annotations(d)
            self.assertNotIn("movie.dev/release-lock", a, d)
            self.assertNotIn("movie.dev/release-state", a, d)
        return imgs

    def failures_during(self, fn):
        """Run fn; the user load's failures (code -> count) while it ran."""
        before = self.stack.load.counts()
        r = fn()
        after = self.stack.load.counts()
        diff = {k: after.get(k, 0) - before.get(k, 0) for k in after}
        total = sum(diff.values())
        failed = {k: v for k, v in diff.items() if k != "OK" and v}
        return r, failed, total

    def check_verdict(self, v, result):
        self.assertEqual(v["result"], result, json.dumps(v, indent=1)[:4000])
        for key in ("release", "namespace", "started", "finished", "reason", "policy",
                    "services", "state"):
            self.assertIn(key, v)

    def decision_seconds(self, svc_verdict):
        return svc_verdict.get("analysis_seconds")

    # ---- scenarios ----

    def test_1_good_release_of_all_three(self):
        if not wanted(1):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        # --dry-run: the plan in dependency order, nothing changed.
        dry = Release(self, [("movie", "movie-movie:0.2.0"), ("metadata", "movie-metadata:0.2.0"),
                             ("rating", "movie-rating:0.2.0")], extra=["--dry-run"])
        self.assertEqual(dry.wait(60), 0, dry.stderr())
        self.assertEqual(dry.verdict["result"], "dry-run")
        self.assertRegex(dry.stderr(), r"(?s)plan 1: metadata.*plan 2: rating.*plan 3: movie")
        self.assertEqual(self.images(), before)
        self.assertNotIn("movie.dev/release-lock", self.annotations("metadata-canary"))
        rel = Release(self, [("movie", "movie-movie:0.2.0"), ("metadata", "movie-metadata:0.2.0"),
                             ("rating", "movie-rating:0.2.0")])
        rc, failed, total = self.failures_during(lambda: rel.wait())
        v = rel.verdict
        self.assertEqual(rc, 0, rel.stderr())
        self.check_verdict(v, "promoted")
        # Dependency order from movie's config peers, whatever the argument order.
        self.assertEqual([s["service"] for s in v["services"]], ["metadata", "rating", "movie"])
        self.assertEqual(sorted(v["services"][2]["peers"]), ["metadata", "rating"])
        for s in v["services"]:
            self.assertEqual(s["result"], "promoted")
            self.assertEqual(s["from"]["image"], before[s["service"] + "-production"])
            kinds = {c["check"] for c in s["checks"]}
            self.assertEqual(kinds, {"error_ratio", "latency_p99", "restarts"})
            last = [c for c in s["checks"] if c["check"] == "error_ratio"][-1]
            self.assertEqual(last["result"], "pass")
            self.assertGreaterEqual(last["canary_samples"], 50)
            self.assertIn("pod_template_hash=", last["query_canary"])
            self.assertIn('track="canary"', last["query_canary"])
        self.assertEqual(failed, {}, "user requests failed during a good release: %s" % failed)
        after = self.assert_at_rest()
        for svc in ("metadata", "rating", "movie"):
            self.assertEqual(after[svc + "-production"], "movie-%s:0.2.0" % svc)
        # 8: metadata gets per-call round robin from movie over the headless Service.
        share = v["services"][0]["canary_share"]
        self.assertIsNotNone(share)
        self.assertLess(abs(share - 0.2), 0.03, "metadata canary share %.3f" % share)
        self.report.append("1 good release x3: promoted in %.1f s, analysis %s s, %d user "
                           "calls, 0 failed; canary share metadata %.3f rating %s movie %s "
                           "(replica ratio 0.200)" % (
                               rel.seconds,
                               "/".join("%.1f" % self.decision_seconds(s) for s in v["services"]),
                               total, share, fmt(v["services"][1]["canary_share"]),
                               fmt(v["services"][2]["canary_share"])))

    def test_2_bad_metadata_canary_aborted(self):
        if not wanted(2):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        # The lock and state annotations bump metadata.generation; the revision moves only
        # when the pod template changes.
        prod_rev = self.annotations("metadata-production")["deployment.kubernetes.io/revision"]
        rel = Release(self, [("metadata", "movie-metadata:bad")])
        rc, failed, total = self.failures_during(lambda: rel.wait())
        v = rel.verdict
        self.assertEqual(rc, 1, rel.stderr())
        self.check_verdict(v, "aborted")
        s = v["services"][0]
        self.assertEqual(s["result"], "aborted")
        fail = [c for c in s["checks"] if c["result"] == "fail"]
        self.assertTrue(fail and fail[-1]["check"] == "error_ratio", s["checks"][-3:])
        self.assertLessEqual(self.decision_seconds(s), 120)
        after = self.assert_at_rest()
        self.assertEqual(after, before)
        # Production was never touched: same revision (pod template), same image.
        self.assertEqual(self.annotations("metadata-production")[
            "deployment.kubernetes.io/revision"], prod_rev)
        # What the canary share implies: share x 20 % of the calls that reached the bad pod
        # while it ran (movie retries UNAVAILABLE on another address, so usually fewer).
        nfailed = sum(failed.values())
        share = s["canary_share"] or 0.2
        bound = share * 0.2 * total * 1.5 + 5
        self.assertLessEqual(nfailed, bound, failed)
        self.report.append("2 metadata 20%% UNAVAILABLE: aborted after %.1f s of analysis "
                           "(%.1f s in all), %d of %d user calls failed (bound %.0f), canary "
                           "share %s" % (self.decision_seconds(s), rel.seconds, nfailed, total,
                                         bound, fmt(s["canary_share"])))

    def test_4_latency_regression_aborted(self):
        if not wanted(4):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        rel = Release(self, [("metadata", "movie-metadata:slow")])
        rc, failed, total = self.failures_during(lambda: rel.wait())
        v = rel.verdict
        self.assertEqual(rc, 1, rel.stderr())
        self.check_verdict(v, "aborted")
        s = v["services"][0]
        fail = [c for c in s["checks"] if c["result"] == "fail"]
        self.assertTrue(fail and fail[-1]["check"] == "latency_p99", s["checks"][-3:])
        self.assertGreater(fail[-1]["canary"], fail[-1]["baseline"] * 1.5)
        self.assertEqual(self.assert_at_rest(), before)
        self.report.append("4 metadata p99 +250 ms: aborted after %.1f s of analysis, canary "
                           "p99 %.3f s vs %.3f s, %d user calls failed" % (
                               self.decision_seconds(s), fail[-1]["canary"],
                               fail[-1]["baseline"], sum(failed.values())))

    def test_5_concurrent_refused_and_killed_run_recovered(self):
        if not wanted(7):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        first = Release(self, [("metadata", "movie-metadata:0.3.0")])
        first.wait_stderr("analysis every", 200)
        # A second release while the first holds the lock: refused, nothing changed.
        second = Release(self, [("rating", "movie-rating:0.3.0")])
        self.assertEqual(second.wait(120), 2, second.stderr())
        self.assertIn("locked by", second.verdict["reason"])
        self.assertEqual(self.images()["rating-canary"], before["rating-canary"])
        # Killed in the middle of its analysis: lock and state stay behind.
        first.proc.send_signal(signal.SIGKILL)
        first.wait(30)
        self.assertIn("movie.dev/release-lock", self.annotations("metadata-canary"))
        self.assertIn("movie.dev/release-state", self.annotations("metadata-canary"))
        self.assertEqual(self.images()["metadata-canary"], "movie-metadata:0.3.0")
        # The next run takes over the dead owner's lock, reverts, then releases.
        third = Release(self, [("metadata", "movie-metadata:0.4.0")])
        rc = third.wait()
        self.assertEqual(rc, 0, third.stderr())
        self.assertEqual([r["service"] for r in third.verdict["recovered"]], ["metadata"])
        self.assertIn("reverting", third.stderr())
        after = self.assert_at_rest()
        self.assertEqual(after["metadata-production"], "movie-metadata:0.4.0")
        self.report.append("7 concurrent release refused in %.1f s; killed run reverted and "
                           "re-released by the next run in %.1f s" % (second.seconds,
                                                                      third.seconds))

    def test_6_bad_movie_reverts_all_three(self):
        if not wanted(3):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        rel = Release(self, [("metadata", "movie-metadata:0.5.0"),
                             ("rating", "movie-rating:0.3.0"), ("movie", "movie-movie:bad")])
        rc, failed, total = self.failures_during(lambda: rel.wait())
        v = rel.verdict
        self.assertEqual(rc, 1, rel.stderr())
        self.check_verdict(v, "aborted")
        res = {s["service"]: s["result"] for s in v["services"]}
        self.assertEqual(res, {"metadata": "reverted", "rating": "reverted", "movie": "aborted"})
        self.assertEqual(self.assert_at_rest(), before)
        # Reverse order: movie's canary, then rating, then metadata.
        err = rel.stderr()
        self.assertLess(err.index("movie: reverting canary"), err.index("rating: reverting"))
        self.assertLess(err.index("rating: reverting"), err.index("metadata: reverting"))
        m = v["services"][2]
        self.report.append("3 movie bad after metadata+rating promoted: all three reverted, "
                           "movie judged in %.1f s (synthetic %s), %.1f s in all, %d of %d "
                           "user calls failed" % (self.decision_seconds(m),
                                                  "on" if m.get("synthetic") else "off",
                                                  rel.seconds, sum(failed.values()), total))

    def test_7_prometheus_unreachable_is_an_error(self):
        if not wanted(6):
            self.skipTest("not selected")
        before = self.assert_at_rest()
        # A Prometheus that goes away during the analysis: a second one, stopped then.
        prom = ksstack.Prometheus(self.stack.ks).start()
        try:
            rel = Release(self, [("metadata", "movie-metadata:0.6.0")], prometheus=prom.url)
            rel.wait_stderr("analysis every", 200)
        finally:
            prom.stop()
        rc = rel.wait()
        v = rel.verdict
        self.assertEqual(rc, 2, rel.stderr())
        self.check_verdict(v, "error")
        self.assertIn("prometheus", v["reason"])
        self.assertNotEqual(v["services"][0]["result"], "promoted")
        self.assertEqual(self.assert_at_rest(), before)
        self.report.append("6 Prometheus unreachable: error after %.1f s, canary reverted, "
                           "production untouched" % rel.seconds)

    def test_8_no_user_traffic_synthetic_load(self):
        if not wanted(5):
            self.skipTest("not selected")
        self.stack.load.stop()
        before = self.assert_at_rest()
        good = Release(self, [("metadata", "movie-metadata:0.2.0" if before[
            "metadata-production"] != "movie-metadata:0.2.0" else "movie-metadata:0.3.0")])
        self.assertEqual(good.wait(), 0, good.stderr())
        s = good.verdict["services"][0]
        self.assertTrue(s["synthetic"] and s["synthetic"]["canary_sent"] > 0, s)
        self.assertIn("synthetic load at", good.stderr())
        self.assert_at_rest()
        bad = Release(self, [("metadata", "movie-metadata:bad2")])
        self.assertEqual(bad.wait(), 1, bad.stderr())
        b = bad.verdict["services"][0]
        self.assertTrue(b["synthetic"] and b["synthetic"]["canary_failed"] > 0, b)
        self.assert_at_rest()
        self.report.append("5 no user traffic: synthetic load (%d canary calls) promoted a "
                           "good version in %.1f s of analysis; a bad one (%d of %d synthetic "
                           "calls failed) aborted in %.1f s" % (
                               s["synthetic"]["canary_sent"], self.decision_seconds(s),
                               b["synthetic"]["canary_failed"], b["synthetic"]["canary_sent"],
                               self.decision_seconds(b)))


    def test_9_config_goes_through_the_canary(self):
        if not wanted(9):
            self.skipTest("not selected")
        before = self.assert_at_rest()

        def volume(d):
            dep = self.stack.ks.get_json("deployment", d, "-n", NS)
            return next(v["configMap"]["name"] for v in dep["spec"]["template"]["spec"]["volumes"]
                        if v["name"] == "config")
        vols = {d: volume(d) for d in ("metadata-canary", "metadata-production")}
        cfg = os.path.join(K.SOURCE_DIR, "deploy", "k8s", "overlays", "production", "configs",
                           "metadata", "production.yaml")
        with open(cfg) as f:
            text = f.read()
        # A broken config: the same image, half the calls answered UNAVAILABLE.
        path = os.path.join(self.stack.ks.dir, "production.yaml")
        with open(path, "w") as f:
            f.write(text + "faults:\n  error_ratio: 0.5\n")
        rel = Release(self, [], extra=["--config", "metadata=" + path])
        self.assertEqual(rel.wait(), 1, rel.stderr())
        s = rel.verdict["services"][0]
        self.assertEqual(s["result"], "aborted")
        self.assertEqual(s["to"]["config"]["canary"], "metadata-config-canary-" +
                         rel.verdict["release"])
        cm = self.stack.ks.get_json("configmap", s["to"]["config"]["canary"], "-n", NS)
        self.assertIn("error_ratio: 0.5", cm["data"]["production.yaml"])
        self.assertIn("base.yaml", cm["data"])
        self.assertEqual(self.assert_at_rest(), before)
        self.assertEqual({d: volume(d) for d in vols}, vols)
        self.report.append("9 --config with faults: canary got its own ConfigMap, aborted in "
                           "%.1f s of analysis, both tracks back on their ConfigMaps" %
                           self.decision_seconds(s))


def fmt(x):
    return "n/a" if x is None else "%.3f" % x


if __name__ == "__main__":
    unittest.main(verbosity=2)
