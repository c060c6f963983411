"""The kubesim test stack shared by the scenario tests (test_production, test_guard, and the
release / cd tests): MariaDB, a kubesim running the production overlay (the fast test
overlay tests/kubesim/overlays/production-fast) applied with the real kubectl, a real
Prometheus discovering the pods through kubesim's /kubesim/http_sd, steady GetMovieDetails
load through movie's Service counting answers per gRPC code, and the --images map helper.

kubesim stands in for Kubernetes (no cluster can run here); everything in the pods, the
database, Prometheus and kubectl are the real things.

Typical use:
    stack = ksstack.Stack(images={"movie-metadata:bad": {"env": {"METADATA_FAULTS_ERROR_RATIO": "0.3"}}})
    stack.start()                 # MariaDB + kubesim
    stack.apply_production()      # namespace, secret, MariaDB Service, overlay, rollouts, data
    prom = stack.start_prometheus()
    load = stack.start_load()
    ...
    stack.stop()                  # also on failure (addClassCleanup(stack.stop))
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

import ksharness as K

sys.path.insert(0, os.path.join(K.SOURCE_DIR, "tests", "integration"))
import harness  # noqa: E402

NS = "movie-production"
N = ["-n", NS]
S = harness.stubs()
pb = S.movie_pb2
SCRAPE_INTERVAL = 3  # seconds, in the test Prometheus configuration
DEPLOYMENTS = ["metadata-production", "metadata-canary", "rating-production", "rating-canary",
               "movie-production", "movie-canary"]
OVERLAY = os.path.join(K.HERE, "overlays", "production-fast")
# The tags the production-fast overlay deploys.
BASE_IMAGES = ("movie-metadata:0.1.0", "movie-rating:0.1.0")
STORED = ("metadata", "rating")  # the services with a database (movie has none)


class Database:
    """The suite's MariaDB (MOVIE_TEST_MYSQL_*), or a throwaway one when run alone."""

    def __init__(self):
        self.own = None
        if os.environ.get("MOVIE_TEST_MYSQL_HOST"):
            self.host = os.environ["MOVIE_TEST_MYSQL_HOST"]
            self.port = int(os.environ.get("MOVIE_TEST_MYSQL_PORT", "3306"))
            self.user = os.environ.get("MOVIE_TEST_MYSQL_USER", "movie")
            self.password = os.environ.get("MOVIE_TEST_MYSQL_PASSWORD", "movie")
        else:
            self.own = tempfile.mkdtemp(prefix="kubesim-mariadb-")
            self.host, self.port = "127.0.0.1", harness.free_port()
            self.user, self.password = "movie", "movie"
            subprocess.run([os.path.join(K.SOURCE_DIR, "scripts", "test-mariadb.sh"), "start",
                            self.own, str(self.port)], check=True, timeout=90)
        self.name = "movie_kubesim_%d" % os.getpid()
        self.sql("CREATE DATABASE IF NOT EXISTS " + self.name)

    def sql(self, statement):
        subprocess.run(["mariadb", "--no-defaults", "-h" + self.host, "-P%d" % self.port,
                        "-u" + self.user, "-p" + self.password, "-e", statement], check=True,
                       timeout=30)

    def close(self):
        try:
            self.sql("DROP DATABASE IF EXISTS " + self.name)
        finally:
            if self.own:
                subprocess.run([os.path.join(K.SOURCE_DIR, "scripts", "test-mariadb.sh"), "stop",
                                self.own], timeout=60)
                shutil.rmtree(self.own, ignore_errors=True)


def image(svc, db=None, **env):
    """An --images map entry: the service binary, its database settings (when db is given)
    and extra environment, e.g. image("metadata", db, METADATA_FAULTS_ERROR_RATIO="0.3")."""
    e = {}
    if db is not None:
        e["%s_STORAGE_MYSQL_DATABASE" % svc.upper()] = db.name
        e["%s_STORAGE_MYSQL_USER" % svc.upper()] = db.user
    e.update(env)
    return {"binary": os.path.join(K.BIN_DIR, svc), "env": e}


def images_map(db, extra=None):
    """The overlay's images plus `extra` ({"movie-metadata:bad": {"ENV": "v"}}): image
    reference -> environment added to that service's normal entry."""
    def entry(ref, env):
        svc = ref.split(":")[0][len("movie-"):]
        return image(svc, db if svc in STORED else None, **env)
    m = {ref: entry(ref, {}) for ref in BASE_IMAGES}
    for ref, env in (extra or {}).items():
        m[ref] = entry(ref, env)
    return m


