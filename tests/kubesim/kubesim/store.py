"""The object store: every API object, a global resourceVersion, watch fan-out.

One lock guards everything; writers (API handlers, controllers, kubelet) call the
methods below, which bump the resourceVersion, keep a bounded event history for
watches and wake waiting watchers.
"""
import copy
import datetime
import re
import threading
import uuid

HISTORY = 20000  # events kept for watches from an older resourceVersion


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(s):
    if not s:
        return None
    s = s.replace("Z", "+00:00")
    try:
        return datetime.datetime.fromisoformat(s).timestamp()
    except ValueError:
        return None


class ApiError(Exception):
    """An error that becomes a Status body."""

    def __init__(self, code, reason, message, details=None):
        super().__init__(message)
        self.code, self.reason, self.message, self.details = code, reason, message, details

    def status(self):
        st = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
              "message": self.message, "reason": self.reason, "code": self.code}
        if self.details is not None:
            st["details"] = self.details
        return st


def qualified(res):
    return res.plural + ("." + res.group if res.group else "")


def not_found(res, name):
    return ApiError(404, "NotFound", '%s "%s" not found' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def conflict(res, name):
    return ApiError(409, "Conflict",
                    'Operation cannot be fulfilled on %s "%s": the object has been modified; '
                    'please apply your changes to the latest version and try again'
                    % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def already_exists(res, name):
    return ApiError(409, "AlreadyExists", '%s "%s" already exists' % (qualified(res), name),
                    {"name": name, "group": res.group, "kind": res.plural})


def invalid(res, name, causes):
    """causes: [(field, reason, message)]"""
    msgs = "; ".join("%s: %s" % (f, m) for f, _, m in causes)
    return ApiError(422, "Invalid", '%s.%s "%s" is invalid: %s' % (
        res.kind, res.group or "", name, msgs) if res.group else '%s "%s" is invalid: %s' % (
        res.kind, name, msgs),
        {"name": name, "group": res.group, "kind": res.kind,
         "causes": [{"reason": r, "message": m, "field": f} for f, r, m in causes]})


# ---- label and field selectors -------------------------------------------------

_REQ = re.compile(r"\s*(!?)\s*([A-Za-z0-9_./-]+)\s*(?:(==|=|!=|\s+in\s+|\s+notin\s+)\s*"
                  r"(\([^)]*\)|[A-Za-z0-9_./-]*))?\s*$")


def _split_top(s):
    parts, depth, cur = [], 0, ""
    for ch in s:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    if cur.strip():
        parts.append(cur)
    return parts


def parse_label_selector(s):
    """String selector -> list of predicates on a labels dict. Raises ValueError."""
    reqs = []
    for part in _split_top(s or ""):
        m = _REQ.match(part)
        if not m:
            raise ValueError("unable to parse requirement: %r" % part)
        neg, key, op, val = m.groups()
        op = (op or "").strip()
        if neg and op:
            raise ValueError("invalid requirement: %r" % part)
        if not op:
            reqs.append((key, "!exists" if neg else "exists", None))
        elif op in ("=", "=="):
            reqs.append((key, "=", val))
        elif op == "!=":
            reqs.append((key, "!=", val))
        else:
            vals = [v.strip() for v in val.strip("()").split(",") if v.strip()]
            reqs.append((key, op, set(vals)))
    return reqs


def match_reqs(reqs, labels):
    labels = labels or {}
    for key, op, val in reqs:
        if op == "exists" and key not in labels:
            return False
        if op == "!exists" and key in labels:
            return False
        if op == "=" and labels.get(key) != val:
            return False
        if op == "!=" and labels.get(key) == val:
            return False
        if op == "in" and labels.get(key) not in val:
            return False
        if op == "notin" and labels.get(key) in val:
            return False
    return True


def match_label_selector_obj(sel, labels):
    """metav1.LabelSelector (matchLabels/matchExpressions) against labels."""
    if sel is None:
        return False
    labels = labels or {}
    for k, v in (sel.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in sel.get("matchExpressions") or []:
        k, op, vals = e.get("key"), e.get("operator"), e.get("values") or []
        if op == "In" and labels.get(k) not in vals:
            return False
        if op == "NotIn" and k in labels and labels.get(k) in vals:
            return False
        if op == "Exists" and k not in labels:
            return False
        if op == "DoesNotExist" and k in labels:
            return False
    return True


def selector_string(sel):
    parts = ["%s=%s" % (k, v) for k, v in sorted((sel.get("matchLabels") or {}).items())]
    for e in sel.get("matchExpressions") or []:
        op = e.get("operator")
        if op == "In":
            parts.append("%s in (%s)" % (e["key"], ",".join(sorted(e.get("values") or []))))
        elif op == "NotIn":
            parts.append("%s notin (%s)" % (e["key"], ",".join(sorted(e.get("values") or []))))
        elif op == "Exists":
            parts.append(e["key"])
        elif op == "DoesNotExist":
            parts.append("!" + e["key"])
    return ",".join(parts)


def _field(obj, path):
    cur = obj
    for p in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(p)
    return cur


def parse_field_selector(s):
    reqs = []
    for part in [p for p in (s or "").split(",") if p.strip()]:
        if "!=" in part:
            k, v = part.split("!=", 1)
            reqs.append((k.strip(), "!=", v.strip()))
        elif "==" in part:
            k, v = part.split("==", 1)
            reqs.append((k.strip(), "=", v.strip()))
        elif "=" in part:
            k, v = part.split("=", 1)
            reqs.append((k.strip(), "=", v.strip()))
        else:
            raise ValueError("invalid field selector: %r" % part)
    return reqs


def match_fields(reqs, obj):
    for k, op, v in reqs:
        got = _field(obj, k)
        got = "" if got is None else str(got)
        if op == "=" and got != v:
            return False
        if op == "!=" and got == v:
            return False
    return True


# ---- the store ------------------------------------------------------------------

class Store:
    def __init__(self):
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.rv = 100
        self.objects = {}  # plural -> {(ns, name): obj}
        self.history = []  # (rv, plural, type, obj)
        self.first_rv = self.rv
        self.listeners = []  # callables(plural, type, obj) run under the lock

    def _bucket(self, plural):
        return self.objects.setdefault(plural, {})

    def _emit(self, plural, etype, obj):
        self.history.append((int(obj["metadata"]["resourceVersion"]), plural, etype,
                             copy.deepcopy(obj)))
        if len(self.history) > HISTORY:
            drop = len(self.history) - HISTORY
            self.first_rv = self.history[drop - 1][0]
            del self.history[:drop]
        for fn in self.listeners:
            fn(plural, etype, obj)
        self.cond.notify_all()

    def next_rv(self):
        self.rv += 1
        return str(self.rv)

    def get(self, plural, ns, name):
        with self.lock:
            o = self._bucket(plural).get((ns or "", name))
            return copy.deepcopy(o) if o is not None else None

    def list(self, plural, ns=None, label_reqs=None, field_reqs=None):
        with self.lock:
            out = []
            for (ons, _), o in sorted(self._bucket(plural).items()):
                if ns and ons != ns:
                    continue
                if label_reqs and not match_reqs(label_reqs, o["metadata"].get("labels")):
                    continue
                if field_reqs and not match_fields(field_reqs, o):
                    continue
                out.append(copy.deepcopy(o))
            return out, str(self.rv)

    def create(self, res, obj):
        with self.lock:
            md = obj.setdefault("metadata", {})
            ns = md.get("namespace", "") if res.namespaced else ""
            if not md.get("name") and md.get("generateName"):
                for _ in range(100):
                    cand = md["generateName"] + uuid.uuid4().hex[:5]
                    if (ns, cand) not in self._bucket(res.plural):
                        md["name"] = cand
                        break
            name = md.get("name")
            if not name:
                raise invalid(res, "", [("metadata.name", "FieldValueRequired",
                                         "Required value: name or generateName is required")])
            if (ns, name) in self._bucket(res.plural):
                raise already_exists(res, name)
            md["uid"] = str(uuid.uuid4())
            md["creationTimestamp"] = now_iso()
            md.pop("deletionTimestamp", None)
            md["resourceVersion"] = self.next_rv()
            self._bucket(res.plural)[(ns, name)] = obj
            self._emit(res.plural, "ADDED", obj)
            return copy.deepcopy(obj)

    def replace(self, res, obj, check_rv=True):
        """Store obj as the new state (caller did strategy work). 409 on a stale RV."""
        with self.lock:
            md = obj["metadata"]
            ns = md.get("namespace", "") if res.namespaced else ""
            key = (ns, md["name"])
            cur = self._bucket(res.plural).get(key)
            if cur is None:
                raise not_found(res, md["name"])
            if check_rv and md.get("resourceVersion") and \
                    md["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise conflict(res, md["name"])
            for k in ("uid", "creationTimestamp"):
                md[k] = cur["metadata"].get(k)
            if obj == cur or _same_but_rv(obj, cur):
                return copy.deepcopy(cur)
            md["resourceVersion"] = self.next_rv()
            self._bucket(res.plural)[key] = obj
            self._emit(res.plural, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def remove(self, res, ns, name):
        with self.lock:
            key = (ns or "", name)
            cur = self._bucket(res.plural).pop(key, None)
            if cur is None:
                raise not_found(res, name)
            cur["metadata"]["resourceVersion"] = self.next_rv()
            self._emit(res.plural, "DELETED", cur)
            return copy.deepcopy(cur)

    def events_since(self, rv):
        """Events after rv, or None when rv is older than the history."""
        if rv < self.first_rv:
            return None
        return [e for e in self.history if e[0] > rv]


def _same_but_rv(a, b):
    a2 = dict(a)
    b2 = dict(b)
    a2["metadata"] = {k: v for k, v in a["metadata"].items() if k != "resourceVersion"}
    b2["metadata"] = {k: v for k, v in b["metadata"].items() if k != "resourceVersion"}
    return a2 == b2
