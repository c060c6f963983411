"""kubesim against the real kubectl: the verbs the release tooling and its tests use,
API error codes, the pod environment (env.valueFrom, ConfigMap/Secret volumes in a
mount namespace of its own), logs, cascading delete and the SIGTERM drain. kubesim
stands in for Kubernetes (no cluster can run here); the pods run the real metadata
binary."""
import json
import os
import subprocess
import unittest

import ksharness as K

NS = "web"
N = ["-n", NS]
MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config, namespace: web}
data:
  extra.yaml: |
    log:
      level: debug
  greeting: hello
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: 10
      containers:
      - name: web
        image: registry.example/team/movie-metadata:1.0
        args: ["--config", "/etc/web/extra.yaml"]
        env:
        - {name: METADATA_STORAGE_DRIVER, value: memory}
        - name: POD_NAME
          valueFrom: {fieldRef: {fieldPath: metadata.name}}
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}
        - name: TOKEN
          valueFrom: {secretKeyRef: {name: web-secret, key: token}}
        ports: [{name: grpc, containerPort: 8081}]
        readinessProbe: {grpc: {port: 8081, service: readiness}, periodSeconds: 1}
        livenessProbe: {grpc: {port: 8081, service: liveness}, periodSeconds: 5}
        volumeMounts:
        - {name: config, mountPath: /etc/web, readOnly: true}
        - {name: secret, mountPath: /var/run/web-secret}
      volumes:
      - {name: config, configMap: {name: web-config}}
      - {name: secret, secret: {secretName: web-secret}}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: web}
spec:
  selector: {app: web}
  ports: [{name: grpc, port: 8081, targetPort: grpc}]