class Load(threading.Thread):
    """Steady GetMovieDetails calls to movie's ClusterIP Service, over several channels
    (each channel is one TCP connection, which kube-proxy pins to one pod). Counts every
    answer by gRPC code name (codes) and keeps the failures' text (failures)."""

    def __init__(self, target, movie_id, channels=4, pace=0.02):
        super().__init__(daemon=True)
        import grpc
        self.grpc = grpc
        self.target, self.movie_id = target, movie_id
        self.nch = channels
        self.pace = pace
        self.stop_ev = threading.Event()
        self.ok = 0
        self.failures = []
        self.codes = {}
        self.lock = threading.Lock()

    def run(self):
        ths = [threading.Thread(target=self.worker, daemon=True) for _ in range(self.nch)]
        for t in ths:
            t.start()
        for t in ths:
            t.join()

    def _count(self, code, failure=None):
        with self.lock:
            self.codes[code] = self.codes.get(code, 0) + 1
            if failure is None:
                self.ok += 1
            else:
                self.failures.append(failure)

    def worker(self):
        ch = self.grpc.insecure_channel(self.target)
        stub = S.movie_pb2_grpc.MovieServiceStub(ch)
        while not self.stop_ev.is_set():
            try:
                r = stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id=self.movie_id),
                                         timeout=5)
                if r.movie_details.metadata.id != self.movie_id:
                    raise AssertionError("wrong answer: %r" % r)
                self._count("OK")
            except self.grpc.RpcError as e:
                self._count(e.code().name, "%s %s" % (time.strftime("%H:%M:%S"), e))
            except Exception as e:  # noqa: BLE001 - every failure is counted and shown
                self._count("CLIENT", "%s %s" % (time.strftime("%H:%M:%S"), e))
            self.stop_ev.wait(self.pace)  # pacing of the load, not synchronisation
        ch.close()

    def snapshot(self):
        with self.lock:
            return self.ok, list(self.failures)

    def counts(self):
        with self.lock:
            return dict(self.codes)

    def stop(self):
        self.stop_ev.set()
        self.join(30)


def relabel_bytes(cfg):
    """The text of the relabel_configs block of the kubernetes-pods job."""
    m = re.search(r"(?ms)^    relabel_configs:\n.*?(?=^\S|^  - job_name|\Z)", cfg)
    if not m:
        raise AssertionError("no relabel_configs block")
    return m.group(0)


def http_sd_config(shipped, url, scrape_interval=SCRAPE_INTERVAL):
    """The shipped config with only its discovery block swapped for http_sd_configs."""
    new, n = re.subn(r"(?m)^    kubernetes_sd_configs:\n(?:      .*\n)+",
                     "    http_sd_configs:\n      - url: %s\n        refresh_interval: 1s\n" % url,
                     shipped)
    if n != 1:
        raise AssertionError("expected one kubernetes_sd_configs block, found %d" % n)
    new = new.replace("scrape_interval: 15s", "scrape_interval: %ds" % scrape_interval)
    return new


SHIPPED_PROMETHEUS = os.path.join(K.SOURCE_DIR, "deploy", "prometheus", "prometheus.yml")


