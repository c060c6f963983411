/*
 * test_grpc_reflection.c - the reflection index over the build-time
 * descriptor set (api/ protos, health, reflection v1 and v1alpha) and sets
 * made broken on purpose; answers decoded with the generated reflection code.
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "grpc/reflection/v1/reflection.pb-c.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_reflection.h"
#include "../testing.h"
#include "movie/banned.h"

extern const unsigned char movie_api_descriptors[];
extern const size_t movie_api_descriptors_len;

typedef Grpc__Reflection__V1__ServerReflectionRequest Req;
typedef Grpc__Reflection__V1__ServerReflectionResponse Resp;

static struct grpc_reflection *api_index(void)
{
	struct grpc_reflection *r = NULL;
	CHECK_INT_EQ(grpc_reflection_new(movie_api_descriptors, movie_api_descriptors_len, &r), 0);
	return r;
}

/* Ask `req`, decode the answer (NULL when the call itself failed). */
static Resp *ask(const struct grpc_reflection *r, const Req *req)
{
	static const char *const services[] = {"MetadataService", "grpc.health.v1.Health"};
	uint8_t bytes[1024];
	size_t n = grpc__reflection__v1__server_reflection_request__pack(req, bytes);
	struct buf out;
	buf_init(&out, 0);
	int rc = grpc_reflection_answer(r, bytes, n, services, 2, &out);
	CHECK_INT_EQ(rc, 0);
	Resp *resp = rc ? NULL
	                : grpc__reflection__v1__server_reflection_response__unpack(
	                      NULL, out.len, (const uint8_t *)out.data);
	buf_release(&out);
	CHECK(resp != NULL);
	return resp;
}

/* The `name` (field 1) of each FileDescriptorProto in the answer, joined by ' '. */
static void file_names(const Resp *resp, char *out, size_t size)
{
	out[0] = '\0';
	if (resp->message_response_case !=
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE)
		return;
	const Grpc__Reflection__V1__FileDescriptorResponse *f = resp->file_descriptor_response;
	for (size_t i = 0; i < f->n_file_descriptor_proto; i++) {
		const uint8_t *p = f->file_descriptor_proto[i].data;
		/* protoc writes the name first: tag 0x0a, a one-byte length here. */
		CHECK(f->file_descriptor_proto[i].len > 2 && p[0] == 0x0a && p[1] < 0x80);
		size_t used = strlen(out);
		snprintf(out + used, size - used, "%s%.*s", used ? " " : "", (int)p[1],
		         (const char *)p + 2);
	}
}

