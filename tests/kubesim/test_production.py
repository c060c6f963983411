"""kubesim, driven by the real kubectl: the production overlay (canary layout) with
MariaDB behind a selector-less Service, then rolling updates under load, a version
that never becomes ready, one that crashes at start, a pod deleted under load and
Prometheus finding the pods itself. kubesim stands in for Kubernetes (no cluster can
run here); everything in the pods is the real build.

One cluster for the whole file (bringing 15 pods up is the expensive part); the
steps run in order (test_01 ... test_07) and each asserts its own outcome."""
import json
import os
import re
import tempfile
import threading
import time
import unittest

import ksharness as K
import ksstack
from ksstack import DEPLOYMENTS, N, NS, SCRAPE_INTERVAL, S, pb, relabel_bytes


class Invariants:
    """maxSurge / maxUnavailable checked on every ReplicaSet watch event of a
    Deployment (sums of spec.replicas and status.availableReplicas of its RSs)."""

    def __init__(self, ks, deployment, replicas, surge, unavail):
        self.deployment, self.replicas = deployment, replicas
        self.surge, self.unavail = surge, unavail
        self.rss = {}
        self.violations = []
        self.max_total = 0
        self.min_avail = replicas
        self.events = 0
        self.lock = threading.Lock()
        self.watch = K.Watch(ks, "/apis/apps/v1/namespaces/%s/replicasets" % NS, self.on_event)
        self.watch.start()

    def on_event(self, etype, rs):
        owner = [o["name"] for o in rs["metadata"].get("ownerReferences") or []]
        if self.deployment not in owner:
            return
        with self.lock:
            self.events += 1
            name = rs["metadata"]["name"]
            if etype == "DELETED":
                self.rss.pop(name, None)
                return
            self.rss[name] = (rs["spec"].get("replicas", 0),
                              (rs.get("status") or {}).get("availableReplicas", 0))
            if not self.watch.synced:
                return  # judge the whole list, not a partial view of it
            total = sum(s for s, _ in self.rss.values())
            avail = sum(a for _, a in self.rss.values())
            self.max_total = max(self.max_total, total)
            self.min_avail = min(self.min_avail, avail)
            if total > self.replicas + self.surge:
                self.violations.append("spec sum %d > %d+%d: %r" % (total, self.replicas,
                                                                   self.surge, self.rss))
            if avail < self.replicas - self.unavail:
                self.violations.append("available %d < %d-%d: %r" % (avail, self.replicas,
                                                                    self.unavail, self.rss))

    def close(self):
        self.watch.stop()
        return self.watch.errors


