/*
 * fuzz_http1.c - libFuzzer target for lib/http1.
 *
 * Input layout: byte 0 picks max_header_bytes, byte 1 max_body_bytes, bytes
 * 2..5 seed the piece sizes; the rest is the byte stream of one connection.
 * The stream is parsed twice, all at once and in random-sized pieces, looping
 * through pipelined requests; the two runs must see the same events (the
 * parser promises results independent of how bytes are split). Every request
 * goes through http1_query_get, http1_route_find and http1_response_build.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/http1.h"
#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint64_t mix(uint64_t h, const void *p, size_t n)
{
	const unsigned char *b = p;
	for (size_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 1099511628211ull;
	}
	return h;
}

static uint64_t mix_int(uint64_t h, long long v)
{
	return mix(h, &v, sizeof(v));
}

static const struct http1_route routes[] = {
    {"/metadata", HTTP1_METHOD_BIT(HTTP1_GET) | HTTP1_METHOD_BIT(HTTP1_PUT)},
    {"/rating", HTTP1_METHOD_BIT(HTTP1_GET) | HTTP1_METHOD_BIT(HTTP1_PUT)},
    {"/healthz", HTTP1_METHOD_BIT(HTTP1_GET)},
    {"/x", HTTP1_METHOD_BIT(HTTP1_POST) | HTTP1_METHOD_BIT(HTTP1_DELETE)},
};

static uint64_t exercise_request(const struct http1_request *r, const struct http1_limits *lim,
                                 uint64_t h)
{
	static const char *names[] = {"id", "type", "userId", "", "a b"};
	char out[32], allow[64];
	int status = 0;
	struct buf resp;

	if (r->body.len > lim->max_body_bytes || r->target.len > lim->max_header_bytes ||
	    r->path_len > r->target.len || strlen(r->content_type) >= sizeof(r->content_type))
		abort();
	h = mix_int(h, r->method);
	h = mix(h, r->target.data ? r->target.data : "", r->target.len);
	h = mix(h, r->body.data ? r->body.data : "", r->body.len);
	h = mix(h, r->content_type, strlen(r->content_type));
	h = mix_int(h, r->keep_alive * 4 + r->expect_continue * 2 + (long long)r->http_minor);
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		int n = http1_query_get(r->query, names[i], out, sizeof(out));
		if (n >= 0 && ((size_t)n >= sizeof(out) || strlen(out) != (size_t)n))
			abort();
		h = mix_int(h, n);
	}
	int idx = http1_route_find(routes, sizeof(routes) / sizeof(routes[0]), r, &status, allow,
	                           sizeof(allow));
	h = mix_int(h, idx * 1000 + status);
	buf_init(&resp, 4096);
	int rc =
	    http1_response_build(&resp, status, "text/plain", status == 405 ? "Allow: x\r\n" : NULL,
	                         r->body.data, r->body.len, r->keep_alive);
	if (rc != 0 && rc != MV_ETOOBIG)
		abort();
	buf_release(&resp);
	return h;
}

/* Parse the stream; piece_seed 0 means all at once. Returns a digest of events. */
static uint64_t run(const char *in, size_t len, const struct http1_limits *lim, uint32_t piece_seed)
{
	struct http1_parser p;
	uint64_t h = 14695981039346656037ull;
	uint32_t x = piece_seed | 1;
	size_t pos = 0, used = 0;
	size_t budget = 2 * len + 4; /* each step consumes a byte or ends a request */
	http1_parser_init(&p, lim);
	while (pos < len) {
		if (budget-- == 0)
			abort(); /* no progress: would loop forever */
		size_t n = len - pos;
		if (piece_seed) {
			x ^= x << 13;
			x ^= x >> 17;
			x ^= x << 5;
			size_t piece = 1 + x % 64;
			if (piece < n)
				n = piece;
		}
		int rc = http1_parser_feed(&p, in + pos, n, &used);
		if (used > n)
			abort();
		pos += used;
		if (rc == HTTP1_REQUEST_READY) {
			if (used == 0)
				abort(); /* a request is at least one byte */
			h = exercise_request(&p.request, lim, h);
			http1_parser_next(&p);
		} else if (rc == HTTP1_NEED_MORE) {
			if (used != n)
				abort();
			(void)http1_parser_continue_due(&p);
		} else {
			if (rc != HTTP1_BAD_REQUEST && rc != HTTP1_TOO_LARGE &&
			    rc != HTTP1_HEADERS_TOO_LARGE && rc != HTTP1_NOT_IMPLEMENTED)
				abort();
			if (http1_parser_feed(&p, in, len, &used) != rc || used != 0)
				abort(); /* errors are sticky */
			h = mix_int(h, rc);
			break;
		}
	}
	http1_parser_release(&p);
	return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 6)
		return 0;
	struct http1_limits lim = {
	    .max_header_bytes = 16 + (size_t)data[0] * 4,
	    .max_body_bytes = (size_t)data[1] * 2,
	};
	uint32_t seed = (uint32_t)data[2] | (uint32_t)data[3] << 8 | (uint32_t)data[4] << 16 |
	                (uint32_t)data[5] << 24;
	const char *in = (const char *)data + 6;
	size_t len = size - 6;
	uint64_t whole = run(in, len, &lim, 0);
	uint64_t pieces = run(in, len, &lim, seed ? seed : 1);
	if (whole != pieces)
		abort();
	return 0;
}
