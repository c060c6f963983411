"""Controllers: Deployment, ReplicaSet, Endpoints + EndpointSlice, garbage collector,
namespace deletion. They run one after another in a single loop thread (woken by
any store change, at least every 0.25 s), and write through the API layer so that
the same strategies apply as for clients."""
import copy
import json
import time

from . import rollout
from .resources import BY_PLURAL
from .store import ApiError, now_iso, parse_iso

REV = "deployment.kubernetes.io/revision"
REV_HIST = "deployment.kubernetes.io/revision-history"
DESIRED = "deployment.kubernetes.io/desired-replicas"
MAXREP = "deployment.kubernetes.io/max-replicas"
SKIP = {"kubectl.kubernetes.io/last-applied-configuration", REV, REV_HIST, DESIRED, MAXREP,
        "deprecated.deployment.rollback.to"}
R = BY_PLURAL


def controller_of(obj):
    for o in obj["metadata"].get("ownerReferences") or []:
        if o.get("controller"):
            return o
    return None


def is_terminating(p):
    return bool(p["metadata"].get("deletionTimestamp"))


def is_active(p):
    return not is_terminating(p) and (p.get("status") or {}).get("phase") not in (
        "Succeeded", "Failed")


def ready_cond(p):
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c
    return None


def is_ready(p):
    c = ready_cond(p)
    return bool(c and c.get("status") == "True")


def is_available(p, min_ready, now):
    c = ready_cond(p)
    if not c or c.get("status") != "True":
        return False
    if not min_ready:
        return True
    t = parse_iso(c.get("lastTransitionTime"))
    return t is not None and t + min_ready <= now


def revision(rs):
    try:
        return int((rs["metadata"].get("annotations") or {}).get(REV, "0"))
    except ValueError:
        return 0


def strip_hash(template):
    t = copy.deepcopy(template)
    (t.get("metadata") or {}).get("labels", {}).pop("pod-template-hash", None)
    return t


def equal_ignore_hash(a, b):
    return strip_hash(a) == strip_hash(b)


