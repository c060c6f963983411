/*
 * text.h - the rules for strings that come from clients (gRPC, HTTP/JSON,
 * Kafka). Pure functions: no I/O, no allocation, safe from any thread.
 *
 * One rule set, used by every handler and by the Kafka event parser
 * (docs/api.md, "Strings"):
 *   - every string is valid UTF-8 (RFC 3629: shortest form, no surrogates,
 *     nothing above U+10FFFF) -- proto3 requires it of `string` fields and
 *     clients such as grpcio refuse to decode a response that breaks it;
 *   - no string contains U+0000: protobuf-c, the stores and the JSON encoder
 *     carry strings NUL-terminated, so an embedded NUL would silently cut the
 *     string short (and make "victim\0attacker" the key "victim");
 *   - ids (movie ids, record ids and types, user ids) in addition contain no
 *     control character at all (U+0001..U+001F, U+007F..U+009F): they are keys
 *     and log fields, never formatted text.
 */
#ifndef MOVIE_TEXT_H
#define MOVIE_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ProtobufCMessageDescriptor;

/* Length (1..4) of the valid UTF-8 sequence at the start of s[0..n), or 0
 * when it is invalid (or n is 0). The one decoder of the runtime. */
size_t text_utf8_next(const void *s, size_t n);

/* Whether s[0..n) is valid UTF-8. s may be NULL when n is 0. */
bool text_utf8_valid(const void *s, size_t n);

/* Check free text s[0..n): valid UTF-8 without U+0000.
 * Returns NULL when it is acceptable, else a static reason ("invalid UTF-8",
 * "contains a NUL byte"). */
const char *text_check(const void *s, size_t n);

/* Check an id s[0..n): valid UTF-8 without any control character (U+0000
 * included). Emptiness and length caps are the caller's rules.
 * Returns NULL when it is acceptable, else a static reason ("invalid UTF-8",
 * "contains a control character"). */
const char *text_check_id(const void *s, size_t n);

/* Walk the protobuf wire encoding msg[0..len) of a message of type `desc` and
 * apply text_check to every `string` field, in nested messages too (up to
 * TEXT_PB_MAX_DEPTH levels). Call it on the raw request bytes: once protobuf-c
 * has unpacked a message its strings are NUL-terminated and the true length
 * of a string with an embedded NUL is lost.
 *
 * Returns 0 when every string field passes; MV_EINVAL when one does not, with
 * *field set to its name (a static string of the descriptor) and *why to the
 * reason; MV_EPROTO when the bytes are not a well-formed encoding (truncated
 * field, bad varint, group wire types, nesting too deep) -- the unpacker
 * refuses those too. field and why may be NULL. */
#define TEXT_PB_MAX_DEPTH 32
int text_pb_check(const struct ProtobufCMessageDescriptor *desc, const uint8_t *msg, size_t len,
                  const char **field, const char **why);

#endif
