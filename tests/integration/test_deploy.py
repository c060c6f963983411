"""`make deploy` as a new user meets it: no reachable cluster (KUBECONFIG pointing at a
loopback port where nothing listens), no cluster configured, an unknown ENV, and
DRY_RUN=1. The real kubectl and make run; no cluster can run here, so the DRY_RUN
case puts a thin wrapper in front of the real kubectl that answers `version` as a
reachable server would and records `diff`/`apply`/`create` instead of sending them
(everything else, kustomize included, goes to the real kubectl). moviectl is a
recording wrapper around the real binary, to see whether lint ran."""
import os
import socket
import stat
import subprocess
import tempfile
import unittest

import harness

SRC = harness.SOURCE_DIR
KUBECTL = "/usr/bin/kubectl"


def write_exec(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR)


class DeployTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="movie-deploy-")
        # A loopback port bound but not listening: connections are refused, and
        # nothing else can take it while the test runs.
        self.closed = socket.socket()
        self.closed.bind(("127.0.0.1", 0))
        self.addCleanup(self.closed.close)
        self.port = self.closed.getsockname()[1]
        self.kubeconfig = os.path.join(self.work, "kubeconfig")
        with open(self.kubeconfig, "w") as f:
            f.write("apiVersion: v1\nkind: Config\nclusters:\n- name: gone\n  cluster:\n"
                    "    server: https://127.0.0.1:%d\ncontexts:\n- name: gone\n  context:\n"
                    "    cluster: gone\n    user: u\ncurrent-context: gone\nusers:\n- name: u\n"
                    "  user:\n    token: t\n" % self.port)
        self.lint_log = os.path.join(self.work, "lint.log")
        self.moviectl = os.path.join(self.work, "moviectl")
        write_exec(self.moviectl, '#!/bin/sh\necho "$@" >> %s\nexec %s "$@"\n'
                   % (self.lint_log, os.path.join(harness.BIN_DIR, "moviectl")))

    def make(self, *args, env=None):
        e = dict(os.environ, KUBECONFIG=self.kubeconfig, MOVIECTL=self.moviectl)
        e.update(env or {})
        return subprocess.run(["make", "-s", "-C", SRC, "deploy"] + list(args), env=e,
                              capture_output=True, text=True, timeout=120)

    def lint_ran(self):
        return os.path.exists(self.lint_log)

    def test_no_reachable_cluster_says_so_before_lint(self):
        p = self.make("ENV=dev")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no reachable Kubernetes cluster", p.stderr)
        self.assertIn("127.0.0.1:%d" % self.port, p.stderr)
        self.assertIn("minikube start", p.stderr)
        self.assertFalse(self.lint_ran(), "lint ran although no cluster answers")
        # The same with DRY_RUN: a diff needs the cluster too.
        p = self.make("ENV=staging", "DRY_RUN=1")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no reachable Kubernetes cluster", p.stderr)
        self.assertFalse(self.lint_ran())

    def test_no_cluster_configured(self):
        empty = os.path.join(self.work, "empty")
        open(empty, "w").close()
        p = self.make("ENV=dev", env={"KUBECONFIG": empty})
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("no Kubernetes cluster configured", p.stderr)
        self.assertIn("minikube start", p.stderr)
        self.assertFalse(self.lint_ran())

    def test_unknown_env_names_the_value(self):
        for value in ("prod", "x"):
            p = self.make("ENV=" + value)
            self.assertNotEqual(p.returncode, 0)
            self.assertIn("unknown environment '%s'" % value, p.stderr)
            self.assertIn("dev staging production", p.stderr)
        self.assertFalse(self.lint_ran())

    def test_dry_run_lints_and_diffs_without_applying(self):
        calls = os.path.join(self.work, "kubectl.calls")
        bindir = os.path.join(self.work, "bin")
        os.mkdir(bindir)
        # Stand-in for the API server (none can run here): see the module docstring.
        write_exec(os.path.join(bindir, "kubectl"), """#!/bin/sh
case "$1" in
version) echo '{"serverVersion":{"gitVersion":"v1.32.0"}}'; exit 0 ;;
diff|apply|create|rollout|get) echo "$@" >> %s ;;
esac
case "$1" in
diff) echo "+  replicas: 2"; exit 1 ;;
apply|create|rollout|get) exit 0 ;;
esac
exec %s "$@"
""" % (calls, KUBECTL))
        p = self.make("ENV=dev", "DRY_RUN=1",
                      env={"PATH": bindir + os.pathsep + os.environ["PATH"]})
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(self.lint_ran())
        with open(self.lint_log) as f:
            self.assertTrue(f.read().startswith("lint "))
        with open(calls) as f:
            recorded = f.read().splitlines()
        self.assertEqual(len(recorded), 1, recorded)
        self.assertTrue(recorded[0].startswith("diff -f "), recorded)
        self.assertIn("+  replicas: 2", p.stdout)
        self.assertIn("would be applied", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