"""


class Kubectl(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ks = K.Kubesim().start()
        cls.addClassCleanup(cls.ks.stop)
        cls.ks.kubectl("create", "namespace", NS)
        cls.ks.kubectl("create", "secret", "generic", "web-secret", *N,
                       "--from-literal=token=s3cret")
        cls.ks.kubectl("apply", "-f", "-", input=MANIFEST)
        cls.ks.kubectl("rollout", "status", "deployment/web", *N, "--timeout=60s", timeout=90)

    def k(self, *a, **kw):
        return self.ks.kubectl(*a, **kw)

    def live_pods(self):
        return [p for p in self.ks.get_json("pods", "-l", "app=web", *N)["items"]
                if not p["metadata"].get("deletionTimestamp")]

    def pid_of(self, pod):
        return int(pod["status"]["containerStatuses"][0]["containerID"].split("://")[1])

    def test_pod_environment_and_volumes(self):
        pod = self.live_pods()[0]
        pid = self.pid_of(pod)
        with open("/proc/%d/environ" % pid, "rb") as f:
            env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        self.assertEqual(env[b"POD_NAME"].decode(), pod["metadata"]["name"])
        self.assertEqual(env[b"POD_IP"].decode(), pod["status"]["podIP"])
        self.assertEqual(env[b"GREETING"], b"hello")
        self.assertEqual(env[b"TOKEN"], b"s3cret")
        self.assertEqual(env[b"METADATA_API_HOST"].decode(), pod["status"]["podIP"])
        cat = subprocess.run(["nsenter", "-t", str(pid), "-m", "cat", "/etc/web/extra.yaml",
                              "/var/run/web-secret/token"], capture_output=True, timeout=10)
        self.assertEqual(cat.stdout, b"log:\n  level: debug\ns3cret")
        # The host sees none of it: the mounts are in the pod's own mount namespace.
        self.assertFalse(os.path.exists("/var/run/web-secret/token"))
        self.assertTrue(pod["status"]["podIP"].startswith("127.77."))
        logs = self.k("logs", pod["metadata"]["name"], *N).stdout
        self.assertIn('"msg":"listening"', logs)

    def test_describe_get_watch(self):
        out = self.k("describe", "deployment", "web", *N).stdout
        self.assertIn("RollingUpdate", out)
        self.assertIn("1 max surge", out)
        out = self.k("describe", "pod", *N, self.live_pods()[0]["metadata"]["name"]).stdout
        self.assertIn("Readiness:", out)
        env = dict(os.environ, KUBECONFIG=self.ks.kubeconfig)
        with open(os.path.join(self.ks.dir, "api.log")) as f:
            before = len([line for line in f if "deployments?" in line and "watch=true" in line
                          and "metadata.name%3Dweb" in line])
        w = subprocess.Popen([K.KUBECTL, "get", "deployment", "web", *N, "-w", "-o", "json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                             start_new_session=True)
        K._started.append(w)
        try:
            dec = json.JSONDecoder()
            state = {"buf": "", "objs": []}
            os.set_blocking(w.stdout.fileno(), False)

            def read_objects():
                chunk = w.stdout.read()
                if chunk:
                    state["buf"] += chunk.decode()
                while state["buf"].strip():
                    try:
                        obj, end = dec.raw_decode(state["buf"].lstrip())
                    except ValueError:
                        break
                    state["buf"] = state["buf"].lstrip()[end:]
                    state["objs"].append(obj)
                return state["objs"]

            def annotated():
                return [o for o in read_objects() if (o["metadata"].get("annotations") or {})
                        .get("kubesim/test") == "watch"]
            # The initial state first, then wait until kubectl's watch request reached the
            # server: for a single object kubectl watches from resourceVersion 0 and drops
            # the first event (the current state), so a change made before its watch
            # starts would never be printed, against a real apiserver too.
            K.wait_for(read_objects, 60, "kubectl get -w to print the deployment",
                       interval=0.05)

            def watching():
                with open(os.path.join(self.ks.dir, "api.log")) as f:
                    return len([line for line in f if "deployments?" in line and
                                "watch=true" in line and "metadata.name%3Dweb" in line]) > before
            K.wait_for(watching, 60, "kubectl's watch request", interval=0.05)
            self.assertFalse(annotated())
            self.k("annotate", "deployment", "web", *N, "kubesim/test=watch", "--overwrite")
            try:
                K.wait_for(annotated, 60, "kubectl get -w to show the annotation",
                           interval=0.05)
            except AssertionError:
                w.kill()
                raise AssertionError("kubectl -w stderr: %s" % w.stderr.read().decode())
        finally:
            w.kill()
            w.wait()

    def test_scale_pause_resume_restart_undo(self):
        def rs_count():
            return len(self.ks.get_json("rs", "-l", "app=web", *N)["items"])

        def status(timeout=90):
            self.k("rollout", "status", "deployment/web", *N, "--timeout=%ds" % timeout,
                   timeout=timeout + 30)
        self.k("scale", "deployment/web", *N, "--replicas=3")
        K.wait_for(lambda: self.ks.get_json("deployment", "web", *N)["status"].get(
            "availableReplicas") == 3, 60, "3 available replicas")
        self.k("set", "image", "deployment/web", *N, "web=movie-metadata:1.1")
        status()
        self.assertEqual(rs_count(), 2)
        self.k("rollout", "pause", "deployment/web", *N)
        self.k("set", "image", "deployment/web", *N, "web=movie-metadata:1.2")
        self.assertTrue(self.ks.get_json("deployment", "web", *N)["spec"]["paused"])
        K.wait_for(lambda: [c for c in self.ks.get_json("deployment", "web", *N)["status"]
                            ["conditions"] if c["type"] == "Progressing" and
                            c["reason"] == "DeploymentPaused"], 30, "DeploymentPaused")
        self.assertEqual(rs_count(), 2, "no new ReplicaSet while paused")
        p = self.k("rollout", "undo", "deployment/web", *N, check=False)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("resume it first", p.stderr)
        self.k("rollout", "resume", "deployment/web", *N)
        status()
        self.k("rollout", "restart", "deployment/web", *N)
        status()
        hist = self.k("rollout", "history", "deployment/web", *N).stdout
        revs = [int(x.split()[0]) for x in hist.splitlines() if x[:1].isdigit()]
        self.assertEqual(revs, [1, 2, 3, 4])
        self.k("rollout", "undo", "deployment/web", *N, "--to-revision=3")
        status()
        dep = self.ks.get_json("deployment", "web", *N)
        self.assertEqual(dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"],
                         "5")
        self.assertEqual(dep["spec"]["template"]["spec"]["containers"][0]["image"],
                         "movie-metadata:1.2")
        self.assertNotIn("kubectl.kubernetes.io/restartedAt",
                         dep["spec"]["template"]["metadata"].get("annotations") or {})
        self.k("scale", "deployment/web", *N, "--replicas=2")
        K.wait_for(lambda: len(self.live_pods()) == 2, 60, "2 pods")

    def test_watch_selector_transitions(self):
        """An object that starts matching a watch's selector arrives as ADDED, one that
        stops matching as DELETED (what the apiserver's watch cache does)."""
        events = []
        w = K.Watch(self.ks, "/api/v1/namespaces/web/pods?labelSelector=kubesim-watch%3Dyes",
                    lambda t, o: events.append((t, o["metadata"]["name"])))
        w.start()
        try:
            K.wait_for(lambda: w.synced, 10, "the watch to list")
            name = self.live_pods()[0]["metadata"]["name"]
            self.k("label", "pod", name, *N, "kubesim-watch=yes")
            K.wait_for(lambda: ("ADDED", name) in events, 10, "ADDED on matching")
            self.k("label", "pod", name, *N, "kubesim-watch-")
            K.wait_for(lambda: ("DELETED", name) in events, 10, "DELETED on not matching")
        finally:
            w.stop()
        self.assertEqual(w.errors, [])
        self.assertEqual([e for e in events if e[1] == name][:1], [("ADDED", name)])

    def test_api_errors(self):
        ks = self.ks
        st, body = ks.api("GET", "/apis/apps/v1/namespaces/web/deployments/nope")
        self.assertEqual((st, body["reason"], body["details"]["kind"]),
                         (404, "NotFound", "deployments"))
        self.assertEqual(body["message"], 'deployments.apps "nope" not found')
        st, dep = ks.api("GET", "/apis/apps/v1/namespaces/web/deployments/web")
        stale = dict(dep)
        stale["metadata"] = dict(dep["metadata"], resourceVersion="1")
        st, body = ks.api("PUT", "/apis/apps/v1/namespaces/web/deployments/web", stale)
        self.assertEqual((st, body["reason"]), (409, "Conflict"))
        st, body = ks.api("PATCH", "/apis/apps/v1/namespaces/web/deployments/web",
                          {"spec": {"strategy": {"rollingUpdate": {"maxSurge": 0,
                                                                   "maxUnavailable": 0}}}},
                          "application/merge-patch+json")
        self.assertEqual((st, body["reason"]), (422, "Invalid"))
        self.assertEqual(body["details"]["causes"][0]["field"],
                         "spec.strategy.rollingUpdate.maxUnavailable")
        st, body = ks.api("PATCH", "/apis/apps/v1/namespaces/web/deployments/web",
                          [{"op": "test", "path": "/spec/replicas", "value": 99}],
                          "application/json-patch+json")
        self.assertEqual(st, 422)
        st, body = ks.api("PATCH", "/apis/apps/v1/namespaces/web/deployments/web", {},
                          "text/plain")
        self.assertEqual((st, body["reason"]), (415, "UnsupportedMediaType"))
        st, body = ks.api("GET", "/apis/apps/v1/namespaces/web/deployments?watch=1&"
                          "sendInitialEvents=true&resourceVersionMatch=NotOlderThan")
        self.assertEqual(st, 422)
        st, body = ks.api("PATCH", "/apis/apps/v1/namespaces/web/deployments/web",
                          {"metadata": {"resourceVersion": "1"}},
                          "application/strategic-merge-patch+json")
        self.assertEqual((st, body["reason"]), (409, "Conflict"))
        # A watch from a resourceVersion older than the history: 200, one ERROR 410 event.
        st, body = ks.api("GET", "/apis/apps/v1/namespaces/web/deployments?watch=1&"
                          "resourceVersion=1")
        self.assertEqual(st, 200)
        ev = body if isinstance(body, dict) else json.loads(body.split(b"\n")[0])
        self.assertEqual((ev["type"], ev["object"]["code"], ev["object"]["reason"]),
                         ("ERROR", 410, "Expired"))
        st, body = ks.api("GET", "/apis/apps/v1/namespaces/web/deployments?labelSelector="
                          "app%3Dweb&fieldSelector=metadata.name%3Dweb")
        self.assertEqual([d["metadata"]["name"] for d in body["items"]], ["web"])
        # generation moves with spec, observedGeneration follows.
        g = dep["metadata"]["generation"]
        self.k("patch", "deployment", "web", *N, "-p", '{"spec":{"minReadySeconds":0}}')
        K.wait_for(lambda: (lambda d: d["metadata"]["generation"] > g and
                            d["status"]["observedGeneration"] == d["metadata"]["generation"])(
            self.ks.get_json("deployment", "web", *N)), 30, "observedGeneration")

    def test_recreate_and_history_limit(self):
        manifest = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: rc, namespace: web}
