"""The HTTP API server: discovery, CRUD, watch, patch, subresources, pod logs and
Prometheus HTTP service discovery. HTTP/1.1 on 127.0.0.1, JSON only."""
import copy
import json
import os
import random
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from . import patch as patchmod
from . import table
from .resources import (BY_PATH, BY_PLURAL, RESOURCES, check_kind, default_object,
                        group_list, prepare_update, resource_list, validate)
from .store import (ApiError, not_found, now_iso, parse_field_selector,
                    parse_label_selector, conflict, invalid)  # noqa: F401 (invalid: cluster.py)

MAX_BODY = 8 << 20
VERSION = {"major": "1", "minor": "32", "gitVersion": "v1.32.0-kubesim", "gitCommit": "kubesim",
           "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z", "goVersion": "go1.23",
           "compiler": "gc", "platform": "linux/amd64"}
PATCH_TYPES = ("application/json-patch+json", "application/merge-patch+json",
               "application/strategic-merge-patch+json")


class Api:
    """Request handling independent of HTTP framing."""

    def __init__(self, cluster):
        self.cluster = cluster
        self.store = cluster.store

    # -- writes used by both the HTTP layer and the controllers ------------------------
    def create(self, res, ns, obj, dry_run=False):
        check_kind(res, obj)
        md = obj.setdefault("metadata", {})
        if res.namespaced:
            if md.get("namespace") and md["namespace"] != ns:
                raise ApiError(400, "BadRequest", "the namespace of the provided object does "
                               "not match the namespace sent on the request")
            md["namespace"] = ns
            if res.plural != "events" and self.store.get("namespaces", "", ns) is None:
                raise ApiError(404, "NotFound", 'namespaces "%s" not found' % ns,
                               {"name": ns, "kind": "namespaces"})
            nso = self.store.get("namespaces", "", ns)
            if nso and nso["metadata"].get("deletionTimestamp"):
                raise ApiError(403, "Forbidden", '%s "%s" is forbidden: unable to create new '
                               'content in namespace %s because it is being terminated'
                               % (res.plural, md.get("name", ""), ns))
        else:
            md.pop("namespace", None)
        obj.pop("status", None) if res.kind in ("Deployment", "ReplicaSet") else None
        default_object(res, obj)
        validate(res, obj)
        if res.kind in ("Deployment", "ReplicaSet", "PodDisruptionBudget"):
            md["generation"] = 1
        if res.kind == "Service":
            self.cluster.allocate_cluster_ip(obj)
        if dry_run:
            return obj
        return self.store.create(res, obj)

    def update(self, res, ns, name, obj, sub=None, dry_run=False):
        check_kind(res, obj) if sub != "scale" else None
        with self.store.lock:
            old = self.store.get(res.plural, ns, name)
            if old is None:
                raise not_found(res, name)
            md = obj.setdefault("metadata", {})
            if md.get("name") and md["name"] != name:
                raise ApiError(400, "BadRequest", "the name of the object (%s) does not match "
                               "the name on the URL (%s)" % (md["name"], name))
            md["name"] = name
            if res.namespaced:
                md["namespace"] = ns
            rv = md.get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            new = prepare_update(res, old, obj, sub)
            new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
            if dry_run:
                return new
            out = self.store.replace(res, new)
            if out["metadata"].get("deletionTimestamp") and not out["metadata"].get(
                    "finalizers") and res.kind != "Pod" and res.kind != "Namespace":
                return self.store.remove(res, ns, name)
            return out

    def delete(self, res, ns, name, opts=None):
        opts = opts or {}
        with self.store.lock:
            cur = self.store.get(res.plural, ns, name)
            if cur is None:
                raise not_found(res, name)
            pre = opts.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != cur["metadata"]["uid"]:
                raise conflict(res, name)
            if pre.get("resourceVersion") and \
                    pre["resourceVersion"] != cur["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if opts.get("dryRun"):
                return cur
            policy = opts.get("propagationPolicy")
            if res.kind == "Pod":
                return self.cluster.delete_pod(cur, opts.get("gracePeriodSeconds"))
            if res.kind == "Namespace":
                if not cur["metadata"].get("deletionTimestamp"):
                    cur["metadata"]["deletionTimestamp"] = now_iso()
                    cur["status"]["phase"] = "Terminating"
                    cur = self.store.replace(res, cur, check_rv=False)
                return cur
            if policy == "Orphan" or (policy is None and res.kind in ()):
                self.cluster.orphan_dependents(cur)
            return self.store.remove(res, ns, name)

    # -- reads --------------------------------------------------------------------------
    def list_obj(self, res, ns, q):
        try:
            lr = parse_label_selector(q.get("labelSelector", ""))
            fr = parse_field_selector(q.get("fieldSelector", ""))
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e))
        items, rv = self.store.list(res.plural, ns, lr, fr)
        for it in items:
            it["kind"], it["apiVersion"] = res.kind, res.api_version
        return {"kind": res.kind + "List", "apiVersion": res.api_version,
                "metadata": {"resourceVersion": rv}, "items": items}


