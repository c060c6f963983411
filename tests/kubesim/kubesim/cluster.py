"""The cluster: store + API + controllers + kubelet + Service networking, and the
start/stop sequence of `tests/kubesim/run`."""
import ipaddress
import os
import random
import re
import socket
import sys
import threading
import time

import yaml

from . import api as apimod
from .controllers import Controllers
from .kubelet import Kubelet
from .resources import BY_PLURAL
from .store import ApiError, Store, now_iso

R = BY_PLURAL
POD_NET = ipaddress.ip_network("127.77.0.0/16")  # per instance: one /24 of it
SVC_NET = ipaddress.ip_network("127.78.0.0/16")  # per instance: the same /24 of it
POOL = 240  # addresses per instance and range (.10 to .249)
MAX_PROXY_CONNS = 2000
IMAGE_RE = re.compile(r"^movie-(metadata|rating|movie)$")


class Cluster:
    def __init__(self, dirpath, bin_dir, images=None):
        self.dir = os.path.abspath(dirpath)
        self.bin_dir = bin_dir
        self.images = images or {}
        self.store = Store()
        self.stopping = threading.Event()
        self.logf = open(os.path.join(self.dir, "kubesim.log"), "a", buffering=1)
        self.ip_lock = threading.Lock()
        self.pod_ips_used = set()
        self.pod_ip_next = 10
        self.svc_ip_next = 10
        self.net_event = threading.Event()
        self.proxies = {}  # (ns, name, port) -> Proxy
        self.store.listeners.append(self._on_change)
        self.kubelet = Kubelet(self)
        self.claim_block()

    def claim_block(self):
        """Pick a /24 of the pod and Service ranges that no other kubesim on this machine
        uses: holding a listener on 127.77.K.1:9 is the claim (released at exit)."""
        order = list(range(256))
        random.shuffle(order)
        for k in order:
            s = socket.socket()
            try:
                s.bind(("127.77.%d.1" % k, 9))
                s.listen(1)
            except OSError:
                s.close()
                continue
            self.block_sock = s
            self.pod_base = ipaddress.ip_address("127.77.%d.0" % k)
            self.svc_base = ipaddress.ip_address("127.78.%d.0" % k)
            self.pod_cidr = "127.77.%d.0/24" % k
            self.svc_cidr = "127.78.%d.0/24" % k
            return
        raise RuntimeError("no free 127.77.K.0/24 block")

    def log(self, msg):
        try:
            self.logf.write("%s %s\n" % (now_iso(), msg))
        except ValueError:
            pass

    def _on_change(self, plural, etype, obj):
        if plural in ("services", "endpoints"):
            self.net_event.set()

    def network_changed(self):
        self.net_event.set()

    # -- IPs ------------------------------------------------------------------------------
    def alloc_pod_ip(self):
        with self.ip_lock:
            for _ in range(POOL):
                n = self.pod_ip_next
                self.pod_ip_next = 10 + (self.pod_ip_next - 9) % POOL
                ip = str(self.pod_base + n)
                if ip not in self.pod_ips_used:
                    self.pod_ips_used.add(ip)
                    return ip
        raise RuntimeError("pod IP range exhausted")

    def free_pod_ip(self, ip):
        with self.ip_lock:
            self.pod_ips_used.discard(ip)

    def allocate_cluster_ip(self, svc):
        spec = svc["spec"]
        if spec.get("clusterIP") in ("None",):
            spec["clusterIPs"] = ["None"]
            return
        if spec.get("clusterIP"):
            ip = ipaddress.ip_address(spec["clusterIP"])
            if ip not in ipaddress.ip_network(self.svc_cidr):
                raise apimod.invalid(R["services"], svc["metadata"].get("name", ""), [
                    ("spec.clusterIPs", "FieldValueInvalid",
                     "Invalid value: %s: provided IP is not in the valid range. The range of "
                     "valid IPs is %s" % (spec["clusterIP"], self.svc_cidr))])
            spec["clusterIPs"] = [spec["clusterIP"]]
            return
        used = {s["spec"].get("clusterIP") for s in self.store.list("services")[0]}
        with self.ip_lock:
            for _ in range(POOL):
                ip = str(self.svc_base + self.svc_ip_next)
                self.svc_ip_next = 10 + (self.svc_ip_next - 9) % POOL
                if ip not in used:
                    spec["clusterIP"] = ip
                    spec["clusterIPs"] = [ip]
                    return
        raise RuntimeError("service IP range exhausted")

    # -- pods -------------------------------------------------------------------------------
    def delete_pod(self, pod, grace):
        md = pod["metadata"]
        if grace is None:
            grace = pod["spec"].get("terminationGracePeriodSeconds", 30)
        grace = max(0, int(grace))
        started = any(w.uid == md["uid"] for w in self.kubelet.all_workers())
        if not started or grace == 0 and not started:
            return self.store.remove(R["pods"], md.get("namespace"), md["name"])
        if md.get("deletionTimestamp"):
            if grace < md.get("deletionGracePeriodSeconds", grace):
                md["deletionGracePeriodSeconds"] = grace
                pod = self.store.replace(R["pods"], pod, check_rv=False)
            return pod
        t = time.time() + grace
        md["deletionTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t))
        md["deletionGracePeriodSeconds"] = grace
        out = self.store.replace(R["pods"], pod, check_rv=False)
        if grace == 0:
            # Force delete: the object goes now; the kubelet still kills the processes.
            self.store.remove(R["pods"], md.get("namespace"), md["name"])
        return out

    def orphan_dependents(self, owner):
        uid = owner["metadata"]["uid"]
        for plural in ("replicasets", "pods"):
            for o in self.store.list(plural, owner["metadata"].get("namespace"))[0]:
                refs = o["metadata"].get("ownerReferences") or []
                keep = [r for r in refs if r.get("uid") != uid]
                if len(keep) != len(refs):
                    if keep:
                        o["metadata"]["ownerReferences"] = keep
                    else:
                        del o["metadata"]["ownerReferences"]
                    self.store.replace(R[plural], o, check_rv=False)

    def log_path(self, pod, cname, previous=False):
        md = pod["metadata"]
        p = os.path.join(self.dir, "pods", "%s_%s_%s" % (md["namespace"], md["name"],
                                                          md["uid"][:8]), cname + ".log")
        return p + ".previous" if previous else p

    def image_binary(self, image):
        if image in self.images:
            e = self.images[image] or {}
            return e.get("binary"), {str(k): str(v) for k, v in (e.get("env") or {}).items()}
        ref = image.rsplit("/", 1)[-1]
        name = ref.split("@")[0].split(":")[0]
        m = IMAGE_RE.match(name)
        if m:
            return os.path.join(self.bin_dir, m.group(1)), {}
        return None, {}

    def event_pod(self, pod, etype, reason, msg):
        md = pod["metadata"]
        ev = {"metadata": {"generateName": md["name"] + ".", "namespace": md["namespace"]},
              "involvedObject": {"kind": "Pod", "namespace": md["namespace"],
                                 "name": md["name"], "uid": md["uid"], "apiVersion": "v1"},
              "reason": reason, "message": msg, "type": etype, "count": 1,
              "source": {"component": "kubelet", "host": "kubesim"},
              "firstTimestamp": now_iso(), "lastTimestamp": now_iso()}
        try:
            self.api.create(R["events"], md["namespace"], ev)
        except ApiError:
            pass
        self.trim_events()

    def trim_events(self, cap=2000):
        with self.store.lock:
            evs = self.store.objects.get("events", {})
            if len(evs) <= cap:
                return
            old = sorted(evs.values(), key=lambda e: int(e["metadata"]["resourceVersion"]))
            for e in old[:len(evs) - cap]:
                try:
                    self.store.remove(R["events"], e["metadata"]["namespace"],
                                      e["metadata"]["name"])
                except ApiError:
                    pass

    # -- Service networking -------------------------------------------------------------------
    def service_backends(self, ns, name):
        """Ready (ip, port-by-name) of a Service, from its Endpoints."""
        ep = self.store.get("endpoints", ns, name)
        out = []
        for ss in (ep or {}).get("subsets") or []:
            for a in ss.get("addresses") or []:
                if not _loopback(a.get("ip")):
                    # Loopback only: an Endpoints address elsewhere is never used.
                    self.log("endpoints %s/%s: ignoring non-loopback address %r" % (
                        ns, name, a.get("ip")))
                    continue
                out.append((a["ip"], {p.get("name", ""): p["port"] for p in ss.get("ports")
                                      or []}))
        return out

    def hosts_for(self, ns, podname, podip):
        lines = ["# Kubernetes-managed hosts file (kubesim).",
                 "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
        if podip:
            lines.append("%s\t%s" % (podip, podname))
        for svc in self.store.list("services")[0]:
            sns, sname = svc["metadata"]["namespace"], svc["metadata"]["name"]
            names = ["%s.%s.svc.cluster.local" % (sname, sns), "%s.%s.svc" % (sname, sns),
                     "%s.%s" % (sname, sns)]
            if sns == ns:
                names.insert(0, sname)
            cip = svc["spec"].get("clusterIP")
            if cip and cip != "None":
                lines.append("%s\t%s" % (cip, " ".join(names)))
            else:
                for ip, _ in self.service_backends(sns, sname):
                    lines.append("%s\t%s" % (ip, " ".join(names)))
        return "\n".join(lines) + "\n"

    def network_loop(self):
        while not self.stopping.is_set():
            self.net_event.wait(0.5)
            if self.stopping.is_set():
                break
            self.net_event.clear()
            try:
                self.refresh_network()
            except Exception as e:  # keep networking alive; log the bug
                import traceback
                traceback.print_exc()
                self.log("network refresh failed: %s" % e)

    def refresh_network(self):
        with self.store.lock:
            svcs = self.store.list("services")[0]
            tables = {}
            for svc in svcs:
                cip = svc["spec"].get("clusterIP")
                if not cip or cip == "None":
                    continue
                ns, name = svc["metadata"]["namespace"], svc["metadata"]["name"]
                backends = self.service_backends(ns, name)
                for sp in svc["spec"].get("ports") or []:
                    if sp.get("protocol", "TCP") != "TCP":
                        continue
                    pname = sp.get("name", "")
                    tgts = [(ip, ports.get(pname)) for ip, ports in backends
                            if ports.get(pname) is not None]
                    if not tgts and len(svc["spec"].get("ports")) == 1:
                        tgts = [(ip, next(iter(ports.values()))) for ip, ports in backends
                                if ports]
                    tables[(cip, sp["port"])] = tgts
            workers = self.kubelet.all_workers()
            hosts = {}
            for w in workers:
                if w.ip and getattr(w, "hosts_path", None):
                    hosts[w.hosts_path] = self.hosts_for(w.ns, w.name, w.ip)
        for key, tgts in tables.items():
            p = self.proxies.get(key)
            if p is None:
                try:
                    p = Proxy(self, key[0], key[1])
                except OSError as e:
                    self.log("proxy %s:%d: %s" % (key[0], key[1], e))
                    continue
                self.proxies[key] = p
            p.targets = tgts
        for key in list(self.proxies):
            if key not in tables:
                self.proxies.pop(key).close()
        for path, content in hosts.items():
            write_in_place(path, content)

    # -- Prometheus HTTP SD ---------------------------------------------------------------------
    def http_sd(self):
        groups = []
        for p in self.store.list("pods")[0]:
            st = p.get("status") or {}
            ip = st.get("podIP")
            if not ip:
                continue
            md = p["metadata"]
            base = {"__meta_kubernetes_namespace": md["namespace"],
                    "__meta_kubernetes_pod_name": md["name"],
                    "__meta_kubernetes_pod_ip": ip,
                    "__meta_kubernetes_pod_node_name": p["spec"].get("nodeName", ""),
                    "__meta_kubernetes_pod_host_ip": st.get("hostIP", ""),
                    "__meta_kubernetes_pod_uid": md["uid"],
                    "__meta_kubernetes_pod_phase": st.get("phase", ""),
                    "__meta_kubernetes_pod_ready": _pod_ready(p)}
            for k, v in (md.get("labels") or {}).items():
                base["__meta_kubernetes_pod_label_" + _sanitize(k)] = v
                base["__meta_kubernetes_pod_labelpresent_" + _sanitize(k)] = "true"
            for k, v in (md.get("annotations") or {}).items():
                base["__meta_kubernetes_pod_annotation_" + _sanitize(k)] = v
                base["__meta_kubernetes_pod_annotationpresent_" + _sanitize(k)] = "true"
            ctl = next((o for o in md.get("ownerReferences") or [] if o.get("controller")), None)
            if ctl:
                base["__meta_kubernetes_pod_controller_kind"] = ctl.get("kind", "")
                base["__meta_kubernetes_pod_controller_name"] = ctl.get("name", "")
            cids = {cs["name"]: cs.get("containerID", "") for cs in st.get("containerStatuses")
                    or []}
            for init, key in ((False, "containers"), (True, "initContainers")):
                for c in p["spec"].get(key) or []:
                    cl = dict(base)
                    cl["__meta_kubernetes_pod_container_name"] = c["name"]
                    cl["__meta_kubernetes_pod_container_image"] = c.get("image", "")
                    cl["__meta_kubernetes_pod_container_init"] = "true" if init else "false"
                    cl["__meta_kubernetes_pod_container_id"] = cids.get(c["name"], "")
                    ports = c.get("ports") or []
                    if not ports:
                        groups.append({"targets": [ip], "labels": cl})
                        continue
                    for port in ports:
                        pl = dict(cl)
                        pl["__meta_kubernetes_pod_container_port_name"] = port.get("name", "")
                        pl["__meta_kubernetes_pod_container_port_number"] = str(
                            port["containerPort"])
                        pl["__meta_kubernetes_pod_container_port_protocol"] = port.get(
                            "protocol", "TCP")
                        groups.append({"targets": ["%s:%d" % (ip, port["containerPort"])],
                                       "labels": pl})
        return groups

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self, port):
        self.api, self.server = apimod.serve(self, "127.0.0.1", port,
                                             os.path.join(self.dir, "api.log"))
        self.api_port = self.server.server_address[1]
        self.controllers = Controllers(self)
        self.store.create(R["namespaces"], {"apiVersion": "v1", "kind": "Namespace",
                                            "metadata": {"name": "default",
                                                         "labels": {"kubernetes.io/metadata."
                                                                    "name": "default"}},
                                            "spec": {"finalizers": ["kubernetes"]},
                                            "status": {"phase": "Active"}})
        for n in ("kube-system", "kube-public"):
            self.api.create(R["namespaces"], "", {"metadata": {"name": n}})
        self.api.create(R["nodes"], "", {
            "metadata": {"name": "kubesim", "labels": {"kubernetes.io/hostname": "kubesim",
                                                       "kubernetes.io/os": "linux"}},
            "status": {"addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                       "conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady"}]}})
        self.threads = [threading.Thread(target=self.control_loop, name="controllers",
                                         daemon=True),
                        threading.Thread(target=self.network_loop, name="network",
                                         daemon=True)]
        for t in self.threads:
            t.start()

    def control_loop(self):
        while not self.stopping.is_set():
            try:
                self.controllers.run_once()
                self.kubelet.sync()
            except Exception as e:  # a kubesim bug: log it, keep reconciling
                import traceback
                traceback.print_exc()
                self.log("controller loop: %s" % e)
            with self.store.lock:
                rv = self.store.rv
                self.store.cond.wait(0.25)
                changed = self.store.rv != rv
            if changed:
                self.stopping.wait(0.02)

    def shutdown(self, timeout=120):
        """Node drain: every pod deleted with its grace period, then stop."""
        self.log("shutdown: draining %d pods" % len(self.kubelet.all_workers()))
        self.draining = True
        with self.store.lock:
            for p in self.store.list("pods")[0]:
                try:
                    self.delete_pod(p, None)
                except ApiError:
                    pass
        self.kubelet.drain(timeout)
        self.stopping.set()
        for p in list(self.proxies.values()):
            p.close()
        self.server.shutdown()
        self.log("shutdown: done")


def _loopback(ip):
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.0.0/8")
    except (ValueError, TypeError):
        return False


def _pod_ready(p):
    for c in (p.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready":
            return c.get("status", "unknown").lower()
    return "unknown"


def _sanitize(k):
    return re.sub(r"[^a-zA-Z0-9_]", "_", k)


def write_in_place(path, content):
    """Rewrite a bind-mounted file keeping its inode (the bind mount follows the inode).

    One pwrite at offset 0 and never a shrink: a shorter content is padded with a
    comment line to the old length. A reader racing a truncate could otherwise see the
    new text followed by the old tail, e.g. a fragment "7.0.15 metadata-headless",
    which glibc would parse as the address 7.0.0.15."""
    data = content.encode()
    try:
        with open(path, "rb") as f:
            old = f.read()
        if old.rstrip(b" #\n") == data.rstrip(b"\n") or old == data:
            return
        if len(data) < len(old):
            pad = len(old) - len(data)
            data += (b"#" + b" " * (pad - 2) + b"\n") if pad >= 2 else b"\n" * pad
        fd = os.open(path, os.O_WRONLY)
        try:
            os.pwrite(fd, data, 0)
        finally:
            os.close(fd)
    except OSError:
        pass


class Proxy:
    """A ClusterIP:port listener spreading connections over the ready endpoints, like
    kube-proxy (random choice per connection); connections keep going to the backend
    they were opened to."""

    def __init__(self, cluster, ip, port):
        self.cluster = cluster
        self.targets = []
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((ip, port))
        self.sock.listen(128)
        self.conns = 0
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self.accept_loop, daemon=True,
                         name="proxy-%s:%d" % (ip, port)).start()

    def close(self):
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()

    def accept_loop(self):
        while not self.closed:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                if self.conns >= MAX_PROXY_CONNS:
                    c.close()
                    continue
                self.conns += 1
            threading.Thread(target=self.handle, args=(c,), daemon=True).start()

    def handle(self, c):
        up = None
        try:
            tg = list(self.targets)
            if not tg:
                return  # no endpoints: the connection is refused (reset), as kube-proxy does
            random.shuffle(tg)
            for ip, port in tg[:3]:
                try:
                    up = socket.create_connection((ip, port), timeout=2)
                    break
                except OSError:
                    up = None
            if up is None:
                return
            up.settimeout(None)
            c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            up.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            t = threading.Thread(target=_pump, args=(up, c), daemon=True)
            t.start()
            _pump(c, up)
            t.join(300)
        finally:
            for s in (c, up):
                if s is not None:
                    try:
                        s.close()
                    except OSError:
                        pass
            with self.lock:
                self.conns -= 1


def _pump(src, dst):
    try:
        while True:
            d = src.recv(65536)
            if not d:
                break
            dst.sendall(d)
    except OSError:
        pass
    try:
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def load_images(path):
    with open(path) as f:
        data = yaml.safe_load(f) or {}
    if not isinstance(data, dict):
        raise ValueError("%s: expected a mapping of image reference to {binary, env}" % path)
    for k, v in data.items():
        if not isinstance(v, dict) or not isinstance(v.get("binary"), str):
            raise ValueError("%s: %s: needs binary: PATH" % (path, k))
        if not os.access(v["binary"], os.X_OK):
            raise ValueError("%s: %s: %s is not an executable" % (path, k, v["binary"]))
        if v.get("env") is not None and not isinstance(v["env"], dict):
            raise ValueError("%s: %s: env must be a mapping" % (path, k))
    return data


def main(argv):
    import argparse
    import signal
    ap = argparse.ArgumentParser(prog="tests/kubesim/run",
                                 description="kubesim: a Kubernetes test double whose pods are "
                                 "real processes")
    ap.add_argument("dir")
    ap.add_argument("--images", help="YAML: <image ref>: {binary: PATH, env: {K: V}}")
    ap.add_argument("--port", type=int, default=0, help="API port (default: a free one "
                    "below 32768)")
    ap.add_argument("--bin-dir", default=os.environ.get("MOVIE_BIN_DIR") or os.path.join(
        os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "build", "bin"))
    ap.add_argument("--drain-timeout", type=float, default=120)
    a = ap.parse_args(argv)
    os.makedirs(a.dir, exist_ok=True)
    for f in ("kubeconfig", "ready"):
        try:
            os.unlink(os.path.join(a.dir, f))
        except FileNotFoundError:
            pass
    try:
        images = load_images(a.images) if a.images else {}
    except (OSError, ValueError, yaml.YAMLError) as e:
        print("kubesim: --images: %s" % e, file=sys.stderr)
        return 2
    cl = Cluster(a.dir, os.path.normpath(a.bin_dir), images)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    port = a.port
    if not port:
        for _ in range(200):
            cand = random.randint(20000, 32000)
            with socket.socket() as s:
                try:
                    s.bind(("127.0.0.1", cand))
                    port = cand
                    break
                except OSError:
                    continue
    cl.start(port)
    kc = {"apiVersion": "v1", "kind": "Config", "current-context": "kubesim",
          "clusters": [{"name": "kubesim",
                        "cluster": {"server": "http://127.0.0.1:%d" % cl.api_port}}],
          "users": [{"name": "kubesim", "user": {}}],
          "contexts": [{"name": "kubesim", "context": {"cluster": "kubesim", "user": "kubesim",
                                                       "namespace": "default"}}]}
    tmp = os.path.join(a.dir, "kubeconfig.tmp")
    with open(tmp, "w") as f:
        yaml.safe_dump(kc, f)
    os.replace(tmp, os.path.join(a.dir, "kubeconfig"))
    with open(tmp, "w") as f:
        f.write("http://127.0.0.1:%d\n" % cl.api_port)
    os.replace(tmp, os.path.join(a.dir, "ready"))
    cl.log("kubesim API on 127.0.0.1:%d, pods in %s, services in %s" % (
        cl.api_port, cl.pod_cidr, cl.svc_cidr))
    while not stop.wait(0.5):
        pass
    cl.shutdown(a.drain_timeout)
    return 0
