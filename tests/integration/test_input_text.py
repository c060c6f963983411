"""Strings from clients are checked before they reach a store (issue 12, items 10
and 11): an id with a NUL byte or a control character, and any string field that
is not valid UTF-8, is refused with INVALID_ARGUMENT / 400 by all three services,
over gRPC and HTTP alike, and never truncated into another record's key.

Invalid UTF-8 cannot be built with the Python protobuf classes (they refuse it),
so those requests are encoded by hand and sent through a raw-bytes method of a
real grpcio channel."""
import json
import unittest
import urllib.parse

import grpc

import harness
from harness import Service

S = harness.stubs()
pb = S.movie_pb2

MEMORY = "storage:\n  driver: memory\nshutdown:\n  drain_delay: 0s\n"


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(number, payload):
    """A length-delimited protobuf field (wire type 2)."""
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def metadata_bytes(id_=b"m", title=b"t", description=b"d", director=b"x"):
    return field(1, id_) + field(2, title) + field(3, description) + field(4, director)


def raw_call(channel, path, request_bytes):
    fn = channel.unary_unary(path, request_serializer=lambda b: b,
                             response_deserializer=lambda b: b)
    return fn(request_bytes, timeout=5)


class Base(unittest.TestCase):
    def assertStatus(self, code, fn, *args, **kwargs):
        with self.assertRaises(grpc.RpcError) as ctx:
            fn(*args, **kwargs)
        self.assertEqual(ctx.exception.code(), code, ctx.exception.details())
        return ctx.exception


class MetadataTextTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("metadata", MEMORY)
        cls.svc.start()
        cls.channel = grpc.insecure_channel(cls.svc.target)
        cls.stub = S.movie_pb2_grpc.MetadataServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.svc.stop()
        cls.svc.__exit__()

    def put(self, **fields):
        return self.stub.PutMetadata(pb.PutMetadataRequest(metadata=pb.Metadata(**fields)),
                                     timeout=5)

    def get(self, movie_id):
        return self.stub.GetMetadata(pb.GetMetadataRequest(movie_id=movie_id), timeout=5)

    def test_nul_in_id_does_not_overwrite_another_record(self):
        self.put(id="victim", title="Victim")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, id="victim\0attacker",
                          title="Attacker")
        self.assertEqual(self.get("victim").metadata.title, "Victim")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.get, "victim\0attacker")

    def test_control_character_in_id(self):
        for bad in ("a\nb", "a\x01", "\x7f", "a\u0085b"):
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, id=bad, title="x")
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.get, bad)

    def test_nul_in_free_text_is_refused_not_truncated(self):
        err = self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, id="nul-title",
                                title="Before\0After")
        self.assertIn("title", err.details())
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.get, "nul-title")

    def test_free_text_keeps_newlines_and_unicode(self):
        self.put(id="text-ok", title="Line 1\nLine 2\tTab", description="Amélie 🎬")
        got = self.get("text-ok").metadata
        self.assertEqual(got.title, "Line 1\nLine 2\tTab")
        self.assertEqual(got.description, "Amélie 🎬")

    def test_invalid_utf8_title_refused_and_get_still_works(self):
        for bad in (b"\xff", b"caf\xc3", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"):
            req = field(1, metadata_bytes(id_=b"bad-utf8", title=b"T" + bad))
            err = self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, raw_call, self.channel,
                                    "/MetadataService/PutMetadata", req)
            self.assertIn("UTF-8", err.details())
        # Nothing was stored, so grpcio can still read the id back (NOT_FOUND, not INTERNAL).
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.get, "bad-utf8")

    def test_invalid_utf8_id_in_get(self):
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, raw_call, self.channel,
                          "/MetadataService/GetMetadata", field(1, b"m\xff"))

    def test_http_put_nul_and_bad_utf8(self):
        status, _ = self.svc.http("PUT", "/metadata",
                                  body=json.dumps({"id": "victim2", "title": "V"}))
        self.assertEqual(status, 200)
        status, _ = self.svc.http("PUT", "/metadata",
                                  body=json.dumps({"id": "victim2\u0000x", "title": "A"}))
        self.assertEqual(status, 400)
        status, _ = self.svc.http("PUT", "/metadata",
                                  body=json.dumps({"id": "victim2\u0001", "title": "A"}))
        self.assertEqual(status, 400)
        status, _ = self.svc.http("PUT", "/metadata",
                                  body=b'{"id":"u8","title":"caf\xc3"}')
        self.assertEqual(status, 400)
        self.assertEqual(self.get("victim2").metadata.title, "V")

    def test_http_get_nul_and_bad_utf8_in_query(self):
        self.put(id="q", title="Q")
        for raw in ("q%00x", "q%FF", "q%0A"):
            status, body = self.svc.http("GET", "/metadata?id=" + raw)
            self.assertEqual(status, 400, (raw, body))
        status, _ = self.svc.http("GET", "/metadata?id=q")
        self.assertEqual(status, 200)


class RatingTextTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.svc = Service("rating", MEMORY)
        cls.svc.start()
        cls.channel = grpc.insecure_channel(cls.svc.target)
        cls.stub = S.movie_pb2_grpc.RatingServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.svc.stop()
        cls.svc.__exit__()

    def put(self, user, record, value, record_type="movie"):
        return self.stub.PutRating(pb.PutRatingRequest(
            user_id=user, record_id=record, record_type=record_type, rating_value=value),
            timeout=5)

    def mean(self, record, record_type="movie"):
        return self.stub.GetAggregatedRating(pb.GetAggregatedRatingRequest(
            record_id=record, record_type=record_type), timeout=5).rating_value

    def test_nul_in_user_id_does_not_replace_alices_rating(self):
        self.put("alice", "r1", 5)
        self.put("bob", "r1", 3)
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, "alice\0x", "r1", 1)
        self.assertEqual(self.mean("r1"), 4.0)

    def test_nul_and_controls_in_every_id(self):
        for bad in ("r\0x", "r\n", "\x1b[31m"):
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, "u", bad, 3)
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.put, "u", "r", 3, bad)
            self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.mean, bad)

    def test_invalid_utf8(self):
        req = field(1, b"u\xff") + field(2, b"r2") + field(3, b"movie") + b"\x20\x03"
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, raw_call, self.channel,
                          "/RatingService/PutRating", req)
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, raw_call, self.channel,
                          "/RatingService/GetAggregatedRating",
                          field(1, b"r2") + field(2, b"mov\xe9"))

    def test_http_query(self):
        status, _ = self.svc.http("PUT", "/rating?id=h1&type=movie&userId=alice&value=5")
        self.assertEqual(status, 204)
        for user in ("alice%00x", "alice%FF", "alice%0D"):
            status, body = self.svc.http(
                "PUT", "/rating?id=h1&type=movie&userId=%s&value=1" % user)
            self.assertEqual(status, 400, (user, body))
        status, body = self.svc.http("GET", "/rating?id=h1%00&type=movie")
        self.assertEqual(status, 400, body)
        status, body = self.svc.http("GET", "/rating?id=h1&type=movie")
        self.assertEqual((status, body), (200, b"5\n"))


class MovieTextTest(Base):
    @classmethod
    def setUpClass(cls):
        cls.meta = Service("metadata", MEMORY)
        cls.rating = Service("rating", MEMORY)
        cls.meta.start()
        cls.rating.start()
        cfg = ("peers:\n  metadata:\n    addresses: [\"127.0.0.1:%d\"]\n  rating:\n"
               "    addresses: [\"127.0.0.1:%d\"]\n  timeout: 2s\n" % (cls.meta.port,
                                                                    cls.rating.port))
        cls.movie = Service("movie", cfg + "shutdown:\n  drain_delay: 0s\n")
        cls.movie.start()
        cls.channel = grpc.insecure_channel(cls.movie.target)
        cls.stub = S.movie_pb2_grpc.MovieServiceStub(cls.channel)
        ch = grpc.insecure_channel(cls.meta.target)
        S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
            metadata=pb.Metadata(id="m", title="M")), timeout=5)
        # The attack of item 11: an invalid title must not get stored ...
        try:
            raw_call(ch, "/MetadataService/PutMetadata",
                     field(1, metadata_bytes(id_=b"m-bad", title=b"\xfe\xfe")))
        except grpc.RpcError:
            pass
        ch.close()

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        for s in (cls.movie, cls.meta, cls.rating):
            s.stop()
            s.__exit__()

    def details(self, movie_id):
        return self.stub.GetMovieDetails(pb.GetMovieDetailsRequest(movie_id=movie_id), timeout=5)

    def test_details_after_invalid_put_attempt(self):
        # ... so that grpcio can still decode GetMovieDetails (was INTERNAL
        # "Exception deserializing response").
        self.assertStatus(grpc.StatusCode.NOT_FOUND, self.details, "m-bad")
        self.assertEqual(self.details("m").movie_details.metadata.title, "M")

    def test_bad_ids(self):
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.details, "m\0x")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, self.details, "m\t")
        self.assertStatus(grpc.StatusCode.INVALID_ARGUMENT, raw_call, self.channel,
                          "/MovieService/GetMovieDetails", field(1, b"m\x80"))

    def test_http_query(self):
        for raw in ("m%00x", "m%C3", "%7F"):
            status, body = self.movie.http("GET", "/movie?id=" + raw)
            self.assertEqual(status, 400, (raw, body))
        status, _ = self.movie.http("GET", "/movie?id=" + urllib.parse.quote("m"))
        self.assertEqual(status, 200)


class LegacyInvalidRecordTest(Base):
    """A record written before these rules (here: straight into the SQLite file)
    with invalid UTF-8 in its title is still readable by grpcio: the bytes go
    out as U+FFFD, as the JSON answer already did."""

    def test_stored_invalid_utf8_is_answered_repaired(self):
        import sqlite3
        import tempfile
        workdir = tempfile.mkdtemp(prefix="movie-legacy-")
        db = "%s/metadata.db" % workdir
        cfg = "storage:\n  driver: sqlite\n  sqlite:\n    path: %s\n" % db
        with Service("metadata", cfg + "shutdown:\n  drain_delay: 0s\n") as svc:
            svc.start()  # creates the schema
            self.assertEqual(svc.stop(), 0)
            conn = sqlite3.connect(db)
            conn.execute("INSERT INTO metadata (id, title, description, director) "
                         "VALUES (?, CAST(? AS TEXT), ?, ?)",
                         ("legacy", b"Bad \xfe title", "d", "x"))
            conn.commit()
            conn.close()
            svc.start()
            channel = grpc.insecure_channel(svc.target)
            try:
                got = S.movie_pb2_grpc.MetadataServiceStub(channel).GetMetadata(
                    pb.GetMetadataRequest(movie_id="legacy"), timeout=5).metadata
            finally:
                channel.close()
            self.assertEqual(got.title, "Bad \ufffd title")
            self.assertEqual(got.description, "d")
            status, body = svc.http("GET", "/metadata?id=legacy")
            self.assertEqual(status, 200)
            self.assertEqual(json.loads(body)["title"], "Bad \ufffd title")
            self.assertTrue(svc.wait_log_line(
                lambda l: l.get("msg", "").startswith("stored metadata is not valid UTF-8")))
            svc.stop()


if __name__ == "__main__":
    unittest.main()