def scale_of(res, obj):
    sel = obj["spec"].get("selector") or {}
    from .store import selector_string
    return {"kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: obj["metadata"].get(k) for k in
                         ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")},
            "spec": {"replicas": obj["spec"].get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": selector_string(sel)}}


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "kubesim"
    timeout = 300  # an idle or stalled connection frees its slot after this long
    api = None  # set by serve()
    log_file = None

    def log_message(self, fmt, *args):
        pass

    def _log(self, code, extra=""):
        if self.log_file:
            try:
                self.log_file.write("%s %s %s %s %s\n" % (
                    now_iso(), self.command, self.path, code, extra))
                self.log_file.flush()
            except (OSError, ValueError):
                pass

    def _send_json(self, code, body, extra_headers=None):
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        self._log(code, self.headers.get("Content-Type", ""))

    def _error(self, e):
        self._send_json(e.code, e.status())

    def _body(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = b""
            while True:
                line = self.rfile.readline(100)
                size = int(line.strip().split(b";")[0] or b"0", 16)
                if size == 0:
                    self.rfile.readline(100)
                    break
                data += self.rfile.read(size)
                self.rfile.readline(10)
                if len(data) > MAX_BODY:
                    raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
            return data
        if n > MAX_BODY:
            raise ApiError(413, "RequestEntityTooLarge", "request entity too large")
        return self.rfile.read(n) if n else b""

    def _json_body(self):
        raw = self._body()
        if not raw:
            return None
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        if ctype == "application/vnd.kubernetes.protobuf":
            from . import protobuf
            try:
                return protobuf.decode(raw)
            except protobuf.PbError as e:
                raise ApiError(415, "UnsupportedMediaType", str(e))
        if ctype not in ("application/json", "application/yaml", ""):
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: application/json, application/yaml")
        if "yaml" in ctype:
            import yaml
            try:
                return yaml.safe_load(raw)
            except yaml.YAMLError as e:
                raise ApiError(400, "BadRequest", "invalid YAML: %s" % e)
        try:
            return json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "BadRequest", "couldn't get version/kind; json parse error: %s"
                           % e)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_PATCH(self):
        self._dispatch("PATCH")

    def do_DELETE(self):
        self._dispatch("DELETE")

    def _dispatch(self, method):
        url = urllib.parse.urlsplit(self.path)
        q = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        parts = [urllib.parse.unquote(p) for p in url.path.strip("/").split("/") if p]
        try:
            self._route(method, parts, q)
        except ApiError as e:
            self._error(e)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:  # a bug in kubesim: answer 500, keep serving
            import traceback
            traceback.print_exc()
            self._error(ApiError(500, "InternalError", "kubesim: %s: %s"
                                 % (type(e).__name__, e)))

    def _route(self, method, parts, q):
        api = self.api
        if parts in ([], ["healthz"], ["readyz"], ["livez"]):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(data)
            return
        if parts == ["version"]:
            return self._send_json(200, VERSION)
        if parts == ["api"]:
            return self._send_json(200, {"kind": "APIVersions", "versions": ["v1"],
                                         "serverAddressByClientCIDRs": [
                                             {"clientCIDR": "0.0.0.0/0",
                                              "serverAddress": self.server.addr}]})
        if parts == ["apis"]:
            return self._send_json(200, group_list())
        if parts == ["api", "v1"]:
            return self._send_json(200, resource_list("", "v1"))
        if len(parts) == 2 and parts[0] == "apis":
            gl = [g for g in group_list()["groups"] if g["name"] == parts[1]]
            if gl:
                return self._send_json(200, dict(gl[0], kind="APIGroup", apiVersion="v1"))
        if len(parts) == 3 and parts[0] == "apis":
            rl = resource_list(parts[1], parts[2])
            if rl["resources"]:
                return self._send_json(200, rl)
        if parts == ["openapi", "v3"]:
            return self._send_json(200, openapi_root())
        if parts[:2] == ["openapi", "v3"] and len(parts) >= 4:
            doc = openapi_gv("/".join(parts[2:]))
            if doc is not None:
                return self._send_json(200, doc)
        if parts[:2] == ["kubesim", "http_sd"]:
            return self._send_json(200, api.cluster.http_sd())
        # resource paths
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = None
        if len(rest) >= 3 and rest[0] == "namespaces" and not (
                len(rest) == 3 and rest[2] in ("status", "finalize")):
            ns, rest = rest[1], rest[2:]
        if not rest:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        res = BY_PATH.get((group, version, rest[0]))
        if res is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if ns is not None and not res.namespaced:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else None
        if sub and sub not in res.subs:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if res.namespaced and name is not None and ns is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        ns = ns or ""
        dry = q.get("dryRun") == "All"
        if name is None:
            if method == "GET":
                if q.get("watch") in ("1", "true"):
                    return self._watch(res, ns, q)
                lst = api.list_obj(res, ns, q)
                if table.wants_table(self.headers.get("Accept"), res.plural):
                    return self._send_json(200, table.table(
                        res.plural, lst["items"], lst["metadata"]["resourceVersion"],
                        q.get("includeObject", "PartialObjectMetadata")))
                return self._send_json(200, lst)
            if method == "POST":
                obj = self._json_body()
                if obj is None:
                    raise ApiError(400, "BadRequest", "empty body")
                return self._send_json(201, api.create(res, ns, obj, dry))
            if method == "DELETE":
                lst = api.list_obj(res, ns, q)
                for it in lst["items"]:
                    try:
                        api.delete(res, ns, it["metadata"]["name"], {})
                    except ApiError:
                        pass
                return self._send_json(200, lst)
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        if sub == "log":
            return self._log_sub(ns, name, q)
        if method == "GET":
            obj = api.store.get(res.plural, ns, name)
            if obj is None:
                raise not_found(res, name)
            if sub == "scale":
                return self._send_json(200, scale_of(res, obj))
            obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            if table.wants_table(self.headers.get("Accept"), res.plural):
                return self._send_json(200, table.table(
                    res.plural, [obj], obj["metadata"]["resourceVersion"],
                    q.get("includeObject", "PartialObjectMetadata")))
            return self._send_json(200, obj)
        if method == "PUT":
            obj = self._json_body()
            if obj is None:
                raise ApiError(400, "BadRequest", "empty body")
            if sub == "scale":
                return self._send_json(200, self._put_scale(res, ns, name, obj, dry))
            return self._send_json(200, api.update(res, ns, name, obj, sub, dry))
        if method == "PATCH":
            return self._send_json(200, self._patch(res, ns, name, sub, dry))
        if method == "DELETE":
            opts = self._json_body() or {}
            if "gracePeriodSeconds" in q:
                opts["gracePeriodSeconds"] = int(q["gracePeriodSeconds"])
            if "propagationPolicy" in q:
                opts["propagationPolicy"] = q["propagationPolicy"]
            if dry:
                opts["dryRun"] = ["All"]
            return self._send_json(200, api.delete(res, ns, name, opts))
        if method == "POST":
            raise ApiError(405, "MethodNotAllowed", "method not allowed")
        raise ApiError(405, "MethodNotAllowed", "method not allowed")

    def _put_scale(self, res, ns, name, scale, dry):
        with self.api.store.lock:
            obj = self.api.store.get(res.plural, ns, name)
            if obj is None:
                raise not_found(res, name)
            rv = (scale.get("metadata") or {}).get("resourceVersion")
            if rv and rv != obj["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            obj["spec"]["replicas"] = (scale.get("spec") or {}).get("replicas", 0)
            out = self.api.update(res, ns, name, obj, None, dry)
            return scale_of(res, out)

    def _patch(self, res, ns, name, sub, dry):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip()
        if ctype not in PATCH_TYPES:
            if ctype == "application/apply-patch+yaml":
                raise ApiError(415, "UnsupportedMediaType",
                               "kubesim does not implement server-side apply")
            raise ApiError(415, "UnsupportedMediaType",
                           "the body of the request was in an unknown format - accepted media "
                           "types include: " + ", ".join(PATCH_TYPES))
        raw = self._body()
        try:
            p = json.loads(raw or b"null")
        except ValueError as e:
            raise ApiError(400, "BadRequest", "error decoding patch: %s" % e)
        with self.api.store.lock:
            cur = self.api.store.get(res.plural, ns, name)
            if cur is None:
                raise not_found(res, name)
            base = scale_of(res, cur) if sub == "scale" else cur
            base["kind"], base["apiVersion"] = (("Scale", "autoscaling/v1") if sub == "scale"
                                                else (res.kind, res.api_version))
            try:
                if ctype == "application/json-patch+json":
                    new = patchmod.json_patch(base, p)
                elif ctype == "application/merge-patch+json":
                    if not isinstance(p, dict):
                        raise patchmod.PatchError("a merge patch must be a JSON object")
                    new = patchmod.merge_patch(base, p)
                else:
                    new = patchmod.strategic_merge(base, p)
            except (patchmod.PatchError, KeyError, TypeError, ValueError) as e:
                raise ApiError(422, "Invalid", str(e))
            if not isinstance(new, dict):
                raise ApiError(422, "Invalid", "the patch result is not an object")
            new.setdefault("metadata", {})
            rv = new["metadata"].get("resourceVersion")
            if rv and rv != cur["metadata"]["resourceVersion"]:
                raise conflict(res, name)
            if sub == "scale":
                return self._put_scale(res, ns, name, new, dry)
            new["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
            return self.api.update(res, ns, name, new, sub, dry)

    # -- watch ------------------------------------------------------------------------------
    def _chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, res, ns, q):
        if q.get("sendInitialEvents") not in (None, ""):
            raise ApiError(422, "Invalid", "kubesim does not implement watch-list "
                           "(sendInitialEvents); use list and watch")
        try:
            lr = parse_label_selector(q.get("labelSelector", ""))
            fr = parse_field_selector(q.get("fieldSelector", ""))
        except ValueError as e:
            raise ApiError(400, "BadRequest", str(e))
        store = self.api.store
        timeout = int(q["timeoutSeconds"]) if q.get("timeoutSeconds", "").isdigit() else \
            random.randint(1800, 3599)
        bookmarks = q.get("allowWatchBookmarks") in ("1", "true")
        rv_s = q.get("resourceVersion", "")
        initial = []
        from .store import match_reqs, match_fields

        def match(o):
            if ns and o["metadata"].get("namespace", "") != ns:
                return False
            return match_reqs(lr, o["metadata"].get("labels")) and match_fields(fr, o)
        with store.lock:
            if rv_s in ("", "0"):
                items, rv = store.list(res.plural, ns, lr, fr)
                initial = [("ADDED", o) for o in items]
                current = items
                last = int(rv)
                err = None
            else:
                try:
                    last = int(rv_s)
                except ValueError:
                    raise ApiError(400, "BadRequest", "invalid resource version %r" % rv_s)
                evs = store.events_since(last)
                err = None
                # Objects matching now stand in for "matching at that resourceVersion".
                current = store.list(res.plural, ns, lr, fr)[0]
                if evs is None:
                    err = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                           "status": "Failure", "reason": "Expired", "code": 410,
                           "message": "too old resource version: %d (%d)"
                                      % (last, store.first_rv)}
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self._log(200, "watch")
        self.close_connection = True

        as_table = table.wants_table(self.headers.get("Accept"), res.plural)

        def send(etype, obj):
            obj = copy.deepcopy(obj)
            obj["kind"], obj["apiVersion"] = res.kind, res.api_version
            if as_table and etype != "BOOKMARK":
                obj = table.table(res.plural, [obj], obj["metadata"]["resourceVersion"],
                                  q.get("includeObject", "PartialObjectMetadata"))
            self._chunk(json.dumps({"type": etype, "object": obj}).encode() + b"\n")
        try:
            if err:
                self._chunk(json.dumps({"type": "ERROR", "object": err}).encode() + b"\n")
                self._chunk(b"")
                return
            for etype, o in initial:
                send(etype, o)
            known = {(o["metadata"].get("namespace", ""), o["metadata"]["name"])
                     for o in current}
            end = time.monotonic() + timeout
            next_bm = time.monotonic() + 5
            stop = self.api.cluster.stopping
            while time.monotonic() < end and not stop.is_set():
                with store.lock:
                    evs = store.events_since(last)
                    if evs is None:
                        evs = []
                        out_err = True
                    else:
                        out_err = False
                    evs = [e for e in evs if e[1] == res.plural]
                    if not evs and not out_err:
                        store.cond.wait(0.5)
                        evs = [e for e in (store.events_since(last) or []) if e[1] == res.plural]
                    cur_rv = store.rv
                if out_err:
                    break
                for erv, _, etype, o in evs:
                    last = max(last, erv)
                    key = (o["metadata"].get("namespace", ""), o["metadata"]["name"])
                    m = match(o)
                    # As the watch cache does: an object that starts matching the selectors
                    # arrives as ADDED, one that stops matching as DELETED.
                    if etype == "DELETED":
                        if key in known or m:
                            known.discard(key)
                            send("DELETED", o)
                    elif m:
                        send("MODIFIED" if key in known and etype == "MODIFIED" else "ADDED", o)
                        known.add(key)
                    elif key in known:
                        known.discard(key)
                        send("DELETED", o)
                if not evs:
                    last = max(last, cur_rv) if False else last
                if bookmarks and time.monotonic() >= next_bm:
                    next_bm = time.monotonic() + 5
                    send("BOOKMARK", {"metadata": {"resourceVersion": str(max(last, 0))}})
            self._chunk(b"")
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass

    # -- pod logs -----------------------------------------------------------------------------
    def _log_sub(self, ns, name, q):
        pod = self.api.store.get("pods", ns, name)
        if pod is None:
            raise not_found(BY_PLURAL["pods"], name)
        containers = [c["name"] for c in pod["spec"].get("containers", [])]
        cname = q.get("container") or (containers[0] if len(containers) == 1 else None)
        if cname is None:
            raise ApiError(400, "BadRequest", "a container name must be specified for pod %s, "
                           "choose one of: %s" % (name, containers))
        if cname not in containers:
            raise ApiError(400, "BadRequest", "container %s is not valid for pod %s"
                           % (cname, name))
        path = self.api.cluster.log_path(pod, cname, previous=q.get("previous") == "true")
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError:
            data = b""
        if q.get("tailLines", "").isdigit():
            n = int(q["tailLines"])
            lines = data.splitlines(keepends=True)
            data = b"".join(lines[-n:]) if n else b""
        if q.get("follow") != "true":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self._log(200, "log")
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.close_connection = True
        try:
            if data:
                self._chunk(data)
            pos = os.path.getsize(path) if os.path.exists(path) else 0
            while not self.api.cluster.stopping.is_set():
                if self.api.store.get("pods", ns, name) is None:
                    break
                try:
                    with open(path, "rb") as f:
                        f.seek(pos)
                        more = f.read(1 << 16)
                except OSError:
                    more = b""
                if more:
                    pos += len(more)
                    self._chunk(more)
                else:
                    self.api.cluster.stopping.wait(0.2)
            self._chunk(b"")
        except OSError:
            pass


MAX_CONNECTIONS = 512  # concurrent API connections (each watch holds one)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)  # over the cap: close at once
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve(cluster, host, port, log_path):
    api = Api(cluster)
    handler = type("H", (Handler,), {"api": api, "log_file": open(log_path, "a")})
    srv = Server((host, port), handler)
    srv.addr = "%s:%d" % srv.server_address[:2]
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.2},
                         name="api", daemon=True)
    t.start()
    return api, srv


