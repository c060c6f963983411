/*
 * http1.h - HTTP/1.1 server-side protocol: request parsing, query strings,
 * responses, routing. Does no I/O: the connection layer feeds received bytes
 * and writes the bytes produced.
 *
 * Parsing is libhttp-parser underneath, with hard caps (request line + headers,
 * body) so untrusted input cannot grow memory without bound. Pipelined requests
 * are supported: feed returns after each complete request, and the remaining
 * bytes are fed again after the response is produced.
 */
#ifndef MOVIE_HTTP1_H
#define MOVIE_HTTP1_H

#include <stdbool.h>
#include <stddef.h>

#include <http_parser.h>

#include "movie/buf.h"
#include "movie/err.h"

enum http1_method {
	HTTP1_OTHER = 0,
	HTTP1_GET,
	HTTP1_HEAD,
	HTTP1_POST,
	HTTP1_PUT,
	HTTP1_DELETE
};

struct http1_limits {
	size_t max_header_bytes; /* request line + headers; over it: 431 */
	size_t max_body_bytes;   /* body; over it: 413 */
};

struct http1_request {
	enum http1_method method;
	struct buf target; /* request-target, e.g. "/metadata?id=1"; absolute-form
			      * ("http://h/x?y") is reduced to origin-form ("/x?y") */
	size_t path_len;   /* target.data[0..path_len) is the path (before '?' or '#') */
	const char *query; /* points into target after '?', or "" */
	struct buf body;
	char content_type[128];
	bool keep_alive; /* per HTTP/1.0 / 1.1 rules and Connection header */
	bool expect_continue;
	unsigned http_minor;
	/* W3C Trace Context headers, raw (movie/trace.h parses them). traceparent:
	 * the first HTTP1_TRACEPARENT_MAX bytes of the value, its true length in
	 * traceparent_len (the parser reads 56 bytes at most); traceparent_count
	 * counts the headers (more than one is invalid). tracestate: every
	 * tracestate header joined with ',', at most TRACE_STATE_RAW_MAX bytes
	 * (tracestate_over: more came, discard it). Trailing OWS trimmed. */
	char traceparent[64];
	size_t traceparent_len;
	unsigned traceparent_count;
	struct buf tracestate;
	bool tracestate_over;
};
#define HTTP1_TRACEPARENT_MAX 63

/* Result of http1_parser_feed. */
enum http1_feed_result {
	HTTP1_NEED_MORE = 0,           /* all input consumed, request incomplete */
	HTTP1_REQUEST_READY = 1,       /* a complete request is in parser->request */
	HTTP1_BAD_REQUEST = 400,       /* malformed; answer 400 and close */
	HTTP1_TOO_LARGE = 413,         /* body over the cap; answer 413 and close */
	HTTP1_HEADERS_TOO_LARGE = 431, /* headers over the cap; answer 431 and close */
	HTTP1_INTERNAL_ERROR = 500,    /* allocation failed; answer 500 and close */
	HTTP1_NOT_IMPLEMENTED = 501,   /* e.g. Transfer-Encoding we do not support */
};

struct http1_parser {
	http_parser parser;
	http_parser_settings settings;
	struct http1_limits limits;
	struct http1_request request;
	size_t header_bytes; /* head bytes of the current request so far */
	bool complete;
	int error;             /* an enum http1_feed_result error, or 0 */
	char header_field[32]; /* current header name (lower-cased, truncated) */
	size_t header_field_len;
	bool header_field_done;
	/* Private to http1.c below this line. */
	bool head_done;          /* request line + headers of the current request seen */
	bool continue_taken;     /* http1_parser_continue_due already said yes */
	bool te_unsupported;     /* a Transfer-Encoding other than plain "chunked" */
	int head_error;          /* found in a header value, reported at the head's end */
	int header_kind;         /* which interesting header the current value belongs to */
	char header_value[32];   /* value of Expect / Transfer-Encoding (truncated) */
	size_t header_value_len; /* may exceed sizeof(header_value): then truncated */
};

/* Initialise a parser for one connection. `limits` is copied; a zero body cap
 * makes every non-empty body 413; a zero head cap is raised to 1 byte. Never
 * fails: buffers are allocated on first use. A parser belongs to one thread (its
 * connection's loop); it may be moved in memory between calls. */
void http1_parser_init(struct http1_parser *p, const struct http1_limits *limits);
/* Free buffers. The parser may be initialised again afterwards. */
void http1_parser_release(struct http1_parser *p);

