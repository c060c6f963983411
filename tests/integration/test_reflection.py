"""gRPC server reflection (grpc.reflection.v1 and v1alpha) on every service, driven
by python3-grpcio with stubs generated from Debian's reflection.proto (grpc-proto),
and by a generic client that knows nothing of the API: it builds its message
classes only from the descriptors reflection returns, then calls the services."""
import os
import queue
import sys
import tempfile
import time
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import harness
from harness import Service

GRPC_PROTO = "/usr/share/grpc-proto"
S = harness.stubs()
pb = S.movie_pb2

OWN_SERVICE = {name: grpc for name, (grpc, _) in harness.SERVICES.items()}
COMMON = {"grpc.health.v1.Health", "grpc.reflection.v1.ServerReflection",
          "grpc.reflection.v1alpha.ServerReflection"}
QUIET = "log:\n  requests: false\nshutdown:\n  drain_delay: 0s\n  grace_period: 5s\n"


def reflection_stubs():
    """grpc.reflection.v1 / v1alpha modules generated from Debian's protos. They
    live in the `grpc` package namespace, as their imports expect, by extending
    grpc.__path__ with the output directory."""
    out = tempfile.mkdtemp(prefix="movie-reflection-stubs-")
    from grpc_tools import protoc
    for version in ("v1", "v1alpha"):
        proto = "grpc/reflection/%s/reflection.proto" % version
        rc = protoc.main(["protoc", "-I" + GRPC_PROTO, "--python_out=" + out,
                          "--grpc_python_out=" + out, os.path.join(GRPC_PROTO, proto)])
        if rc != 0:
            raise RuntimeError("protoc failed for " + proto)
    grpc.__path__.append(os.path.join(out, "grpc"))
    from grpc.reflection.v1 import reflection_pb2 as v1, reflection_pb2_grpc as v1_grpc
    from grpc.reflection.v1alpha import reflection_pb2 as v1a, reflection_pb2_grpc as v1a_grpc
    return {"v1": (v1, v1_grpc), "v1alpha": (v1a, v1a_grpc)}


R = reflection_stubs()


class Stream:
    """One ServerReflectionInfo stream that stays open: each request is sent only
    after the previous answer came back, as grpcurl and grpcio's reflection
    client do. close() half-closes and returns the call's final status."""

    def __init__(self, channel, version="v1"):
        self.pb, grpc_mod = R[version]
        stub = grpc_mod.ServerReflectionStub(channel)
        self.requests = queue.Queue()
        self.call = stub.ServerReflectionInfo(iter(self.requests.get, None), timeout=20)

    def ask(self, **kw):
        self.requests.put(self.pb.ServerReflectionRequest(host="localhost", **kw))
        return next(self.call)

    def close(self):
        self.requests.put(None)
        for extra in self.call:
            raise AssertionError("unexpected response %s" % extra)
        return self.call.code()


def files_of(resp):
    out = {}
    for raw in resp.file_descriptor_response.file_descriptor_proto:
        fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
        out[fd.name] = fd
    return out


class ReflectionTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.services = {}
        meta = Service("metadata", "storage:\n  driver: memory\n" + QUIET)
        rating = Service("rating", "storage:\n  driver: memory\n" + QUIET)
        for s in (meta, rating):
            s.start()
        movie = Service("movie", "peers:\n  metadata:\n    addresses: [\"%s\"]\n"
                                 "  rating:\n    addresses: [\"%s\"]\n" % (meta.target,
                                                                          rating.target) + QUIET)
        movie.start()
        cls.services = {"metadata": meta, "rating": rating, "movie": movie}
        ch = grpc.insecure_channel(meta.target)
        S.movie_pb2_grpc.MetadataServiceStub(ch).PutMetadata(pb.PutMetadataRequest(
            metadata=pb.Metadata(id="m1", title="The Title", description="desc",
                                 director="Dir")), timeout=5)
        ch.close()
        ch = grpc.insecure_channel(rating.target)
        for user, value in (("u1", 4), ("u2", 5)):
            S.movie_pb2_grpc.RatingServiceStub(ch).PutRating(pb.PutRatingRequest(
                user_id=user, record_id="m1", record_type="movie", rating_value=value),
                timeout=5)
        ch.close()

    @classmethod
    def tearDownClass(cls):
        for s in cls.services.values():
            s.stop()
            s.__exit__(None, None, None)

    def channel(self, program):
        ch = grpc.insecure_channel(self.services[program].target)
        self.addCleanup(ch.close)
        return ch

    def test_list_services_on_every_service_both_versions(self):
        for program, own in OWN_SERVICE.items():
            for version in ("v1", "v1alpha"):
                with self.subTest(program=program, version=version):
                    stream = Stream(self.channel(program), version)
                    resp = stream.ask(list_services="")
                    names = {s.name for s in resp.list_services_response.service}
                    self.assertEqual(names, COMMON | {own})
                    self.assertEqual(resp.valid_host, "localhost")
                    self.assertEqual(resp.original_request.list_services, "")
                    self.assertEqual(stream.close(), grpc.StatusCode.OK)

    def test_several_requests_on_one_open_stream(self):
        stream = Stream(self.channel("movie"))
        # The API file by name.
        files = files_of(stream.ask(file_by_filename="movie.proto"))
        self.assertIn("movie.proto", files)
        services = {s.name: [m.name for m in s.method] for s in files["movie.proto"].service}
        self.assertEqual(services["MovieService"], ["GetMovieDetails"])
        self.assertEqual(services["MetadataService"], ["GetMetadata", "PutMetadata"])
        # Symbols of every kind: service, method, message, field, enum value.
        for symbol, want in (("MovieService", "movie.proto"),
                             ("MovieService.GetMovieDetails", "movie.proto"),
                             ("MovieDetails", "movie.proto"),
                             ("Metadata.director", "movie.proto"),
                             ("grpc.health.v1.Health", "health.proto"),
                             ("grpc.health.v1.HealthCheckResponse.SERVING", "health.proto"),
                             ("grpc.reflection.v1.ServerReflection",
                              "grpc/reflection/v1/reflection.proto"),
                             ("grpc.reflection.v1alpha.ServerReflectionRequest",
                              "grpc/reflection/v1alpha/reflection.proto")):
            resp = stream.ask(file_containing_symbol=symbol)
            self.assertEqual(resp.WhichOneof("message_response"), "file_descriptor_response",
                             symbol)
            names = list(files_of(resp))
            self.assertEqual(names[0], want, symbol)
        # Unknown names are answered on the stream, which stays usable.
        resp = stream.ask(file_containing_symbol="NoSuchService")
        self.assertEqual(resp.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        self.assertIn("NoSuchService", resp.error_response.error_message)
        resp = stream.ask(file_by_filename="nope.proto")
        self.assertEqual(resp.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        ext = R["v1"][0].ExtensionRequest(containing_type="Metadata", extension_number=100)
        resp = stream.ask(file_containing_extension=ext)
        self.assertEqual(resp.error_response.error_code, grpc.StatusCode.NOT_FOUND.value[0])
        resp = stream.ask(all_extension_numbers_of_type="Metadata")
        self.assertEqual(resp.all_extension_numbers_response.base_type_name, "Metadata")
        self.assertEqual(list(resp.all_extension_numbers_response.extension_number), [])
        self.assertEqual(stream.ask(list_services="").WhichOneof("message_response"),
                         "list_services_response")
        self.assertEqual(stream.close(), grpc.StatusCode.OK)

    def test_requests_sent_at_once_then_half_close(self):
        pb1, grpc_mod = R["v1"]
        stub = grpc_mod.ServerReflectionStub(self.channel("metadata"))
        reqs = [pb1.ServerReflectionRequest(list_services=""),
                pb1.ServerReflectionRequest(file_containing_symbol="MetadataService"),
                pb1.ServerReflectionRequest(file_by_filename="health.proto")]
        call = stub.ServerReflectionInfo(iter(reqs), timeout=20)
        answers = list(call)
        self.assertEqual(call.code(), grpc.StatusCode.OK)
        self.assertEqual([a.WhichOneof("message_response") for a in answers],
                         ["list_services_response", "file_descriptor_response",
                          "file_descriptor_response"])
        self.assertEqual([a.original_request for a in answers], reqs)

    def test_malformed_request_is_invalid_argument(self):
        call = self.channel("rating").stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=lambda b: b, response_deserializer=lambda b: b)
        with self.assertRaises(grpc.RpcError) as ctx:
            list(call(iter([b"\x3a\x05ab"]), timeout=10))  # field 7, length past the end
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)

    def generic_stub(self, program, service, method):
        """Message classes for service.method built only from reflection answers."""
        stream = Stream(self.channel(program))
        pool = descriptor_pool.DescriptorPool()
        added = set()
        for raw in stream.ask(file_containing_symbol=service) \
                .file_descriptor_response.file_descriptor_proto:
            fd = descriptor_pb2.FileDescriptorProto.FromString(raw)
            if fd.name not in added:
                pool.Add(fd)
                added.add(fd.name)
        self.assertEqual(stream.close(), grpc.StatusCode.OK)
        m = pool.FindServiceByName(service).FindMethodByName(method)
        if hasattr(message_factory, "GetMessageClass"):
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
        else:
            factory = message_factory.MessageFactory(pool)
            req_cls = factory.GetPrototype(m.input_type)
            resp_cls = factory.GetPrototype(m.output_type)
        call = self.channel(program).unary_unary(
            "/%s/%s" % (service, method), request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=resp_cls.FromString)
        return req_cls, call

    def test_generic_client_from_reflection_only(self):
        req_cls, call = self.generic_stub("movie", "MovieService", "GetMovieDetails")
        self.assertNotEqual(req_cls, pb.GetMovieDetailsRequest)
        resp = call(req_cls(movie_id="m1"), timeout=10)
        self.assertAlmostEqual(resp.movie_details.rating, 4.5)
        self.assertEqual(resp.movie_details.metadata.title, "The Title")
        self.assertEqual(resp.movie_details.metadata.director, "Dir")

        req_cls, call = self.generic_stub("metadata", "MetadataService", "GetMetadata")
        resp = call(req_cls(movie_id="m1"), timeout=10)
        self.assertEqual(resp.metadata.description, "desc")
        with self.assertRaises(grpc.RpcError) as ctx:
            call(req_cls(movie_id="absent"), timeout=10)
        self.assertEqual(ctx.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_cancelled_stream_is_released(self):
        svc = self.services["rating"]
        # The scrape itself is an HTTP request in flight: compare with a baseline.
        idle = harness.scrape(svc)["server_requests_in_flight"]
        stream = Stream(self.channel("rating"))
        stream.ask(list_services="")
        self.assertEqual(harness.scrape(svc)["server_requests_in_flight"], idle + 1)
        stream.call.cancel()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if harness.scrape(svc)["server_requests_in_flight"] == idle:
                break
            time.sleep(0.05)
        self.assertEqual(harness.scrape(svc)["server_requests_in_flight"], idle)
        key = ('grpc_server_handled_total{grpc_type="bidi_stream",'
               'grpc_service="grpc.reflection.v1.ServerReflection",'
               'grpc_method="ServerReflectionInfo",grpc_code="Canceled"}')
        self.assertEqual(harness.scrape(svc).get(key), 1)

    def test_reflection_calls_are_counted_as_bidi(self):
        stream = Stream(self.channel("metadata"))
        stream.ask(list_services="")
        self.assertEqual(stream.close(), grpc.StatusCode.OK)
        samples = harness.scrape(self.services["metadata"])
        key = ('grpc_server_handled_total{grpc_type="bidi_stream",'
               'grpc_service="grpc.reflection.v1.ServerReflection",'
               'grpc_method="ServerReflectionInfo",grpc_code="OK"}')
        self.assertGreaterEqual(samples.get(key, 0), 1, sorted(samples)[:5])


if __name__ == "__main__":
    unittest.main(verbosity=2)
