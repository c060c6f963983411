"""scripts/cd.sh's pieces without a cluster: the state file and resume after a kill,
bad-commit marking, watch ordering, the lock, config errors. Real git repositories
and the real script; the gate is a small shell command (the pipeline runs any gate),
and --until gate stops before the steps that need a cluster (test_cd.py runs those)."""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE_DIR = os.environ.get("MOVIE_SOURCE_DIR", os.path.normpath(os.path.join(HERE, "..", "..")))
CD = os.path.join(SOURCE_DIR, "scripts", "cd.sh")


def wait_for(pred, timeout, what):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        v = pred()
        if v:
            return v
        time.sleep(0.05)
    raise AssertionError("timed out after %ss waiting for %s" % (timeout, what))


def git(repo, *args):
    return subprocess.run(["git", "-C", repo] + list(args), check=True, capture_output=True,
                          text=True, timeout=60).stdout.strip()


class Repo:
    """A throwaway repository with the files the pipeline reads from a commit."""

    def __init__(self, base):
        self.dir = os.path.join(base, "project")
        os.makedirs(os.path.join(self.dir, "scripts"))
        subprocess.run(["git", "init", "-q", "-b", "main", self.dir], check=True, timeout=30)
        git(self.dir, "config", "user.email", "cd@test")
        git(self.dir, "config", "user.name", "cd test")
        with open(os.path.join(SOURCE_DIR, "scripts", "services.sh")) as f:
            self.write("scripts/services.sh", f.read(), mode=0o755)
        self.write("services/services.txt", "metadata MetadataService 8081\n")

    def write(self, path, text, mode=0o644):
        p = os.path.join(self.dir, path)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(text)
        os.chmod(p, mode)

    def commit(self, message, **files):
        for path, text in files.items():
            self.write(path.replace("__", "/"), text)
        git(self.dir, "add", "-A")
        git(self.dir, "commit", "-q", "--allow-empty", "-m", message)
        return git(self.dir, "rev-parse", "HEAD")


