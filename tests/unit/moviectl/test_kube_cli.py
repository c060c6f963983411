#!/usr/bin/python3
"""moviectl status / undo end to end against fake_apiserver.py, a scripted TEST
DOUBLE of the Kubernetes API server on 127.0.0.1 (no real cluster can run
here; the kubesim cluster tests come later). Checks exit codes, kubectl's
messages and the requests on the wire (K8S-API.md §1.2, §2.1).

usage: test_kube_cli.py MOVIECTL FIXTURES_DIR
"""
import copy
import importlib.util
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("fake_apiserver", os.path.join(HERE, "fake_apiserver.py"))
fake = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fake)

MOVIECTL, FIX = sys.argv[1], sys.argv[2]
D = "/apis/apps/v1/namespaces/prod/deployments"
RS = "/apis/apps/v1/namespaces/prod/replicasets"
PODS = "/api/v1/namespaces/prod/pods"
check = fake.Checks()
script, log = fake.script, fake.request_log


def fixture(name):
    return fake.load_fixture(FIX, name)


def run(*args, timeout=60):
    p = subprocess.run([MOVIECTL] + list(args), capture_output=True, text=True, timeout=timeout,
                       env=dict(os.environ, KUBECONFIG=KCFG, HOME="/nonexistent"))
    return p.returncode, p.stdout, p.stderr


def stream(*events):
    return {"chunks": ["".join(json.dumps(e) + "\n" for e in events)]}


def deployment_routes(get_bodies, list_body, watch):
    return [
        {"path": D + "/web", "responses": [{"body": b} for b in get_bodies]},
        {"path": D, "query": {"watch": "1"}, "responses": watch},
        {"path": D, "absent": ["watch"], "responses": [{"body": list_body}]},
    ]


def lst(*items, rv="4711"):
    return {"kind": "DeploymentList", "apiVersion": "apps/v1", "metadata": {"resourceVersion": rv},
            "items": list(items)}


rolling = fixture("deployment_rolling.json")
complete = fixture("deployment_complete.json")
deadline = fixture("deployment_deadline.json")
rsl = fixture("replicasets.json")
pods = fixture("pods.json")
status_404 = fixture("status_404.json")
status_422 = fixture("status_422_test.json")

srv, tmp, KCFG = fake.serve_in_thread_with_kubeconfig("moviectl-cli-", "cli-token")

# status: waits through the rollout, prints kubectl's lines, exit 0.
script(deployment_routes([rolling], lst(rolling),
                         [stream({"type": "MODIFIED", "object": complete})]))
rc, out, err = run("status", "web")
check(rc == 0, "status rolled out: exit 0 (got %d, %s)" % (rc, err))
check(out == 'Waiting for deployment "web" rollout to finish: 3 out of 10 new replicas have been updated...\n'
      'deployment "web" successfully rolled out\n', "status output: %r" % out)
reqs = log()
check(reqs[0]["path"] == D + "/web" and reqs[0]["method"] == "GET", "status GETs the object first")
check(reqs[1]["query"].get("fieldSelector") == "metadata.name=web" and "watch" not in reqs[1]["query"],
      "then LISTs by field selector")
check(reqs[2]["query"].get("watch") == "1" and reqs[2]["query"].get("resourceVersion") == "4711",
      "then WATCHes from the list's resourceVersion: %r" % reqs[2]["query"])
check(reqs[0]["headers"].get("authorization") == "Bearer cli-token", "kubeconfig token sent")

# deployment/NAME form and -n override the context's namespace.
script([{"path": "/apis/apps/v1/namespaces/other/deployments/web", "responses": [{"body": complete}]},
        {"path": "/apis/apps/v1/namespaces/other/deployments", "absent": ["watch"],
         "responses": [{"body": lst(complete)}]}])
rc, out, err = run("status", "-n", "other", "deployment/web")
check(rc == 0 and out.endswith('successfully rolled out\n'), "status -n other: %d %r %r" % (rc, out, err))

# progress deadline: exit 1 with kubectl's error.
script(deployment_routes([deadline], lst(deadline), [stream()]))
rc, out, err = run("status", "web")
check(rc == 1 and err == 'error: deployment "web" exceeded its progress deadline\n',
      "deadline: %d %r" % (rc, err))

# not found.
script([{"path": D + "/web", "responses": [{"status": 404, "body": status_404}]}])
rc, out, err = run("status", "web")
check(rc == 1 and err == 'Error from server (NotFound): deployments.apps "web" not found\n',
      "not found: %d %r" % (rc, err))

# --timeout: a silent watch ends with kubectl's timeout message.
script(deployment_routes([rolling], lst(rolling), [{"chunks": ["\n"], "chunk_delay_ms": 20000}]))
rc, out, err = run("status", "--timeout", "1s", "web")
check(rc == 1 and err.endswith("error: timed out waiting for the condition\n"), "timeout: %d %r" % (rc, err))

