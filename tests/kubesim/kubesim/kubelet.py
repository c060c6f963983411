"""The kubelet: each Pod is one thread that runs its containers as real processes.

A container process starts as
    setpriv --pdeathsig KILL -- unshare --mount --propagation private sh WRAPPER
where WRAPPER overlays the directories that must hold mount points (so nothing is
created on the host), bind-mounts ConfigMap/Secret/emptyDir volumes at their mountPath
and the pod's own /etc/hosts, then execs the binary. The process keeps the pod's PID
(no fork in between), in its own process group; PDEATHSIG kills it if kubesim dies.
"""
import base64
import os
import shlex
import signal
import subprocess
import threading
import time

from .resources import BY_PLURAL
from .store import ApiError, now_iso

R = BY_PLURAL
BACKOFF_BASE = 10.0
BACKOFF_MAX = 300.0


def _pb_health_request(service):
    b = service.encode()
    return (b"\x0a" + _varint(len(b)) + b) if b else b""


def _varint(n):
    out = b""
    while True:
        x = n & 0x7F
        n >>= 7
        if n:
            out += bytes([x | 0x80])
        else:
            return out + bytes([x])


def _pb_health_status(data):
    # HealthCheckResponse { ServingStatus status = 1; }
    i = 0
    while i < len(data):
        tag = data[i]
        i += 1
        if tag == 0x08:
            v, shift = 0, 0
            while i < len(data):
                b = data[i]
                i += 1
                v |= (b & 0x7F) << shift
                shift += 7
                if not b & 0x80:
                    break
            return v
        return None
    return 0


def grpc_probe(ip, port, service, timeout):
    """(ok, message) as pkg/probe/grpc: one deadline for dial + Check; SERVING only."""
    import grpc
    ch = grpc.insecure_channel("%s:%d" % (ip, port),
                               options=[("grpc.primary_user_agent", "kube-probe/1.32"),
                                        ("grpc.enable_retries", 0)])
    try:
        fn = ch.unary_unary("/grpc.health.v1.Health/Check",
                            request_serializer=lambda x: x, response_deserializer=lambda x: x)
        resp = fn(_pb_health_request(service), timeout=timeout, wait_for_ready=True)
        st = _pb_health_status(resp)
        if st == 1:
            return True, ""
        names = {0: "UNKNOWN", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}
        return False, 'service unhealthy (responded with "%s")' % names.get(st, st)
    except grpc.RpcError as e:
        code = e.code() if hasattr(e, "code") else None
        if code == grpc.StatusCode.UNIMPLEMENTED:
            return False, "this server does not implement the grpc health protocol"
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return False, "timeout: health rpc did not complete within %ss" % timeout
        return False, "error: health rpc probe failed: %s" % (e.details() if hasattr(
            e, "details") else e)
    finally:
        ch.close()


class Container:
    def __init__(self, pod, spec):
        self.pod = pod
        self.spec = spec
        self.name = spec["name"]
        self.proc = None
        self.restarts = 0
        self.started_at = None
        self.started = False  # startup probe passed
        self.ready = False
        self.last_term = None
        self.waiting = ("ContainerCreating", None)
        self.next_start = 0.0
        self.killing = False
        self.probe_threads = []
        self.run_id = 0
        self.crash_loop = False