class Prometheus:
    """The real Prometheus with the shipped scrape config, discovering kubesim's pods."""

    def __init__(self, ks, scrape_interval=SCRAPE_INTERVAL):
        if not shutil.which("prometheus"):
            raise AssertionError("prometheus is not installed (Debian package prometheus)")
        with open(SHIPPED_PROMETHEUS) as f:
            self.shipped = f.read()
        self.config = http_sd_config(self.shipped,
                                     "http://127.0.0.1:%d/kubesim/http_sd" % ks.port,
                                     scrape_interval)
        self.work = tempfile.mkdtemp(prefix="prom-", dir=ks.dir)
        self.config_path = os.path.join(self.work, "prometheus.yml")
        with open(self.config_path, "w") as f:
            f.write(self.config)
        self.port = harness.free_port()
        self.url = "http://127.0.0.1:%d" % self.port
        self.proc = None

    def check_config(self):
        """promtool's verdict on the test config: (returncode, output)."""
        r = subprocess.run(["promtool", "check", "config", self.config_path],
                           capture_output=True, text=True, timeout=60)
        return r.returncode, r.stdout + r.stderr

    def start(self):
        self.log = open(os.path.join(self.work, "prometheus.log"), "wb")
        self.proc = subprocess.Popen(["prometheus", "--config.file=" + self.config_path,
                                      "--storage.tsdb.path=" + os.path.join(self.work, "data"),
                                      "--web.listen-address=127.0.0.1:%d" % self.port],
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        K._started.append(self.proc)
        K.wait_for(self.ready, 60, "Prometheus to answer", interval=0.3)
        return self

    def ready(self):
        try:
            with urllib.request.urlopen(self.url + "/-/ready", timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    def targets(self):
        with urllib.request.urlopen(self.url + "/api/v1/targets?state=active",
                                    timeout=5) as resp:
            return json.load(resp)["data"]["activeTargets"]

    def query(self, promql):
        """The result list of an instant query."""
        q = urllib.parse.urlencode({"query": promql})
        with urllib.request.urlopen(self.url + "/api/v1/query?" + q, timeout=10) as resp:
            return json.load(resp)["data"]["result"]

    def stop(self):
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None
            self.log.close()


class Stack:
    """MariaDB + kubesim (+ Prometheus + Load on demand). extra_images: image reference ->
    environment, for the bad versions a test deploys (see images_map)."""

    def __init__(self, extra_images=None):
        self.extra_images = extra_images or {}
        self.db = None
        self.ks = None
        self.prom = None
        self.load = None

    def start(self):
        self.db = Database()
        self.ks = K.Kubesim(images=images_map(self.db, self.extra_images))
        self.ks.start()
        return self

    def stop(self):
        """Stops everything it started; raises when kubesim left pod processes behind."""
        try:
            if self.load is not None:
                self.load.stop()
            if self.prom is not None:
                self.prom.stop()
            if self.ks is not None:
                rc = self.ks.stop()
                left = self.ks.pod_processes()
                if rc != 0 or left:
                    raise AssertionError("kubesim exit %s, processes left: %s\n%s" % (
                        rc, left, self.ks.output()))
        finally:
            if self.db is not None:
                self.db.close()

    def kubectl(self, *a, **kw):
        return self.ks.kubectl(*a, **kw)

    def service_ip(self, name):
        return self.ks.get_json("service", name, *N)["spec"]["clusterIP"]

    def rollout_ok(self, deployment, timeout=180):
        self.kubectl("rollout", "status", "deployment/" + deployment, *N,
                     "--timeout=%ds" % timeout, timeout=timeout + 30)

    def apply_production(self, overlay=OVERLAY):
        """Namespace, MariaDB secret and selector-less Service, the overlay applied with
        kubectl and every Deployment rolled out, then movie m1 (rating 4.5) stored.
        Returns kubectl apply's output."""
        self.kubectl("create", "namespace", NS)
        self.kubectl("create", "secret", "generic", "movie-mysql", *N,
                     "--from-literal=password=" + self.db.password)
        # MariaDB is not a pod: a Service without a selector plus manual Endpoints.
        self.kubectl("apply", "-f", "-", input=(
            "apiVersion: v1\nkind: Service\nmetadata: {name: mariadb, namespace: %s}\n"
            "spec:\n  ports: [{name: mysql, port: 3306, targetPort: %d}]\n---\n"
            "apiVersion: v1\nkind: Endpoints\nmetadata: {name: mariadb, namespace: %s}\n"
            "subsets:\n- addresses: [{ip: %s}]\n  ports: [{name: mysql, port: %d}]\n"
            % (NS, self.db.port, NS, self.db.host, self.db.port)))
        out = self.kubectl("apply", "-k", overlay)
        for d in DEPLOYMENTS:
            self.rollout_ok(d)
        self.seed_data()
        return out

    def seed_data(self):
        import grpc
        with grpc.insecure_channel("%s:8081" % self.service_ip("metadata")) as ch:
            S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
                metadata=pb.Metadata(id="m1", title="Kubesim", director="K")), timeout=10)
        with grpc.insecure_channel("%s:8082" % self.service_ip("rating")) as ch:
            st = S.movie_pb2_grpc.RatingServiceStub(ch)
            for u, v in (("u1", 4), ("u2", 5)):
                st.PutRating(pb.PutRatingRequest(user_id=u, record_id="m1", record_type="movie",
                                                 rating_value=v), timeout=10)

    def movie_target(self):
        return "%s:8083" % self.service_ip("movie")

    def start_load(self, channels=4, pace=0.02):
        self.load = Load(self.movie_target(), "m1", channels=channels, pace=pace)
        self.load.start()
        K.wait_for(lambda: self.load.snapshot()[0] > 20, 60, "the load to run")
        return self.load

    def start_prometheus(self, scrape_interval=SCRAPE_INTERVAL):
        self.prom = Prometheus(self.ks, scrape_interval).start()
        return self.prom
