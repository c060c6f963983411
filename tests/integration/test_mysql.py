"""Both stores' services on a real MariaDB server: end-to-end get/put, a dead
database (UNAVAILABLE, not ready, automatic recovery) and a hung database
(liveness keeps answering fast because no database call runs on an event loop).

Starts its own MariaDB with scripts/test-mariadb.sh (it stops and freezes it)."""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2
SCRIPT = os.path.join(harness.SOURCE_DIR, "scripts", "test-mariadb.sh")


class MariaDB:
    def __init__(self):
        self.datadir = tempfile.mkdtemp(prefix="movie-mariadb-")
        self.port = harness.free_port()

    def start(self):
        subprocess.run([SCRIPT, "start", self.datadir, str(self.port)], check=True, timeout=60)

    def sql(self, statement):
        subprocess.run(["mariadb", "--no-defaults", "-h127.0.0.1", "-P%d" % self.port, "-umovie",
                        "-pmovie", "-e", statement], check=True, timeout=30)

    def stop(self):
        subprocess.run([SCRIPT, "stop", self.datadir], check=True, timeout=60)

    def pid(self):
        with open(os.path.join(self.datadir, "pid")) as f:
            return int(f.read().strip())

    def cleanup(self):
        subprocess.run([SCRIPT, "stop", self.datadir], timeout=60)
        shutil.rmtree(self.datadir, ignore_errors=True)


def mysql_config(db, database):
    return ("storage:\n  driver: mysql\n  mysql:\n    host: 127.0.0.1\n    port: %d\n"
            "    user: movie\n    database: %s\n    pool_size: 2\n    connect_timeout: 1s\n"
            "    query_timeout: 2s\nshutdown:\n  drain_delay: 0s\n  grace_period: 5s\n"
            % (db.port, database))


def wait_for(predicate, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return False


class MariaDBServicesTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.db = MariaDB()
        cls.db.start()
        # The database exists (an operator's job); the services create and migrate tables.
        for name in ("movie_it_a", "movie_it_b", "movie_it_c"):
            cls.db.sql("CREATE DATABASE IF NOT EXISTS " + name)
        # The password comes from a file, as from a Kubernetes Secret.
        fd, cls.secret = tempfile.mkstemp()
        os.write(fd, b"movie\n")
        os.close(fd)

    @classmethod
    def tearDownClass(cls):
        cls.db.cleanup()

    def service(self, program, database):
        env = {program.upper() + "_STORAGE_MYSQL_PASSWORD_FILE": self.secret}
        return Service(program, mysql_config(self.db, database), env=env)

    def test_metadata_and_rating_on_mariadb(self):
        with self.service("metadata", "movie_it_a") as meta, \
                self.service("rating", "movie_it_a") as rating:
            meta.start()
            rating.start()
            ch1 = grpc.insecure_channel(meta.target)
            ch2 = grpc.insecure_channel(rating.target)
            ms = S.movie_pb2_grpc.MetadataServiceStub(ch1)
            rs = S.movie_pb2_grpc.RatingServiceStub(ch2)
            ms.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(
                id="m", title="Solaris", description="Ocean", director="Tarkovsky")), timeout=5)
            got = ms.GetMetadata(pb.GetMetadataRequest(movie_id="m"), timeout=5).metadata
            self.assertEqual((got.title, got.director), ("Solaris", "Tarkovsky"))
            for user, value in (("a", 5), ("b", 4), ("a", 3)):
                rs.PutRating(pb.PutRatingRequest(user_id=user, record_id="m", record_type="movie",
                                                 rating_value=value), timeout=5)
            mean = rs.GetAggregatedRating(pb.GetAggregatedRatingRequest(
                record_id="m", record_type="movie"), timeout=5).rating_value
            self.assertEqual(mean, 3.5)
            ch1.close()
            ch2.close()
            self.assertEqual(meta.stop(), 0)
            self.assertEqual(rating.stop(), 0)

    def test_database_down_then_back(self):
        with self.service("metadata", "movie_it_b") as meta:
            meta.start()
            ch = grpc.insecure_channel(meta.target)
            ms = S.movie_pb2_grpc.MetadataServiceStub(ch)
            ms.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(id="d", title="T")),
                           timeout=5)
            self.db.stop()
            try:
                with self.assertRaises(grpc.RpcError) as ctx:
                    ms.GetMetadata(pb.GetMetadataRequest(movie_id="d"), timeout=10)
                self.assertEqual(ctx.exception.code(), grpc.StatusCode.UNAVAILABLE)
                self.assertTrue(wait_for(lambda: meta.http("GET", "/readyz")[0] == 503, 5))
                health = S.health_pb2_grpc.HealthStub(ch)
                self.assertEqual(health.Check(S.health_pb2.HealthCheckRequest(service=""),
                                              timeout=5).status,
                                 S.health_pb2.HealthCheckResponse.NOT_SERVING)
                # Liveness never depends on the database.
                self.assertEqual(health.Check(S.health_pb2.HealthCheckRequest(service="liveness"),
                                              timeout=5).status,
                                 S.health_pb2.HealthCheckResponse.SERVING)
                self.assertEqual(meta.http("GET", "/healthz")[0], 200)
            finally:
                self.db.start()
            # Reconnects by itself: ready again and the data is there.
            self.assertTrue(wait_for(lambda: meta.http("GET", "/readyz")[0] == 200, 20),
                            meta.logs()[-2000:])
            got = ms.GetMetadata(pb.GetMetadataRequest(movie_id="d"), timeout=5).metadata
            self.assertEqual(got.title, "T")
            ch.close()
            self.assertEqual(meta.stop(), 0)

    def test_hung_database_does_not_delay_liveness(self):
        with self.service("rating", "movie_it_c") as rating:
            rating.start()
            ch = grpc.insecure_channel(rating.target)
            rs = S.movie_pb2_grpc.RatingServiceStub(ch)
            rs.PutRating(pb.PutRatingRequest(user_id="u", record_id="x", record_type="movie",
                                             rating_value=4), timeout=5)
            pid = self.db.pid()
            os.kill(pid, signal.SIGSTOP)
            try:
                # Requests that need the database pile up on worker threads...
                pending = [rs.GetAggregatedRating.future(pb.GetAggregatedRatingRequest(
                    record_id="x", record_type="movie"), timeout=10) for _ in range(8)]
                time.sleep(0.3)
                # ...while liveness answers at once, many times over.
                worst = 0.0
                for _ in range(20):
                    t0 = time.monotonic()
                    status, _ = rating.http("GET", "/healthz", timeout=2)
                    worst = max(worst, time.monotonic() - t0)
                    self.assertEqual(status, 200)
                self.assertLess(worst, 0.1, "healthz took %.3f s" % worst)
                health = S.health_pb2_grpc.HealthStub(ch)
                t0 = time.monotonic()
                health.Check(S.health_pb2.HealthCheckRequest(service="liveness"), timeout=2)
                self.assertLess(time.monotonic() - t0, 0.1)
            finally:
                os.kill(pid, signal.SIGCONT)
            for f in pending:
                try:
                    f.result()
                except grpc.RpcError as e:
                    # A hung database fails calls after query_timeout, as UNAVAILABLE.
                    self.assertIn(e.code(), (grpc.StatusCode.UNAVAILABLE,
                                             grpc.StatusCode.DEADLINE_EXCEEDED))
            self.assertTrue(wait_for(lambda: rating.http("GET", "/readyz")[0] == 200, 20))
            ch.close()
            self.assertEqual(rating.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
