/*
 * http1.c - HTTP/1.1 request parsing on top of libhttp-parser, query strings,
 * responses and routing. No I/O: see include/movie/http1.h for the contracts.
 *
 * The parser is paused twice per request: at the end of the head, so that the
 * exact head size is known (caps must not depend on how bytes are split
 * across reads), and at the end of the message, so that pipelined requests
 * are handed out one at a time.
 */
#include "movie/http1.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "movie/err.h"
#include "movie/banned.h"

/* A body buffer larger than this is freed between requests, so that one big
 * upload does not pin memory on an idle keep-alive connection. */
#define BODY_KEEP_BYTES ((size_t)64 * 1024)

enum header_kind {
	HDR_OTHER = 0,
	HDR_CONTENT_TYPE,
	HDR_EXPECT,
	HDR_TRANSFER_ENCODING,
	HDR_TRACEPARENT,
	HDR_TRACESTATE
};

/* movie/trace.h's raw cap, without depending on the tracing module. */
#define TRACESTATE_RAW_MAX 4096

static struct http1_parser *parser_of(http_parser *hp)
{
	return hp->data;
}

/* Record an error from inside a callback; the non-zero return stops http_parser. */
static int fail_cb(struct http1_parser *p, int error)
{
	if (!p->error)
		p->error = error;
	return -1;
}

static int feed_error_from_buf(int rc)
{
	return rc == MV_ENOMEM ? HTTP1_INTERNAL_ERROR : HTTP1_HEADERS_TOO_LARGE;
}

static int on_url(http_parser *hp, const char *at, size_t len)
{
	struct http1_parser *p = parser_of(hp);
	int rc = buf_append(&p->request.target, at, len);
	return rc ? fail_cb(p, feed_error_from_buf(rc)) : 0;
}

static size_t trimmed_len(const char *s, size_t len)
{
	while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
		len--;
	return len;
}

/* Act on the header whose name and value were just collected. */
static void finish_header(struct http1_parser *p)
{
	size_t n = p->header_value_len < sizeof(p->header_value) ? p->header_value_len
	                                                         : sizeof(p->header_value);
	size_t len;
	switch (p->header_kind) {
	case HDR_CONTENT_TYPE:
		len = trimmed_len(p->request.content_type, p->header_value_len);
		p->request.content_type[len] = '\0';
		break;
	case HDR_EXPECT:
		len = trimmed_len(p->header_value, n);
		if (len == 12 && p->header_value_len == n &&
		    strncasecmp(p->header_value, "100-continue", 12) == 0)
			p->request.expect_continue = true;
		break;
	case HDR_TRACEPARENT:
		/* The first one is kept; a second makes the count (and so the
		 * context) invalid. */
		if (p->request.traceparent_count++)
			break;
		n = p->header_value_len < HTTP1_TRACEPARENT_MAX ? p->header_value_len
		                                                : HTTP1_TRACEPARENT_MAX;
		len = trimmed_len(p->request.traceparent, n);
		p->request.traceparent[len] = '\0';
		p->request.traceparent_len = len < n ? len : p->header_value_len;
		break;
	case HDR_TRACESTATE: {
		struct buf *ts = &p->request.tracestate;
		ts->len = trimmed_len(ts->data, ts->len);
		if (ts->data)
			ts->data[ts->len] = '\0';
		break;
	}
	case HDR_TRANSFER_ENCODING:
		/* http_parser accepts "gzip, chunked" and would hand out a gzip body
		 * as if it were plain: only "chunked" alone is supported. */
		len = trimmed_len(p->header_value, n);
		if (p->header_value_len != n || len != 7 ||
		    strncasecmp(p->header_value, "chunked", 7) != 0)
			p->te_unsupported = true;
		break;
	default: break;
	}
	p->header_field_len = 0;
	p->header_field[0] = '\0';
	p->header_field_done = false;
	p->header_kind = HDR_OTHER;
	p->header_value_len = 0;
}

