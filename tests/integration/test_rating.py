"""The rating service, real binary, python3-grpcio and HTTP clients."""
import os
import tempfile
import unittest

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2


class RatingTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("rating", "storage:\n  driver: sqlite\nshutdown:\n  drain_delay: 0s\n")
        cls.svc.start()
        cls.channel = grpc.insecure_channel(cls.svc.target)
        cls.stub = S.movie_pb2_grpc.RatingServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        rc = cls.svc.stop()
        cls.svc.__exit__()
        assert rc == 0, rc

    def put(self, user, record, value, rtype="movie"):
        return self.stub.PutRating(pb.PutRatingRequest(user_id=user, record_id=record,
                                                       record_type=rtype, rating_value=value),
                                   timeout=5)

    def get(self, record, rtype="movie"):
        return self.stub.GetAggregatedRating(
            pb.GetAggregatedRatingRequest(record_id=record, record_type=rtype), timeout=5).rating_value

    def code_of(self, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as ctx:
            fn(*args, **kwargs)
        return ctx.exception.code()

    def test_mean_of_users(self):
        self.put("u1", "r1", 5)
        self.put("u2", "r1", 2)
        self.put("u3", "r1", 4)
        self.assertAlmostEqual(self.get("r1"), 11 / 3, places=12)

    def test_same_user_replaces(self):
        self.put("u1", "r2", 1)
        self.put("u1", "r2", 5)
        self.assertEqual(self.get("r2"), 5.0)
        self.put("u2", "r2", 2)
        self.assertEqual(self.get("r2"), 3.5)

    def test_record_types_are_separate(self):
        self.put("u1", "r3", 5, rtype="movie")
        self.put("u1", "r3", 1, rtype="series")
        self.assertEqual(self.get("r3", "movie"), 5.0)
        self.assertEqual(self.get("r3", "series"), 1.0)

    def test_not_found(self):
        self.assertEqual(self.code_of(self.get, "never-rated"), grpc.StatusCode.NOT_FOUND)

    def test_invalid(self):
        for value in (0, 6, -1, 2 ** 31 - 1):
            self.assertEqual(self.code_of(self.put, "u", "r4", value),
                             grpc.StatusCode.INVALID_ARGUMENT, value)
        self.assertEqual(self.code_of(self.put, "", "r4", 3), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.code_of(self.put, "u", "", 3), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.code_of(self.put, "u", "r4", 3, rtype=""),
                         grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.code_of(self.get, ""), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.code_of(self.get, "r4", ""), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertEqual(self.code_of(self.get, "r4"), grpc.StatusCode.NOT_FOUND)

    def test_http(self):
        st, _ = self.svc.http("PUT", "/rating?id=h1&type=movie&userId=a&value=4")
        self.assertIn(st, (200, 204))
        st, _ = self.svc.http("PUT", "/rating?id=h1&type=movie&userId=b&value=3")
        self.assertIn(st, (200, 204))
        st, body = self.svc.http("GET", "/rating?id=h1&type=movie")
        self.assertEqual(st, 200)
        self.assertEqual(float(body), 3.5)
        self.assertEqual(self.svc.http("GET", "/rating?id=none&type=movie")[0], 404)
        self.assertEqual(self.svc.http("GET", "/rating?id=h1")[0], 400)
        self.assertEqual(self.svc.http("PUT", "/rating?id=h1&type=movie&userId=a&value=9")[0], 400)
        self.assertEqual(self.svc.http("PUT", "/rating?id=h1&type=movie&userId=a&value=x")[0], 400)
        self.assertEqual(self.svc.http("PUT", "/rating?id=h1&type=movie&value=3")[0], 400)
        # The rejected puts changed nothing.
        self.assertEqual(float(self.svc.http("GET", "/rating?id=h1&type=movie")[1]), 3.5)

    def test_concurrent_puts_all_counted(self):
        futures = [self.stub.PutRating.future(pb.PutRatingRequest(
            user_id="c%d" % i, record_id="conc", record_type="movie", rating_value=1 + i % 5),
            timeout=20) for i in range(500)]
        for f in futures:
            f.result()
        self.assertAlmostEqual(self.get("conc"), sum(1 + i % 5 for i in range(500)) / 500, places=12)


class RatingConfigTest(unittest.TestCase):
    def test_range_config(self):
        with Service("rating", "storage:\n  driver: memory\nrating:\n  min_value: 0\n"
                     "  max_value: 10\nshutdown:\n  drain_delay: 0s\n") as svc:
            svc.start()
            self.assertIn(svc.http("PUT", "/rating?id=x&type=movie&userId=a&value=10")[0], (200, 204))
            self.assertIn(svc.http("PUT", "/rating?id=x&type=movie&userId=b&value=0")[0], (200, 204))
            self.assertEqual(svc.http("PUT", "/rating?id=x&type=movie&userId=c&value=11")[0], 400)
            self.assertEqual(float(svc.http("GET", "/rating?id=x&type=movie")[1]), 5.0)
            self.assertEqual(svc.stop(), 0)

    def test_repo_configs_are_valid(self):
        base = os.path.join(harness.SOURCE_DIR, "configs", "rating")
        fd, secret = tempfile.mkstemp()
        os.write(fd, b"pw\n")
        os.close(fd)
        for env in ("dev", "staging", "production"):
            rc, err = harness.run_check_config(
                "rating", [os.path.join(base, "base.yaml"), os.path.join(base, env + ".yaml")],
                env={"RATING_STORAGE_MYSQL_PASSWORD_FILE": secret})
            self.assertEqual(rc, 0, err)

    def test_min_greater_than_max(self):
        with Service("rating", "rating:\n  min_value: 5\n  max_value: 1\n") as svc:
            svc.start(wait_ready=False)
            self.assertEqual(svc.proc.wait(10), 1)
            self.assertIn("min_value", svc.logs())


if __name__ == "__main__":
    unittest.main(verbosity=2)