class ProductionOverlay(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stack = ksstack.Stack(extra_images={
            "movie-metadata:0.2.0": {},
            # Readiness never passes: its database is unreachable (liveness is fine).
            "movie-metadata:never-ready": {"METADATA_STORAGE_MYSQL_PORT": "1"},
            # Exits at start: an unknown option in its environment is a config error.
            "movie-metadata:crash": {"METADATA_NO_SUCH_OPTION": "1"}})
        cls.addClassCleanup(cls.stack.stop)
        cls.stack.start()
        cls.db, cls.ks = cls.stack.db, cls.stack.ks
        cls.load = None

    # -- helpers ------------------------------------------------------------------------------
    def kubectl(self, *a, **kw):
        return self.ks.kubectl(*a, **kw)

    def service_ip(self, name):
        return self.ks.get_json("service", name, *N)["spec"]["clusterIP"]

    def pods(self, selector, terminating=False):
        """Pods matching selector; terminating ones (still draining) only if asked."""
        return [p for p in self.ks.get_json("pods", "-l", selector, *N)["items"]
                if terminating or not p["metadata"].get("deletionTimestamp")]

    def revisions(self, deployment):
        out = self.kubectl("rollout", "history", "deployment/" + deployment, *N).stdout
        return [int(line.split()[0]) for line in out.splitlines()[1:] if line.strip() and
                line.split()[0].isdigit()]

    def assert_no_failures(self, what):
        ok, failures = self.load.snapshot()
        self.assertEqual(failures, [], "%s: %d failed requests of %d" % (
            what, len(failures), ok + len(failures)))
        self.assertGreater(ok, 0, "the load made no successful request")

    def rollout_ok(self, deployment, timeout=180):
        self.kubectl("rollout", "status", "deployment/" + deployment, *N,
                     "--timeout=%ds" % timeout, timeout=timeout + 30)

    def overlay(self, metadata_tag=None, rating_production_yaml=None):
        """A kustomization on top of the fast production overlay: the test's changes."""
        d = tempfile.mkdtemp(prefix="kubesim-overlay-", dir=self.ks.dir)
        k = {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
             "resources": [os.path.relpath(os.path.join(K.HERE, "overlays", "production-fast"),
                                           d)]}
        if metadata_tag:
            k["images"] = [{"name": "movie-metadata", "newTag": metadata_tag}]
        if rating_production_yaml:
            with open(os.path.join(d, "rating-production.yaml"), "w") as f:
                f.write(rating_production_yaml)
            k["configMapGenerator"] = [{"name": "rating-config", "namespace": NS,
                                        "behavior": "merge",
                                        "files": ["production.yaml=rating-production.yaml"]}]
        import yaml
        with open(os.path.join(d, "kustomization.yaml"), "w") as f:
            yaml.safe_dump(k, f)
        # kustomize takes a directory resource outside the root, by relative path only.
        return d

    # -- steps ------------------------------------------------------------------------------
    def test_01_apply_production_overlay(self):
        ks = self.ks
        out = self.stack.apply_production()
        self.assertIn("deployment.apps/metadata-production created", out.stdout)
        for d in DEPLOYMENTS:
            st = ks.get_json("deployment", d, *N)["status"]
            conds = {c["type"]: c for c in st["conditions"]}
            self.assertEqual(conds["Available"]["status"], "True", d)
            self.assertEqual(conds["Progressing"]["reason"], "NewReplicaSetAvailable", d)
        pods = ks.get_json("pods", *N)["items"]
        self.assertEqual(len(pods), 15)
        ips = [p["status"]["podIP"] for p in pods]
        self.assertEqual(len(set(ips)), 15, "every pod has its own IP")
        # Data stored through the ClusterIP Services; movie reads both headless Services.
        import grpc
        movie_target = "%s:8083" % self.service_ip("movie")
        with grpc.insecure_channel(movie_target) as ch:
            r = S.movie_pb2_grpc.MovieServiceStub(ch).GetMovieDetails(
                pb.GetMovieDetailsRequest(movie_id="m1"), timeout=10)
        self.assertEqual(r.movie_details.metadata.title, "Kubesim")
        self.assertAlmostEqual(r.movie_details.rating, 4.5)
        # The headless name resolves (inside a pod) to the ready metadata pods' IPs.
        movie_pod = self.pods("app.kubernetes.io/name=movie,track=production")[0]
        with open(os.path.join(ks.dir, "pods", "%s_%s_%s" % (
                NS, movie_pod["metadata"]["name"], movie_pod["metadata"]["uid"][:8]),
                "hosts")) as f:
            hosts = f.read()
        meta_ips = sorted(p["status"]["podIP"] for p in self.pods("app.kubernetes.io/name=metadata"))
        got = sorted(line.split()[0] for line in hosts.splitlines()
                     if re.search(r"\smetadata-headless(\s|$)", line))
        self.assertEqual(got, meta_ips)
        type(self).load = self.stack.start_load()
        self.assert_no_failures("steady state")

    def _rolling(self, deployment, change, expect_revisions):
        inv = Invariants(self.ks, deployment, 4, 1, 0)
        try:
            change()
            self.rollout_ok(deployment)
            for other in DEPLOYMENTS:
                self.rollout_ok(other)
        finally:
            errors = inv.close()
        self.assertEqual(errors, [])
        self.assertGreater(inv.events, 4, "the watch saw the rollout")
        self.assertEqual(inv.violations, [])
        self.assertEqual(inv.max_total, 5, "maxSurge 1 was used")
        self.assertEqual(self.revisions(deployment), expect_revisions)
        self.assert_no_failures("rollout of " + deployment)

    def test_02_rolling_update_image(self):
        d = self.overlay(metadata_tag="0.2.0")
        self._rolling("metadata-production",
                      lambda: self.kubectl("apply", "-k", d), [1, 2])
        pods = self.pods("app.kubernetes.io/name=metadata,track=production")
        self.assertEqual({p["spec"]["containers"][0]["image"] for p in pods},
                         {"movie-metadata:0.2.0"})
        self.assertEqual(len(pods), 4)

    def test_03_rolling_update_config(self):
        with open(os.path.join(K.SOURCE_DIR, "deploy", "k8s", "overlays", "production",
                               "configs", "rating", "production.yaml")) as f:
            cfg = f.read()
        d = self.overlay(metadata_tag="0.2.0",
                         rating_production_yaml=cfg + "\n# kubesim test: a config change\n")
        before = self.ks.get_json("deployment", "rating-production", *N)
        self._rolling("rating-production", lambda: self.kubectl("apply", "-k", d), [1, 2])
        after = self.ks.get_json("deployment", "rating-production", *N)
        vol = lambda o: [v["configMap"]["name"] for v in  # noqa: E731
                         o["spec"]["template"]["spec"]["volumes"] if "configMap" in v][0]
        self.assertNotEqual(vol(before), vol(after), "the ConfigMap hash changed")
        self.assertEqual(self.revisions("metadata-production"), [1, 2])

    def _stuck_then_undo(self, image, check_pod):
        dep = "metadata-production"
        self.kubectl("patch", "deployment", dep, *N, "-p",
                     json.dumps({"spec": {"progressDeadlineSeconds": 8}}))
        inv = Invariants(self.ks, dep, 4, 1, 0)
        try:
            self.kubectl("set", "image", "deployment/" + dep, "metadata=" + image, *N)
            t0 = time.monotonic()
            p = self.kubectl("rollout", "status", "deployment/" + dep, *N, "--timeout=90s",
                             check=False, timeout=120)
            self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
            self.assertIn('deployment "%s" exceeded its progress deadline' % dep, p.stderr)
            self.assertGreaterEqual(time.monotonic() - t0, 7)
            st = self.ks.get_json("deployment", dep, *N)["status"]
            cond = [c for c in st["conditions"] if c["type"] == "Progressing"][0]
            self.assertEqual((cond["status"], cond["reason"]), ("False",
                                                                "ProgressDeadlineExceeded"))
            self.assertEqual(st.get("availableReplicas"), 4, "old pods keep serving")
            bad = [x for x in self.pods("app.kubernetes.io/name=metadata,track=production")
                   if x["spec"]["containers"][0]["image"] == image]
            self.assertEqual(len(bad), 1, "maxSurge 1: one new pod")
            check_pod(bad[0])
            self.kubectl("rollout", "undo", "deployment/" + dep, *N)
            self.rollout_ok(dep)
            K.wait_for(lambda: not [x for x in self.pods("app.kubernetes.io/name=metadata", True)
                                    if x["spec"]["containers"][0]["image"] == image],
                       60, "the bad pod to go")
        finally:
            errors = inv.close()
        self.assertEqual(errors, [])
        self.assertEqual(inv.violations, [])
        self.assert_no_failures("stuck rollout of " + image)

    def test_04_never_ready_then_undo(self):
        def check(pod):
            cs = pod["status"]["containerStatuses"][0]
            self.assertFalse(cs["ready"])
            self.assertIn("running", cs["state"])
        self._stuck_then_undo("movie-metadata:never-ready", check)
        # undo re-used revision 2's ReplicaSet: it became revision 4, history "2".
        self.assertEqual(self.revisions("metadata-production"), [1, 3, 4])
        rss = self.ks.get_json("rs", "-l", "app.kubernetes.io/name=metadata,track=production",
                               *N)["items"]
        by_rev = {r["metadata"]["annotations"]["deployment.kubernetes.io/revision"]: r
                  for r in rss}
        self.assertEqual(by_rev["4"]["metadata"]["annotations"].get(
            "deployment.kubernetes.io/revision-history"), "2")

    def test_05_crash_loop_then_undo(self):
        seen = {}

        def check(pod):
            def crashing():
                p = self.ks.get_json("pod", pod["metadata"]["name"], *N)
                cs = p["status"]["containerStatuses"][0]
                seen["cs"] = cs
                return cs["restartCount"] >= 1 and cs["state"].get("waiting", {}).get(
                    "reason") == "CrashLoopBackOff"
            K.wait_for(crashing, 30, "CrashLoopBackOff")
            self.assertEqual(seen["cs"]["lastState"]["terminated"]["reason"], "Error")
        self._stuck_then_undo("movie-metadata:crash", check)
        reasons = {e["reason"] for e in self.ks.get_json("events", *N)["items"]}
        self.assertIn("BackOff", reasons)

    def test_06_delete_pod_under_load(self):
        sel = "app.kubernetes.io/name=movie,track=production"
        before = {p["metadata"]["name"] for p in self.pods(sel)}
        victim = sorted(before)[0]
        self.kubectl("delete", "pod", victim, *N, "--wait=false")
        K.wait_for(lambda: victim not in {p["metadata"]["name"] for p in self.pods(sel, True)},
                   90, "the deleted pod to terminate")

        def replaced():
            ps = self.pods(sel)
            ready = [p for p in ps if any(c["type"] == "Ready" and c["status"] == "True"
                                          for c in p["status"].get("conditions", []))]
            return len(ps) == 4 and len(ready) == 4
        K.wait_for(replaced, 60, "a ready replacement")
        self.rollout_ok("movie-production")
        self.assert_no_failures("pod deletion")

    def test_07_prometheus_discovers_pods(self):
        prom = ksstack.Prometheus(self.ks, SCRAPE_INTERVAL)
        self.assertEqual(relabel_bytes(prom.shipped), relabel_bytes(prom.config))
        self.assertIn("kubernetes_sd_configs", prom.shipped)
        rc, out = prom.check_config()
        self.assertEqual(rc, 0, out)
        prom.start()
        try:
            def pods_now():
                return {(p["metadata"]["name"], p["metadata"]["labels"]["track"])
                        for p in self.ks.get_json("pods", *N)["items"]}

            targets = prom.targets

            def matches():
                want = pods_now()
                ts = targets()
                got = {(t["labels"].get("pod"), t["labels"].get("track")) for t in ts}
                return got == want and all(t["health"] == "up" for t in ts)
            # Every target up first (Prometheus' first scrapes land some seconds in).
            K.wait_for(matches, 60, "Prometheus targets == the pods, all up", interval=0.5)
            # Then a rollout: once the old pod is gone, the targets are exactly the new pods
            # within two scrape intervals (+ the 1 s discovery refresh and 2 s slack).
            self.kubectl("rollout", "restart", "deployment/movie-canary", *N)
            self.rollout_ok("movie-canary")
            K.wait_for(lambda: not [p for p in self.ks.get_json("pods", *N)["items"]
                                    if p["metadata"].get("deletionTimestamp")],
                       90, "the old pods to finish draining")
            K.wait_for(matches, 2 * SCRAPE_INTERVAL + 1 + 2,
                       "Prometheus targets == the new pods", interval=0.2)
            ts = targets()
            canary = [t for t in ts if t["labels"].get("app") == "movie" and
                      t["labels"].get("track") == "canary"]
            self.assertEqual(len(canary), 1)
            self.assertIn("pod_template_hash", canary[0]["labels"])
            self.assertEqual(canary[0]["labels"]["namespace"], NS)
        finally:
            prom.stop()
        self.assert_no_failures("prometheus step")


if __name__ == "__main__":
    unittest.main(verbosity=2, failfast=True)
