"""Server-side printing (meta.k8s.io/v1 Table) for the kinds people `kubectl get`
most: Pod, Deployment, ReplicaSet, Service. Other kinds answer plain JSON, which
kubectl prints as NAME and AGE."""
import time

from .store import parse_iso


def _age(obj):
    t = parse_iso(obj["metadata"].get("creationTimestamp"))
    if t is None:
        return "<unknown>"
    s = int(max(0, time.time() - t))
    if s < 120:
        return "%ds" % s
    if s < 3600:
        return "%dm%ds" % (s // 60, s % 60) if s < 600 else "%dm" % (s // 60)
    if s < 86400:
        return "%dh%dm" % (s // 3600, s % 3600 // 60)
    return "%dd" % (s // 86400)


def _col(name, typ="string", fmt="", priority=0):
    return {"name": name, "type": typ, "format": fmt, "description": name, "priority": priority}


def _pod(p):
    st = p.get("status") or {}
    css = st.get("containerStatuses") or []
    ready = sum(1 for c in css if c.get("ready"))
    total = len(p["spec"].get("containers") or [])
    reason = st.get("phase", "Pending")
    for c in css:
        w = (c.get("state") or {}).get("waiting")
        if w and w.get("reason") and not (c.get("state") or {}).get("running"):
            reason = w["reason"]
    if p["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in css)
    return [p["metadata"]["name"], "%d/%d" % (ready, total), reason, restarts, _age(p),
            st.get("podIP") or "<none>", p["spec"].get("nodeName") or "<none>", "<none>",
            "<none>"]


def _deploy(d):
    st = d.get("status") or {}
    cs = d["spec"]["template"]["spec"].get("containers") or []
    from .store import selector_string
    return [d["metadata"]["name"], "%d/%d" % (st.get("readyReplicas", 0),
                                              d["spec"].get("replicas", 1)),
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(d),
            ",".join(c["name"] for c in cs), ",".join(c.get("image", "") for c in cs),
            selector_string(d["spec"].get("selector") or {})]


def _rs(r):
    st = r.get("status") or {}
    cs = r["spec"]["template"]["spec"].get("containers") or []
    from .store import selector_string
    return [r["metadata"]["name"], r["spec"].get("replicas", 1), st.get("replicas", 0),
            st.get("readyReplicas", 0), _age(r), ",".join(c["name"] for c in cs),
            ",".join(c.get("image", "") for c in cs),
            selector_string(r["spec"].get("selector") or {})]


def _svc(s):
    sp = s.get("spec") or {}
    ports = ",".join("%s/%s" % (p.get("port"), p.get("protocol", "TCP"))
                     for p in sp.get("ports") or []) or "<none>"
    sel = ",".join("%s=%s" % kv for kv in sorted((sp.get("selector") or {}).items()))
    return [s["metadata"]["name"], sp.get("type", "ClusterIP"), sp.get("clusterIP", "<none>"),
            "<none>", ports, _age(s), sel or "<none>"]


COLUMNS = {
    "pods": ([_col("Name", fmt="name"), _col("Ready"), _col("Status"),
              _col("Restarts", "string"), _col("Age"), _col("IP", priority=1),
              _col("Node", priority=1), _col("Nominated Node", priority=1),
              _col("Readiness Gates", priority=1)], _pod),
    "deployments": ([_col("Name", fmt="name"), _col("Ready"), _col("Up-to-date", "integer"),
                     _col("Available", "integer"), _col("Age"), _col("Containers", priority=1),
                     _col("Images", priority=1), _col("Selector", priority=1)], _deploy),
    "replicasets": ([_col("Name", fmt="name"), _col("Desired", "integer"),
                     _col("Current", "integer"), _col("Ready", "integer"), _col("Age"),
                     _col("Containers", priority=1), _col("Images", priority=1),
                     _col("Selector", priority=1)], _rs),
    "services": ([_col("Name", fmt="name"), _col("Type"), _col("Cluster-IP"),
                  _col("External-IP"), _col("Port(s)"), _col("Age"),
                  _col("Selector", priority=1)], _svc),
}


def wants_table(accept, plural):
    return plural in COLUMNS and "as=Table" in (accept or "")


def table(plural, objs, rv, include="PartialObjectMetadata"):
    cols, fn = COLUMNS[plural]
    rows = []
    for o in objs:
        row = {"cells": fn(o)}
        if include == "Object":
            row["object"] = o
        elif include != "None":
            row["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                             "metadata": o["metadata"]}
        rows.append(row)
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1",
            "metadata": {"resourceVersion": rv}, "columnDefinitions": cols, "rows": rows}
