#!/usr/bin/python3
"""Benchmark one unary gRPC method of a real service binary with h2load.

Measures, as the issues ask: server CPU time per request (utime+stime of the
server processes from /proc, over the load), throughput, p50/p99 latency (from
h2load's per-request log), idle and peak RSS (VmRSS before the load, VmHWM
after), start-up time from exec to the first answered RPC (bench_startup), and
checks every response's grpc-status through the server's own metrics (h2load
only counts HTTP status).

  bench/grpc_bench.py metadata   [--requests N] [--conns 50] [--streams 10]
  bench/grpc_bench.py rating     [--ratings 5|1000000]
  bench/grpc_bench.py movie
  ... [--tracing off|on] [--sample-ratio R]

--tracing on exports every service's spans (tracing.otlp_endpoint) to an
OTLP/HTTP sink in this process (127.0.0.1, answers 200 and discards the body;
pinned with h2load when the server is pinned), at tracing.sample_ratio R
(default 1: every request). The result then holds the exporter's counters.

The single-service benchmarks pin the server to core 0 (api.workers: 1) and
h2load to core 1, as the reference numbers were taken. The movie benchmark runs
all three services unpinned on the 2 shared cores, with h2load, and sums the
CPU of the three. Results go to stdout as one JSON object.
"""
import argparse
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import harness  # noqa: E402

BUILD = os.environ.get("MOVIE_BUILD_DIR", os.path.join(ROOT, "build"))
BIN = os.path.join(BUILD, "bin")
CLK_TCK = os.sysconf("SC_CLK_TCK")
S = harness.stubs()
pb = S.movie_pb2


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def status_kb(pid, key):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def start(program, port, extra_env, pin=None, config=""):
    env = dict(os.environ)
    prefix = program.upper()
    env.update({prefix + "_API_HOST": "127.0.0.1", prefix + "_API_PORT": str(port),
                prefix + "_LOG_REQUESTS": "false", prefix + "_LOG_LEVEL": "warn",
                prefix + "_SHUTDOWN_DRAIN_DELAY": "0s"})
    env.update(extra_env)
    workdir = tempfile.mkdtemp(prefix="bench-%s-" % program)
    cmd = [os.path.join(BIN, program)]
    if config:
        path = os.path.join(workdir, "bench.yaml")
        with open(path, "w") as f:
            f.write(config)
        cmd += ["--config", path]
    if pin is not None:
        cmd = ["taskset", "-c", str(pin)] + cmd
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.DEVNULL)
    svc = harness.Service.__new__(harness.Service)
    svc.program, svc.port, svc.proc, svc.workdir = program, port, proc, workdir
    svc.host = "127.0.0.1"
    svc.log_path = os.devnull
    svc.wait_ready(20)
    return svc


