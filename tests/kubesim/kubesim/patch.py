"""The three patch types kubectl sends: JSON patch (RFC 6902), JSON merge patch
(RFC 7386) and strategic merge patch for the built-in fields kubectl touches.

Strategic merge needs each list's merge key; upstream reads it from the Go types'
struct tags. Here a table by field name stands in for them (see MERGE_KEYS); lists
not in it are replaced whole, as upstream does for atomic lists.
"""
import copy


class PatchError(Exception):
    pass


# ---- JSON patch -----------------------------------------------------------------

def _unescape(tok):
    return tok.replace("~1", "/").replace("~0", "~")


def _walk(doc, path):
    if path == "":
        return None, None
    if not path.startswith("/"):
        raise PatchError("invalid path %r" % path)
    toks = [_unescape(t) for t in path[1:].split("/")]
    cur = doc
    for t in toks[:-1]:
        if isinstance(cur, dict):
            if t not in cur:
                raise PatchError("path %r: %r not found" % (path, t))
            cur = cur[t]
        elif isinstance(cur, list):
            try:
                cur = cur[int(t)]
            except (ValueError, IndexError):
                raise PatchError("path %r: bad index %r" % (path, t))
        else:
            raise PatchError("path %r: not a container" % path)
    return cur, toks[-1]


def _get(doc, path):
    parent, key = _walk(doc, path)
    if parent is None:
        return doc
    if isinstance(parent, dict):
        if key not in parent:
            raise PatchError("path %r not found" % path)
        return parent[key]
    try:
        return parent[int(key)]
    except (ValueError, IndexError):
        raise PatchError("path %r not found" % path)


def _add(doc, path, value):
    parent, key = _walk(doc, path)
    if parent is None:
        return value
    if isinstance(parent, dict):
        parent[key] = value
    elif isinstance(parent, list):
        if key == "-":
            parent.append(value)
        else:
            i = int(key)
            if i < 0 or i > len(parent):
                raise PatchError("index %d out of range" % i)
            parent.insert(i, value)
    else:
        raise PatchError("path %r: not a container" % path)
    return doc


def _remove(doc, path):
    parent, key = _walk(doc, path)
    if parent is None:
        raise PatchError("cannot remove the root")
    if isinstance(parent, dict):
        if key not in parent:
            raise PatchError("path %r not found" % path)
        return parent.pop(key)
    try:
        return parent.pop(int(key))
    except (ValueError, IndexError):
        raise PatchError("path %r not found" % path)


def json_patch(doc, ops):
    if not isinstance(ops, list):
        raise PatchError("a JSON patch is a list of operations")
    if len(ops) > 10000:
        raise PatchError("too many operations")
    doc = copy.deepcopy(doc)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise PatchError("bad operation %r" % (op,))
        kind, path = op["op"], op["path"]
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            _remove(doc, path)
        elif kind == "replace":
            if path == "":
                doc = copy.deepcopy(op.get("value"))
                continue
            _get(doc, path)
            parent, key = _walk(doc, path)
            if isinstance(parent, dict):
                parent[key] = copy.deepcopy(op.get("value"))
            else:
                parent[int(key)] = copy.deepcopy(op.get("value"))
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise PatchError("testing value %s failed" % path)
        elif kind == "move":
            v = _remove(doc, op["from"])
            doc = _add(doc, path, v)
        elif kind == "copy":
            doc = _add(doc, path, copy.deepcopy(_get(doc, op["from"])))
        else:
            raise PatchError("unknown op %r" % kind)
    return doc


# ---- JSON merge patch ---------------------------------------------------------------

def merge_patch(doc, patch):
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(doc) if isinstance(doc, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


# ---- strategic merge patch -------------------------------------------------------------

MERGE_KEYS = {
    "containers": "name", "initContainers": "name", "ephemeralContainers": "name",
    "env": "name", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
    "imagePullSecrets": "name", "hostAliases": "ip", "conditions": "type",
    "ownerReferences": "uid", "topologySpreadConstraints": "topologyKey",
    "ephemeralContainerStatuses": "name", "containerStatuses": "name",
    "podIPs": "ip", "addresses": "ip",
}
MERGE_PRIMITIVE = {"finalizers"}


def _merge_key(field, items):
    if field == "ports":
        for it in items:
            if isinstance(it, dict):
                return "containerPort" if "containerPort" in it else "port"
        return "port"
    return MERGE_KEYS.get(field)


def strategic_merge(doc, patch):
    if not isinstance(patch, dict):
        raise PatchError("a strategic merge patch is a JSON object")
    return _smp_map(copy.deepcopy(doc) if isinstance(doc, dict) else {}, patch)


def _smp_map(orig, patch):
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    retain = patch.get("$retainKeys")
    orders = {}
    for k, v in patch.items():
        if k.startswith("$setElementOrder/"):
            orders[k.split("/", 1)[1]] = v
    for k, v in patch.items():
        if k.startswith("$"):
            if k.startswith("$deleteFromPrimitiveList/"):
                f = k.split("/", 1)[1]
                if isinstance(orig.get(f), list):
                    orig[f] = [x for x in orig[f] if x not in (v or [])]
            continue
        if v is None:
            orig.pop(k, None)
            continue
        cur = orig.get(k)
        if isinstance(v, dict):
            if isinstance(cur, dict):
                r = _smp_map(cur, v)
                if r is None:
                    orig.pop(k, None)
                else:
                    orig[k] = r
            else:
                r = _smp_map({}, v)
                if r is not None:
                    orig[k] = r
        elif isinstance(v, list):
            orig[k] = _smp_list(k, cur if isinstance(cur, list) else [], v)
        else:
            orig[k] = copy.deepcopy(v)
    for f, order in orders.items():
        if isinstance(orig.get(f), list):
            orig[f] = _order(f, orig[f], order)
    if isinstance(retain, list):
        keep = set(retain)
        for k in list(orig.keys()):
            if k not in keep:
                del orig[k]
    return orig


def _smp_list(field, cur, patch):
    if field in MERGE_PRIMITIVE:
        out = list(cur)
        for x in patch:
            if x not in out:
                out.append(x)
        return out
    key = _merge_key(field, patch + cur)
    if not key or not all(isinstance(x, dict) for x in patch):
        # Atomic list; honour a lone {"$patch":"replace"} marker.
        return [copy.deepcopy(x) for x in patch
                if not (isinstance(x, dict) and x.get("$patch") == "replace")]
    if any(isinstance(x, dict) and x.get("$patch") == "replace" for x in patch):
        return [copy.deepcopy(x) for x in patch if x.get("$patch") != "replace"]
    out = [copy.deepcopy(x) for x in cur]
    for item in patch:
        kv = item.get(key)
        idx = next((i for i, x in enumerate(out) if isinstance(x, dict) and x.get(key) == kv),
                   None)
        if item.get("$patch") == "delete":
            if idx is not None:
                out.pop(idx)
            continue
        if idx is None:
            r = _smp_map({}, item)
            if r is not None:
                out.append(r)
        else:
            r = _smp_map(out[idx], item)
            if r is None:
                out.pop(idx)
            else:
                out[idx] = r
    return out


def _order(field, items, order):
    key = _merge_key(field, items)
    if not key:
        return items
    pos = {}
    for i, o in enumerate(order or []):
        if isinstance(o, dict):
            pos[o.get(key)] = i
    listed = sorted([x for x in items if isinstance(x, dict) and x.get(key) in pos],
                    key=lambda x: pos[x.get(key)])
    rest = [x for x in items if not (isinstance(x, dict) and x.get(key) in pos)]
    return listed + rest