/* Feed bytes. Sets *consumed to the bytes used (the rest belong to the next
 * request). Returns an enum http1_feed_result:
 *   HTTP1_NEED_MORE          every byte consumed, request incomplete;
 *   HTTP1_REQUEST_READY      a complete request is in p->request; *consumed may be
 *                            less than len (pipelining): feed the rest after
 *                            http1_parser_next. Feeding again before next returns
 *                            HTTP1_REQUEST_READY with *consumed 0;
 *   HTTP1_BAD_REQUEST        malformed (http_parser error, HTTP major version not
 *                            1, a control byte in Content-Type), or any feed
 *                            after a request without keep-alive;
 *   HTTP1_TOO_LARGE          Content-Length over max_body_bytes (decided before any
 *                            body byte is read), or a chunk or the sum of chunks
 *                            over it (decided at the chunk-size line);
 *   HTTP1_HEADERS_TOO_LARGE  request line + headers (from the first byte of the
 *                            request to the LF of the blank line, leading empty
 *                            lines included) over max_header_bytes, or a
 *                            Content-Type value over 127 bytes;
 *   HTTP1_NOT_IMPLEMENTED    a Transfer-Encoding other than "chunked";
 *   HTTP1_INTERNAL_ERROR     out of memory.
 * After HTTP1_REQUEST_READY the request stays valid until http1_parser_next.
 * Once an error is returned, every later call returns it again (answer with that
 * status, Connection: close, and close). The result does not depend on how the
 * bytes are split across calls. An Upgrade request (h2c, websocket) and CONNECT
 * are parsed as ordinary requests: the protocol is never switched. */
int http1_parser_feed(struct http1_parser *p, const char *data, size_t len, size_t *consumed);

/* True exactly once per request: when its headers are complete, it is HTTP/1.1
 * with "Expect: 100-continue", and the body has not fully arrived. The
 * connection layer then writes "HTTP/1.1 100 Continue\r\n\r\n" before reading on.
 * Call after http1_parser_feed returned HTTP1_NEED_MORE. */
bool http1_parser_continue_due(struct http1_parser *p);

/* True once any byte of the current request (leading empty lines included)
 * has been fed and until http1_parser_next. */
bool http1_parser_started(const struct http1_parser *p);
/* True once the current request's head (request line + headers) is complete. */
bool http1_parser_head_complete(const struct http1_parser *p);

/* Forget the current request and get ready for the next on the connection.
 * Call it after HTTP1_REQUEST_READY (or an error). Does not clear a sticky error. After a request whose keep_alive is false the
 * connection is over: every later feed returns HTTP1_BAD_REQUEST. */
void http1_parser_next(struct http1_parser *p);

/* Returned by http1_query_get when the parameter is absent (an mv_err code,
 * distinct from every other error it returns). */
#define HTTP1_QUERY_ABSENT MV_ENOTFOUND

/* Look up a query parameter (application/x-www-form-urlencoded: '+' and %XX
 * decoded, in names and values) into out (NUL-terminated). The query ends at
 * NUL or '#'; pairs are separated by '&'; a pair without '=' has an empty value;
 * the first matching pair wins. Returns the decoded length, HTTP1_QUERY_ABSENT
 * (MV_ENOTFOUND) when absent, MV_ETOOBIG when the value and its NUL do not fit in out_size,
 * MV_EINVAL on a bad %-escape or a decoded NUL (%00) in the value or in a name
 * scanned before the match. On an error out is "" (when out_size > 0). */
int http1_query_get(const char *query, const char *name, char *out, size_t out_size);

/* Append a complete response: status line, Content-Type (if content_type is
 * non-NULL and non-empty), Content-Length, Connection: keep-alive/close,
 * extra_headers (each line ending in "\r\n", may be NULL), then the body.
 * body == NULL with body_len > 0 writes Content-Length: body_len and no body
 * (the answer to HEAD). 1xx and 204 responses carry no Content-Length and no
 * body (RFC 9110 8.6). On failure out is unchanged.
 * Returns 0; MV_ENOMEM; MV_ETOOBIG (out's limit); MV_EINVAL (status outside
 * 100..999, CR or LF in content_type, extra_headers not ending in CRLF, a body
 * on 1xx/204). */
int http1_response_build(struct buf *out, int status, const char *content_type,
                         const char *extra_headers, const char *body, size_t body_len,
                         bool keep_alive);

/* Standard reason phrase ("Not Found"); "Unknown" for others. */
const char *http1_reason(int status);

/* Routing: a static table of exact paths; handlers live with the caller
 * (the server layer keeps a parallel array), so routing stays I/O-free. */
struct http1_route {
	const char *path;     /* exact match on the path, e.g. "/metadata" */
	unsigned method_mask; /* HTTP1_METHOD_BIT(m) per allowed method */
};

#define HTTP1_METHOD_BIT(m) (1u << (m))

/* Find the route for a request. Returns its index in `routes` (the first whose
 * path and method match; *status 200); or -1 with *status 404 (no such path) or
 * 405 (path exists, method not allowed; then `allow` is filled with e.g.
 * "GET, HEAD, PUT" for the Allow header, from the union of every route with
 * that path, in the order GET, HEAD, POST, PUT, DELETE; 64 bytes always suffice;
 * a smaller buffer is truncated, NUL-terminated; allow may be NULL when
 * allow_size is 0). HEAD is allowed wherever GET is. A request method outside
 * enum http1_method (HTTP1_OTHER) is never allowed. */
int http1_route_find(const struct http1_route *routes, size_t route_count,
                     const struct http1_request *req, int *status, char *allow, size_t allow_size);

#endif