static int on_header_field(http_parser *hp, const char *at, size_t len)
{
	struct http1_parser *p = parser_of(hp);
	/* Trailer fields never stand in for header fields (RFC 9110 6.5.1). */
	if (p->head_done)
		return 0;
	if (p->header_field_done)
		finish_header(p);
	for (size_t i = 0; i < len; i++) {
		if (p->header_field_len < sizeof(p->header_field) - 1) {
			char c = at[i];
			if (c >= 'A' && c <= 'Z')
				c = (char)(c - 'A' + 'a');
			p->header_field[p->header_field_len] = c;
			p->header_field[p->header_field_len + 1] = '\0';
		}
		/* Bounded by the head cap; past the array it only marks truncation. */
		p->header_field_len++;
	}
	return 0;
}

static enum header_kind classify_header(const struct http1_parser *p)
{
	if (p->header_field_len >= sizeof(p->header_field))
		return HDR_OTHER;
	if (strcmp(p->header_field, "content-type") == 0)
		return HDR_CONTENT_TYPE;
	if (strcmp(p->header_field, "expect") == 0)
		return HDR_EXPECT;
	if (strcmp(p->header_field, "transfer-encoding") == 0)
		return HDR_TRANSFER_ENCODING;
	if (strcmp(p->header_field, "traceparent") == 0)
		return HDR_TRACEPARENT;
	if (strcmp(p->header_field, "tracestate") == 0)
		return HDR_TRACESTATE;
	return HDR_OTHER;
}

static int on_header_value(http_parser *hp, const char *at, size_t len)
{
	struct http1_parser *p = parser_of(hp);
	if (p->head_done)
		return 0;
	if (!p->header_field_done) {
		p->header_field_done = true;
		p->header_kind = classify_header(p);
		p->header_value_len = 0;
		/* A second tracestate header continues the list. */
		if (p->header_kind == HDR_TRACESTATE && p->request.tracestate.len &&
		    !p->request.tracestate_over && buf_append(&p->request.tracestate, ",", 1) != 0)
			p->request.tracestate_over = true;
	}
	switch (p->header_kind) {
	case HDR_TRACEPARENT:
		if (!p->request.traceparent_count && p->header_value_len < HTTP1_TRACEPARENT_MAX) {
			size_t room = HTTP1_TRACEPARENT_MAX - p->header_value_len;
			memcpy(p->request.traceparent + p->header_value_len, at,
			       len < room ? len : room);
		}
		/* Bounded by the head cap; past the array it only marks length. */
		p->header_value_len += len;
		break;
	case HDR_TRACESTATE:
		if (!p->request.tracestate_over &&
		    buf_append(&p->request.tracestate, at, len) != 0) {
			p->request.tracestate_over = true;
			buf_reset(&p->request.tracestate);
		}
		break;
	case HDR_CONTENT_TYPE:
		/* Errors found here are reported at the end of the head: http_parser
		 * hands out values in pieces that depend on how the input was split,
		 * and a syntax error later in the head must win either way.
		 * The first offending byte decides which error. */
		for (size_t i = 0; i < len && !p->head_error; i++) {
			unsigned char c = (unsigned char)at[i];
			if (p->header_value_len >= sizeof(p->request.content_type) - 1)
				p->head_error = HTTP1_HEADERS_TOO_LARGE;
			/* The value may be logged or echoed: no control bytes (obs-fold,
			 * NUL: Debian's non-strict http_parser lets them through). */
			else if ((c < 0x20 && c != '\t') || c == 0x7f)
				p->head_error = HTTP1_BAD_REQUEST;
			else
				p->request.content_type[p->header_value_len++] = (char)c;
		}
		p->request.content_type[p->header_value_len] = '\0';
		break;
	case HDR_EXPECT:
	case HDR_TRANSFER_ENCODING:
		if (p->header_value_len < sizeof(p->header_value)) {
			size_t room = sizeof(p->header_value) - p->header_value_len;
			memcpy(p->header_value + p->header_value_len, at, len < room ? len : room);
		}
		/* Bounded by the head cap; past the array it only marks truncation. */
		p->header_value_len += len;
		break;
	default: break;
	}
	return 0;
}

