"""Minimal decoder of the Kubernetes protobuf wire format for the objects kubectl's
typed clients POST as protobuf (kubectl create namespace|secret|configmap). Anything
else is answered 415."""


class PbError(Exception):
    pass


def _varint(b, i):
    v = shift = 0
    while True:
        if i >= len(b):
            raise PbError("truncated varint")
        x = b[i]
        i += 1
        v |= (x & 0x7F) << shift
        shift += 7
        if not x & 0x80:
            return v, i
        if shift > 63:
            raise PbError("varint too long")


def fields(b):
    """[(field number, wire type, value)] of one message; bytes for length-delimited."""
    out, i = [], 0
    while i < len(b):
        key, i = _varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _varint(b, i)
        elif wt == 2:
            n, i = _varint(b, i)
            if i + n > len(b):
                raise PbError("truncated field")
            v = b[i:i + n]
            i += n
        elif wt == 1:
            v = b[i:i + 8]
            i += 8
        elif wt == 5:
            v = b[i:i + 4]
            i += 4
        else:
            raise PbError("unsupported wire type %d" % wt)
        out.append((num, wt, v))
    return out


def _map(entries, value_bytes=False):
    out = {}
    for e in entries:
        k = v = b""
        for n, _, x in fields(e):
            if n == 1:
                k = x
            elif n == 2:
                v = x
        out[k.decode()] = v if value_bytes else v.decode()
    return out


def _meta(b):
    md, labels, ann, fin = {}, [], [], []
    names = {1: "name", 2: "generateName", 3: "namespace", 6: "resourceVersion"}
    for n, _, v in fields(b):
        if n in names:
            md[names[n]] = v.decode()
        elif n == 11:
            labels.append(v)
        elif n == 12:
            ann.append(v)
        elif n == 14:
            fin.append(v.decode())
    if labels:
        md["labels"] = _map(labels)
    if ann:
        md["annotations"] = _map(ann)
    if fin:
        md["finalizers"] = fin
    return md


def decode(body):
    """k8s\\0 + runtime.Unknown -> JSON-shaped dict. Raises PbError."""
    import base64
    if not body.startswith(b"k8s\x00"):
        raise PbError("missing protobuf magic")
    api_version = kind = ""
    raw = b""
    for n, _, v in fields(body[4:]):
        if n == 1:
            for m, _, x in fields(v):
                if m == 1:
                    api_version = x.decode()
                elif m == 2:
                    kind = x.decode()
        elif n == 2:
            raw = v
    obj = {"apiVersion": api_version, "kind": kind, "metadata": {}}
    fs = fields(raw)
    if kind == "Namespace":
        for n, _, v in fs:
            if n == 1:
                obj["metadata"] = _meta(v)
    elif kind == "Secret":
        data, sdata = [], []
        for n, _, v in fs:
            if n == 1:
                obj["metadata"] = _meta(v)
            elif n == 2:
                data.append(v)
            elif n == 3:
                obj["type"] = v.decode()
            elif n == 4:
                sdata.append(v)
            elif n == 5:
                obj["immutable"] = bool(v)
        if data:
            obj["data"] = {k: base64.b64encode(x).decode() for k, x in
                           _map(data, True).items()}
        if sdata:
            obj["stringData"] = _map(sdata)
    elif kind == "ConfigMap":
        data, bdata = [], []
        for n, _, v in fs:
            if n == 1:
                obj["metadata"] = _meta(v)
            elif n == 2:
                data.append(v)
            elif n == 3:
                bdata.append(v)
            elif n == 4:
                obj["immutable"] = bool(v)
        if data:
            obj["data"] = _map(data)
        if bdata:
            obj["binaryData"] = {k: base64.b64encode(x).decode() for k, x in
                                 _map(bdata, True).items()}
    else:
        raise PbError("kubesim decodes protobuf only for Namespace, Secret and ConfigMap, "
                      "not %r; send JSON" % kind)
    return obj