class CdUnit(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="cd-unit-")
        self.repo = Repo(self.tmp)
        self.state = os.path.join(self.tmp, "state")
        self.marks = os.path.join(self.tmp, "marks")
        os.makedirs(self.marks)
        # The gate records the commit it ran on, and fails on a commit whose BROKEN file exists.
        self.config = os.path.join(self.tmp, "pipeline.yaml")
        with open(self.config, "w") as f:
            f.write("gate: git rev-parse HEAD >> %s/order && test ! -e BROKEN\n"
                    "images: none\nregistry: registry.invalid:5000\n" % self.marks)

    def cd(self, *args, check=None, timeout=120):
        p = subprocess.run([CD] + list(args) + ["--state", self.state], capture_output=True,
                           text=True, timeout=timeout,
                           env=dict(os.environ, MOVIECTL="/bin/false", KUBECTL="/bin/false"))
        if check is not None:
            self.assertEqual(p.returncode, check, p.stdout + p.stderr)
        return p

    def order(self):
        try:
            with open(os.path.join(self.marks, "order")) as f:
                return f.read().split()
        except FileNotFoundError:
            return []

    def record(self, sha):
        with open(os.path.join(self.state, "runs", sha, "record.json")) as f:
            return json.load(f)

    def test_good_commit_record(self):
        c = self.repo.commit("good")
        p = self.cd("run", "--repo", self.repo.dir, "--config", self.config, "--until", "gate",
                    c, check=0)
        r = json.loads(p.stdout)
        self.assertEqual(r, self.record(c))
        self.assertEqual((r["commit"], r["tag"], r["result"], r["attempt"]), (c, c[:12], "passed", 1))
        self.assertEqual([(s["name"], s["result"]) for s in r["steps"]], [("gate", "ok")])
        self.assertGreaterEqual(r["steps"][0]["duration_s"], 0)
        self.assertIsNone(r["release"])
        with open(os.path.join(self.state, "runs", c, "log")) as f:
            log = f.read()
        self.assertIn("==== step gate (commit %s)" % c, log)
        self.assertIn("step gate: ok in", log)
        # A --until record is a checkpoint: the next run goes on without repeating the gate.
        p = self.cd("run", "--repo", self.repo.dir, "--config", self.config, "--until", "push",
                    c, check=0)
        self.assertEqual([(s["name"], s["result"]) for s in json.loads(p.stdout)["steps"]],
                         [("gate", "ok"), ("images", "skipped"), ("push", "skipped")])
        self.assertEqual(self.order(), [c])

    def test_bad_commit_marked(self):
        c = self.repo.commit("broken", BROKEN="1")
        p = self.cd("run", "--repo", self.repo.dir, "--config", self.config, c, check=1)
        r = json.loads(p.stdout)
        self.assertEqual((r["result"], r["failed_step"]), ("bad", "gate"))
        self.assertIn("step gate failed (exit 1)", r["reason"])
        self.assertEqual([s["name"] for s in r["steps"]], ["gate"], "nothing after a failed gate")
        with open(os.path.join(self.state, "commits.tsv")) as f:
            rows = [line.split("\t") for line in f.read().splitlines()]
        self.assertEqual([(x[0], x[1], x[2]) for x in rows], [(c, "bad", "gate")])
        self.assertFalse(os.path.exists(os.path.join(self.state, "production")))
        # A commit marked bad is not run again (--force does).
        again = self.cd("run", "--repo", self.repo.dir, "--config", self.config, c, check=1)
        self.assertIn("already has a final record", again.stderr)
        self.assertEqual(self.order(), [c])
        h = self.cd("history", "--json", check=0)
        self.assertEqual([(x["commit"], x["result"]) for x in json.loads(h.stdout)], [(c, "bad")])

    def test_killed_run_resumes(self):
        """A gate killed mid-run (SIGKILL of the whole process group, as a crashed runner)
        is started again by the next run; steps that had finished are not."""
        gate = os.path.join(self.tmp, "gate.sh")
        with open(gate, "w") as f:
            f.write("#!/bin/sh\ngit rev-parse HEAD >> %s/order\ntouch %s/started\n"
                    "[ -e %s/go ] && exit 0\n"
                    # Blocks until killed (bounded: 120 s).
                    "exec timeout --foreground 120 tail -f /dev/null\n" % (self.marks, self.marks, self.marks))
        os.chmod(gate, 0o755)
        with open(self.config, "w") as f:
            f.write("gate: %s\nimages: none\nregistry: registry.invalid:5000\n" % gate)
        c = self.repo.commit("good")
        args = [CD, "run", "--repo", self.repo.dir, "--config", self.config, "--until", "push",
                "--state", self.state, c]
        p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        try:
            wait_for(lambda: os.path.exists(os.path.join(self.marks, "started")), 60,
                     "the gate to start")
        finally:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
        steps = os.path.join(self.state, "runs", c, "steps")
        with open(steps) as f:
            self.assertEqual([line.split()[:2] for line in f], [["gate", "start"]])
        self.assertFalse(os.path.exists(os.path.join(self.state, "runs", c, "record.json")))
        open(os.path.join(self.marks, "go"), "w").close()
        out = self.cd("run", "--repo", self.repo.dir, "--config", self.config, "--until",
                      "push", c, check=0)
        r = json.loads(out.stdout)
        self.assertEqual((r["result"], r["attempt"]), ("passed", 2))
        self.assertEqual([(s["name"], s["result"]) for s in r["steps"]],
                         [("gate", "ok"), ("images", "skipped"), ("push", "skipped")])
        # A third attempt after a kill between steps does not repeat the finished gate.
        os.remove(os.path.join(self.state, "runs", c, "record.json"))
        out = self.cd("run", "--repo", self.repo.dir, "--config", self.config, "--until",
                      "push", c, check=0)
        self.assertIn("step gate: already done in an earlier attempt (resumed)", out.stderr)
        self.assertEqual(self.order(), [c, c])

    def test_watch_order_and_bad_commit_skipped(self):
        remote = self.repo.dir
        c0 = self.repo.commit("deployed before the watcher")
        c1 = self.repo.commit("good one")
        c2 = self.repo.commit("broken", BROKEN="1")
        os.remove(os.path.join(self.repo.dir, "BROKEN"))
        c3 = self.repo.commit("fixed")
        self.cd("watch", "--remote", remote, "--branch", "main", "--from", c0, "--max-polls", "1",
                "--config", self.config, "--until", "gate", check=0)
        self.assertEqual(self.order(), [c1, c2, c3], "each commit once, in order")
        self.assertEqual(self.record(c1)["result"], "passed")
        self.assertEqual((self.record(c2)["result"], self.record(c2)["failed_step"]),
                         ("bad", "gate"))
        self.assertEqual(self.record(c3)["result"], "passed")
        with open(os.path.join(self.state, "watch.last")) as f:
            self.assertEqual(f.read().strip(), c3)
        # New commits later: only those run.
        c4 = self.repo.commit("later")
        self.cd("watch", "--remote", remote, "--branch", "main", "--max-polls", "1",
                "--config", self.config, "--until", "gate", check=0)
        self.assertEqual(self.order(), [c1, c2, c3, c4])

    def test_watch_without_history_deploys_head_only(self):
        self.repo.commit("one")
        c2 = self.repo.commit("two")
        self.cd("watch", "--remote", self.repo.dir, "--max-polls", "1", "--config", self.config,
                "--until", "gate", check=0)
        self.assertEqual(self.order(), [c2])

    def test_lock_refuses_second_pipeline(self):
        c = self.repo.commit("good")
        os.makedirs(self.state)
        lock = os.path.join(self.state, "lock")
        holder = subprocess.Popen(["flock", lock, "timeout", "120", "tail", "-f", "/dev/null"],
                                  start_new_session=True)
        try:
            wait_for(lambda: subprocess.run(["flock", "-n", lock, "true"]).returncode != 0, 30,
                     "the lock to be held")
            p = self.cd("run", "--repo", self.repo.dir, "--config", self.config, c, check=3)
            self.assertIn("another pipeline holds", p.stderr)
            self.assertEqual(self.order(), [])
        finally:
            os.killpg(holder.pid, signal.SIGKILL)
            holder.wait(30)

    def test_config_errors(self):
        c = self.repo.commit("good")
        for text, msg in (("gate: true\nregistry: r:5000\nimagez: none\n", "unknown key 'imagez'"),
                          ("gate: true\nimages: none\n", "registry is required"),
                          ("gate: true\nregistry: r:5000\nimages: maybe\n", "images must be"),
                          ("gate: [unclosed\n", "pipeline config")):
            with open(self.config, "w") as f:
                f.write(text)
            p = self.cd("run", "--repo", self.repo.dir, "--config", self.config, "--force", c,
                        check=2)
            self.assertIn(msg, p.stderr)
        self.assertEqual(self.order(), [])
        with open(os.path.join(self.state, "commits.tsv")) as f:
            rows = [line.split("\t")[:3] for line in f.read().splitlines()]
        self.assertEqual(rows, [[c, "error", "config"]] * 4, "each unusable config recorded")
        p = self.cd("run", "--until", "nosuchstep", check=2)
        self.assertIn("unknown step", p.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