/* RFC 9112 3.2.2: a server must accept absolute-form; routes see origin-form. */
static void target_to_origin_form(struct buf *t)
{
	size_t skip;
	if (t->len >= 7 && strncasecmp(t->data, "http://", 7) == 0)
		skip = 7;
	else if (t->len >= 8 && strncasecmp(t->data, "https://", 8) == 0)
		skip = 8;
	else
		return;
	size_t pos = skip;
	while (pos < t->len && t->data[pos] != '/' && t->data[pos] != '?' && t->data[pos] != '#')
		pos++;
	if (pos < t->len && t->data[pos] == '/') {
		buf_consume(t, pos);
	} else {
		buf_consume(t, pos - 1);
		t->data[0] = '/';
	}
}

static void split_target(struct http1_request *r)
{
	r->path_len = 0;
	r->query = "";
	if (!r->target.data)
		return;
	target_to_origin_form(&r->target);
	const char *t = r->target.data;
	size_t n = 0;
	while (n < r->target.len && t[n] != '?' && t[n] != '#')
		n++;
	r->path_len = n;
	if (n < r->target.len && t[n] == '?')
		r->query = t + n + 1;
}

static enum http1_method method_of(unsigned m)
{
	switch (m) {
	case HTTP_GET: return HTTP1_GET;
	case HTTP_HEAD: return HTTP1_HEAD;
	case HTTP_POST: return HTTP1_POST;
	case HTTP_PUT: return HTTP1_PUT;
	case HTTP_DELETE: return HTTP1_DELETE;
	default: return HTTP1_OTHER;
	}
}

static int on_headers_complete(http_parser *hp)
{
	struct http1_parser *p = parser_of(hp);
	struct http1_request *r = &p->request;
	if (p->header_field_done)
		finish_header(p);
	p->head_done = true;
	if (hp->http_major != 1)
		return fail_cb(p, HTTP1_BAD_REQUEST);
	if (p->head_error)
		return fail_cb(p, p->head_error);
	r->method = method_of(hp->method);
	r->http_minor = hp->http_minor;
	r->keep_alive = http_should_keep_alive(hp) != 0;
	/* RFC 9110 10.1.1: a server must ignore 100-continue from HTTP/1.0. */
	if (r->http_minor == 0)
		r->expect_continue = false;
	if (p->te_unsupported)
		return fail_cb(p, HTTP1_NOT_IMPLEMENTED);
	if (!(hp->flags & F_CHUNKED) && hp->content_length != UINT64_MAX &&
	    hp->content_length > p->limits.max_body_bytes)
		return fail_cb(p, HTTP1_TOO_LARGE);
	split_target(r);
	/* Upgrade (h2c, websocket) and CONNECT are answered as plain requests:
	 * http_parser would otherwise end the message early and hand back the
	 * rest as another protocol's bytes. */
	hp->upgrade = 0;
	http_parser_pause(hp, 1);
	return 0;
}

static int on_chunk_header(http_parser *hp)
{
	struct http1_parser *p = parser_of(hp);
	/* content_length holds the chunk size here; reject before reading it. */
	if (hp->content_length > p->limits.max_body_bytes - p->request.body.len)
		return fail_cb(p, HTTP1_TOO_LARGE);
	return 0;
}

static int on_body(http_parser *hp, const char *at, size_t len)
{
	struct http1_parser *p = parser_of(hp);
	if (len > p->limits.max_body_bytes - p->request.body.len)
		return fail_cb(p, HTTP1_TOO_LARGE);
	int rc = buf_append(&p->request.body, at, len);
	if (rc)
		return fail_cb(p, rc == MV_ENOMEM ? HTTP1_INTERNAL_ERROR : HTTP1_TOO_LARGE);
	return 0;
}

static int on_message_complete(http_parser *hp)
{
	struct http1_parser *p = parser_of(hp);
	p->complete = true;
	http_parser_pause(hp, 1);
	return 0;
}

