#!/usr/bin/python3
"""What request logging costs: the same binary with log.requests on and off,
side by side in one run, alternated, plus nghttpd as the HTTP/2 floor.

  bench/log_bench.py [--rounds 5] [--requests 300000] [--conns 50] [--streams 10]
                     [--modes off,on,sample,nghttpd]

Every round runs each mode once, in turn (off, on, ..., nghttpd), so that load
from other processes on the shared machine falls on all modes alike. Each run:
metadata GetMetadata (memory storage, api.workers: 1) pinned to core 0 with
taskset, h2load -c50 -m10 pinned to core 1, 20,000 warm-up requests, then the
measured run; CPU per request = (utime + stime of the server from /proc) /
requests, the writer thread included. The server's stdout is a pipe that this
script reads and counts (as a container runtime would), so log lines are really
written and their count is checked: mode "on" must produce one line per
request. "sample" is log.requests_sample: 0.01.

Output: one JSON object with every run, the median CPU per request per mode,
the ratio of each mode's median to "off", and the spread (min..max of the
per-round ratios).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import grpc_bench  # noqa: E402
from grpc_bench import harness, pb, S  # noqa: E402

SERVICE, METHOD = "MetadataService", "GetMetadata"


class LineCounter(threading.Thread):
    """Reads the server's stdout to the end, counting lines (and request lines)."""

    def __init__(self, stream):
        super().__init__(daemon=True)
        self.stream, self.lines, self.requests, self.tail = stream, 0, 0, b""
        self.dropped_lines = []
        self.lock = threading.Lock()

    def run(self):
        rest = b""
        while True:
            chunk = self.stream.read1(1 << 16)
            if not chunk:
                break
            data = rest + chunk
            lines = data.split(b"\n")
            rest = lines.pop()
            with self.lock:
                for line in lines:
                    self.lines += 1
                    if b'"msg":"grpc"' in line:
                        self.requests += 1
                    elif b"log lines dropped" in line:
                        self.dropped_lines.append(line)

    def count(self):
        with self.lock:
            return self.requests


def start_metadata(port, mode):
    env = dict(os.environ)
    env.update({"METADATA_API_HOST": "127.0.0.1", "METADATA_API_PORT": str(port),
                "METADATA_LOG_LEVEL": "info", "METADATA_SHUTDOWN_DRAIN_DELAY": "0s",
                "METADATA_STORAGE_DRIVER": "memory", "METADATA_API_WORKERS": "1",
                "METADATA_LOG_REQUESTS": "false" if mode == "off" else "true"})
    if mode == "sample":
        env["METADATA_LOG_REQUESTS_SAMPLE"] = "0.01"
    workdir = tempfile.mkdtemp(prefix="logbench-")
    cmd = ["taskset", "-c", "0", os.path.join(grpc_bench.BIN, "metadata")]
    proc = subprocess.Popen(cmd, env=env, cwd=workdir, stdout=subprocess.PIPE)
    counter = LineCounter(proc.stdout)
    counter.start()
    svc = harness.Service.__new__(harness.Service)
    svc.program, svc.port, svc.proc, svc.workdir = "metadata", port, proc, workdir
    svc.host = "127.0.0.1"
    svc.log_path = os.devnull
    svc.wait_ready(20)
    import grpc
    ch = grpc.insecure_channel(svc.target)
    S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
        metadata=pb.Metadata(id="1", title="The Movie", description="A film.",
                             director="Someone")), timeout=5)
    ch.close()
    return svc, counter