# deleted while waiting.
script(deployment_routes([rolling], lst(rolling), [stream({"type": "DELETED", "object": rolling})]))
rc, out, err = run("status", "web")
check(rc == 1 and err == "error: object has been deleted\n", "deleted: %d %r" % (rc, err))

# --wait-terminated with status.terminatingReplicas.
term2 = copy.deepcopy(complete); term2["status"]["terminatingReplicas"] = 2
term1 = copy.deepcopy(complete); term1["status"]["terminatingReplicas"] = 1
term0 = copy.deepcopy(complete); term0["status"]["terminatingReplicas"] = 0
script(deployment_routes([complete, term2, term0], lst(complete), [stream()]))
rc, out, err = run("status", "--wait-terminated", "--timeout=30s", "web")
check(rc == 0 and "2 left" in out and out.endswith('no old pods left\n'),
      "wait-terminated (terminatingReplicas): %d %r %r" % (rc, out, err))

# ... WATCHed, not polled: the GET keeps answering 2, the watch (from the
# list's resourceVersion) brings 1 then 0.
script(deployment_routes([complete, term2], lst(term2, rv="4800"),
                         [stream({"type": "MODIFIED", "object": term1},
                                 {"type": "MODIFIED", "object": term0})]))
rc, out, err = run("status", "--wait-terminated", "--timeout=20s", "web")
check(rc == 0 and "2 left" in out and "1 left" in out and out.endswith('no old pods left\n'),
      "wait-terminated watches terminatingReplicas: %d %r %r" % (rc, out, err))
watches = [r for r in log() if r["path"] == D and r["query"].get("watch") == "1"]
check(any(w["query"].get("resourceVersion") == "4800" and
          w["query"].get("fieldSelector") == "metadata.name=web" for w in watches),
      "terminatingReplicas watched from the list's resourceVersion: %r" % watches)

# --wait-terminated without the field: pods by selector and pod-template-hash,
# LISTed once, then WATCHed from the list's resourceVersion (pods.json: 4713).
noterm = copy.deepcopy(complete); del noterm["status"]["terminatingReplicas"]
old_pod = pods["items"][2]
pods_done = copy.deepcopy(pods); pods_done["items"] = pods_done["items"][:2]
pods_done["metadata"]["resourceVersion"] = "4900"
script(deployment_routes([noterm], lst(noterm), [stream()]) + [
    {"path": RS, "responses": [{"body": rsl}]},
    {"path": PODS, "query": {"watch": "1"},
     "responses": [stream({"type": "DELETED", "object": old_pod})]},
    {"path": PODS, "absent": ["watch"], "responses": [{"body": pods}]}])
rc, out, err = run("status", "--wait-terminated", "--timeout=20s", "web")
check(rc == 0 and "1 left" in out and out.endswith('no old pods left\n'),
      "wait-terminated (pods): %d %r %r" % (rc, out, err))
pod_reqs = [r for r in log() if r["path"] == PODS]
check(pod_reqs and pod_reqs[0]["query"].get("labelSelector") == "app=web", "pods listed by selector")
check(len([r for r in pod_reqs if "watch" not in r["query"]]) == 1, "pods listed once: %r" % pod_reqs)
check(any(r["query"].get("watch") == "1" and r["query"].get("resourceVersion") == "4713" and
          r["query"].get("labelSelector") == "app=web" for r in pod_reqs),
      "pods watched from the list's resourceVersion: %r" % pod_reqs)

# ... an expired resourceVersion (410) re-lists: the old pod is gone from the
# new list, which ends the wait.
gone = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Expired",
        "message": "too old resource version: 4713 (4800)", "code": 410}
script(deployment_routes([noterm], lst(noterm), [stream()]) + [
    {"path": RS, "responses": [{"body": rsl}]},
    {"path": PODS, "query": {"watch": "1"},
     "responses": [{"status": 410, "body": gone}, stream()]},
    {"path": PODS, "absent": ["watch"], "responses": [{"body": pods}, {"body": pods_done}]}])
rc, out, err = run("status", "--wait-terminated", "--timeout=20s", "web")
check(rc == 0 and "1 left" in out and out.endswith('no old pods left\n'),
      "wait-terminated re-lists on 410: %d %r %r" % (rc, out, err))
check(len([r for r in log() if r["path"] == PODS and "watch" not in r["query"]]) == 2,
      "410: pods listed again")

# ... bounded by --timeout while old pods stay.
script(deployment_routes([noterm], lst(noterm), [stream()]) + [
    {"path": RS, "responses": [{"body": rsl}]},
    {"path": PODS, "query": {"watch": "1"}, "responses": [{"chunks": ["\n"], "chunk_delay_ms": 20000}]},
    {"path": PODS, "absent": ["watch"], "responses": [{"body": pods}]}])
rc, out, err = run("status", "--wait-terminated", "--timeout=2s", "web")
check(rc == 1 and err.endswith("error: timed out waiting for the condition\n"),
      "wait-terminated timeout: %d %r" % (rc, err))