class Controllers:
    def __init__(self, cluster):
        self.cluster = cluster
        self.api = cluster.api
        self.store = cluster.store

    # ---- helpers ----------------------------------------------------------------------
    def event(self, obj, etype, reason, message):
        md = obj["metadata"]
        ns = md.get("namespace") or "default"
        ev = {"metadata": {"generateName": md["name"] + ".", "namespace": ns},
              "involvedObject": {"kind": obj.get("kind"), "namespace": ns, "name": md["name"],
                                 "uid": md.get("uid"), "apiVersion": obj.get("apiVersion"),
                                 "resourceVersion": md.get("resourceVersion")},
              "reason": reason, "message": message, "type": etype, "count": 1,
              "source": {"component": self.source}, "firstTimestamp": now_iso(),
              "lastTimestamp": now_iso(), "reportingComponent": self.source}
        try:
            self.api.create(R["events"], ns, ev)
        except ApiError:
            pass
        self.cluster.trim_events()

    source = "deployment-controller"

    def put_status(self, res, obj, status):
        if (obj.get("status") or {}) == status:
            return obj
        o = copy.deepcopy(obj)
        o["status"] = status
        try:
            return self.api.update(res, o["metadata"].get("namespace", ""),
                                   o["metadata"]["name"], o, "status")
        except ApiError:
            return obj

    def run_once(self):
        now = time.time()
        with self.store.lock:
            self.gc()
            for d, _ in [(d, 0) for d in self.store.list("deployments")[0]]:
                self.source = "deployment-controller"
                try:
                    self.sync_deployment(d, now)
                except ApiError as e:
                    self.cluster.log("deployment %s: %s" % (d["metadata"]["name"], e.message))
            for rs in self.store.list("replicasets")[0]:
                self.source = "replicaset-controller"
                try:
                    self.sync_rs(rs, now)
                except ApiError as e:
                    self.cluster.log("replicaset %s: %s" % (rs["metadata"]["name"], e.message))
            self.sync_endpoints()
            self.sync_namespaces()

    # ---- garbage collector -------------------------------------------------------------
    def gc(self):
        uids = set()
        for plural in ("deployments", "replicasets", "pods", "services"):
            for o in self.store.list(plural)[0]:
                uids.add(o["metadata"]["uid"])
        for plural in ("replicasets", "pods", "endpointslices"):
            for o in self.store.list(plural)[0]:
                refs = o["metadata"].get("ownerReferences") or []
                if refs and all(r.get("uid") not in uids for r in refs):
                    if plural == "pods" and is_terminating(o):
                        continue
                    try:
                        self.api.delete(R[plural], o["metadata"]["namespace"],
                                        o["metadata"]["name"], {})
                    except ApiError:
                        pass

    def sync_namespaces(self):
        for ns in self.store.list("namespaces")[0]:
            if not ns["metadata"].get("deletionTimestamp"):
                continue
            name = ns["metadata"]["name"]
            left = 0
            for r in R.values():
                if not r.namespaced:
                    continue
                for o in self.store.list(r.plural, name)[0]:
                    left += 1
                    if r.plural == "pods" and is_terminating(o):
                        continue
                    try:
                        self.api.delete(r, name, o["metadata"]["name"], {})
                    except ApiError:
                        pass
            if left == 0:
                try:
                    self.store.remove(R["namespaces"], "", name)
                except ApiError:
                    pass

    # ---- ReplicaSet controller -----------------------------------------------------------
    def rs_pods(self, rs):
        uid = rs["metadata"]["uid"]
        pods = self.store.list("pods", rs["metadata"]["namespace"])[0]
        return [p for p in pods if (controller_of(p) or {}).get("uid") == uid]

    def sync_rs(self, rs, now):
        ns, name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        pods = self.rs_pods(rs)
        active = [p for p in pods if is_active(p)]
        want = rs["spec"].get("replicas", 1)
        diff = len(active) - want
        if diff < 0:
            tmpl = rs["spec"]["template"]
            for _ in range(min(-diff, 500)):
                pod = {"apiVersion": "v1", "kind": "Pod",
                       "metadata": {"generateName": name + "-", "namespace": ns,
                                    "labels": copy.deepcopy((tmpl.get("metadata") or {})
                                                            .get("labels") or {}),
                                    "annotations": copy.deepcopy(
                                        (tmpl.get("metadata") or {}).get("annotations") or {}),
                                    "ownerReferences": [{
                                        "apiVersion": "apps/v1", "kind": "ReplicaSet",
                                        "name": name, "uid": rs["metadata"]["uid"],
                                        "controller": True, "blockOwnerDeletion": True}]},
                       "spec": copy.deepcopy(tmpl.get("spec") or {})}
                if not pod["metadata"]["annotations"]:
                    del pod["metadata"]["annotations"]
                p = self.api.create(R["pods"], ns, pod)
                self.event(dict(rs, kind="ReplicaSet", apiVersion="apps/v1"), "Normal",
                           "SuccessfulCreate", "Created pod: " + p["metadata"]["name"])
                active.append(p)
        elif diff > 0:
            def rank(p):
                st = p.get("status") or {}
                c = ready_cond(p)
                ready_since = parse_iso(c.get("lastTransitionTime")) if c and \
                    c.get("status") == "True" else None
                restarts = sum(cs.get("restartCount", 0) for cs in st.get("containerStatuses")
                               or [])
                return (0 if not p["spec"].get("nodeName") else 1,
                        0 if st.get("phase") == "Pending" else 1,
                        1 if is_ready(p) else 0,
                        -(ready_since or 0), -restarts,
                        -(parse_iso(p["metadata"].get("creationTimestamp")) or 0))
            victims = sorted(active, key=rank)[:diff]
            for p in victims:
                try:
                    self.api.delete(R["pods"], ns, p["metadata"]["name"], {})
                    self.event(dict(rs, kind="ReplicaSet", apiVersion="apps/v1"), "Normal",
                               "SuccessfulDelete", "Deleted pod: " + p["metadata"]["name"])
                except ApiError:
                    pass
            names = {p["metadata"]["name"] for p in victims}
            active = [p for p in active if p["metadata"]["name"] not in names]
        mrs = rs["spec"].get("minReadySeconds", 0) or 0
        sel = rs["spec"].get("selector") or {}
        tl = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
        status = {"replicas": len(active),
                  "fullyLabeledReplicas": len([p for p in active if all(
                      (p["metadata"].get("labels") or {}).get(k) == v for k, v in tl.items())]),
                  "readyReplicas": len([p for p in active if is_ready(p)]),
                  "availableReplicas": len([p for p in active if is_available(p, mrs, now)]),
                  "observedGeneration": rs["metadata"].get("generation", 1)}
        del sel
        self.put_status(R["replicasets"], rs, status)

    # ---- Deployment controller -------------------------------------------------------------
    def owned_rss(self, d):
        uid = d["metadata"]["uid"]
        rss = self.store.list("replicasets", d["metadata"]["namespace"])[0]
        return [r for r in rss if (controller_of(r) or {}).get("uid") == uid]

    def sync_deployment(self, d, now):
        d = dict(d, kind="Deployment", apiVersion="apps/v1")
        spec = d["spec"]
        sel = spec.get("selector") or {}
        if not sel.get("matchLabels") and not sel.get("matchExpressions"):
            st = copy.deepcopy(d.get("status") or {})
            st["observedGeneration"] = d["metadata"].get("generation", 1)
            self.put_status(R["deployments"], d, st)
            return
        rss = self.owned_rss(d)
        self.check_paused_conditions(d)
        d = self.store.get("deployments", d["metadata"]["namespace"], d["metadata"]["name"])
        d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
        if spec.get("paused"):
            return self.sync_scale_only(d, rss, now, paused=True)
        if self.is_scaling_event(d, rss):
            return self.sync_scale_only(d, rss, now, paused=False)
        if (spec.get("strategy") or {}).get("type") == "Recreate":
            return self.rollout_recreate(d, rss, now)
        return self.rollout_rolling(d, rss, now)

    def check_paused_conditions(self, d):
        if d["spec"].get("progressDeadlineSeconds") is None:
            return
        st = copy.deepcopy(d.get("status") or {})
        cond = self.get_cond(st, "Progressing")
        if cond and cond.get("reason") == "ProgressDeadlineExceeded":
            return
        paused = bool(d["spec"].get("paused"))
        if paused and not (cond and cond.get("reason") == "DeploymentPaused"):
            self.set_cond(st, "Progressing", "Unknown", "DeploymentPaused", "Deployment is paused")
        elif not paused and cond and cond.get("reason") == "DeploymentPaused":
            self.set_cond(st, "Progressing", "Unknown", "DeploymentResumed",
                          "Deployment is resumed")
        else:
            return
        self.put_status(R["deployments"], d, st)

    @staticmethod
    def get_cond(status, ctype):
        for c in status.get("conditions") or []:
            if c.get("type") == ctype:
                return c
        return None

    @staticmethod
    def set_cond(status, ctype, st, reason, msg, keep_transition=None):
        conds = status.setdefault("conditions", [])
        cur = next((c for c in conds if c.get("type") == ctype), None)
        if cur and cur.get("status") == st and cur.get("reason") == reason:
            return
        t = now_iso()
        new = {"type": ctype, "status": st, "lastUpdateTime": t, "lastTransitionTime": t,
               "reason": reason, "message": msg}
        if cur and cur.get("status") == st:
            new["lastTransitionTime"] = cur.get("lastTransitionTime", t)
        if cur:
            conds.remove(cur)
        conds.append(new)

    def is_scaling_event(self, d, rss):
        active = [r for r in rss if r["spec"].get("replicas", 0) > 0]
        for r in active:
            want = (r["metadata"].get("annotations") or {}).get(DESIRED)
            if want is None:
                continue
            if int(want) != d["spec"].get("replicas", 1):
                return True
        return False

    def find_new_rs(self, d, rss):
        cands = [r for r in rss if equal_ignore_hash(r["spec"]["template"],
                                                     d["spec"]["template"])]
        cands.sort(key=lambda r: (r["metadata"].get("creationTimestamp", ""),
                                  r["metadata"]["name"]))
        return cands[0] if cands else None

    def scale_rs(self, d, rs, n, verb_from=True):
        if rs["spec"].get("replicas", 0) == n and self._annot_ok(d, rs):
            return rs, False
        old_n = rs["spec"].get("replicas", 0)
        r2 = copy.deepcopy(rs)
        r2["spec"]["replicas"] = n
        self._set_replica_annotations(d, r2)
        out = self.api.update(R["replicasets"], rs["metadata"]["namespace"],
                              rs["metadata"]["name"], r2)
        if old_n != n:
            self.event(d, "Normal", "ScalingReplicaSet", "Scaled %s replica set %s to %d from %d"
                       % ("up" if n > old_n else "down", rs["metadata"]["name"], n, old_n))
        return out, old_n != n

    def _annot_ok(self, d, rs):
        a = rs["metadata"].get("annotations") or {}
        return a.get(DESIRED) == str(d["spec"].get("replicas", 1)) and a.get(MAXREP) == str(
            d["spec"].get("replicas", 1) + rollout.max_surge(d["spec"]["strategy"],
                                                             d["spec"].get("replicas", 1)))

    def _set_replica_annotations(self, d, rs):
        a = rs["metadata"].setdefault("annotations", {})
        reps = d["spec"].get("replicas", 1)
        a[DESIRED] = str(reps)
        a[MAXREP] = str(reps + rollout.max_surge(d["spec"]["strategy"], reps))

    def get_new_rs(self, d, rss, create):
        old = [r for r in rss]
        new = self.find_new_rs(d, rss)
        if new is not None:
            old = [r for r in rss if r["metadata"]["uid"] != new["metadata"]["uid"]]
        max_old = max([revision(r) for r in old] or [0])
        new_rev = max_old + 1
        if new is not None:
            changed = False
            r2 = copy.deepcopy(new)
            a = r2["metadata"].setdefault("annotations", {})
            for k, v in (d["metadata"].get("annotations") or {}).items():
                if k not in SKIP and a.get(k) != v:
                    a[k] = v
                    changed = True
            if revision(new) < new_rev:
                if REV in a:
                    hist = a.get(REV_HIST)
                    a[REV_HIST] = (hist + "," + a[REV]) if hist else a[REV]
                    if len(a[REV_HIST]) > 2000:
                        a[REV_HIST] = a[REV_HIST][-2000:].split(",", 1)[-1]
                a[REV] = str(new_rev)
                changed = True
            if r2["spec"].get("minReadySeconds", 0) != d["spec"].get("minReadySeconds", 0):
                r2["spec"]["minReadySeconds"] = d["spec"].get("minReadySeconds", 0)
                changed = True
            if changed:
                new = self.api.update(R["replicasets"], new["metadata"]["namespace"],
                                      new["metadata"]["name"], r2)
            self._sync_deploy_revision(d, revision(new))
            st = copy.deepcopy(d.get("status") or {})
            if self.get_cond(st, "Progressing") is None and \
                    d["spec"].get("progressDeadlineSeconds") is not None:
                self.set_cond(st, "Progressing", "True", "FoundNewReplicaSet",
                              'Found new replica set "%s"' % new["metadata"]["name"])
                self.put_status(R["deployments"], self._fresh(d), st)
            return new, old
        if not create:
            return None, old
        tmpl = copy.deepcopy(d["spec"]["template"])
        cc = (d.get("status") or {}).get("collisionCount")
        h = rollout.template_hash(json.dumps(tmpl, sort_keys=True, separators=(",", ":")), cc)
        tmpl.setdefault("metadata", {}).setdefault("labels", {})["pod-template-hash"] = h
        sel = copy.deepcopy(d["spec"]["selector"])
        sel.setdefault("matchLabels", {})["pod-template-hash"] = h
        reps = d["spec"].get("replicas", 1)
        all_sum = sum(r["spec"].get("replicas", 0) for r in old)
        n = rollout.new_rs_new_replicas(d["spec"]["strategy"], reps, all_sum, 0)
        annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                       if k not in SKIP}
        annotations[REV] = str(new_rev)
        rs = {"apiVersion": "apps/v1", "kind": "ReplicaSet",
              "metadata": {"name": d["metadata"]["name"] + "-" + h,
                           "namespace": d["metadata"]["namespace"],
                           "labels": dict(tmpl["metadata"]["labels"]),
                           "annotations": annotations,
                           "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment",
                                                "name": d["metadata"]["name"],
                                                "uid": d["metadata"]["uid"], "controller": True,
                                                "blockOwnerDeletion": True}]},
              "spec": {"replicas": n, "minReadySeconds": d["spec"].get("minReadySeconds", 0),
                       "selector": sel, "template": tmpl}}
        self._set_replica_annotations(d, rs)
        try:
            new = self.api.create(R["replicasets"], d["metadata"]["namespace"], rs)
        except ApiError as e:
            if e.reason == "AlreadyExists":
                st = copy.deepcopy(d.get("status") or {})
                st["collisionCount"] = (st.get("collisionCount") or 0) + 1
                self.put_status(R["deployments"], d, st)
                return None, old
            st = copy.deepcopy(d.get("status") or {})
            self.set_cond(st, "Progressing", "False", "ReplicaSetCreateError",
                          'Failed to create new replica set "%s": %s'
                          % (rs["metadata"]["name"], e.message))
            self.put_status(R["deployments"], d, st)
            raise
        if n > 0:
            self.event(d, "Normal", "ScalingReplicaSet", "Scaled up replica set %s to %d"
                       % (new["metadata"]["name"], n))
        self._sync_deploy_revision(d, new_rev)
        if d["spec"].get("progressDeadlineSeconds") is not None:
            st = copy.deepcopy(self._fresh(d).get("status") or {})
            self.set_cond(st, "Progressing", "True", "NewReplicaSetCreated",
                          'Created new replica set "%s"' % new["metadata"]["name"])
            self.put_status(R["deployments"], self._fresh(d), st)
        return new, old

    def _fresh(self, d):
        o = self.store.get("deployments", d["metadata"]["namespace"], d["metadata"]["name"])
        return o or d

    def _sync_deploy_revision(self, d, rev):
        cur = self._fresh(d)
        a = cur["metadata"].get("annotations") or {}
        if a.get(REV) == str(rev):
            return
        cur["metadata"].setdefault("annotations", {})[REV] = str(rev)
        self.api.update(R["deployments"], cur["metadata"]["namespace"],
                        cur["metadata"]["name"], cur)

    def pods_of(self, rs):
        return self.rs_pods(rs)

    def rollout_rolling(self, d, rss, now):
        new, old = self.get_new_rs(d, rss, create=True)
        d = self._fresh(d)
        d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
        if new is None:
            return
        reps = d["spec"].get("replicas", 1)
        strat = d["spec"]["strategy"]
        all_rs = [new] + old
        all_sum = sum(r["spec"].get("replicas", 0) for r in all_rs)
        n = rollout.new_rs_new_replicas(strat, reps, all_sum, new["spec"].get("replicas", 0))
        new, scaled = self.scale_rs(d, new, n)
        if scaled:
            return self.sync_status(d, new, old, now, progress=True)
        # scale down old
        old_active = [r for r in old if r["spec"].get("replicas", 0) > 0]
        if old_active:
            all_pods = sum((r.get("status") or {}).get("replicas", 0) for r in [new] + old)
            budget = rollout.max_scaled_down(strat, reps, all_pods, new["spec"].get("replicas", 0),
                                             (new.get("status") or {}).get("availableReplicas", 0))
            changed = False
            if budget > 0:
                olds = sorted(old_active, key=lambda r: (r["metadata"].get("creationTimestamp"),
                                                         r["metadata"]["name"]))
                cuts, removed = rollout.cleanup_unhealthy(
                    [(r["metadata"]["name"], r["spec"].get("replicas", 0),
                      (r.get("status") or {}).get("availableReplicas", 0)) for r in olds], budget)
                by = {r["metadata"]["name"]: r for r in olds}
                for name, spec_n in cuts.items():
                    by[name], c = self.scale_rs(d, by[name], spec_n)
                    changed = changed or c
                olds = [by[r["metadata"]["name"]] for r in olds]
                avail_all = sum((r.get("status") or {}).get("availableReplicas", 0)
                                for r in [new] + olds)
                cuts, _ = rollout.scale_down_old_for_rolling(
                    [(r["metadata"]["name"], r["spec"].get("replicas", 0)) for r in olds], reps,
                    rollout.max_unavailable(strat, reps), avail_all)
                for name, spec_n in cuts.items():
                    by[name], c = self.scale_rs(d, by[name], spec_n)
                    changed = changed or c
                old = [by.get(r["metadata"]["name"], r) for r in old]
            if changed:
                return self.sync_status(d, new, old, now, progress=True)
        if self.complete(d, new, old):
            self.cleanup(d, old)
        self.sync_status(d, new, old, now, progress=True)

    def rollout_recreate(self, d, rss, now):
        new, old = self.get_new_rs(d, rss, create=False)
        d = self._fresh(d)
        d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
        scaled = False
        for r in old:
            if r["spec"].get("replicas", 0) > 0:
                _, c = self.scale_rs(d, r, 0)
                scaled = scaled or c
        if scaled:
            return self.sync_status(d, new, old, now, progress=True)
        for r in old:
            if (r.get("status") or {}).get("replicas", 0) > 0 or self.pods_of(r):
                return self.sync_status(d, new, old, now, progress=True)
        if new is None:
            new, old = self.get_new_rs(d, rss, create=True)
            d = self._fresh(d)
            d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
            if new is None:
                return
        new, _ = self.scale_rs(d, new, d["spec"].get("replicas", 1))
        if self.complete(d, new, old):
            self.cleanup(d, old)
        self.sync_status(d, new, old, now, progress=True)

    def sync_scale_only(self, d, rss, now, paused):
        new, old = self.get_new_rs(d, rss, create=False)
        d = self._fresh(d)
        d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
        reps = d["spec"].get("replicas", 1)
        active = [r for r in ([new] if new else []) + old if r["spec"].get("replicas", 0) > 0]
        if new is not None and (not active or (len(active) == 1 and active[0] is new)):
            new, _ = self.scale_rs(d, new, reps)
        elif len(active) == 1:
            self.scale_rs(d, active[0], reps)
        elif active:
            # Proportional scaling (sync.go scale()): spread the difference between the
            # allowed size (replicas + surge) and the current sum by each RS's share.
            strat = d["spec"]["strategy"]
            allowed = reps + rollout.max_surge(strat, reps)
            cur_sum = sum(r["spec"].get("replicas", 0) for r in active)
            diff = allowed - cur_sum
            if diff != 0:
                order = sorted(active, key=lambda r: -r["spec"].get("replicas", 0)) if diff > 0 \
                    else sorted(active, key=lambda r: r["spec"].get("replicas", 0))
                added, sizes = 0, {}
                for r in order:
                    share = r["spec"].get("replicas", 0) * diff // cur_sum if cur_sum else 0
                    sizes[r["metadata"]["name"]] = r["spec"].get("replicas", 0) + share
                    added += share
                if order:
                    sizes[order[0]["metadata"]["name"]] += diff - added
                for r in active:
                    self.scale_rs(d, r, max(0, sizes[r["metadata"]["name"]]))
            else:
                for r in active:
                    self.scale_rs(d, r, r["spec"].get("replicas", 0))
        rss = self.owned_rss(d)
        new = next((r for r in rss if new and r["metadata"]["uid"] == new["metadata"]["uid"]),
                   None)
        old = [r for r in rss if not new or r["metadata"]["uid"] != new["metadata"]["uid"]]
        if paused or self.complete(d, new, old):
            self.cleanup(d, old)
        self.sync_status(d, new, old, now, progress=False)

    def complete(self, d, new, old):
        if new is None:
            return False
        st = self.calc_status(d, new, old, time.time())
        reps = d["spec"].get("replicas", 1)
        return st["updatedReplicas"] == reps and st["replicas"] == reps and \
            st["availableReplicas"] == reps

    def cleanup(self, d, old):
        limit = d["spec"].get("revisionHistoryLimit")
        if limit is None:
            return
        cands = [r for r in old if not r["metadata"].get("deletionTimestamp")]
        diff = len(cands) - limit
        if diff <= 0:
            return
        cands.sort(key=lambda r: (revision(r), r["metadata"].get("creationTimestamp", "")))
        for r in cands[:diff]:
            if r["spec"].get("replicas", 0) == 0 and (r.get("status") or {}).get(
                    "replicas", 0) == 0 and (r.get("status") or {}).get(
                    "observedGeneration", 0) >= r["metadata"].get("generation", 1):
                try:
                    self.api.delete(R["replicasets"], r["metadata"]["namespace"],
                                    r["metadata"]["name"], {})
                except ApiError:
                    pass

    def calc_status(self, d, new, old, now):
        rss = ([new] if new else []) + old
        rss = [self.store.get("replicasets", r["metadata"]["namespace"], r["metadata"]["name"])
               or r for r in rss]
        new = rss[0] if new else None

        def s(r, k):
            return (r.get("status") or {}).get(k, 0)
        avail = sum(s(r, "availableReplicas") for r in rss)
        st = {"observedGeneration": d["metadata"].get("generation", 1),
              "replicas": sum(s(r, "replicas") for r in rss),
              "updatedReplicas": s(new, "replicas") if new else 0,
              "readyReplicas": sum(s(r, "readyReplicas") for r in rss),
              "availableReplicas": avail}
        unavailable = max(0, sum(r["spec"].get("replicas", 0) for r in rss) - avail)
        if unavailable:
            st["unavailableReplicas"] = unavailable
        cc = (d.get("status") or {}).get("collisionCount")
        if cc is not None:
            st["collisionCount"] = cc
        return st

    def sync_status(self, d, new, old, now, progress):
        d = self._fresh(d)
        d["kind"], d["apiVersion"] = "Deployment", "apps/v1"
        prev = copy.deepcopy(d.get("status") or {})
        st = self.calc_status(d, new, old, now)
        for k in ("readyReplicas", "availableReplicas", "updatedReplicas", "replicas"):
            if st.get(k) == 0:
                st.pop(k)
        st["conditions"] = copy.deepcopy(prev.get("conditions") or [])
        reps = d["spec"].get("replicas", 1)
        mu = rollout.max_unavailable(d["spec"]["strategy"], reps)
        if st.get("availableReplicas", 0) >= reps - mu:
            self.set_cond(st, "Available", "True", "MinimumReplicasAvailable",
                          "Deployment has minimum availability.")
        else:
            self.set_cond(st, "Available", "False", "MinimumReplicasUnavailable",
                          "Deployment does not have minimum availability.")
        if progress:
            self.sync_progress(d, new, prev, st, now)
        if not st["conditions"]:
            del st["conditions"]
        self.put_status(R["deployments"], d, st)

    def sync_progress(self, d, new, prev, st, now):
        pds = d["spec"].get("progressDeadlineSeconds")
        conds = st["conditions"]
        cur = self.get_cond(st, "Progressing")
        if pds is None or pds >= 2147483647:
            if cur:
                conds.remove(cur)
            return
        reps = d["spec"].get("replicas", 1)
        g = lambda s, k: s.get(k, 0)  # noqa: E731
        if g(st, "replicas") == g(st, "updatedReplicas") and cur and \
                cur.get("reason") == "NewReplicaSetAvailable":
            return
        name = new["metadata"]["name"] if new else ""
        complete = g(st, "updatedReplicas") == reps and g(st, "replicas") == reps and \
            g(st, "availableReplicas") == reps and \
            st["observedGeneration"] >= d["metadata"].get("generation", 1)
        progressed = g(st, "updatedReplicas") > g(prev, "updatedReplicas") or \
            (g(st, "replicas") - g(st, "updatedReplicas")) < \
            (g(prev, "replicas") - g(prev, "updatedReplicas")) or \
            g(st, "readyReplicas") > g(prev, "readyReplicas") or \
            g(st, "availableReplicas") > g(prev, "availableReplicas")
        t = now_iso()
        if complete and new is not None:
            self.set_cond(st, "Progressing", "True", "NewReplicaSetAvailable",
                          'ReplicaSet "%s" has successfully progressed.' % name)
        elif progressed and new is not None:
            c = {"type": "Progressing", "status": "True", "lastUpdateTime": t,
                 "lastTransitionTime": t, "reason": "ReplicaSetUpdated",
                 "message": 'ReplicaSet "%s" is progressing.' % name}
            if cur:
                if cur.get("status") == "True":
                    c["lastTransitionTime"] = cur.get("lastTransitionTime", t)
                conds.remove(cur)
            conds.append(c)
        elif cur and (cur.get("reason") == "ProgressDeadlineExceeded" or (
                cur.get("reason") != "NewReplicaSetAvailable" and
                (parse_iso(cur.get("lastUpdateTime")) or now) + pds < now)):
            self.set_cond(st, "Progressing", "False", "ProgressDeadlineExceeded",
                          'ReplicaSet "%s" has timed out progressing.' % name)
            if not (prev_cond_reason(prev) == "ProgressDeadlineExceeded"):
                self.event(d, "Warning", "ProgressDeadlineExceeded",
                           'ReplicaSet "%s" has timed out progressing.' % name)

    # ---- Endpoints + EndpointSlice ------------------------------------------------------------
    def sync_endpoints(self):
        for svc in self.store.list("services")[0]:
            sel = (svc.get("spec") or {}).get("selector")
            if not sel:
                continue
            ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
            pods = [p for p in self.store.list("pods", ns)[0]
                    if all((p["metadata"].get("labels") or {}).get(k) == v
                           for k, v in sel.items())
                    and (p.get("status") or {}).get("podIP")
                    and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")]
            ready_addrs, not_ready, slice_eps = [], [], []
            ports_of_pod = {}
            publish = svc["spec"].get("publishNotReadyAddresses", False)
            for p in sorted(pods, key=lambda p: p["status"]["podIP"]):
                ports = []
                for sp in svc["spec"].get("ports") or []:
                    tp = sp.get("targetPort", sp.get("port"))
                    num = None
                    if isinstance(tp, int):
                        num = tp
                    elif isinstance(tp, str) and tp.isdigit():
                        num = int(tp)
                    else:
                        for c in p["spec"].get("containers") or []:
                            for cp in c.get("ports") or []:
                                if cp.get("name") == tp:
                                    num = cp.get("containerPort")
                    if num is not None:
                        e = {"port": num, "protocol": sp.get("protocol", "TCP")}
                        if sp.get("name"):
                            e["name"] = sp["name"]
                        if sp.get("appProtocol"):
                            e["appProtocol"] = sp["appProtocol"]
                        ports.append(e)
                ports_of_pod[p["metadata"]["name"]] = ports
                addr = {"ip": p["status"]["podIP"], "nodeName": p["spec"].get("nodeName"),
                        "targetRef": {"kind": "Pod", "namespace": ns,
                                      "name": p["metadata"]["name"],
                                      "uid": p["metadata"]["uid"]}}
                term = is_terminating(p)
                rd = is_ready(p)
                if not term:
                    (ready_addrs if (rd or publish) else not_ready).append(addr)
                slice_eps.append({"addresses": [p["status"]["podIP"]],
                                  "conditions": {"ready": publish or (rd and not term),
                                                 "serving": rd, "terminating": term},
                                  "nodeName": p["spec"].get("nodeName"),
                                  "targetRef": addr["targetRef"]})
            all_ports = next((v for v in ports_of_pod.values() if v), [])
            subsets = []
            if (ready_addrs or not_ready) and all_ports:
                ss = {"ports": all_ports}
                if ready_addrs:
                    ss["addresses"] = ready_addrs
                if not_ready:
                    ss["notReadyAddresses"] = not_ready
                subsets.append(ss)
            ep = {"apiVersion": "v1", "kind": "Endpoints",
                  "metadata": {"name": name, "namespace": ns,
                               "labels": dict(svc["metadata"].get("labels") or {})},
                  "subsets": subsets}
            if not subsets:
                del ep["subsets"]
            cur = self.store.get("endpoints", ns, name)
            if cur is None:
                self.api.create(R["endpoints"], ns, ep)
            elif cur.get("subsets") != ep.get("subsets"):
                cur["subsets"] = ep.get("subsets")
                if cur["subsets"] is None:
                    del cur["subsets"]
                self.api.update(R["endpoints"], ns, name, cur)
            es = {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                  "metadata": {"name": name + "-kubesim", "namespace": ns,
                               "labels": {"kubernetes.io/service-name": name,
                                          "endpointslice.kubernetes.io/managed-by":
                                          "endpointslice-controller.k8s.io"},
                               "ownerReferences": [{"apiVersion": "v1", "kind": "Service",
                                                    "name": name, "uid": svc["metadata"]["uid"],
                                                    "controller": True,
                                                    "blockOwnerDeletion": True}]},
                  "addressType": "IPv4", "endpoints": slice_eps, "ports": all_ports}
            cur = self.store.get("endpointslices", ns, name + "-kubesim")
            if cur is None:
                self.api.create(R["endpointslices"], ns, es)
            elif cur.get("endpoints") != slice_eps or cur.get("ports") != all_ports:
                cur["endpoints"], cur["ports"] = slice_eps, all_ports
                self.api.update(R["endpointslices"], ns, name + "-kubesim", cur)


def prev_cond_reason(prev):
    for c in prev.get("conditions") or []:
        if c.get("type") == "Progressing":
            return c.get("reason")
    return None