def _gv_paths():
    out = {}
    for r in RESOURCES:
        key = ("apis/%s/%s" % (r.group, r.version)) if r.group else "api/v1"
        out.setdefault(key, []).append(r)
    return out


def openapi_root():
    """OpenAPI v3 discovery: one document per group version (see openapi_gv)."""
    return {"paths": {k: {"serverRelativeURL": "/openapi/v3/%s?hash=kubesim1" % k}
                      for k in _gv_paths()}}


def openapi_gv(key):
    """A minimal OpenAPI v3 document: only the PATCH operations with their
    x-kubernetes-group-version-kind and the fieldValidation parameter, which is what
    kubectl looks for to hand validation to the server (fieldValidation=Strict). No
    schemas: kubectl then computes strategic merge patches from its compiled-in types."""
    rs = _gv_paths().get(key)
    if rs is None:
        return None
    paths = {}
    for r in rs:
        prefix = "/" + key + ("/namespaces/{namespace}" if r.namespaced else "")
        paths["%s/%s/{name}" % (prefix, r.plural)] = {"patch": {
            "operationId": "patch" + r.kind,
            "x-kubernetes-group-version-kind": {"group": r.group, "version": r.version,
                                                "kind": r.kind},
            "parameters": [{"name": "fieldValidation", "in": "query",
                            "schema": {"type": "string", "uniqueItems": True}},
                           {"name": "fieldManager", "in": "query",
                            "schema": {"type": "string", "uniqueItems": True}}],
            "responses": {"200": {"description": "OK"}}}}
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (kubesim)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": {}}}
