"""Client-side balancing over a DNS name (what a Kubernetes headless Service gives):
the movie service resolves its metadata peer's name to every address, re-resolves it
periodically, spreads calls over new addresses and drains removed ones, with no failed
call.

Name resolution is changed by rewriting /etc/hosts, so the whole test runs inside a
network namespace it creates (`ip netns exec` bind-mounts /etc/netns/NAME/hosts over
/etc/hosts for the processes it runs): only loopback addresses of that namespace
(127.0.0.1, 127.0.0.2) carry traffic, and the machine's own /etc/hosts is untouched."""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

INSIDE = os.environ.get("MV_NETNS_INSIDE") == "1"
NAME = "metadata-peers"
BASE_HOSTS = "127.0.0.1 localhost\n::1 localhost\n"


def run_inside_netns():
    ns = "movietest%d" % os.getpid()
    etc = "/etc/netns/" + ns
    try:
        subprocess.run(["ip", "netns", "add", ns], check=True, timeout=30)
        os.makedirs(etc, exist_ok=True)
        with open(etc + "/hosts", "w") as f:
            f.write(BASE_HOSTS)
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True,
                       timeout=30)
        env = dict(os.environ, MV_NETNS_INSIDE="1")
        return subprocess.run(["ip", "netns", "exec", ns, sys.executable, os.path.abspath(__file__)]
                              + sys.argv[1:], env=env, timeout=600).returncode
    finally:
        subprocess.run(["ip", "netns", "del", ns], timeout=30)
        shutil.rmtree(etc, ignore_errors=True)


if INSIDE:
    import grpc

    import harness
    from harness import Service

    S = harness.stubs()
    pb = S.movie_pb2

    def set_hosts(*addresses):
        # Rewrite in place: /etc/hosts is a bind mount of this namespace's file.
        with open("/etc/hosts", "w") as f:
            f.write(BASE_HOSTS + "".join("%s %s\n" % (a, NAME) for a in addresses))

    def served(svc):
        key = ('grpc_server_handled_total{grpc_type="unary",grpc_service="MetadataService",'
               'grpc_method="GetMetadata",grpc_code="OK"}')
        return harness.scrape(svc).get(key, 0)

    class PeerResolutionTest(unittest.TestCase):
        def test_addresses_follow_the_name(self):
            shared = tempfile.mkdtemp(prefix="movie-dns-")
            cfg = ("storage:\n  driver: sqlite\n  sqlite:\n    path: %s/metadata.db\n"
                   "shutdown:\n  drain_delay: 300ms\n  grace_period: 5s\nlog:\n  requests: false\n"
                   % shared)
            port = harness.free_port()
            set_hosts("127.0.0.1")
            a = Service("metadata", cfg, port=port, host="127.0.0.1")
            b = Service("metadata", cfg, port=port, host="127.0.0.2")
            rating = Service("rating", "storage:\n  driver: memory\n")
            movie = Service("movie", "peers:\n  metadata:\n    addresses: [\"%s:%d\"]\n"
                            "  rating:\n    addresses: [\"127.0.0.1:%d\"]\n"
                            "  resolve_interval: 200ms\n  timeout: 2s\n" % (NAME, port, rating.port))
            with a, b, rating, movie:
                for s in (a, b, rating, movie):
                    s.start()
                ch = grpc.insecure_channel(a.target)
                S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
                    metadata=pb.Metadata(id="m", title="Heat")), timeout=5)
                ch.close()
                mch = grpc.insecure_channel(movie.target)
                stub = S.movie_pb2_grpc.MovieServiceStub(mch)

                def calls(n):
                    for _ in range(n):
                        d = stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id="m"),
                                                 timeout=5).movie_details
                        self.assertEqual(d.metadata.title, "Heat")

                calls(200)
                a0, b0 = served(a), served(b)
                self.assertGreaterEqual(a0, 200)
                self.assertEqual(b0, 0)

                # Scale-up: the name now has two addresses.
                set_hosts("127.0.0.1", "127.0.0.2")
                time.sleep(1.0)
                calls(400)
                a1, b1 = served(a) - a0, served(b) - b0
                print("after scale-up: A %d, B %d" % (a1, b1), file=sys.stderr)
                self.assertGreater(b1, 100, (a1, b1))
                self.assertGreater(a1, 100, (a1, b1))

                # Scale-down: A leaves the name, then stops; no call may fail.
                set_hosts("127.0.0.2")
                time.sleep(1.0)
                self.assertEqual(a.stop(), 0)
                b2_before = served(b)
                calls(200)
                self.assertGreaterEqual(served(b) - b2_before, 200)
                mch.close()
                for s in (movie, rating, b):
                    self.assertEqual(s.stop(), 0)


if __name__ == "__main__":
    if not INSIDE:
        if os.geteuid() != 0 or not shutil.which("ip"):
            sys.exit("test_peer_resolution needs root and iproute2 (ip netns) to create its "
                     "network namespace")
        sys.exit(run_inside_netns())
    unittest.main(verbosity=2)
