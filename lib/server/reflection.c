/*
 * grpc.reflection.v1.ServerReflection and its v1alpha twin on every server:
 * the descriptors of the api/ protos, health and reflection itself, made by protoc
 * at build time (movie_api_descriptors, see CMakeLists.txt), answered by the
 * protocol module (movie/grpc_reflection.h). list_services names the services
 * this server registers, not every service of the API.
 */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "movie/err.h"
#include "movie/grpc_reflection.h"
#include "movie/banned.h"

extern const unsigned char movie_api_descriptors[];
extern const size_t movie_api_descriptors_len;

static size_t registered_services(const struct server *srv, const char **out)
{
	size_t n = 0;
	for (size_t i = 0; i < srv->method_count; i++) {
		const char *name = srv->methods[i].service;
		size_t j = 0;
		while (j < n && strcmp(out[j], name) != 0)
			j++;
		if (j == n)
			out[n++] = name;
	}
	return n;
}

static void reflection_info(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	struct server *srv = ctx;
	if (!msg) { /* the client half-closed: every request was answered */
		grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
		return;
	}
	const char *services[SERVER_MAX_METHODS];
	size_t count = registered_services(srv, services);
	/* An answer is at most the descriptor set (a few KiB) plus the echoed
	 * request: the buffer's default limit is no constraint. */
	struct buf out;
	buf_init(&out, 0);
	int rc = grpc_reflection_answer(srv->reflection, msg, len, services, count, &out);
	if (rc == MV_EPROTO)
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		                 "malformed ServerReflectionRequest", NULL, 0);
	else if (rc)
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, mv_strerror(rc), NULL, 0);
	else if (grpc_call_send(call, (const uint8_t *)out.data, out.len) != 0)
		grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL, NULL, 0);
	buf_release(&out);
}

int reflection_register(struct server *srv)
{
	int rc =
	    grpc_reflection_new(movie_api_descriptors, movie_api_descriptors_len, &srv->reflection);
	if (rc)
		return rc;
	rc = server_add_grpc_bidi(srv, "grpc.reflection.v1.ServerReflection",
	                          "ServerReflectionInfo", reflection_info, srv);
	if (rc)
		return rc;
	return server_add_grpc_bidi(srv, "grpc.reflection.v1alpha.ServerReflection",
	                            "ServerReflectionInfo", reflection_info, srv);
}