def startup_us(program, port, path, request, extra_env):
    req = tempfile.NamedTemporaryFile(delete=False)
    req.write(request)
    req.close()
    env = dict(os.environ)
    prefix = program.upper()
    env.update({prefix + "_API_HOST": "127.0.0.1", prefix + "_API_PORT": str(port),
                prefix + "_LOG_LEVEL": "warn", prefix + "_SHUTDOWN_DRAIN_DELAY": "0s"})
    env.update(extra_env)
    runs = []
    for _ in range(7):
        out = subprocess.run([os.path.join(BUILD, "bench", "bench_startup"), "127.0.0.1",
                              str(port), path, req.name, "--", os.path.join(BIN, program)],
                             env=env, capture_output=True, timeout=30, cwd=tempfile.mkdtemp())
        if out.returncode == 0:
            runs.append(int(out.stdout))
    runs.sort()
    return runs[len(runs) // 2] if runs else None


def handled_ok(svc, service, method):
    key = ('grpc_server_handled_total{grpc_type="unary",grpc_service="%s",grpc_method="%s",'
           'grpc_code="OK"}' % (service, method))
    return harness.scrape(svc).get(key, 0)


def h2load(target, path, request, requests, conns, streams, pin):
    data = tempfile.NamedTemporaryFile(delete=False)
    data.write(struct.pack(">BI", 0, len(request)) + request)
    data.close()
    log = tempfile.NamedTemporaryFile(delete=False)
    log.close()
    cmd = ["h2load", "-n", str(requests), "-c", str(conns), "-m", str(streams), "-t", "1",
           "-d", data.name, "-H", "content-type: application/grpc", "-H", "te: trailers",
           "--log-file", log.name, "http://%s%s" % (target, path)]
    if pin is not None:
        cmd = ["taskset", "-c", str(pin)] + cmd
    out = subprocess.run(cmd, capture_output=True, timeout=600).stdout.decode()
    m = re.search(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", out)
    lat = []
    with open(log.name) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                lat.append(int(parts[2]))
    lat.sort()

    def pct(p):
        return lat[min(len(lat) - 1, int(len(lat) * p))] / 1000.0 if lat else None
    return {"req_per_s": float(m.group(3)) if m else None,
            "succeeded": int(counts.group(4)) if counts else 0,
            "failed": int(counts.group(5)) + int(counts.group(6)) if counts else None,
            "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": lat[-1] / 1000.0 if lat else None}


def bench_single(program, service, method, request, setup, args, extra_env, config=""):
    port = harness.free_port()
    result = {"benchmark": "%s %s" % (program, method), "requests": args.requests,
              "connections": args.conns, "streams": args.streams}
    result["startup_us"] = startup_us(program, port, "/grpc.health.v1.Health/Check",
                                      S.health_pb2.HealthCheckRequest().SerializeToString(),
                                      extra_env)
    svc = start(program, port, extra_env, pin=0,
                config=config or "api:\n  workers: 1\n")
    try:
        setup(svc)
        time.sleep(0.5)
        result["idle_rss_kb"] = status_kb(svc.proc.pid, "VmRSS")
        # Warm-up (connections, allocator), then the measured run.
        h2load(svc.target, "/%s/%s" % (service, method), request, 20000, args.conns,
               args.streams, 1)
        ok_before = handled_ok(svc, service, method)
        cpu_before = cpu_seconds(svc.proc.pid)
        load = h2load(svc.target, "/%s/%s" % (service, method), request, args.requests,
                      args.conns, args.streams, 1)
        cpu = cpu_seconds(svc.proc.pid) - cpu_before
        ok = handled_ok(svc, service, method) - ok_before
        result.update(load)
        result["grpc_ok"] = int(ok)
        result["cpu_us_per_request"] = round(cpu / args.requests * 1e6, 2)
        result["peak_rss_kb"] = status_kb(svc.proc.pid, "VmHWM")
        if extra_env.get(program.upper() + "_TRACING_OTLP_ENDPOINT"):
            result["trace"] = trace_counters(svc)
    finally:
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.wait(30)
    return result


class OtlpSink:
    """A minimal OTLP/HTTP receiver: reads each POST, answers 200 {}."""

    def __init__(self):
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *a):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", harness.free_port()),
                                                      Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.endpoint = "http://127.0.0.1:%d" % self.server.server_address[1]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def tracing_env(programs, args, sink):
    if args.tracing != "on":
        return {}
    env = {}
    for p in programs:
        env[p.upper() + "_TRACING_OTLP_ENDPOINT"] = sink.endpoint
        env[p.upper() + "_TRACING_SAMPLE_RATIO"] = str(args.sample_ratio)
    return env


def trace_counters(svc):
    return {k: v for k, v in harness.scrape(svc).items() if k.startswith("trace_")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("what", choices=["metadata", "rating", "movie"])
    ap.add_argument("--requests", type=int, default=500000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--ratings", type=int, default=5)
    ap.add_argument("--storage", default="memory")
    ap.add_argument("--tracing", choices=["off", "on"], default="off")
    ap.add_argument("--sample-ratio", type=float, default=1.0)
    args = ap.parse_args()
    sink = OtlpSink() if args.tracing == "on" else None
    if sink and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})  # with h2load, off the server's core
    if not shutil.which("h2load"):
        sys.exit("h2load (nghttp2-client) is required")

    if args.what == "metadata":
        def setup(svc):
            ch, = [__import__("grpc").insecure_channel(svc.target)]
            S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
                metadata=pb.Metadata(id="1", title="The Movie", description="A film.",
                                     director="Someone")), timeout=5)
            ch.close()
        res = bench_single("metadata", "MetadataService", "GetMetadata",
                           pb.GetMetadataRequest(movie_id="1").SerializeToString(), setup, args,
                           dict({"METADATA_STORAGE_DRIVER": args.storage},
                                **tracing_env(["metadata"], args, sink)))
    elif args.what == "rating":
        def setup(svc):
            # Bulk-load through the store's own batch path: the HTTP API, one
            # connection, in chunks (1,000,000 ratings take a while).
            import http.client
            conn = http.client.HTTPConnection("127.0.0.1", svc.port, timeout=30)
            for i in range(args.ratings):
                conn.request("PUT", "/rating?id=1&type=movie&userId=u%d&value=%d" % (i, 1 + i % 5))
                conn.getresponse().read()
            conn.close()
        res = bench_single("rating", "RatingService", "GetAggregatedRating",
                           pb.GetAggregatedRatingRequest(record_id="1",
                                                         record_type="movie").SerializeToString(),
                           setup, args, dict({"RATING_STORAGE_DRIVER": args.storage},
                                             **tracing_env(["rating"], args, sink)))
        res["ratings_on_record"] = args.ratings
    else:
        res = bench_movie(args, sink)
    res["tracing"] = args.tracing
    if sink:
        res["sample_ratio"] = args.sample_ratio
        sink.close()
    print(json.dumps(res, indent=2))