# undo: previous revision, kubectl's exact patch.
def undo_routes(dep, patch_responses=None):
    return [{"path": D + "/web", "responses": [{"body": dep}]},
            {"path": RS, "responses": [{"body": rsl}]},
            {"method": "PATCH", "path": D + "/web", "responses": patch_responses or [{"body": dep}]}]

script(undo_routes(rolling))
rc, out, err = run("undo", "web")
check(rc == 0 and out == "deployment.apps/web rolled back\n", "undo: %d %r %r" % (rc, out, err))
check("last-applied-configuration" in err, "undo warns about last-applied: %r" % err)
reqs = log()
check(reqs[1]["query"].get("labelSelector") == "app=web" and "limit" not in reqs[1]["query"],
      "undo lists ReplicaSets by the selector, no limit")
patch = [r for r in reqs if r["method"] == "PATCH"]
check(len(patch) == 1 and patch[0]["headers"].get("content-type") == "application/json-patch+json",
      "one JSON patch")
body = json.loads(patch[0]["body"]) if patch else []
tmpl = copy.deepcopy(rsl["items"][1]["spec"]["template"])
del tmpl["metadata"]["labels"]["pod-template-hash"]
want = [{"op": "replace", "path": "/spec/template", "value": tmpl},
        {"op": "replace", "path": "/metadata/annotations", "value": {
            "kubectl.kubernetes.io/last-applied-configuration": rolling["metadata"]["annotations"][
                "kubectl.kubernetes.io/last-applied-configuration"],
            "deployment.kubernetes.io/revision": "5",
            "kubernetes.io/change-cause": "image 1.2.3", "note": "from rs"}}]
check(body == want, "undo patch body: %s" % json.dumps(body))

# --to by hash, server dry run.
script(undo_routes(rolling))
rc, out, err = run("undo", "web", "--to", "5d8f7c9b46", "--dry-run=server")
patch = [r for r in log() if r["method"] == "PATCH"]
check(rc == 0 and patch and patch[0]["query"].get("dryRun") == "All", "undo --to hash dry run")
check(patch and json.loads(patch[0]["body"])[0]["value"]["spec"]["containers"][0]["image"] == "reg/web:1.2.2",
      "undo --to targets revision 3's template")

# --to-revision of the current template: skipped, nothing patched.
script(undo_routes(rolling))
rc, out, err = run("undo", "web", "--to-revision=5")
check(rc == 0 and out == "deployment.apps/web skipped rollback (current template already matches revision 5)\n",
      "undo skip: %d %r" % (rc, out))
check(not [r for r in log() if r["method"] == "PATCH"], "skip sends no PATCH")

# guarded undo that loses a race: 422 from the failed test op.
script(undo_routes(rolling, [{"status": 422, "body": status_422}]))
rc, out, err = run("undo", "web", "--guard", "resource-version")
patch = [r for r in log() if r["method"] == "PATCH"]
check(rc == 1 and "Error from server (Invalid)" in err and "changed since it was read" in err,
      "guarded undo 422: %d %r" % (rc, err))
check(patch and json.loads(patch[0]["body"])[0] == {"op": "test", "path": "/metadata/resourceVersion",
                                                       "value": "4711"}, "guard test op first")

# paused, unknown revision.
paused = copy.deepcopy(rolling); paused["spec"]["paused"] = True
script(undo_routes(paused))
rc, out, err = run("undo", "web")
check(rc == 1 and "you cannot rollback a paused deployment" in err, "paused: %d %r" % (rc, err))
script(undo_routes(rolling))
rc, out, err = run("undo", "web", "--to-revision", "42")
check(rc == 1 and err == "error: unable to find specified revision 42 in history\n", "unknown revision: %r" % err)

# usage errors: exit 2, nothing sent.
script([])
for args in (["status"], ["undo"], ["undo", "web", "--to-revision", "x"],
             ["undo", "web", "--to", "a", "--to-revision", "1"], ["status", "--timeout", "soon", "web"],
             ["status", "-n"], ["undo", "a", "b"], ["status", "web?watch=1"], ["undo", "../x"],
             ["status", "Web"]):
    rc, out, err = run(*args)
    check(rc == 2, "usage %r: exit %d" % (args, rc))
check(not log(), "usage errors send nothing")
rc, out, err = run("status", "-n", "a/b", "web")
check(rc == 1 and "not a valid namespace" in err, "bad namespace: %d %r" % (rc, err))
rc, out, err = run("status", "--help")
check(rc == 0 and "--wait-terminated" in out, "status --help")

# No configuration at all.
p = subprocess.run([MOVIECTL, "status", "web"], capture_output=True, text=True, timeout=30,
                   env={"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent"})
check(p.returncode == 1 and "no configuration has been provided" in p.stderr, "no config: %r" % p.stderr)

srv.shutdown()
print("%d passed, %d failed" % (check.count - len(check.failures), len(check.failures)))
sys.exit(1 if check.failures else 0)
