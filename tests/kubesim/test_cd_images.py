"""The pipeline's full image path, once (ctest cd.images; podman builds are slow): a real
OCI registry (Debian's docker-registry on 127.0.0.1), `scripts/cd.sh run --until push` on
a throwaway repository of this tree (gate, then `make images` tagged with the commit,
`podman push`), then the references pulled back from the registry and checked: tag list,
manifest digest = the digest the push recorded, the image's version label = the commit's
tag. No cluster: test_cd.py runs the steps after push."""
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest
import urllib.request

import ksharness as K
from test_cd import Project

import harness  # noqa: E402  (ksharness put tests/integration on sys.path)

CD = os.path.join(K.SOURCE_DIR, "scripts", "cd.sh")
SERVICES = ("metadata", "rating", "movie")


class Registry:
    """docker-registry serving a throwaway directory on 127.0.0.1:port."""

    def __init__(self, base):
        self.port = harness.free_port()
        assert self.port < 32768, self.port
        self.dir = os.path.join(base, "registry")
        os.makedirs(self.dir)
        self.config = os.path.join(self.dir, "config.yml")
        with open(self.config, "w") as f:
            f.write("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
                    "    rootdirectory: %s/data\nhttp:\n  addr: 127.0.0.1:%d\n"
                    % (self.dir, self.port))
        self.log = open(os.path.join(self.dir, "log"), "wb")
        self.proc = subprocess.Popen(["docker-registry", "serve", self.config], stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        K._started.append(self.proc)
        K.wait_for(self.up, 30, "the registry to answer", interval=0.2)

    def url(self, path):
        return "http://127.0.0.1:%d%s" % (self.port, path)

    def up(self):
        if self.proc.poll() is not None:
            raise AssertionError("docker-registry exited %s" % self.proc.returncode)
        try:
            with urllib.request.urlopen(self.url("/v2/"), timeout=3) as r:
                return r.status == 200
        except OSError:
            return False

    def get(self, path, accept=None):
        req = urllib.request.Request(self.url(path), method="GET")
        if accept:
            req.add_header("Accept", accept)
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.headers, r.read()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


class ImagePath(unittest.TestCase):
    def setUp(self):
        for tool, pkg in (("podman", "podman"), ("docker-registry", "docker-registry")):
            if not shutil.which(tool):
                self.fail("%s is required (Debian package %s)" % (tool, pkg))
        self.tmp = tempfile.mkdtemp(prefix="cd-images-")
        self.reg = Registry(self.tmp)
        self.addCleanup(self.reg.stop)
        self.project = Project(self.tmp)
        self.sha = self.project.commit("the tree, for the image path")
        self.tag = self.sha[:12]
        self.prefix = "127.0.0.1:%d/movie" % self.reg.port
        self.refs = ["%s/movie-%s:%s" % (self.prefix, s, self.tag) for s in SERVICES]
        self.addCleanup(self.remove_images)
        self.config = os.path.join(self.tmp, "pipeline.yaml")
        with open(self.config, "w") as f:
            f.write("gate: scripts/deploy.sh render staging > gate.yaml && $MOVIECTL lint "
                    "gate.yaml\nimages: build\nregistry: %s\nregistry_tls_verify: false\n"
                    % self.prefix)

    def remove_images(self):
        local = ["movie-%s:%s" % (s, self.tag) for s in SERVICES]
        subprocess.run(["podman", "rmi", "-f"] + self.refs + local, capture_output=True,
                       timeout=120, env=self.podman_env())

    def podman_env(self):
        return dict(os.environ, CONTAINERS_CONF=os.path.join(
            K.SOURCE_DIR, "deploy", "container", "containers.conf"))

    def test_build_push_pull(self):
        state = os.path.join(self.tmp, "state")
        t0 = time.monotonic()
        p = subprocess.run([CD, "run", "--repo", self.project.dir, "--config", self.config,
                            "--state", state, "--until", "push", self.sha], capture_output=True,
                           text=True, timeout=2400,
                           env=dict(os.environ, MOVIECTL=os.path.join(K.BIN_DIR, "moviectl")))
        wall = time.monotonic() - t0
        run = os.path.join(state, "runs", self.sha)
        if p.returncode != 0:
            with open(os.path.join(run, "log")) as f:
                self.fail("pipeline exit %d:\n%s\n%s" % (p.returncode, p.stderr, f.read()[-6000:]))
        rec = json.loads(p.stdout)
        self.assertEqual(rec["result"], "passed")
        self.assertEqual([(s["name"], s["result"]) for s in rec["steps"]],
                         [("gate", "ok"), ("images", "ok"), ("push", "ok")])
        print("\nimage path: %s (wall %.1f s)" % (", ".join(
            "%s %.1f s" % (s["name"], s["duration_s"]) for s in rec["steps"]), wall))
        for svc, ref in zip(SERVICES, self.refs):
            with open(os.path.join(run, "digest." + svc)) as f:
                pushed = f.read().strip()
            self.assertRegex(pushed, r"^sha256:[0-9a-f]{64}$")
            _, body = self.reg.get("/v2/movie/movie-%s/tags/list" % svc)
            self.assertIn(self.tag, json.loads(body)["tags"])
            hdrs, _ = self.reg.get("/v2/movie/movie-%s/manifests/%s" % (svc, self.tag), accept=(
                "application/vnd.oci.image.manifest.v1+json,"
                "application/vnd.docker.distribution.manifest.v2+json"))
            self.assertEqual(hdrs["Docker-Content-Digest"], pushed, ref)
            # Pull it back as a cluster would: gone locally first, then from the registry.
            subprocess.run(["podman", "rmi", "-f", ref], capture_output=True, timeout=120,
                           env=self.podman_env())
            pull = subprocess.run(["podman", "pull", "--tls-verify=false", ref],
                                  capture_output=True, text=True, timeout=300,
                                  env=self.podman_env())
            self.assertEqual(pull.returncode, 0, pull.stderr)
            inspect = subprocess.run(["podman", "image", "inspect", ref], capture_output=True,
                                     text=True, timeout=60, env=self.podman_env())
            self.assertEqual(inspect.returncode, 0, inspect.stderr)
            info = json.loads(inspect.stdout)[0]
            repo = ref.rsplit(":", 1)[0]
            self.assertIn("%s@%s" % (repo, pushed), info.get("RepoDigests") or [], ref)
            # And by digest, the way a pinned Deployment would pull it.
            pull = subprocess.run(["podman", "pull", "--tls-verify=false",
                                   "%s@%s" % (repo, pushed)], capture_output=True, text=True,
                                  timeout=300, env=self.podman_env())
            self.assertEqual(pull.returncode, 0, pull.stderr)
            labels = info.get("Labels") or info["Config"].get("Labels") or {}
            self.assertEqual(labels.get("org.opencontainers.image.version"), self.tag)
            self.assertEqual(labels.get("org.opencontainers.image.title"), "movie-" + svc)


if __name__ == "__main__":
    unittest.main(verbosity=2)
