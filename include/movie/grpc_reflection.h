/*
 * grpc_reflection.h - gRPC server reflection (grpc.reflection.v1 and
 * v1alpha, which share one wire format), protocol side: no I/O.
 *
 * An index is built once from a FileDescriptorSet (the bytes of `protoc
 * --include_imports --descriptor_set_out`, made at build time from the api/ protos)
 * and then answers ServerReflectionRequest messages: list services, file by
 * filename, file containing symbol (packages, messages, fields, oneofs, enums,
 * enum values, services, methods, extensions), file containing extension and
 * extension numbers of a type. A file is answered together with every file it
 * imports, transitively, as reflection clients build their descriptor pools
 * from what one response carries.
 *
 * The index borrows the descriptor-set bytes (they must outlive it) and is
 * read-only once built: any thread may call grpc_reflection_answer.
 */
#ifndef MOVIE_GRPC_REFLECTION_H
#define MOVIE_GRPC_REFLECTION_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct grpc_reflection;

/* Largest descriptor set, file count and symbol count accepted. */
#define GRPC_REFLECTION_MAX_SET_BYTES (16u * 1024 * 1024)
#define GRPC_REFLECTION_MAX_FILES     1024
#define GRPC_REFLECTION_MAX_SYMBOLS   65536

/* Index the FileDescriptorSet `set`. Returns 0 (*out set; free with
 * grpc_reflection_free), MV_EPROTO (malformed set, a file twice, an import missing),
 * MV_ETOOBIG (over a cap above), MV_ENOMEM. */
int grpc_reflection_new(const uint8_t *set, size_t len, struct grpc_reflection **out);
void grpc_reflection_free(struct grpc_reflection *r);

/* Number of files indexed. */
size_t grpc_reflection_file_count(const struct grpc_reflection *r);

/* Answer one serialized ServerReflectionRequest: append the serialized
 * ServerReflectionResponse to `out`. `services` (the full names of the
 * services this server registers) answer list_services. A request for
 * something unknown is answered with an error_response (NOT_FOUND), as the
 * protocol asks, not with a call error.
 * Returns 0, MV_EPROTO (the request does not parse: the caller ends the call
 * with INVALID_ARGUMENT), MV_ENOMEM, MV_ETOOBIG (from `out`'s limit). */
int grpc_reflection_answer(const struct grpc_reflection *r, const uint8_t *req, size_t len,
                           const char *const *services, size_t service_count, struct buf *out);

#endif
