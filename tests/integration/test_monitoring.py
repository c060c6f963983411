"""What Prometheus and Grafana users install (deploy/monitoring/), checked with the
real tools: promtool checks and unit-tests the rules; a real Prometheus scrapes the
three real services (plus kafka-dev and rating ingestion) through the shipped
scrape job and evaluates the shipped rules; every PromQL expression of the Grafana
dashboard must parse, return data and name only metrics the services export or the
rules record. The PodMonitor must select the pods the manifests render.

Kubernetes service discovery is the one piece replaced: Debian's Prometheus is built
without it, so the job's kubernetes_sd_configs become file_sd_configs whose target
groups carry the __meta_kubernetes_* labels a pod would have (the relabeling under
test is the shipped one, unchanged).

    /usr/bin/python3 test_monitoring.py [--write-prometheusrule]
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import urllib.parse
import urllib.request

import grpc
import yaml

import harness
import kafka_harness
from harness import Service

MON = os.path.join(harness.SOURCE_DIR, "deploy", "monitoring")
RULES = os.path.join(MON, "movie-rules.yaml")
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
S = harness.stubs()
pb = S.movie_pb2


def literal_dumper():
    class Dumper(yaml.SafeDumper):
        pass

    def text(d, v):
        return d.represent_scalar("tag:yaml.org,2002:str", v, style="|" if "\n" in v else None)
    Dumper.add_representer(str, text)
    return Dumper


def prometheusrule_text():
    """prometheusrule.yaml as generated from movie-rules.yaml."""
    with open(RULES) as f:
        groups = yaml.safe_load(f)["groups"]
    doc = {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
           "metadata": {"name": "movie", "labels": {"app.kubernetes.io/part-of": "movie"}},
           "spec": {"groups": groups}}
    return ("# Prometheus Operator: movie-rules.yaml as a PrometheusRule (same groups;\n"
            "# ctest integration.monitoring fails when they differ). Regenerate with\n"
            "# /usr/bin/python3 tests/integration/test_monitoring.py --write-prometheusrule\n"
            + yaml.dump(doc, Dumper=literal_dumper(), sort_keys=False, width=1000))


PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "and", "or",
                "unless", "offset", "bool", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects (label matchers, strings, ranges,
    grouping clauses and function names removed)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    e = re.sub(r"(?<![A-Za-z0-9_:])[0-9][0-9.]*(?:e[+-]?[0-9]+)?", " ", e)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", e):
        tail = e[m.end():].lstrip()
        word = m.group(0)
        if tail.startswith("(") or word.lower() in PROMQL_WORDS:
            continue
        names.add(word)
    return names


def dashboard_exprs(dash):
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]


def instantiate(expr):
    return (expr.replace("$namespace", "test").replace("$app", "|".join(harness.SERVICES))
            .replace("$__rate_interval", "1m"))


class StaticChecks(unittest.TestCase):
    def test_promtool_check_rules(self):
        p = subprocess.run([PROMTOOL, "check", "rules", RULES], capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)

    def test_promtool_test_rules(self):
        p = subprocess.run([PROMTOOL, "test", "rules",
                            os.path.join(MON, "tests", "movie-rules.test.yaml")],
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertIn("SUCCESS", p.stdout)

    def test_prometheusrule_matches_rules(self):
        with open(os.path.join(MON, "prometheusrule.yaml")) as f:
            self.assertEqual(f.read(), prometheusrule_text(),
                             "regenerate: test_monitoring.py --write-prometheusrule")

    def test_dashboard_is_importable(self):
        with open(os.path.join(MON, "grafana-dashboard.json")) as f:
            dash = json.load(f)
        for key in ("uid", "title", "schemaVersion", "panels", "templating"):
            self.assertIn(key, dash)
        ids = [p["id"] for p in dash["panels"]]
        self.assertEqual(len(ids), len(set(ids)))
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        self.assertEqual(variables["datasource"]["type"], "datasource")
        self.assertEqual(variables["datasource"]["query"], "prometheus")
        exprs = 0
        for panel in dash["panels"]:
            for key in ("x", "y", "w", "h"):
                self.assertIn(key, panel["gridPos"])
            if panel["type"] == "row":
                continue
            self.assertEqual(panel["datasource"]["uid"], "${datasource}", panel["title"])
            self.assertTrue(panel["targets"], panel["title"])
            for t in panel["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}")
                exprs += 1
        self.assertGreaterEqual(exprs, 20)

    def test_podmonitor_selects_the_rendered_pods(self):
        with open(os.path.join(MON, "podmonitor.yaml")) as f:
            pm = yaml.safe_load(f)
        with open(os.path.join(MON, "prometheus-scrape.yaml")) as f:
            job = yaml.safe_load(f)["scrape_configs"][0]
        selector = pm["spec"]["selector"]["matchLabels"]
        endpoint = pm["spec"]["podMetricsEndpoints"][0]
        # The same `app` and `track` labels as the plain job.
        plain = [(r["source_labels"], r.get("regex"), r["target_label"])
                 for r in job["relabel_configs"] if r.get("target_label") in ("app", "track")]
        operator = [(r["sourceLabels"], r.get("regex"), r["targetLabel"])
                    for r in endpoint["relabelings"]]
        self.assertEqual(plain, operator)
        for overlay in ("dev", "staging", "production"):
            out = subprocess.run(["kubectl", "kustomize", os.path.join(
                harness.SOURCE_DIR, "deploy", "k8s", "overlays", overlay)],
                capture_output=True, text=True, timeout=120, check=True).stdout
            deployments = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "Deployment"]
            self.assertGreaterEqual(len(deployments), 3, overlay)
            for d in deployments:
                labels = d["spec"]["template"]["metadata"]["labels"]
                for k, v in selector.items():
                    self.assertEqual(labels.get(k), v, (overlay, d["metadata"]["name"]))
                self.assertIn(labels.get("app.kubernetes.io/name"), tuple(harness.SERVICES))
                ports = [p.get("name") for c in d["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])]
                self.assertIn(endpoint["port"], ports, (overlay, d["metadata"]["name"]))


class LivePrometheus(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.work = tempfile.mkdtemp(prefix="movie-monitoring-")
        quiet = "log:\n  requests: false\nshutdown:\n  drain_delay: 0s\n  grace_period: 5s\n"
        cls.procs = []
        cls.kafka_port = kafka_harness.free_port()
        kd = subprocess.Popen([os.path.join(harness.BIN_DIR, "kafka-dev"), "--port",
                               str(cls.kafka_port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
        harness._started.append(kd)
        cls.procs.append(kd)

        def kafka_listening():
            if kd.poll() is not None:
                raise RuntimeError("kafka-dev exited %d" % kd.returncode)
            try:
                socket.create_connection(("127.0.0.1", cls.kafka_port), timeout=1).close()
                return True
            except OSError:
                return False
        kafka_harness.wait_for(kafka_listening, 15, "kafka-dev on its --port")
        meta = Service("metadata", "storage:\n  driver: memory\n" + quiet).start()
        rating = Service("rating", "storage:\n  driver: memory\n" + quiet, env={
            "RATING_KAFKA_BROKERS": "127.0.0.1:%d" % cls.kafka_port,
            "RATING_KAFKA_SESSION_TIMEOUT": "6s"}).start()
        movie = Service("movie", "peers:\n  metadata:\n    addresses: [\"%s\"]\n  rating:\n"
                        "    addresses: [\"%s\"]\n" % (meta.target, rating.target) + quiet).start()
        cls.services = {"metadata": meta, "rating": rating, "movie": movie}
        cls.traffic()
        cls.start_prometheus()

    @classmethod
    def traffic(cls):
        s = cls.services
        ch = grpc.insecure_channel(s["metadata"].target)
        S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
            metadata=pb.Metadata(id="m1", title="t", description="d", director="x")), timeout=5)
        ch.close()
        p = subprocess.run([os.path.join(harness.BIN_DIR, "ratingingester"), "--brokers",
                            "127.0.0.1:%d" % cls.kafka_port, "--file",
                            os.path.join(harness.SOURCE_DIR, "tools", "ratingingester",
                                         "events.json")], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        ch = grpc.insecure_channel(s["movie"].target)
        stub = S.movie_pb2_grpc.MovieServiceStub(ch)
        for movie_id in ("m1", "m1", "absent"):
            try:
                stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id=movie_id), timeout=5)
            except grpc.RpcError:
                pass
        ch.close()
        s["metadata"].http("GET", "/metadata?id=absent")

    @classmethod
    def start_prometheus(cls):
        with open(os.path.join(MON, "prometheus-scrape.yaml")) as f:
            job = yaml.safe_load(f)["scrape_configs"][0]
        # Kubernetes discovery -> file discovery carrying the same meta labels.
        targets = os.path.join(cls.work, "pods.json")
        groups = []
        for app, svc in cls.services.items():
            groups.append({"targets": [svc.target], "labels": {
                "__meta_kubernetes_namespace": "test",
                "__meta_kubernetes_pod_name": app + "-0",
                "__meta_kubernetes_pod_label_app_kubernetes_io_name": app,
                "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "movie",
                "__meta_kubernetes_pod_container_port_name": "grpc",
                "__meta_kubernetes_pod_phase": "Running",
                **({"__meta_kubernetes_pod_label_track": "canary"} if app == "movie" else {}),
            }})
        # A pod of another system and a pending one: dropped by the relabeling.
        groups.append({"targets": ["127.0.0.1:1"], "labels": {
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "other",
            "__meta_kubernetes_pod_container_port_name": "grpc"}})
        groups.append({"targets": ["127.0.0.1:2"], "labels": {
            "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "movie",
            "__meta_kubernetes_pod_container_port_name": "grpc",
            "__meta_kubernetes_pod_phase": "Pending"}})
        with open(targets, "w") as f:
            json.dump(groups, f)
        del job["kubernetes_sd_configs"]
        job["file_sd_configs"] = [{"files": [targets]}]
        job["scrape_interval"] = "1s"
        job["scrape_timeout"] = "1s"
        # The shipped rules, evaluated every second instead of every 30 s.
        with open(RULES) as f:
            rules = yaml.safe_load(f)
        for g in rules["groups"]:
            g["interval"] = "1s"
        rules_path = os.path.join(cls.work, "movie-rules.yaml")
        with open(rules_path, "w") as f:
            yaml.safe_dump(rules, f)
        cfg = os.path.join(cls.work, "prometheus.yml")
        with open(cfg, "w") as f:
            yaml.safe_dump({"global": {"evaluation_interval": "1s"}, "rule_files": [rules_path],
                            "scrape_configs": [job]}, f)
        p = subprocess.run([PROMTOOL, "check", "config", cfg], capture_output=True, text=True,
                           timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        cls.prom_port = harness.free_port()
        cls.prom = subprocess.Popen(
            [PROMETHEUS, "--config.file=" + cfg, "--storage.tsdb.path=" + cls.work + "/data",
             "--web.listen-address=127.0.0.1:%d" % cls.prom_port],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        harness._started.append(cls.prom)
        cls.procs.append(cls.prom)

    @classmethod
    def tearDownClass(cls):
        for s in cls.services.values():
            s.stop()
            s.__exit__(None, None, None)
        for p in reversed(cls.procs):
            if p.poll() is None:
                p.terminate()
                p.wait(30)
        shutil.rmtree(cls.work, ignore_errors=True)

    @classmethod
    def api(cls, path, **params):
        url = "http://127.0.0.1:%d/api/v1/%s?%s" % (cls.prom_port, path,
                                                     urllib.parse.urlencode(params, doseq=True))
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.load(r)
        except urllib.error.HTTPError as e:
            # A starting Prometheus answers 503 with a plain-text body.
            body = e.read().decode(errors="replace")
            try:
                return json.loads(body)
            except ValueError:
                return {"status": "error", "http": e.code, "error": body[:200]}

    def query(self, expr):
        return self.api("query", query=expr)

    def wait_query(self, expr, want, timeout=90):
        """Poll until `want(result)` holds; the first scrape can take ~15 s."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = self.query(expr)
                if last.get("status") == "success" and want(last["data"]["result"]):
                    return last["data"]["result"]
            except OSError:
                pass
            time.sleep(0.5)
        self.fail("%s: %r" % (expr, last))

    def ready(self):
        # Every target up with its labels, and the slowest rule (3d windows) evaluated
        # over more than one scrape.
        self.wait_query('up{job="movie"} == 1', lambda r: len(r) == 3)
        self.wait_query('movie:slo_errors_per_request:ratio_rate3d', lambda r: len(r) == 3)
        self.wait_query('sum(rating_ingest_events_stored_total{namespace="test"})',
                        lambda r: r and float(r[0]["value"][1]) >= 1)
        # Rule groups are evaluated one after another: on a loaded machine a later
        # group's series appear a few seconds after the first's. Wait for every
        # recorded name (what the rules and dashboard checks below read once).
        with open(RULES) as f:
            recorded = {r["record"] for g in yaml.safe_load(f)["groups"]
                        for r in g["rules"] if "record" in r}
        deadline = time.monotonic() + 60
        missing = recorded
        while time.monotonic() < deadline:
            missing = recorded - set(self.api("label/__name__/values").get("data") or [])
            if not missing:
                break
            time.sleep(0.5)
        self.assertEqual(missing, set(), "recording rules never evaluated")

    def test_targets_and_labels_from_the_shipped_job(self):
        self.ready()
        up = self.query('up{job="movie"}')["data"]["result"]
        labels = sorted((r["metric"]["app"], r["metric"]["namespace"], r["metric"]["pod"],
                         r["metric"].get("track", "")) for r in up)
        self.assertEqual(labels, [("metadata", "test", "metadata-0", ""),
                                  ("movie", "test", "movie-0", "canary"),
                                  ("rating", "test", "rating-0", "")])

    def test_rules_evaluate_on_real_metrics(self):
        self.ready()
        rules = self.api("rules")["data"]["groups"]
        names = [r["name"] for g in rules for r in g["rules"]]
        self.assertEqual(len(names), 30)
        for g in rules:
            for r in g["rules"]:
                self.assertEqual(r["health"], "ok", (r["name"], r.get("lastError")))
        # Calls while Prometheus watches (a ratio over a window without calls is
        # NaN); NOT_FOUND is a client error, so no failed call counts.
        ch = grpc.insecure_channel(self.services["movie"].target)
        self.addCleanup(ch.close)
        stub = S.movie_pb2_grpc.MovieServiceStub(ch)
        deadline = time.monotonic() + 60
        value = None
        while time.monotonic() < deadline:
            for movie_id in ("m1", "absent"):
                try:
                    stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id=movie_id), timeout=5)
                except grpc.RpcError as e:
                    self.assertEqual(e.code(), grpc.StatusCode.NOT_FOUND)
            r = self.query('movie:slo_errors_per_request:ratio_rate5m{app="movie"}')
            r = r["data"]["result"]
            if r and r[0]["value"][1] != "NaN":
                value = float(r[0]["value"][1])
                break
            time.sleep(0.5)
        self.assertEqual(value, 0)
        got = self.wait_query('movie:grpc_server_requests:rate5m{app="movie",grpc_code="NotFound",'
                              'grpc_service="MovieService"}',
                              lambda r: len(r) == 1 and float(r[0]["value"][1]) > 0)
        self.assertGreater(float(got[0]["value"][1]), 0)
        # No alert fires on a healthy system.
        firing = [a for a in self.api("alerts")["data"]["alerts"] if a["state"] == "firing"]
        self.assertEqual(firing, [])
        # Every rule names only metrics the services export (or other rules record).
        known = set(self.api("label/__name__/values")["data"])
        with open(RULES) as f:
            for g in yaml.safe_load(f)["groups"]:
                for r in g["rules"]:
                    missing = metric_names(r["expr"]) - known
                    self.assertEqual(missing, set(), r.get("record") or r.get("alert"))

    def test_every_dashboard_query_answers(self):
        self.ready()
        with open(os.path.join(MON, "grafana-dashboard.json")) as f:
            dash = json.load(f)
        known = set(self.api("label/__name__/values")["data"])
        checked = 0
        for title, expr in dashboard_exprs(dash):
            expr = instantiate(expr)
            names = metric_names(expr)
            self.assertTrue(names, (title, expr))
            self.assertEqual(names - known, set(), (title, expr))
            result = self.wait_query(expr, lambda r: len(r) > 0, timeout=30)
            self.assertTrue(result, (title, expr))
            checked += 1
        self.assertGreaterEqual(checked, 20)
        # The variables' queries find the namespace and the three services.
        for var in dash["templating"]["list"]:
            if var["type"] != "query":
                continue
            m = re.match(r"label_values\((.*), (\w+)\)$", var["query"]["query"])
            self.assertTrue(m, var["name"])
            values = self.api("label/%s/values" % m.group(2),
                              **{"match[]": instantiate(m.group(1))})["data"]
            self.assertEqual(sorted(values), ["test"] if var["name"] == "namespace"
                             else ["metadata", "movie", "rating"])


if __name__ == "__main__":
    if sys.argv[1:] == ["--write-prometheusrule"]:
        with open(os.path.join(MON, "prometheusrule.yaml"), "w") as f:
            f.write(prometheusrule_text())
        sys.exit(0)
    unittest.main(verbosity=2)