static void check_symbol(const struct grpc_reflection *r, const char *symbol, const char *files)
{
	Req req;
	grpc__reflection__v1__server_reflection_request__init(&req);
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = (char *)(uintptr_t)symbol;
	Resp *resp = ask(r, &req);
	if (!resp)
		return;
	char names[512];
	file_names(resp, names, sizeof(names));
	if (strcmp(names, files) != 0)
		fprintf(stderr, "symbol %s\n", symbol);
	CHECK_STR_EQ(names, files);
	CHECK_STR_EQ(resp->original_request->file_containing_symbol, symbol);
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void check_not_found(const struct grpc_reflection *r, const char *symbol)
{
	Req req;
	grpc__reflection__v1__server_reflection_request__init(&req);
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL;
	req.file_containing_symbol = (char *)(uintptr_t)symbol;
	Resp *resp = ask(r, &req);
	if (!resp)
		return;
	CHECK_INT_EQ(
	    resp->message_response_case,
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
	if (resp->error_response)
		CHECK_INT_EQ(resp->error_response->error_code, GRPC_STATUS_NOT_FOUND);
	grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
}

static void test_symbols(void)
{
	struct grpc_reflection *r = api_index();
	if (!r)
		return;
	CHECK_INT_EQ(grpc_reflection_file_count(r), 4);
	check_symbol(r, "MetadataService", "movie.proto");
	check_symbol(r, "MetadataService.GetMetadata", "movie.proto");
	check_symbol(r, "GetMovieDetailsResponse.movie_details", "movie.proto");
	check_symbol(r, "grpc.health.v1", "health.proto");
	check_symbol(r, "grpc.health.v1.HealthCheckResponse.ServingStatus", "health.proto");
	check_symbol(r, "grpc.health.v1.HealthCheckResponse.NOT_SERVING", "health.proto");
	check_symbol(r, "grpc.health.v1.Health.Watch", "health.proto");
	check_symbol(r, "grpc.reflection.v1.ServerReflection.ServerReflectionInfo",
	             "grpc/reflection/v1/reflection.proto");
	check_symbol(r, "grpc.reflection.v1alpha.ServerReflectionRequest.message_request",
	             "grpc/reflection/v1alpha/reflection.proto");
	check_not_found(r, "");
	check_not_found(r, "Metadata.nope");
	check_not_found(r, ".MetadataService");
	check_not_found(r, "grpc.health");
	grpc_reflection_free(r);
}

static void test_list_and_files(void)
{
	struct grpc_reflection *r = api_index();
	if (!r)
		return;
	Req req;
	grpc__reflection__v1__server_reflection_request__init(&req);
	req.host = (char *)(uintptr_t) "h";
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES;
	req.list_services = (char *)(uintptr_t) "*";
	Resp *resp = ask(r, &req);
	if (resp) {
		CHECK_STR_EQ(resp->valid_host, "h");
		CHECK(resp->list_services_response && resp->list_services_response->n_service == 2);
		if (resp->list_services_response && resp->list_services_response->n_service == 2) {
			CHECK_STR_EQ(resp->list_services_response->service[0]->name,
			             "MetadataService");
			CHECK_STR_EQ(resp->list_services_response->service[1]->name,
			             "grpc.health.v1.Health");
		}
		grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	}
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
	req.file_by_filename = (char *)(uintptr_t) "grpc/reflection/v1/reflection.proto";
	resp = ask(r, &req);
	if (resp) {
		char names[512];
		file_names(resp, names, sizeof(names));
		CHECK_STR_EQ(names, "grpc/reflection/v1/reflection.proto");
		grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	}
	req.file_by_filename = (char *)(uintptr_t) "reflection.proto";
	resp = ask(r, &req);
	if (resp) {
		CHECK_INT_EQ(
		    resp->message_response_case,
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE);
		grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	}
	/* No request in the oneof. */
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST__NOT_SET;
	resp = ask(r, &req);
	if (resp) {
		CHECK(resp->error_response &&
		      resp->error_response->error_code == GRPC_STATUS_INVALID_ARGUMENT);
		grpc__reflection__v1__server_reflection_response__free_unpacked(resp, NULL);
	}
	/* Bytes that are no message, and an answer over the buffer's limit. */
	struct buf out;
	buf_init(&out, 16);
	CHECK_INT_EQ(grpc_reflection_answer(r,
	                                    (const uint8_t *)"\x3a\x05"
	                                                     "ab",
	                                    4, NULL, 0, &out),
	             MV_EPROTO);
	uint8_t bytes[128];
	req.message_request_case =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME;
	req.file_by_filename = (char *)(uintptr_t) "movie.proto";
	size_t n = grpc__reflection__v1__server_reflection_request__pack(&req, bytes);
	CHECK_INT_EQ(grpc_reflection_answer(r, bytes, n, NULL, 0, &out), MV_ETOOBIG);
	buf_release(&out);
	grpc_reflection_free(r);
}

/* A FileDescriptorSet of hand-made files: name, package, dependency. */
static size_t make_file(uint8_t *out, const char *name, const char *pkg, const char *dep)
{
	size_t n = 0;
	const char *fields[3] = {name, pkg, dep};
	for (int f = 0; f < 3; f++) {
		if (!fields[f])
			continue;
		out[n++] = (uint8_t)(((f + 1) << 3) | 2);
		out[n++] = (uint8_t)strlen(fields[f]);
		memcpy(out + n, fields[f], strlen(fields[f]));
		n += strlen(fields[f]);
	}
	return n;
}

static size_t make_set(uint8_t *out, const char *dep_of_b)
{
	uint8_t file[128];
	size_t n = 0;
	size_t len = make_file(file, "a.proto", "pa", NULL);
	out[n++] = 0x0a;
	out[n++] = (uint8_t)len;
	memcpy(out + n, file, len);
	n += len;
	len = make_file(file, "b.proto", "pb", dep_of_b);
	out[n++] = 0x0a;
	out[n++] = (uint8_t)len;
	memcpy(out + n, file, len);
	return n + len;
}

static void test_bad_sets(void)
{
	struct grpc_reflection *r = NULL;
	uint8_t set[512];
	size_t n = make_set(set, "a.proto");
	CHECK_INT_EQ(grpc_reflection_new(set, n, &r), 0);
	if (r) {
		/* b imports a: both come back, b first. */
		check_symbol(r, "pb", "b.proto a.proto");
		grpc_reflection_free(r);
	}
	n = make_set(set, "missing.proto");
	CHECK_INT_EQ(grpc_reflection_new(set, n, &r), MV_EPROTO);
	CHECK(r == NULL);
	n = make_set(set, NULL);
	memcpy(set + n, set, n); /* every file twice */
	CHECK_INT_EQ(grpc_reflection_new(set, 2 * n, &r), MV_EPROTO);
	/* Every truncation of a real set fails cleanly or succeeds. */
	for (size_t cut = 0; cut < movie_api_descriptors_len; cut += 7) {
		int rc = grpc_reflection_new(movie_api_descriptors, cut, &r);
		CHECK(rc == 0 || rc == MV_EPROTO);
		grpc_reflection_free(r);
		r = NULL;
	}
	CHECK_INT_EQ(grpc_reflection_new(set, GRPC_REFLECTION_MAX_SET_BYTES + 1, &r), MV_ETOOBIG);
	/* A file with no name, and a group wire type. */
	CHECK_INT_EQ(grpc_reflection_new((const uint8_t *)"\x0a\x02\x12\x00", 4, &r), MV_EPROTO);
	CHECK_INT_EQ(grpc_reflection_new((const uint8_t *)"\x0b", 1, &r), MV_EPROTO);
}

int main(void)
{
	RUN(test_symbols);
	RUN(test_list_and_files);
	RUN(test_bad_sets);
	return TEST_SUMMARY();
}