def start_nghttpd(port, response):
    docroot = tempfile.mkdtemp(prefix="logbench-nghttpd-")
    os.makedirs(os.path.join(docroot, SERVICE))
    with open(os.path.join(docroot, SERVICE, METHOD), "wb") as f:
        f.write(response)
    proc = subprocess.Popen(["taskset", "-c", "0", shutil.which("nghttpd"), "--no-tls",
                             "-d", docroot, "-a", "127.0.0.1", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    import socket
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.05)  # polling a condition with a deadline
    else:
        proc.kill()
        raise RuntimeError("nghttpd did not start")
    return proc


def run_one(mode, args, request, response):
    port = harness.free_port()
    path = "/%s/%s" % (SERVICE, METHOD)
    target = "127.0.0.1:%d" % port
    if mode == "nghttpd":
        proc = start_nghttpd(port, response)
        try:
            grpc_bench.h2load(target, path, request, 20000, args.conns, args.streams, 1)
            before = grpc_bench.cpu_seconds(proc.pid)
            load = grpc_bench.h2load(target, path, request, args.requests, args.conns,
                                     args.streams, 1)
            cpu = grpc_bench.cpu_seconds(proc.pid) - before
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
        return {"mode": mode, "cpu_us_per_request": round(cpu / args.requests * 1e6, 3),
                "req_per_s": load["req_per_s"], "succeeded": load["succeeded"]}
    svc, counter = start_metadata(port, mode)
    try:
        grpc_bench.h2load(target, path, request, 20000, args.conns, args.streams, 1)
        ok_before = grpc_bench.handled_ok(svc, SERVICE, METHOD)
        before = grpc_bench.cpu_seconds(svc.proc.pid)
        load = grpc_bench.h2load(target, path, request, args.requests, args.conns,
                                 args.streams, 1)
        cpu = grpc_bench.cpu_seconds(svc.proc.pid) - before
        ok = grpc_bench.handled_ok(svc, SERVICE, METHOD) - ok_before
        scrape = harness.scrape(svc)
    finally:
        svc.proc.send_signal(signal.SIGTERM)
        svc.proc.wait(30)
        counter.join(30)
    res = {"mode": mode, "cpu_us_per_request": round(cpu / args.requests * 1e6, 3),
           "req_per_s": load["req_per_s"], "grpc_ok": int(ok),
           "request_lines": counter.requests,
           "log_lines_dropped_total": scrape.get("log_lines_dropped_total")}
    if int(ok) != args.requests:
        res["error"] = "grpc OK count %d != %d" % (ok, args.requests)
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--requests", type=int, default=300000)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--streams", type=int, default=10)
    ap.add_argument("--modes", default="off,on,sample,nghttpd")
    args = ap.parse_args()
    modes = args.modes.split(",")
    if not shutil.which("h2load"):
        sys.exit("h2load (nghttp2-client) is required")
    if "nghttpd" in modes and not shutil.which("nghttpd"):
        sys.exit("nghttpd (nghttp2-server) is required")
    request = pb.GetMetadataRequest(movie_id="1").SerializeToString()
    response = pb.GetMetadataResponse(metadata=pb.Metadata(
        id="1", title="The Movie", description="A film.",
        director="Someone")).SerializeToString()
    runs = []
    for r in range(args.rounds):
        for mode in modes:
            res = run_one(mode, args, request, response)
            res["round"] = r
            runs.append(res)
            print(json.dumps(res), file=sys.stderr, flush=True)
    by_mode = {m: [x["cpu_us_per_request"] for x in runs if x["mode"] == m] for m in modes}
    summary = {"requests": args.requests, "rounds": args.rounds, "conns": args.conns,
               "streams": args.streams, "runs": runs,
               "median_cpu_us_per_request": {m: statistics.median(v) for m, v in by_mode.items()}}
    if "off" in modes:
        base = summary["median_cpu_us_per_request"]["off"]
        summary["ratio_to_off"] = {m: round(statistics.median(v) / base, 3)
                                   for m, v in by_mode.items()}
        spread = {}
        for m in modes:
            per_round = [x["cpu_us_per_request"] / y["cpu_us_per_request"]
                         for x in runs if x["mode"] == m
                         for y in runs if y["mode"] == "off" and y["round"] == x["round"]]
            spread[m] = [round(min(per_round), 3), round(max(per_round), 3)]
        summary["per_round_ratio_min_max"] = spread
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
