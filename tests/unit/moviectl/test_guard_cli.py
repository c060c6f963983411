#!/usr/bin/python3
"""moviectl guard --once against fake_apiserver.py, a scripted TEST DOUBLE of the
Kubernetes API server (no real cluster can run here; tests/kubesim/test_guard.py is the
end-to-end test). Deterministic races: guard's guarded rollback patch loses to a change
made between its read and its write (the server answers 422 as a failed `test` op does);
guard must re-read, see the new template and not overwrite it.

usage: test_guard_cli.py MOVIECTL FIXTURES_DIR
"""
import copy
import importlib.util
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fake_apiserver",
                                              os.path.join(HERE, "fake_apiserver.py"))
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)

MOVIECTL, FIX = sys.argv[1], sys.argv[2]
D = "/apis/apps/v1/namespaces/prod/deployments/web"
RS = "/apis/apps/v1/namespaces/prod/replicasets"
PODS = "/api/v1/namespaces/prod/pods"
EV = "/api/v1/namespaces/prod/events"
check = fake.Checks()
script, log = fake.script, fake.request_log


def fixture(name):
    return fake.load_fixture(FIX, name)


srv, tmp, KCFG = fake.serve_in_thread_with_kubeconfig("guard-cli-", "tok")
POLICY = os.path.join(tmp, "policy.yaml")
with open(POLICY, "w") as f:
    f.write("interval: 200ms\n")


def run(*args, timeout=60):
    p = subprocess.run([MOVIECTL, "guard", "--kubeconfig", KCFG, "--policy", POLICY] +
                       list(args), capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


rolling = fixture("deployment_rolling.json")      # web:1.2.4 rolling out (RS 775855699b)
rss = fixture("replicasets.json")
crashing = {"metadata": {"name": "web-775855699b-a", "labels": {"app": "web",
            "pod-template-hash": "775855699b"}, "creationTimestamp": "2026-12-01T10:00:30Z"},
            "status": {"startTime": "2026-12-01T10:00:30Z",
                       "conditions": [{"type": "Ready", "status": "False"}],
                       "containerStatuses": [{"name": "web", "restartCount": 3, "ready": False,
                                              "state": {"waiting": {"reason": "CrashLoopBackOff"}}}]}}
pods = {"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1"},
        "items": [crashing]}
# What `kubectl set image` made of it meanwhile: a template no ReplicaSet has yet.
changed = copy.deepcopy(rolling)
changed["spec"]["template"]["spec"]["containers"][0]["image"] = "reg/web:9.9.9"
changed["metadata"]["resourceVersion"] = "99999"
conflict = {"status": 422, "body": fake.status_body(
    422, "Invalid", "the server rejected our request due to an error in our request")}

# 1. The patch loses the race: one PATCH, no Event, the new template untouched.
script([
    {"method": "GET", "path": D, "responses": [{"body": rolling}, {"body": changed}]},
    {"method": "GET", "path": RS, "responses": [{"body": rss}]},
    {"method": "GET", "path": PODS, "responses": [{"body": pods}]},
    {"method": "PATCH", "path": D, "responses": [conflict]},
    {"method": "POST", "path": EV, "responses": [{"status": 201, "body": {}}]},
])
rc, out, err = run("--once", "--timeout", "2s", "web")
sent = log()
patches = [r for r in sent if r["method"] == "PATCH"]
check(rc == 2, "lost race: exit 2 (no verdict before the timeout), got %d: %s %s" % (rc, out, err))
check(len(patches) == 1, "exactly one rollback attempt: %d" % len(patches))
if patches:
    ops = json.loads(patches[0]["body"])
    check(ops[0]["op"] == "test" and ops[0]["path"] == "/spec/template" and
          ops[0]["value"]["spec"]["containers"][0]["image"] == "reg/web:1.2.4",
          "the patch is guarded by the template guard read: %s" % ops[0])
    ann = [o for o in ops if o["path"] == "/metadata/annotations"][0]["value"]
    rec = json.loads(ann["movie.dev/guard-rollback"])
    check(rec["from"] == "775855699b" and rec["check"] == "restarts", "record: %s" % rec)
    check(patches[0]["headers"].get("content-type") == "application/json-patch+json",
          "JSON patch content type")