static void request_reset(struct http1_parser *p)
{
	struct http1_request *r = &p->request;
	r->method = HTTP1_OTHER;
	buf_reset(&r->target);
	if (r->body.cap > BODY_KEEP_BYTES)
		buf_release(&r->body);
	else
		buf_reset(&r->body);
	r->path_len = 0;
	r->query = "";
	r->content_type[0] = '\0';
	r->keep_alive = false;
	r->expect_continue = false;
	r->http_minor = 0;
	r->traceparent[0] = '\0';
	r->traceparent_len = 0;
	r->traceparent_count = 0;
	buf_reset(&r->tracestate);
	r->tracestate_over = false;
	p->header_bytes = 0;
	p->complete = false;
	p->head_done = false;
	p->continue_taken = false;
	p->te_unsupported = false;
	p->head_error = 0;
	p->header_field[0] = '\0';
	p->header_field_len = 0;
	p->header_field_done = false;
	p->header_kind = HDR_OTHER;
	p->header_value_len = 0;
}

void http1_parser_init(struct http1_parser *p, const struct http1_limits *limits)
{
	memset(p, 0, sizeof(*p));
	p->limits = *limits;
	if (p->limits.max_header_bytes == 0)
		p->limits.max_header_bytes = 1;
	http_parser_init(&p->parser, HTTP_REQUEST);
	p->parser.data = p;
	http_parser_settings_init(&p->settings);
	p->settings.on_url = on_url;
	p->settings.on_header_field = on_header_field;
	p->settings.on_header_value = on_header_value;
	p->settings.on_headers_complete = on_headers_complete;
	p->settings.on_chunk_header = on_chunk_header;
	p->settings.on_body = on_body;
	p->settings.on_message_complete = on_message_complete;
	buf_init(&p->request.target, p->limits.max_header_bytes);
	buf_init(&p->request.body, p->limits.max_body_bytes ? p->limits.max_body_bytes : 1);
	buf_init(&p->request.tracestate, TRACESTATE_RAW_MAX);
	request_reset(p);
}

void http1_parser_release(struct http1_parser *p)
{
	buf_release(&p->request.target);
	buf_release(&p->request.body);
	buf_release(&p->request.tracestate);
	p->request.query = "";
}

static int error_of_errno(enum http_errno e)
{
	switch (e) {
	case HPE_HEADER_OVERFLOW: return HTTP1_HEADERS_TOO_LARGE;
	case HPE_INVALID_TRANSFER_ENCODING: return HTTP1_NOT_IMPLEMENTED;
	default: return HTTP1_BAD_REQUEST;
	}
}

int http1_parser_feed(struct http1_parser *p, const char *data, size_t len, size_t *consumed)
{
	size_t off = 0;
	*consumed = 0;
	if (p->error)
		return p->error;
	if (p->complete)
		return HTTP1_REQUEST_READY;
	p->parser.data = p; /* the struct may have been moved since init */
	while (off < len) {
		size_t slice = len - off;
		if (!p->head_done) {
			/* header_bytes <= max_header_bytes holds between calls. */
			size_t room = p->limits.max_header_bytes - p->header_bytes;
			if (room == 0) {
				p->error = HTTP1_HEADERS_TOO_LARGE;
				goto fail;
			}
			if (slice > room)
				slice = room;
		}
		bool in_head = !p->head_done;
		size_t n = http_parser_execute(&p->parser, &p->settings, data + off, slice);
		enum http_errno e = HTTP_PARSER_ERRNO(&p->parser);
		if (p->error) {
			off += n;
			goto fail;
		}
		if (e == HPE_PAUSED) {
			off += n;
			if (p->complete) {
				*consumed = off;
				return HTTP1_REQUEST_READY;
			}
			/* Paused at the LF ending the head; it is left for the body
			 * phase but counts as a head byte. */
			if (in_head)
				p->header_bytes += n + 1;
			http_parser_pause(&p->parser, 0);
			continue;
		}
		if (e != HPE_OK) {
			p->error = error_of_errno(e);
			off += n;
			goto fail;
		}
		if (n != slice) {
			/* No pause, no error, yet stopped early: never loop on it. */
			p->error = HTTP1_BAD_REQUEST;
			off += n;
			goto fail;
		}
		if (in_head)
			p->header_bytes += n;
		off += n;
	}
	*consumed = off;
	return HTTP1_NEED_MORE;

fail:
	*consumed = off;
	return p->error;
}

