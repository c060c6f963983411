"""The resource types kubesim serves, their discovery data and their API-server
strategies (defaults, validation, generation, what an update may change)."""
import copy
import json

from .store import invalid, ApiError


class Res:
    def __init__(self, group, version, plural, kind, namespaced=True, short=(), subs=(),
                 verbs=("create", "delete", "deletecollection", "get", "list", "patch",
                        "update", "watch")):
        self.group, self.version, self.plural, self.kind = group, version, plural, kind
        self.namespaced, self.short, self.subs, self.verbs = namespaced, list(short), subs, verbs

    @property
    def api_version(self):
        return self.group + "/" + self.version if self.group else self.version


RESOURCES = [
    Res("", "v1", "namespaces", "Namespace", namespaced=False, short=["ns"], subs=("status",)),
    Res("", "v1", "nodes", "Node", namespaced=False, short=["no"], subs=("status",)),
    Res("", "v1", "pods", "Pod", short=["po"], subs=("status", "log")),
    Res("", "v1", "services", "Service", short=["svc"], subs=("status",)),
    Res("", "v1", "endpoints", "Endpoints", short=["ep"]),
    Res("", "v1", "configmaps", "ConfigMap", short=["cm"]),
    Res("", "v1", "secrets", "Secret"),
    Res("", "v1", "events", "Event", short=["ev"]),
    Res("", "v1", "serviceaccounts", "ServiceAccount", short=["sa"]),
    Res("apps", "v1", "deployments", "Deployment", short=["deploy"], subs=("status", "scale")),
    Res("apps", "v1", "replicasets", "ReplicaSet", short=["rs"], subs=("status", "scale")),
    Res("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=["pdb"],
        subs=("status",)),
    Res("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
]
BY_PATH = {(r.group, r.version, r.plural): r for r in RESOURCES}
BY_PLURAL = {r.plural: r for r in RESOURCES}
BY_KIND = {r.kind: r for r in RESOURCES}
GROUPS = []
for _r in RESOURCES:
    if _r.group and _r.group not in GROUPS:
        GROUPS.append(_r.group)


def resource_list(group, version):
    out = []
    for r in RESOURCES:
        if r.group != group or r.version != version:
            continue
        e = {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced,
             "kind": r.kind, "verbs": list(r.verbs)}
        if r.short:
            e["shortNames"] = r.short
        if r.plural in ("pods", "deployments", "replicasets", "services"):
            e["categories"] = ["all"]
        out.append(e)
        for s in r.subs:
            se = {"name": r.plural + "/" + s, "singularName": "", "namespaced": r.namespaced,
                  "kind": r.kind, "verbs": ["get", "patch", "update"]}
            if s == "scale":
                se.update(group="autoscaling", version="v1", kind="Scale")
            if s == "log":
                se.update(kind="Pod", verbs=["get"])
            out.append(se)
    return {"kind": "APIResourceList", "apiVersion": "v1",
            "groupVersion": (group + "/" + version) if group else version, "resources": out}


def group_list():
    groups = []
    for g in GROUPS:
        vs = sorted({r.version for r in RESOURCES if r.group == g})
        gv = [{"groupVersion": g + "/" + v, "version": v} for v in vs]
        groups.append({"name": g, "versions": gv, "preferredVersion": gv[0]})
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


# ---- defaults -----------------------------------------------------------------------------

def _probe_defaults(p):
    if p is None:
        return
    p.setdefault("timeoutSeconds", 1)
    p.setdefault("periodSeconds", 10)
    p.setdefault("successThreshold", 1)
    p.setdefault("failureThreshold", 3)


def default_pod_spec(spec):
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        c.setdefault("imagePullPolicy",
                     "Always" if str(c.get("image", "")).endswith(":latest") else "IfNotPresent")
        c.setdefault("resources", {})
        for p in c.get("ports") or []:
            p.setdefault("protocol", "TCP")
        for k in ("livenessProbe", "readinessProbe", "startupProbe"):
            _probe_defaults(c.get(k))
    for v in spec.get("volumes") or []:
        for k in ("configMap", "secret"):
            if isinstance(v.get(k), dict):
                v[k].setdefault("defaultMode", 420)


def default_object(res, obj):
    spec = obj.get("spec")
    if res.kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        st = spec.setdefault("strategy", {})
        st.setdefault("type", "RollingUpdate")
        if st["type"] == "RollingUpdate":
            ru = st.setdefault("rollingUpdate", {})
            ru.setdefault("maxSurge", "25%")
            ru.setdefault("maxUnavailable", "25%")
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif res.kind == "ReplicaSet":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        default_pod_spec(spec.setdefault("template", {}).setdefault("spec", {}))
    elif res.kind == "Pod":
        default_pod_spec(obj.setdefault("spec", {}))
        obj.setdefault("status", {}).setdefault("phase", "Pending")
    elif res.kind == "Service":
        spec = obj.setdefault("spec", {})
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
        for p in spec.get("ports") or []:
            p.setdefault("protocol", "TCP")
            p.setdefault("targetPort", p.get("port"))
    elif res.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = \
            obj["metadata"].get("name")
    elif res.kind == "Secret":
        obj.setdefault("type", "Opaque")
    del spec


# ---- validation ---------------------------------------------------------------------------

def _intstr(v, total, round_up):
    if isinstance(v, int):
        return v
    if isinstance(v, str) and v.endswith("%"):
        try:
            pct = int(v[:-1])
        except ValueError:
            raise ValueError("invalid value for IntOrString: invalid value %r" % v)
        num = pct * total
        return -(-num // 100) if round_up else num // 100
    if isinstance(v, str):
        try:
            return int(v)
        except ValueError:
            raise ValueError("invalid value for IntOrString: invalid type: string is not a "
                             "percentage")
    raise ValueError("invalid value %r" % (v,))


def validate(res, obj):
    md = obj.get("metadata") or {}
    name = md.get("name", "")
    causes = []
    if res.kind in ("Deployment", "ReplicaSet"):
        spec = obj.get("spec") or {}
        sel = spec.get("selector")
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        if not sel or not (sel.get("matchLabels") or sel.get("matchExpressions")):
            causes.append(("spec.selector", "FieldValueRequired", "Required value"))
        else:
            from .store import match_label_selector_obj
            if not match_label_selector_obj(sel, labels):
                causes.append(("spec.template.metadata.labels", "FieldValueInvalid",
                               "Invalid value: %s: `selector` does not match template `labels`"
                               % json.dumps(labels)))
        if not ((spec.get("template") or {}).get("spec") or {}).get("containers"):
            causes.append(("spec.template.spec.containers", "FieldValueRequired",
                           "Required value"))
        if isinstance(spec.get("replicas"), int) and spec["replicas"] < 0:
            causes.append(("spec.replicas", "FieldValueInvalid",
                           "Invalid value: %d: must be greater than or equal to 0"
                           % spec["replicas"]))
    if res.kind == "Deployment":
        spec = obj.get("spec") or {}
        st = spec.get("strategy") or {}
        ru = st.get("rollingUpdate")
        if st.get("type") == "Recreate" and ru:
            causes.append(("spec.strategy.rollingUpdate", "FieldValueForbidden",
                           "Forbidden: may not be specified when strategy `type` is 'Recreate'"))
        if st.get("type") == "RollingUpdate" and ru:
            try:
                s = _intstr(ru.get("maxSurge", 0), 100, True)
                u = _intstr(ru.get("maxUnavailable", 0), 100, False)
                if s == 0 and u == 0:
                    causes.append(("spec.strategy.rollingUpdate.maxUnavailable",
                                   "FieldValueInvalid",
                                   "Invalid value: 0: may not be 0 when `maxSurge` is 0"))
                if isinstance(ru.get("maxUnavailable"), str) and u > 100:
                    causes.append(("spec.strategy.rollingUpdate.maxUnavailable",
                                   "FieldValueInvalid",
                                   "Invalid value: %r: must not be greater than 100%%"
                                   % ru.get("maxUnavailable")))
            except ValueError as e:
                causes.append(("spec.strategy.rollingUpdate", "FieldValueInvalid", str(e)))
        pds, mrs = spec.get("progressDeadlineSeconds"), spec.get("minReadySeconds", 0) or 0
        if isinstance(pds, int) and pds <= mrs:
            causes.append(("spec.progressDeadlineSeconds", "FieldValueInvalid",
                           "Invalid value: %d: must be greater than minReadySeconds" % pds))
    if res.kind == "Pod":
        if not (obj.get("spec") or {}).get("containers"):
            causes.append(("spec.containers", "FieldValueRequired", "Required value"))
    if causes:
        raise invalid(res, name, causes)


def bump_generation(res, old, new):
    """Strategy: generation moves with spec (and, for Deployments, annotations)."""
    if res.kind not in ("Deployment", "ReplicaSet", "PodDisruptionBudget"):
        return
    changed = old.get("spec") != new.get("spec")
    if res.kind == "Deployment":
        changed = changed or (old["metadata"].get("annotations") or {}) != \
            (new["metadata"].get("annotations") or {})
    gen = old["metadata"].get("generation", 1)
    new["metadata"]["generation"] = gen + 1 if changed else gen


def prepare_update(res, old, new, sub):
    """Apply the update strategy: returns the object to store."""
    if sub == "status":
        out = copy.deepcopy(old)
        out["status"] = new.get("status", {})
        if "resourceVersion" in new.get("metadata", {}):
            out["metadata"]["resourceVersion"] = new["metadata"]["resourceVersion"]
        return out
    new = copy.deepcopy(new)
    new.setdefault("metadata", {})
    for k in ("uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds"):
        if k in old["metadata"]:
            new["metadata"][k] = old["metadata"][k]
    if res.kind in ("Deployment", "ReplicaSet", "Pod", "Service", "PodDisruptionBudget",
                    "Namespace", "Node"):
        if "status" in old:
            new["status"] = old["status"]
        else:
            new.pop("status", None)
    if res.kind == "Service":
        spec = new.setdefault("spec", {})
        ospec = old.get("spec", {})
        if ospec.get("clusterIP") and not spec.get("clusterIP"):
            spec["clusterIP"] = ospec["clusterIP"]
            spec["clusterIPs"] = ospec.get("clusterIPs", [ospec["clusterIP"]])
        elif spec.get("clusterIP") != ospec.get("clusterIP"):
            raise invalid(res, new["metadata"].get("name", ""),
                          [("spec.clusterIPs[0]", "FieldValueInvalid",
                            "Invalid value: field is immutable")])
    if res.kind == "Pod":
        if (old.get("spec") or {}).get("nodeName") and not new.get("spec", {}).get("nodeName"):
            new["spec"]["nodeName"] = old["spec"]["nodeName"]
    if res.kind in ("Deployment", "ReplicaSet") and \
            new.get("spec", {}).get("selector") != old.get("spec", {}).get("selector"):
        raise invalid(res, new["metadata"].get("name", ""),
                      [("spec.selector", "FieldValueInvalid",
                        "Invalid value: %s: field is immutable"
                        % json.dumps(new.get("spec", {}).get("selector")))])
    default_object(res, new)
    validate(res, new)
    bump_generation(res, old, new)
    return new


def strip_nulls(v):
    """JSON nulls decode to Go zero values that are omitted on output: drop them."""
    if isinstance(v, dict):
        return {k: strip_nulls(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [strip_nulls(x) for x in v]
    return v


def check_kind(res, obj):
    if not isinstance(obj, dict):
        raise ApiError(400, "BadRequest", "the body of the request is not a JSON object")
    clean = strip_nulls(obj)
    obj.clear()
    obj.update(clean)
    k = obj.get("kind")
    if k and k != res.kind:
        raise ApiError(400, "BadRequest", "the kind %r does not match the resource %s"
                       % (k, res.plural))
    obj["kind"] = res.kind
    obj["apiVersion"] = res.api_version