class PodWorker(threading.Thread):
    def __init__(self, kubelet, pod):
        super().__init__(name="pod-" + pod["metadata"]["name"], daemon=True)
        self.k = kubelet
        self.ns = pod["metadata"]["namespace"]
        self.name = pod["metadata"]["name"]
        self.uid = pod["metadata"]["uid"]
        self.pod = pod
        self.ip = None
        self.dir = os.path.join(kubelet.cluster.dir, "pods", "%s_%s_%s" % (
            self.ns, self.name, self.uid[:8]))
        self.containers = [Container(self, c) for c in pod["spec"].get("containers") or []]
        self.lock = threading.Lock()
        self.dirty = threading.Event()
        self.terminating = False
        self.done = False
        self.failed_start = None

    # -- status -----------------------------------------------------------------------------
    def write_status(self):
        with self.k.cluster.store.lock:
            cur = self.k.cluster.store.get("pods", self.ns, self.name)
            if cur is None or cur["metadata"]["uid"] != self.uid:
                return
            st = dict(cur.get("status") or {})
            now = now_iso()
            st["phase"] = "Running" if any(c.proc and c.proc.poll() is None
                                           or c.restarts > 0 or c.last_term
                                           for c in self.containers) else "Pending"
            if self.done:
                st["phase"] = st.get("phase", "Running")
            if self.ip:
                st["podIP"] = self.ip
                st["podIPs"] = [{"ip": self.ip}]
                st["hostIP"] = "127.0.0.1"
                st["hostIPs"] = [{"ip": "127.0.0.1"}]
            st.setdefault("startTime", now)
            st["qosClass"] = "Burstable"
            css = []
            for c in self.containers:
                cs = {"name": c.name, "image": c.spec.get("image", ""),
                      "imageID": "kubesim://" + c.spec.get("image", ""),
                      "restartCount": c.restarts, "ready": c.ready and not self.terminating,
                      "started": c.started}
                if c.proc and c.proc.poll() is None:
                    cs["state"] = {"running": {"startedAt": c.started_at}}
                    cs["containerID"] = "kubesim://%d" % c.proc.pid
                else:
                    reason, msg = c.waiting
                    w = {"reason": reason or "ContainerCreating"}
                    if msg:
                        w["message"] = msg
                    cs["state"] = {"waiting": w}
                if c.last_term:
                    cs["lastState"] = {"terminated": c.last_term}
                else:
                    cs["lastState"] = {}
                css.append(cs)
            st["containerStatuses"] = css
            all_ready = bool(self.containers) and all(c.ready for c in self.containers) and \
                not self.terminating
            conds = {c["type"]: c for c in st.get("conditions") or []}

            def cond(t, val):
                v = "True" if val else "False"
                old = conds.get(t)
                if old and old.get("status") == v:
                    return old
                c = {"type": t, "status": v, "lastProbeTime": None, "lastTransitionTime": now}
                if not val and t in ("Ready", "ContainersReady"):
                    notready = [c.name for c in self.containers if not c.ready]
                    c["reason"] = "ContainersNotReady"
                    c["message"] = "containers with unready status: [%s]" % " ".join(notready)
                return c
            st["conditions"] = [cond("PodReadyToStartContainers", self.ip is not None),
                                cond("Initialized", True), cond("Ready", all_ready),
                                cond("ContainersReady", all_ready),
                                cond("PodScheduled", True)]
            if st == (cur.get("status") or {}):
                return
            cur["status"] = st
            try:
                self.k.cluster.api.update(R["pods"], self.ns, self.name, cur, "status")
            except ApiError:
                pass

    # -- setup --------------------------------------------------------------------------------
    def setup(self):
        os.makedirs(self.dir, exist_ok=True)
        self.volumes = {}
        for v in self.pod["spec"].get("volumes") or []:
            vdir = os.path.join(self.dir, "volumes", v["name"])
            os.makedirs(vdir, exist_ok=True)
            if "configMap" in v or "secret" in v:
                self.fill_volume(v, vdir)
            self.volumes[v["name"]] = vdir
        self.hosts_path = os.path.join(self.dir, "hosts")
        with open(self.hosts_path, "w") as f:
            f.write(self.k.cluster.hosts_for(self.ns, self.name, self.ip))

    def fill_volume(self, v, vdir):
        if "configMap" in v:
            src = v["configMap"]
            obj = self.k.cluster.store.get("configmaps", self.ns, src.get("name"))
            data = dict((obj or {}).get("data") or {})
            data = {k: x.encode() for k, x in data.items()}
            for k, x in ((obj or {}).get("binaryData") or {}).items():
                data[k] = base64.b64decode(x)
            what = "configmap"
        else:
            src = v["secret"]
            obj = self.k.cluster.store.get("secrets", self.ns, src.get("secretName"))
            data = {k: base64.b64decode(x) for k, x in ((obj or {}).get("data") or {}).items()}
            for k, x in ((obj or {}).get("stringData") or {}).items():
                data[k] = x.encode()
            what = "secret"
        if obj is None:
            if src.get("optional"):
                return
            raise RuntimeError('%s "%s" not found' % (what, src.get("name") or
                                                      src.get("secretName")))
        files = {}
        if src.get("items"):
            for it in src["items"]:
                if it["key"] not in data:
                    if src.get("optional"):
                        continue
                    raise RuntimeError("couldn't find key %s in %s %s/%s" % (
                        it["key"], what.capitalize(), self.ns, obj["metadata"]["name"]))
                files[it["path"]] = (data[it["key"]], it.get("mode"))
        else:
            files = {k: (x, None) for k, x in data.items()}
        mode_default = src.get("defaultMode", 420)
        for path, (content, mode) in files.items():
            p = os.path.normpath(os.path.join(vdir, path))
            if not p.startswith(vdir + os.sep):
                raise RuntimeError("invalid path %r" % path)
            os.makedirs(os.path.dirname(p), exist_ok=True)
            with open(p, "wb") as f:
                f.write(content)
            os.chmod(p, mode if mode is not None else mode_default)

    def resolve_env(self, c):
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOSTNAME": self.name, "HOME": "/root"}
        store = self.k.cluster.store
        for e in c.spec.get("envFrom") or []:
            pre = e.get("prefix", "")
            if "configMapRef" in e:
                o = store.get("configmaps", self.ns, e["configMapRef"].get("name"))
                if o is None and not e["configMapRef"].get("optional"):
                    raise RuntimeError('configmap "%s" not found' % e["configMapRef"]["name"])
                for k, v in ((o or {}).get("data") or {}).items():
                    env[pre + k] = v
            if "secretRef" in e:
                o = store.get("secrets", self.ns, e["secretRef"].get("name"))
                if o is None and not e["secretRef"].get("optional"):
                    raise RuntimeError('secret "%s" not found' % e["secretRef"]["name"])
                for k, v in ((o or {}).get("data") or {}).items():
                    env[pre + k] = base64.b64decode(v).decode("utf-8", "replace")
        fresh = store.get("pods", self.ns, self.name) or self.pod
        for e in c.spec.get("env") or []:
            if "value" in e:
                env[e["name"]] = _expand(e.get("value", ""), env)
                continue
            vf = e.get("valueFrom") or {}
            if "fieldRef" in vf:
                fp = vf["fieldRef"].get("fieldPath")
                val = {"metadata.name": self.name, "metadata.namespace": self.ns,
                       "metadata.uid": self.uid, "status.podIP": self.ip or "",
                       "status.hostIP": "127.0.0.1", "spec.nodeName": "kubesim",
                       "spec.serviceAccountName": fresh["spec"].get("serviceAccountName",
                                                                    "default")}.get(fp)
                if val is None and fp.startswith("metadata.labels['"):
                    val = (fresh["metadata"].get("labels") or {}).get(fp[17:-2], "")
                if val is None and fp.startswith("metadata.annotations['"):
                    val = (fresh["metadata"].get("annotations") or {}).get(fp[22:-2], "")
                env[e["name"]] = val or ""
            elif "configMapKeyRef" in vf or "secretKeyRef" in vf:
                ref = vf.get("configMapKeyRef") or vf.get("secretKeyRef")
                kind = "configmaps" if "configMapKeyRef" in vf else "secrets"
                o = store.get(kind, self.ns, ref.get("name"))
                data = (o or {}).get("data") or {}
                if ref.get("key") not in data:
                    if ref.get("optional"):
                        continue
                    raise RuntimeError("couldn't find key %s in %s %s/%s" % (
                        ref.get("key"), kind[:-1], self.ns, ref.get("name")))
                v = data[ref["key"]]
                env[e["name"]] = base64.b64decode(v).decode() if kind == "secrets" else v
        return env

    def wrapper(self, c, argv):
        """The sh script run inside the new mount namespace."""
        lines = ["set -e"]
        overlaid = set()
        mounts = []
        for vm in c.spec.get("volumeMounts") or []:
            src = self.volumes.get(vm["name"])
            if src is None:
                raise RuntimeError("volume %s not found" % vm["name"])
            if vm.get("subPath"):
                src = os.path.join(src, vm["subPath"])
            mounts.append((src, vm["mountPath"], vm.get("readOnly", False)))
        mounts.append((self.hosts_path, "/etc/hosts", False))
        for _, target, _ in mounts:
            anc = target if os.path.isdir(target) or os.path.isfile(target) else None
            if anc is None:
                anc = os.path.dirname(target)
                while not os.path.isdir(anc):
                    anc = os.path.dirname(anc)
                if anc == "/":
                    raise RuntimeError("mountPath %s: no existing parent below /" % target)
                if anc not in overlaid:
                    key = str(len(overlaid))
                    up = os.path.join(self.dir, "overlay", c.name, key, "upper")
                    wk = os.path.join(self.dir, "overlay", c.name, key, "work")
                    os.makedirs(up, exist_ok=True)
                    os.makedirs(wk, exist_ok=True)
                    lines.append("mount -t overlay overlay -o lowerdir=%s,upperdir=%s,workdir=%s"
                                 " %s" % (shlex.quote(anc), shlex.quote(up), shlex.quote(wk),
                                          shlex.quote(anc)))
                    overlaid.add(anc)
        for src, target, ro in mounts:
            if os.path.isdir(src):
                lines.append("mkdir -p %s" % shlex.quote(target))
            elif not os.path.exists(target):
                lines.append("mkdir -p %s && : > %s" % (shlex.quote(os.path.dirname(target)),
                                                        shlex.quote(target)))
            lines.append("mount --bind %s %s" % (shlex.quote(src), shlex.quote(target)))
            if ro:
                lines.append("mount -o remount,bind,ro %s" % shlex.quote(target))
        lines.append("cd %s" % shlex.quote(c.workdir))
        lines.append("exec " + " ".join(shlex.quote(a) for a in argv))
        return "\n".join(lines) + "\n"

    def start_container(self, c):
        binary, extra_env = self.k.cluster.image_binary(c.spec.get("image", ""))
        if binary is None:
            c.waiting = ("ErrImagePull", 'kubesim: no binary for image "%s"'
                         % c.spec.get("image", ""))
            c.next_start = time.monotonic() + BACKOFF_BASE
            return
        try:
            env = self.resolve_env(c)
        except RuntimeError as e:
            c.waiting = ("CreateContainerConfigError", str(e))
            c.next_start = time.monotonic() + 2
            return
        env.update(extra_env)
        # The pod's own IP: kubesim pods share the root network namespace, so each binds
        # its pod IP (the services read <SERVICE>_API_HOST from the environment).
        svc = os.path.basename(binary).upper().replace("-", "_")
        env.setdefault(svc + "_API_HOST", self.ip)
        argv = [binary] + list(c.spec.get("command") or [])[1:] + [
            _expand(a, env) for a in c.spec.get("args") or []]
        if c.spec.get("command"):
            argv = [binary] + [_expand(a, env) for a in c.spec["command"][1:]] + [
                _expand(a, env) for a in c.spec.get("args") or []]
        c.workdir = os.path.join(self.dir, "work", c.name)
        os.makedirs(c.workdir, exist_ok=True)
        script = os.path.join(self.dir, "%s.sh" % c.name)
        with open(script, "w") as f:
            f.write(self.wrapper(c, argv))
        logp = self.k.cluster.log_path(self.pod, c.name)
        if c.restarts > 0 and os.path.exists(logp):
            os.replace(logp, logp + ".previous")
        log = open(logp, "ab")
        try:
            c.proc = self.k.spawn(["setpriv", "--pdeathsig", "KILL", "--", "unshare",
                                   "--mount", "--propagation", "private", "sh", script],
                                  env, log, c.workdir)
        finally:
            log.close()
        c.started_at = now_iso()
        c.run_id += 1
        c.started = c.spec.get("startupProbe") is None
        c.ready = c.spec.get("readinessProbe") is None and c.started
        c.waiting = (None, None)
        self.k.cluster.log("pod %s/%s: container %s started pid %d (%s)" % (
            self.ns, self.name, c.name, c.proc.pid, binary))
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if c.spec.get(kind):
                t = threading.Thread(target=self.probe_loop, args=(c, kind, c.run_id),
                                     daemon=True, name="probe-%s-%s" % (self.name, kind))
                t.start()

    # -- probes -------------------------------------------------------------------------------
    def probe_loop(self, c, kind, run_id):
        p = c.spec[kind]
        period = max(1, p.get("periodSeconds", 10))
        timeout = max(1, p.get("timeoutSeconds", 1))
        fail_th = max(1, p.get("failureThreshold", 3))
        succ_th = max(1, p.get("successThreshold", 1))
        stop = self.k.cluster.stopping
        deadline = time.monotonic() + p.get("initialDelaySeconds", 0)
        fails = succs = 0
        while not stop.is_set() and c.run_id == run_id and not self.done:
            if time.monotonic() < deadline:
                stop.wait(min(0.1, deadline - time.monotonic()))
                continue
            if c.proc is None or c.proc.poll() is not None:
                return
            if kind != "startupProbe" and not c.started:
                stop.wait(0.1)
                continue
            if kind == "startupProbe" and c.started:
                return
            if self.terminating and kind != "readinessProbe":
                return
            ok, msg = self.run_probe(c, p, timeout)
            if c.run_id != run_id:
                return
            if ok:
                succs, fails = succs + 1, 0
            else:
                fails, succs = fails + 1, 0
            if kind == "startupProbe":
                if ok:
                    c.started = True
                    self.dirty.set()
                    return
                if fails >= fail_th:
                    self.k.cluster.event_pod(self.pod, "Warning", "Unhealthy",
                                             "Startup probe failed: " + msg)
                    self.restart_container(c, "startup probe failed")
                    return
            elif kind == "readinessProbe":
                if ok and succs >= succ_th and not c.ready:
                    c.ready = True
                    self.dirty.set()
                elif not ok and fails >= fail_th and c.ready:
                    c.ready = False
                    self.dirty.set()
                if not ok and fails == 1:
                    self.k.cluster.event_pod(self.pod, "Warning", "Unhealthy",
                                             "Readiness probe failed: " + msg)
            else:
                if not ok and fails >= fail_th:
                    self.k.cluster.event_pod(self.pod, "Warning", "Unhealthy",
                                             "Liveness probe failed: " + msg)
                    self.restart_container(c, "liveness probe failed")
                    return
            deadline = time.monotonic() + period
            # Readiness is re-probed right after the startup probe passes (the kubelet
            # wakes the readiness worker), not a full period later.
            if kind == "readinessProbe" and not c.ready:
                started_before = c.started
                while time.monotonic() < deadline and not stop.is_set() and \
                        c.run_id == run_id and c.started == started_before:
                    stop.wait(0.1)

    def run_probe(self, c, p, timeout):
        if "grpc" in p:
            return grpc_probe(self.ip, int(p["grpc"]["port"]), p["grpc"].get("service") or "",
                              timeout)
        if "tcpSocket" in p:
            import socket
            port = p["tcpSocket"]["port"]
            try:
                with socket.create_connection((self.ip, int(port)), timeout=timeout):
                    return True, ""
            except OSError as e:
                return False, str(e)
        if "httpGet" in p:
            import http.client
            g = p["httpGet"]
            try:
                conn = http.client.HTTPConnection(self.ip, int(g["port"]), timeout=timeout)
                conn.request("GET", g.get("path", "/"), headers={"User-Agent": "kube-probe/1.32"})
                r = conn.getresponse()
                r.read()
                conn.close()
                return 200 <= r.status < 400, "HTTP probe failed with statuscode: %d" % r.status
            except (OSError, http.client.HTTPException) as e:
                return False, str(e)
        if "exec" in p:
            try:
                r = subprocess.run(["nsenter", "-t", str(c.proc.pid), "-m", "--"] +
                                   p["exec"]["command"], timeout=timeout,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                return r.returncode == 0, "exit %d" % r.returncode
            except (subprocess.TimeoutExpired, OSError) as e:
                return False, str(e)
        return True, ""

    def restart_container(self, c, why):
        with self.lock:
            if c.proc is None or c.proc.poll() is not None or self.terminating:
                return
            c.killing = True
        self.k.cluster.log("pod %s/%s: killing %s: %s" % (self.ns, self.name, c.name, why))
        self.stop_process(c, self.pod["spec"].get("terminationGracePeriodSeconds", 30))
        c.killing = False

    def stop_process(self, c, grace):
        if c.proc is None or c.proc.poll() is not None:
            return
        try:
            os.killpg(c.proc.pid, signal.SIGTERM)
        except OSError:
            pass
        try:
            c.proc.wait(max(0, grace))
        except subprocess.TimeoutExpired:
            self.k.cluster.log("pod %s/%s: %s did not stop in %ss: SIGKILL" % (
                self.ns, self.name, c.name, grace))
            try:
                os.killpg(c.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            c.proc.wait(10)

    # -- lifecycle ----------------------------------------------------------------------------
    def run(self):
        try:
            self._run()
        except Exception as e:  # never leave a process behind a crashed worker
            import traceback
            traceback.print_exc()
            self.k.cluster.log("pod %s/%s: worker failed: %s" % (self.ns, self.name, e))
            for c in self.containers:
                if c.proc and c.proc.poll() is None:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    c.proc.wait(10)
        finally:
            self.finish()

    def _run(self):
        self.ip = self.k.cluster.alloc_pod_ip()
        self.write_status()
        try:
            self.setup()
        except (RuntimeError, OSError) as e:
            self.failed_start = str(e)
            for c in self.containers:
                c.waiting = ("ContainerCreating", None)
            self.k.cluster.event_pod(self.pod, "Warning", "FailedMount", str(e))
        stop = self.k.cluster.stopping
        while True:
            if self.failed_start and not self.terminating:
                # Retry volume setup (e.g. the Secret is created after the Deployment).
                try:
                    self.setup()
                    self.failed_start = None
                except (RuntimeError, OSError) as e:
                    self.failed_start = str(e)
            now = time.monotonic()
            if self.terminating or stop.is_set():
                break
            if not self.failed_start:
                for c in self.containers:
                    if c.killing:
                        continue
                    if c.proc is None:
                        if now >= c.next_start:
                            self.start_container(c)
                            self.dirty.set()
                    elif c.proc.poll() is not None:
                        self.container_exited(c)
                        self.dirty.set()
            if self.dirty.is_set():
                self.dirty.clear()
                self.write_status()
            cur = self.k.cluster.store.get("pods", self.ns, self.name)
            if cur is None or cur["metadata"]["uid"] != self.uid:
                self.terminating = True
                self.grace = 0
                break
            if cur["metadata"].get("deletionTimestamp"):
                self.terminating = True
                self.grace = cur["metadata"].get("deletionGracePeriodSeconds", 30)
                self.pod = cur
                break
            self.dirty.wait(0.1)
        self.terminate(getattr(self, "grace", self.pod["spec"].get(
            "terminationGracePeriodSeconds", 30)))

    def container_exited(self, c):
        rc = c.proc.returncode
        t = now_iso()
        c.last_term = {"exitCode": rc if rc >= 0 else 128 - rc,
                       "reason": "Completed" if rc == 0 else "Error",
                       "startedAt": c.started_at, "finishedAt": t}
        if rc < 0:
            c.last_term["signal"] = -rc
        c.proc = None
        c.ready = False
        c.started = False
        c.run_id += 1
        delay = min(BACKOFF_MAX, BACKOFF_BASE * (2 ** min(c.restarts, 10)))
        c.restarts += 1
        c.next_start = time.monotonic() + delay
        c.waiting = ("CrashLoopBackOff", "back-off %ds restarting failed container=%s pod=%s"
                     % (delay, c.name, self.name))
        self.k.cluster.log("pod %s/%s: container %s exited %s; restart in %ss" % (
            self.ns, self.name, c.name, rc, delay))
        self.k.cluster.event_pod(self.pod, "Warning", "BackOff",
                                 "Back-off restarting failed container %s in pod %s"
                                 % (c.name, self.name))

    def terminate(self, grace):
        """preStop, SIGTERM, grace, SIGKILL; the pod already left the endpoints."""
        self.dirty.set()
        self.write_status()
        self.k.cluster.network_changed()
        deadline = time.monotonic() + max(0, grace or 0)
        running = [c for c in self.containers if c.proc and c.proc.poll() is None]
        threads = []
        for c in running:
            t = threading.Thread(target=self._terminate_one, args=(c, deadline), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        self.done = True

    def _terminate_one(self, c, deadline):
        ps = ((c.spec.get("lifecycle") or {}).get("preStop")) or {}
        if "sleep" in ps:
            secs = float(ps["sleep"].get("seconds", 0))
            end = min(deadline, time.monotonic() + secs)
            while time.monotonic() < end and c.proc.poll() is None:
                time.sleep(min(0.1, max(0, end - time.monotonic())))
        elif "exec" in ps:
            try:
                subprocess.run(["nsenter", "-t", str(c.proc.pid), "-m", "--"] +
                               ps["exec"]["command"], timeout=max(0.1,
                                                                  deadline - time.monotonic()),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except (subprocess.TimeoutExpired, OSError):
                pass
        # The kubelet gives at least 2 s after a preStop hook that used the grace period up.
        remaining = max(deadline - time.monotonic(), 2 if ps else 0)
        self.stop_process(c, remaining)

    def finish(self):
        for c in self.containers:
            if c.proc and c.proc.poll() is not None:
                rc = c.proc.returncode
                c.last_term = {"exitCode": rc if rc >= 0 else 128 - rc,
                               "reason": "Completed" if rc == 0 else "Error",
                               "startedAt": c.started_at, "finishedAt": now_iso()}
        self.done = True
        self.k.worker_done(self)


def _expand(s, env):
    """$(VAR) expansion as the kubelet does for command, args and env values."""
    out, i = "", 0
    while i < len(s):
        if s.startswith("$$", i):
            out += "$"
            i += 2
        elif s.startswith("$(", i) and ")" in s[i:]:
            j = s.index(")", i)
            name = s[i + 2:j]
            out += env.get(name, s[i:j + 1])
            i = j + 1
        else:
            out += s[i]
            i += 1
    return out


class Kubelet:
    def __init__(self, cluster):
        self.cluster = cluster
        self.workers = {}  # uid -> PodWorker
        self.lock = threading.Lock()
        self.spawn_lock = threading.Lock()

    def spawn(self, argv, env, log, cwd):
        with self.spawn_lock:
            return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd, start_new_session=True,
                                    close_fds=True)

    def sync(self):
        """Bind unscheduled pods to the node and start a worker per new pod."""
        store = self.cluster.store
        pods = store.list("pods")[0]
        for p in pods:
            uid = p["metadata"]["uid"]
            with self.lock:
                known = uid in self.workers
            if known:
                continue
            if p["metadata"].get("deletionTimestamp"):
                # Never started: nothing to drain.
                try:
                    store.remove(R["pods"], p["metadata"]["namespace"], p["metadata"]["name"])
                except ApiError:
                    pass
                continue
            if (p.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                continue
            if self.cluster.stopping.is_set() or getattr(self.cluster, "draining", False):
                continue
            if not p["spec"].get("nodeName"):
                p["spec"]["nodeName"] = "kubesim"
                try:
                    p = self.cluster.api.update(R["pods"], p["metadata"]["namespace"],
                                                p["metadata"]["name"], p)
                except ApiError:
                    continue
            w = PodWorker(self, p)
            with self.lock:
                self.workers[uid] = w
            w.start()

    def worker_done(self, w):
        """The pod's processes are gone: release its IP, delete the object (grace 0)."""
        store = self.cluster.store
        with store.lock:
            cur = store.get("pods", w.ns, w.name)
            if cur is not None and cur["metadata"]["uid"] == w.uid and (
                    cur["metadata"].get("deletionTimestamp") or self.cluster.stopping.is_set()):
                try:
                    store.remove(R["pods"], w.ns, w.name)
                except ApiError:
                    pass
        if w.ip:
            self.cluster.free_pod_ip(w.ip)
        with self.lock:
            self.workers.pop(w.uid, None)
        self.cluster.network_changed()

    def all_workers(self):
        with self.lock:
            return list(self.workers.values())

    def drain(self, timeout):
        """SIGTERM path of kubesim: every pod terminates like a node drain."""
        ws = self.all_workers()
        for w in ws:
            w.dirty.set()
        end = time.monotonic() + timeout
        for w in ws:
            w.join(max(0.1, end - time.monotonic()))
        # Anything still alive after the bound: SIGKILL its process group.
        for w in self.all_workers():
            for c in w.containers:
                if c.proc and c.proc.poll() is None:
                    try:
                        os.killpg(c.proc.pid, signal.SIGKILL)
                    except OSError:
                        pass
                    try:
                        c.proc.wait(5)
                    except subprocess.TimeoutExpired:
                        pass