bool http1_parser_continue_due(struct http1_parser *p)
{
	if (!p->head_done || p->complete || p->error || !p->request.expect_continue ||
	    p->continue_taken)
		return false;
	p->continue_taken = true;
	return true;
}

void http1_parser_next(struct http1_parser *p)
{
	/* Debian's libhttp_parser is built with HTTP_PARSER_STRICT=0, which keeps
	 * parsing after a message that ends the connection: enforce it here. */
	if (p->complete && !p->request.keep_alive && !p->error)
		p->error = HTTP1_BAD_REQUEST;
	request_reset(p);
	if (HTTP_PARSER_ERRNO(&p->parser) == HPE_PAUSED)
		http_parser_pause(&p->parser, 0);
}

static int hex_value(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decode one byte of a form-urlencoded component at *pp (< end) and advance.
 * Returns the byte (1..255) or MV_EINVAL (bad escape, decoded NUL). */
static int decode_byte(const char **pp, const char *end)
{
	const char *s = *pp;
	unsigned char c = (unsigned char)*s;
	if (c == '+') {
		*pp = s + 1;
		return ' ';
	}
	if (c != '%') {
		*pp = s + 1;
		return c;
	}
	if (end - s < 3)
		return MV_EINVAL;
	int hi = hex_value((unsigned char)s[1]);
	int lo = hex_value((unsigned char)s[2]);
	if (hi < 0 || lo < 0)
		return MV_EINVAL;
	*pp = s + 3;
	int v = hi << 4 | lo;
	return v ? v : MV_EINVAL;
}

/* 1 when [k, end) decodes to name, 0 when not, MV_EINVAL on a bad escape. The
 * whole key is decoded either way so that errors do not depend on name. */
static int key_matches(const char *k, const char *end, const char *name)
{
	size_t i = 0;
	bool match = true;
	while (k < end) {
		int c = decode_byte(&k, end);
		if (c < 0)
			return c;
		if (match && name[i] != '\0' && (unsigned char)name[i] == c)
			i++;
		else
			match = false;
	}
	return match && name[i] == '\0';
}

int http1_query_get(const char *query, const char *name, char *out, size_t out_size)
{
	int rc;
	const char *end = query;
	while (*end && *end != '#')
		end++;
	if (out_size)
		out[0] = '\0';
	for (const char *pair = query; pair < end;) {
		const char *pair_end = memchr(pair, '&', (size_t)(end - pair));
		if (!pair_end)
			pair_end = end;
		const char *eq = memchr(pair, '=', (size_t)(pair_end - pair));
		const char *key_end = eq ? eq : pair_end;
		rc = key_matches(pair, key_end, name);
		if (rc < 0)
			goto fail;
		if (rc == 1) {
			size_t n = 0;
			const char *v = eq ? eq + 1 : pair_end;
			while (v < pair_end) {
				int c = decode_byte(&v, pair_end);
				if (c < 0) {
					rc = c;
					goto fail;
				}
				if (n + 1 >= out_size || n >= INT_MAX) {
					rc = MV_ETOOBIG;
					goto fail;
				}
				out[n++] = (char)c;
			}
			if (out_size == 0) {
				rc = MV_ETOOBIG;
				goto fail;
			}
			out[n] = '\0';
			return (int)n;
		}
		pair = pair_end < end ? pair_end + 1 : end;
	}
	return HTTP1_QUERY_ABSENT;

fail:
	if (out_size)
		out[0] = '\0';
	return rc;
}

const char *http1_reason(int status)
{
	switch (status) {
#define XX(num, name, string) \
	case num: return #string;
		HTTP_STATUS_MAP(XX)
#undef XX
	default: return "Unknown";
	}
}

int http1_response_build(struct buf *out, int status, const char *content_type,
                         const char *extra_headers, const char *body, size_t body_len,
                         bool keep_alive)
{
	/* RFC 9110 8.6: no Content-Length (and no content) in 1xx and 204. */
	bool no_length = status < 200 || status == 204;
	size_t start = out->len;
	int rc;
	if (status < 100 || status > 999 || (no_length && body_len))
		return MV_EINVAL;
	if (content_type && strpbrk(content_type, "\r\n"))
		return MV_EINVAL;
	if (extra_headers) {
		size_t n = strlen(extra_headers);
		if (n && (n < 2 || memcmp(extra_headers + n - 2, "\r\n", 2) != 0))
			return MV_EINVAL;
	}
	rc = buf_printf(out, "HTTP/1.1 %d %s\r\n", status, http1_reason(status));
	if (rc)
		goto fail_truncate;
	if (content_type && *content_type) {
		rc = buf_printf(out, "Content-Type: %s\r\n", content_type);
		if (rc)
			goto fail_truncate;
	}
	if (!no_length) {
		rc = buf_printf(out, "Content-Length: %zu\r\n", body_len);
		if (rc)
			goto fail_truncate;
	}
	rc = buf_append_str(out,
	                    keep_alive ? "Connection: keep-alive\r\n" : "Connection: close\r\n");
	if (rc)
		goto fail_truncate;
	if (extra_headers) {
		rc = buf_append_str(out, extra_headers);
		if (rc)
			goto fail_truncate;
	}
	rc = buf_append(out, "\r\n", 2);
	if (rc)
		goto fail_truncate;
	if (body && body_len) {
		rc = buf_append(out, body, body_len);
		if (rc)
			goto fail_truncate;
	}
	return 0;

fail_truncate:
	out->len = start;
	if (out->data)
		out->data[start] = '\0';
	return rc;
}

static size_t format_allow(unsigned mask, char *allow, size_t allow_size)
{
	static const struct {
		enum http1_method m;
		const char *name;
	} order[] = {
	    {HTTP1_GET, "GET"}, {HTTP1_HEAD, "HEAD"},     {HTTP1_POST, "POST"},
	    {HTTP1_PUT, "PUT"}, {HTTP1_DELETE, "DELETE"},
	};
	size_t n = 0;
	if (!allow || allow_size == 0)
		return 0;
	allow[0] = '\0';
	for (size_t i = 0; i < sizeof(order) / sizeof(order[0]); i++) {
		if (!(mask & HTTP1_METHOD_BIT(order[i].m)))
			continue;
		int w = snprintf(allow + n, allow_size - n, "%s%s", n ? ", " : "", order[i].name);
		if (w < 0 || (size_t)w >= allow_size - n) {
			allow[n] = '\0'; /* keep whole names only */
			break;
		}
		n += (size_t)w;
	}
	return n;
}

int http1_route_find(const struct http1_route *routes, size_t route_count,
                     const struct http1_request *req, int *status, char *allow, size_t allow_size)
{
	const char *path = req->target.data ? req->target.data : "";
	size_t path_len = req->target.data ? req->path_len : 0;
	unsigned want = req->method == HTTP1_OTHER ? 0 : HTTP1_METHOD_BIT(req->method);
	unsigned allowed = 0;
	bool path_found = false;
	if (allow && allow_size)
		allow[0] = '\0';
	for (size_t i = 0; i < route_count && i < (size_t)INT_MAX; i++) {
		const char *rp = routes[i].path;
		if (!rp || strlen(rp) != path_len || memcmp(rp, path, path_len) != 0)
			continue;
		unsigned mask = routes[i].method_mask & ~HTTP1_METHOD_BIT(HTTP1_OTHER);
		if (mask & HTTP1_METHOD_BIT(HTTP1_GET))
			mask |= HTTP1_METHOD_BIT(HTTP1_HEAD);
		path_found = true;
		if (mask & want) {
			*status = 200;
			return (int)i;
		}
		allowed |= mask;
	}
	*status = path_found ? 405 : 404;
	if (path_found)
		format_allow(allowed, allow, allow_size);
	return -1;
}

bool http1_parser_started(const struct http1_parser *p)
{
	return p->header_bytes > 0 || p->head_done;
}

bool http1_parser_head_complete(const struct http1_parser *p)
{
	return p->head_done;
}