check(not [r for r in sent if r["method"] == "POST"], "no Event for a rollback that did not happen")
gets = [r for r in sent if r["method"] == "GET" and r["path"] == D]
check(len(gets) >= 2, "re-read after the lost race")
check('"outcome":"unknown"' in out and "no ReplicaSet for the current template" in out,
      "re-decided on the new template: %s" % out)

# 2. The patch wins: Event created, exit 1 after the rollout (status watch) completes.
done = copy.deepcopy(fixture("deployment_complete.json"))
script([
    {"method": "GET", "path": D, "responses": [{"body": rolling}, {"body": done}]},
    {"method": "GET", "path": RS, "responses": [{"body": rss}]},
    {"method": "GET", "path": PODS, "responses": [{"body": pods}]},
    {"method": "PATCH", "path": D, "responses": [{"body": rolling}]},
    {"method": "POST", "path": EV, "responses": [{"status": 201, "body": {"kind": "Event"}}]},
    {"method": "GET", "path": "/apis/apps/v1/namespaces/prod/deployments",
     "responses": [{"body": {"kind": "DeploymentList", "apiVersion": "apps/v1",
                             "metadata": {"resourceVersion": "5"}, "items": [done]}}]},
])
rc, out, err = run("--once", "--timeout", "20s", "--status-timeout", "10s", "web")
sent = log()
evs = [json.loads(r["body"]) for r in sent if r["method"] == "POST" and r["path"] == EV]
check(rc == 1, "rolled back: exit 1, got %d: %s %s" % (rc, out, err))
check(len(evs) == 1 and evs[0]["involvedObject"]["kind"] == "Deployment" and
      evs[0]["involvedObject"]["name"] == "web" and evs[0]["reason"] == "GuardRollback" and
      evs[0]["type"] == "Warning" and "775855699b" in evs[0]["message"] and
      evs[0]["metadata"]["generateName"] == "web.",
      "one Warning Event on the Deployment: %s" % evs)
line = json.loads(out.splitlines()[0]) if out.strip() else {}
check(line.get("action") == "rollback" and line.get("check") == "restarts" and
      line.get("new_hash") == "775855699b", "verdict line: %s" % line)
check("Kubernetes-side checks only" in err or "no --prometheus" in err,
      "says that only the Kubernetes-side checks run")

# 3. A held release lock: skipped, nothing written.
locked = copy.deepcopy(rolling)
locked["metadata"].setdefault("annotations", {})["movie.dev/release-lock"] = json.dumps(
    {"owner": "ci/1/00c0ffee", "release": "r1", "expires": "2099-01-01T00:00:00Z"})
script([
    {"method": "GET", "path": D, "responses": [{"body": locked}]},
    {"method": "GET", "path": RS, "responses": [{"body": rss}]},
    {"method": "GET", "path": PODS, "responses": [{"body": pods}]},
])
rc, out, err = run("--once", "--timeout", "5s", "web")
check(rc == 2 and '"action":"skipped"' in out and "locked by ci/1/00c0ffee" in out,
      "locked: skipped, got %d %s %s" % (rc, out, err))
check(not [r for r in log() if r["method"] in ("PATCH", "POST")], "locked: nothing written")

# 4. Bad usage and a bad policy: exit 2 with a message.
rc, out, err = run("--once")
check(rc == 2 and "needs at least one DEPLOYMENT" in err, "no target: %d %s" % (rc, err))
with open(POLICY, "w") as f:
    f.write("checks:\n  restart: {max: 1}\n")
rc, out, err = run("--once", "web")
check(rc == 2 and "policy.yaml:2: unknown check \"checks.restart\"" in err, "bad policy: %s" % err)

print("%d checks, %d failed" % (check.count, len(check.failures)))
srv.shutdown()
sys.exit(1 if check.failures else 0)
