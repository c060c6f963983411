#!/usr/bin/python3
"""cd-smoke.py - the pipeline's smoke test of a deployed environment (scripts/cd.sh smoke).

Real calls through each Service: gRPC health Check of every service; PutMetadata and
PutRating of a smoke record (its id names the commit), then movie's GetMovieDetails
over gRPC and GET /movie?id= over HTTP/JSON, which reads both through movie's peers;
/readyz of each service over HTTP. Each call is retried until the whole test's
deadline (a Service whose endpoints are still settling after a rollout), and the
first failure of the last attempt is reported.

Usage: cd-smoke.py --namespace NS --api DIR --id ID [--timeout S]
                   [--addresses metadata=HOST:PORT,rating=HOST:PORT,movie=HOST:PORT]
Without --addresses each Service's ClusterIP is read with kubectl ($KUBECTL), which
works where the runner is inside the cluster network; elsewhere use a port-forward.
Exit 0 passed, 1 failed, 2 usage."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request

PORTS = {"metadata": 8081, "rating": 8082, "movie": 8083}


def stubs(api):
    from grpc_tools import protoc
    out = tempfile.mkdtemp(prefix="cd-smoke-")
    for proto in ("movie.proto", "health.proto"):
        if protoc.main(["protoc", "-I" + api, "--python_out=" + out, "--grpc_python_out=" + out,
                        os.path.join(api, proto)]) != 0:
            raise SystemExit("cd-smoke: protoc failed for %s" % proto)
    sys.path.insert(0, out)
    import health_pb2, health_pb2_grpc, movie_pb2, movie_pb2_grpc  # noqa: E401
    return movie_pb2, movie_pb2_grpc, health_pb2, health_pb2_grpc


def addresses(ns, given):
    if given:
        out = {}
        for part in given.split(","):
            k, _, v = part.partition("=")
            if k not in PORTS or ":" not in v:
                raise SystemExit("cd-smoke: --addresses: bad entry %r" % part)
            out[k] = v
        missing = set(PORTS) - set(out)
        if missing:
            raise SystemExit("cd-smoke: --addresses lacks %s" % ", ".join(sorted(missing)))
        return out
    kubectl = os.environ.get("KUBECTL", "kubectl")
    out = {}
    for svc, port in PORTS.items():
        p = subprocess.run([kubectl, "-n", ns, "get", "service", svc, "-o",
                            "jsonpath={.spec.clusterIP}"], capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0 or not p.stdout.strip():
            raise SystemExit("cd-smoke: service %s/%s: %s" % (ns, svc, p.stderr.strip()))
        out[svc] = "%s:%d" % (p.stdout.strip(), port)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--api", required=True, help="directory of movie.proto and health.proto")
    ap.add_argument("--id", required=True)
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("--addresses", default="")
    a = ap.parse_args()
    import grpc
    pb, pbg, hpb, hpbg = stubs(a.api)
    addr = addresses(a.namespace, a.addresses)
    deadline = time.monotonic() + a.timeout
    title = "cd smoke " + a.id

    def health(svc):
        with grpc.insecure_channel(addr[svc]) as ch:
            r = hpbg.HealthStub(ch).Check(hpb.HealthCheckRequest(service=""), timeout=5)
        if r.status != hpb.HealthCheckResponse.SERVING:
            raise AssertionError("%s health: %s" % (svc, r.status))
        return "SERVING"

    def readyz(svc):
        with urllib.request.urlopen("http://%s/readyz" % addr[svc], timeout=5) as r:
            return r.status

    def put():
        with grpc.insecure_channel(addr["metadata"]) as ch:
            pbg.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
                id=a.id, title=title, description="written by the pipeline", director="cd")),
                timeout=5)
        with grpc.insecure_channel(addr["rating"]) as ch:
            pbg.RatingServiceStub(ch).PutRating(pb.PutRatingRequest(
                user_id="cd-smoke", record_id=a.id, record_type="movie", rating_value=5), timeout=5)
        return "ok"

    def details_grpc():
        with grpc.insecure_channel(addr["movie"]) as ch:
            r = pbg.MovieServiceStub(ch).GetMovieDetails(pb.GetMovieDetailsRequest(movie_id=a.id),
                                                         timeout=5)
        if r.movie_details.metadata.title != title:
            raise AssertionError("GetMovieDetails title %r" % r.movie_details.metadata.title)
        if abs(r.movie_details.rating - 5) > 1e-9:
            raise AssertionError("GetMovieDetails rating %r, want 5" % r.movie_details.rating)
        return "title and rating"

    def details_http():
        with urllib.request.urlopen("http://%s/movie?id=%s" % (addr["movie"], a.id),
                                    timeout=5) as r:
            body = json.load(r)
        if body.get("metadata", {}).get("title") != title or body.get("rating") != 5:
            raise AssertionError("GET /movie: %r" % body)
        return "title and rating"

    checks = [("health " + s, lambda s=s: health(s)) for s in PORTS]
    checks += [("readyz " + s, lambda s=s: readyz(s)) for s in PORTS]
    checks += [("put smoke record", put), ("GetMovieDetails (gRPC)", details_grpc),
               ("GET /movie (HTTP)", details_http)]
    for name, fn in checks:
        attempts = 0
        while True:
            attempts += 1
            try:
                got = fn()
                print("ok   %s: %s%s" % (name, got, "" if attempts == 1 else
                                        " (after %d attempts)" % attempts), flush=True)
                break
            except Exception as e:  # noqa: BLE001 - reported with the check's name
                if time.monotonic() > deadline:
                    print("FAIL %s: %s" % (name, e), flush=True)
                    return 1
                time.sleep(0.5)  # retry pacing until the deadline, not synchronisation
    print("smoke: %d checks passed against %s" % (len(checks), a.namespace))
    return 0


if __name__ == "__main__":
    sys.exit(main())