def bench_movie(args, sink=None):
    import grpc
    ports = {p: harness.free_port() for p in ("metadata", "rating", "movie")}
    env = {"MOVIE_PEERS_METADATA_ADDRESSES": "127.0.0.1:%d" % ports["metadata"],
           "MOVIE_PEERS_RATING_ADDRESSES": "127.0.0.1:%d" % ports["rating"],
           "METADATA_STORAGE_DRIVER": args.storage, "RATING_STORAGE_DRIVER": args.storage}
    env.update(tracing_env(["metadata", "rating", "movie"], args, sink))
    svcs = {p: start(p, ports[p], env) for p in ("metadata", "rating", "movie")}
    try:
        ch = grpc.insecure_channel(svcs["metadata"].target)
        S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
            metadata=pb.Metadata(id="1", title="The Movie", description="A film.",
                                 director="Someone")), timeout=5)
        ch.close()
        ch = grpc.insecure_channel(svcs["rating"].target)
        for u, v in (("a", 5), ("b", 4)):
            S.movie_pb2_grpc.RatingServiceStub(ch).PutRating(pb.PutRatingRequest(
                user_id=u, record_id="1", record_type="movie", rating_value=v), timeout=5)
        ch.close()
        request = pb.GetMovieDetailsRequest(movie_id="1").SerializeToString()
        path = "/MovieService/GetMovieDetails"
        h2load(svcs["movie"].target, path, request, 20000, args.conns, args.streams, None)
        ok_before = handled_ok(svcs["movie"], "MovieService", "GetMovieDetails")
        cpu_before = {p: cpu_seconds(s.proc.pid) for p, s in svcs.items()}
        load = h2load(svcs["movie"].target, path, request, args.requests, args.conns,
                      args.streams, None)
        cpu = {p: cpu_seconds(s.proc.pid) - cpu_before[p] for p, s in svcs.items()}
        ok = handled_ok(svcs["movie"], "MovieService", "GetMovieDetails") - ok_before
        res = {"benchmark": "movie GetMovieDetails (3 services, 2 shared cores)",
               "requests": args.requests, "connections": args.conns, "streams": args.streams}
        res.update(load)
        res["grpc_ok"] = int(ok)
        res["cpu_us_per_request_total"] = round(sum(cpu.values()) / args.requests * 1e6, 2)
        res["cpu_us_per_request"] = {p: round(c / args.requests * 1e6, 2) for p, c in cpu.items()}
        res["peak_rss_kb"] = {p: status_kb(s.proc.pid, "VmHWM") for p, s in svcs.items()}
        if sink:
            res["trace"] = {p: trace_counters(s) for p, s in svcs.items()}
        return res
    finally:
        for s in svcs.values():
            s.proc.send_signal(signal.SIGTERM)
        for s in svcs.values():
            s.proc.wait(30)


if __name__ == "__main__":
    main()