spec:
  replicas: 2
  revisionHistoryLimit: 1
  selector: {matchLabels: {app: rc}}
  strategy: {type: Recreate}
  template:
    metadata: {labels: {app: rc}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: rc
        image: movie-metadata:1
        env: [{name: METADATA_STORAGE_DRIVER, value: memory}]
        readinessProbe: {grpc: {port: 8081}, periodSeconds: 1}
"""
        self.k("apply", "-f", "-", input=manifest)
        self.k("rollout", "status", "deployment/rc", *N, "--timeout=60s", timeout=90)
        seen = {"mixed": False}
        for tag in ("2", "3"):
            old = {p["metadata"]["name"] for p in self.ks.get_json(
                "pods", "-l", "app=rc", *N)["items"]}
            self.k("set", "image", "deployment/rc", *N, "rc=movie-metadata:" + tag)

            def check():
                pods = self.ks.get_json("pods", "-l", "app=rc", *N)["items"]
                names = {p["metadata"]["name"] for p in pods}
                if names & old and names - old:
                    seen["mixed"] = True  # Recreate: never old and new pods at once
                return not names & old and len(pods) == 2
            K.wait_for(check, 60, "the old pods replaced")
            self.k("rollout", "status", "deployment/rc", *N, "--timeout=60s", timeout=90)
        self.assertFalse(seen["mixed"], "old and new pods ran at the same time")
        K.wait_for(lambda: len(self.ks.get_json("rs", "-l", "app=rc", *N)["items"]) == 2, 30,
                   "revisionHistoryLimit 1: one old ReplicaSet kept")
        self.k("delete", "deployment", "rc", *N, "--timeout=60s", timeout=90)

    def test_zz_cascading_delete_and_drain(self):
        pids = [self.pid_of(p) for p in self.live_pods()]
        self.k("create", "configmap", "other", *N, "--from-literal=a=b")
        self.assertEqual(self.ks.get_json("configmap", "other", *N)["data"], {"a": "b"})
        self.k("delete", "deployment", "web", *N, "--timeout=60s", timeout=90)
        K.wait_for(lambda: not self.ks.get_json("rs", *N)["items"] and
                   not self.ks.get_json("pods", *N)["items"], 60, "RS and pods deleted")
        for pid in pids:
            self.assertFalse(os.path.exists("/proc/%d" % pid) and
                             open("/proc/%d/stat" % pid).read().split()[2] != "Z",
                             "pod process %d gone" % pid)
        # Namespace deletion empties the namespace, then removes it.
        self.k("create", "namespace", "scratch")
        self.k("create", "configmap", "c", "-n", "scratch", "--from-literal=a=b")
        self.k("delete", "namespace", "scratch", "--timeout=60s", timeout=90)
        self.assertNotEqual(self.k("get", "namespace", "scratch", check=False).returncode, 0)
        st, _ = self.ks.api("GET", "/api/v1/namespaces/scratch/configmaps/c")
        self.assertEqual(st, 404)
        # A fresh pod, then SIGTERM: kubesim drains it and exits 0, nothing left.
        self.k("apply", "-f", "-", input=MANIFEST)
        self.k("rollout", "status", "deployment/web", *N, "--timeout=60s", timeout=90)
        self.assertEqual(self.ks.stop(), 0)
        self.assertEqual(self.ks.pod_processes(), [])
        with open(os.path.join(self.ks.dir, "kubesim.log")) as f:
            log = f.read()
        self.assertIn("shutdown: done", log)


class Crash(unittest.TestCase):
    def test_pods_die_with_kubesim(self):
        """SIGKILL of kubesim itself: PDEATHSIG takes every pod process with it."""
        ks = K.Kubesim().start()
        self.addCleanup(ks.stop)
        ks.kubectl("create", "namespace", NS)
        ks.kubectl("create", "secret", "generic", "web-secret", *N, "--from-literal=token=x")
        ks.kubectl("apply", "-f", "-", input=MANIFEST)
        ks.kubectl("rollout", "status", "deployment/web", *N, "--timeout=60s", timeout=90)
        self.assertEqual(len(ks.pod_processes()), 2)
        ks.proc.kill()
        ks.proc.wait(10)
        K.wait_for(lambda: not ks.pod_processes(), 15, "pod processes to die with kubesim")


if __name__ == "__main__":
    unittest.main(verbosity=2)
