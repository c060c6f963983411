/*
 * grpc.h - gRPC over HTTP/2 (nghttp2), server side; plus the protocol helpers
 * shared with the client (status codes, grpc-timeout, message framing).
 *
 * The session does no I/O: the connection layer feeds received bytes with
 * grpc_session_recv and writes what grpc_session_send produces. Unary and
 * server-streaming methods, whose requests carry exactly one message, and
 * bidirectional-streaming ones (grpc_method.bidi_streaming), see below.
 *
 * Call lifecycle: when a request is complete the session calls the method's
 * handler with the decoded-from-frame message bytes (valid only during the
 * handler call). The handler must call grpc_call_finish exactly once, now or
 * later (asynchronously) but always on the thread that owns the session (the
 * connection's event loop). If the client cancels or the connection closes
 * first, finish still has to be called: it then only releases the call.
 *
 * Bidirectional streaming: the handler runs once per request message as each
 * one arrives (`msg` valid during that call only), then once with msg NULL
 * when the client half-closes, unless the call was finished before; a
 * cancelled call (stream reset, connection gone) gets that msg NULL call too,
 * with grpc_call_cancelled true, unless the handler set its own
 * grpc_call_on_cancel callback. It may
 * send responses (grpc_call_send) at any time and finishes the call once,
 * usually at half-close. The session itself finishes the call on a bad
 * message (too big, compressed, truncated at half-close) or when more than
 * max_message_bytes of responses wait for a client that does not read them;
 * the handler sees no more messages then. Such handlers must answer
 * synchronously: the call is valid only inside the handler's invocations.
 */
#ifndef MOVIE_GRPC_H
#define MOVIE_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct buf;
struct trace_span;

/* The gRPC status codes, the one list everything derives from (the enum, the
 * names, the metrics labels, the faults.error_code values):
 * X(symbol, number, canonical name, grpc-go's codes.Code.String()).
 * GRPC_STATUS_ERRORS are the codes but OK, in order. */
#define GRPC_STATUS_ERRORS(X)                                                  \
	X(CANCELLED, 1, "CANCELLED", "Canceled")                               \
	X(UNKNOWN, 2, "UNKNOWN", "Unknown")                                    \
	X(INVALID_ARGUMENT, 3, "INVALID_ARGUMENT", "InvalidArgument")          \
	X(DEADLINE_EXCEEDED, 4, "DEADLINE_EXCEEDED", "DeadlineExceeded")       \
	X(NOT_FOUND, 5, "NOT_FOUND", "NotFound")                               \
	X(ALREADY_EXISTS, 6, "ALREADY_EXISTS", "AlreadyExists")                \
	X(PERMISSION_DENIED, 7, "PERMISSION_DENIED", "PermissionDenied")       \
	X(RESOURCE_EXHAUSTED, 8, "RESOURCE_EXHAUSTED", "ResourceExhausted")    \
	X(FAILED_PRECONDITION, 9, "FAILED_PRECONDITION", "FailedPrecondition") \
	X(ABORTED, 10, "ABORTED", "Aborted")                                   \
	X(OUT_OF_RANGE, 11, "OUT_OF_RANGE", "OutOfRange")                      \
	X(UNIMPLEMENTED, 12, "UNIMPLEMENTED", "Unimplemented")                 \
	X(INTERNAL, 13, "INTERNAL", "Internal")                                \
	X(UNAVAILABLE, 14, "UNAVAILABLE", "Unavailable")                       \
	X(DATA_LOSS, 15, "DATA_LOSS", "DataLoss")                              \
	X(UNAUTHENTICATED, 16, "UNAUTHENTICATED", "Unauthenticated")
#define GRPC_STATUS_CODES(X) X(OK, 0, "OK", "OK") GRPC_STATUS_ERRORS(X)

#define GRPC_STATUS_ENUM_(sym, num, name, label) GRPC_STATUS_##sym = num,
enum grpc_status {
	GRPC_STATUS_CODES(GRPC_STATUS_ENUM_)
};
#undef GRPC_STATUS_ENUM_
#define GRPC_STATUS_COUNT 17

/* "OK", "NOT_FOUND", ... ; "UNKNOWN" for codes outside 0..16. */
const char *grpc_status_name(int status);
/* The metrics label value of a status, as grpc-go spells it and
 * go-grpc-prometheus exports it: "OK", "Canceled", "NotFound", ...;
 * "Unknown" for codes outside 0..16. */
const char *grpc_status_label(int status);

/* Map a runtime error (movie/err.h) to the status a handler should return:
 * MV_ENOTFOUND -> NOT_FOUND, MV_EUNAVAIL -> UNAVAILABLE, MV_ETIMEDOUT ->
 * DEADLINE_EXCEEDED, MV_EINVAL/MV_ERANGE -> INVALID_ARGUMENT, MV_ETOOBIG and
 * MV_ENOMEM -> RESOURCE_EXHAUSTED, others -> INTERNAL. */
int grpc_status_from_err(int err);

/* Parse a grpc-timeout header value ("100m", "5S", at most 8 digits + unit
 * H M S m u n) into nanoseconds. Returns 0 or MV_EINVAL. */
int grpc_timeout_parse(const char *value, size_t len, int64_t *out_ns);
/* Format nanoseconds as a grpc-timeout value with the finest unit that fits
 * 8 digits. out_size >= 16. Returns 0 or MV_EINVAL (negative). */
int grpc_timeout_format(int64_t ns, char *out, size_t out_size);

/* Percent-encode a grpc-message value (RFC: bytes outside 0x20..0x7e and '%').
 * Returns 0, MV_ENOMEM, MV_ETOOBIG. */
int grpc_message_encode(const char *msg, struct buf *out);
/* Decode a percent-encoded grpc-message into out (NUL-terminated, truncated
 * to fit; invalid escapes are copied verbatim, as the spec asks). */
void grpc_message_decode(const char *in, size_t len, char *out, size_t out_size);

/* Length-prefixed message framing. A frame is 1 byte compressed-flag, 4 bytes
 * big-endian length, then the message. */
#define GRPC_FRAME_HEADER 5
/* Append one uncompressed frame. Returns 0, MV_ENOMEM, MV_ETOOBIG. */
int grpc_frame_append(struct buf *out, const uint8_t *msg, size_t len);
/* Decode exactly one frame that must span all of data..data+len.
 * Returns 0 (msg/msg_len set), MV_EAGAIN (incomplete), MV_ETOOBIG (declared
 * length > max_message), MV_EPROTO (compressed flag set, or trailing bytes:
 * more than one message). */
int grpc_frame_decode_single(const uint8_t *data, size_t len, size_t max_message,
                             const uint8_t **msg, size_t *msg_len);

/* ---- server session ---- */

struct grpc_call;
struct grpc_session;

typedef void (*grpc_handler_fn)(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx);

struct grpc_method {
	const char *path;    /* "/MetadataService/GetMetadata" */
	const char *service; /* "MetadataService" (metrics label) */
	const char *name;    /* "GetMetadata" */
	bool server_streaming;
	grpc_handler_fn handler;
	void *ctx;
	void *user;          /* the runtime's per-method data (metrics children) */
	bool bidi_streaming; /* client and server stream: see the top of this file */
};

struct grpc_session_limits {
	size_t max_message_bytes;        /* request messages above: RESOURCE_EXHAUSTED */
	uint32_t max_concurrent_streams; /* advertised in SETTINGS and enforced */
	size_t max_header_bytes;         /* SETTINGS_MAX_HEADER_LIST_SIZE, enforced on receipt */
	/* Output: grpc_session_send stops pulling frames once `out` holds this
	 * many bytes (0: no cap); the rest stays queued in the session. */
	size_t max_pending_output;
	/* Request bytes buffered by this session's streams (0: no cap). Over it,
	 * the largest incomplete request is answered RESOURCE_EXHAUSTED and reset. */
	size_t max_buffered_request_bytes;
	/* A budget shared by every session of the process: the counter (may be
	 * NULL: no budget) and its cap. Over it, new streams are refused with
	 * RESOURCE_EXHAUSTED and the largest incomplete request is reset. */
	_Atomic long *process_request_bytes;
	size_t max_process_request_bytes;
	/* Timeouts checked by grpc_session_expire (0: none). header: from a
	 * stream's first HEADERS frame to the end of its header block (the
	 * connection is blocked meanwhile, so it is closed); request: from the
	 * first HEADERS frame to the request's END_STREAM (the stream is reset). */
	int64_t header_timeout_ns;
	int64_t request_timeout_ns;
	/* Plain HTTP requests (grpc_session_hooks.http_request): body cap; a
	 * larger body is dropped and the request handed over with status 413. */
	size_t max_http_body_bytes;
};

/* A request on the HTTP/2 connection that is not gRPC (a method other than
 * POST, or a content-type other than application/grpc*): h2c clients of the
 * JSON API and of /healthz, /readyz, /metrics. Valid during the hook call. */
struct grpc_http_request {
	const char *method;       /* ":method", e.g. "GET" (truncated to 15 bytes) */
	const char *target;       /* ":path", e.g. "/metadata?id=1" */
	const char *content_type; /* "" when absent (truncated to 127 bytes) */
	const uint8_t *body;
	size_t body_len;
	/* 0, or the answer the session decided: 413 (body over
	 * max_http_body_bytes, dropped), 503 (request budgets exhausted). */
	int status;
	/* The request's server span (movie/trace.h): its traceparent and
	 * tracestate continued, or a new trace. */
	const struct trace_span *span;
};

struct grpc_session_hooks {
	/* A call ended: its response was submitted (any status, including the
	 * ones the session answers itself: UNIMPLEMENTED, INVALID_ARGUMENT, ...)
	 * or it was cancelled (stream reset, or the session freed; status
	 * CANCELLED), whichever comes first, even while its handler still runs.
	 * Exactly once per call whose headers arrived. method is NULL for an
	 * unknown path. seconds = time from headers received to the end.
	 * `started` tells whether call_started was reported for it. `span` is
	 * the call's server span (movie/trace.h: the request's traceparent
	 * continued, or a new trace), valid during the hook. */
	void (*call_done)(void *hook_ctx, const struct grpc_method *method, const char *path,
	                  int status, double seconds, bool started, const struct trace_span *span);
	/* A call reached its handler. Calls the session answers itself
	 * (unknown method, bad message, deadline, budgets) end in call_done
	 * with `started` false and are never reported here. */
	void (*call_started)(void *hook_ctx, const struct grpc_method *method);
	/* One whole message of a call to `method` was received (decoded and
	 * handed to the handler; `sent` false) or queued for the client (`sent`
	 * true): go-grpc-prometheus' msg_received / msg_sent. May be NULL. */
	void (*call_message)(void *hook_ctx, const struct grpc_method *method, bool sent);
	/* A plain HTTP request is complete (see struct grpc_http_request): the
	 * hook must answer it once with grpc_call_respond_http, now or later, on
	 * the session's thread. NULL: such requests are refused with a bare 405
	 * (method) or 415 (content-type). They never reach the other hooks. */
	void (*http_request)(void *hook_ctx, struct grpc_call *call,
	                     const struct grpc_http_request *req);
	/* A plain HTTP request the session answered itself while it was still
	 * arriving: `status` 408 (api.request_timeout) or 503 (request budgets),
	 * `seconds` from its headers. Such requests never reach http_request.
	 * May be NULL. */
	void (*http_rejected)(void *hook_ctx, int status, double seconds);
	/* Output became pending outside grpc_session_recv (an async finish). */
	void (*want_write)(void *hook_ctx);
	void *hook_ctx;
};

/* Create a session for one accepted connection that has sent (or will send)
 * the HTTP/2 client preface. `methods` must outlive the session.
 * Returns NULL on allocation failure. */
struct grpc_session *grpc_session_new(const struct grpc_method *methods, size_t method_count,
                                      const struct grpc_session_limits *limits,
                                      const struct grpc_session_hooks *hooks);
/* Free the session. Outstanding calls are orphaned: their finish only releases them. */
void grpc_session_free(struct grpc_session *s);

/* Process received bytes (may call handlers). Returns 0, or MV_EPROTO when the
 * connection must be closed (after sending what grpc_session_send yields). */
int grpc_session_recv(struct grpc_session *s, const uint8_t *data, size_t len);
/* Append pending output, up to limits.max_pending_output bytes in `out`.
 * Returns 0, MV_EPROTO (fatal), MV_ENOMEM. */
int grpc_session_send(struct grpc_session *s, struct buf *out);
/* False once the session has nothing more to read or write (close it). */
bool grpc_session_want_io(struct grpc_session *s);
/* Start a graceful shutdown: GOAWAY with the last processed stream id; open
 * streams complete, new ones are refused. */
void grpc_session_goaway(struct grpc_session *s);
/* Calls started and not yet finished (in-flight). */
size_t grpc_session_active_calls(const struct grpc_session *s);
/* Apply the header and request timeouts at time `now_ns` (grpc_now_ns clock).
 * Returns 0, or MV_ETIMEDOUT when a header block stayed incomplete too long:
 * a GOAWAY is queued and the connection must be closed after sending it. */
int grpc_session_expire(struct grpc_session *s, int64_t now_ns);
/* grpc_now_ns time of the last stream opened or closed (the session's
 * creation before any): what "idle" means for HTTP/2, so that PINGs alone
 * do not keep a connection open. */
int64_t grpc_session_last_stream_activity(const struct grpc_session *s);
/* Streams open (receiving, handled or sending). */
size_t grpc_session_open_streams(const struct grpc_session *s);
/* Request bytes buffered by the session's calls. */
size_t grpc_session_buffered_request_bytes(const struct grpc_session *s);

/* ---- handler side of a call (session thread only) ---- */

/* Absolute deadline on the CLOCK_MONOTONIC clock in ns, or 0 when none. */
int64_t grpc_call_deadline(const struct grpc_call *call);
/* True once the client cancelled or the connection went away. */
bool grpc_call_cancelled(const struct grpc_call *call);
/* Server streaming: queue one response message. Returns 0, MV_ECLOSED
 * (cancelled), MV_ENOMEM. */
int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len);
/* Finish the call: for OK, `msg` (may be NULL for streaming) is the response
 * message; for an error status a trailers-only response carries `message`
 * (percent-encoded here). Releases the call: do not touch it afterwards. */
void grpc_call_finish(struct grpc_call *call, int status, const char *message, const uint8_t *msg,
                      size_t len);
/* Called once if the call is cancelled before finish (stream reset or
 * connection closed); the handler must still call grpc_call_finish. */
void grpc_call_on_cancel(struct grpc_call *call, void (*fn)(struct grpc_call *call, void *arg),
                         void *arg);
/* Answer a plain HTTP request (grpc_session_hooks.http_request) and release
 * the call: `status`, optional content-type and Allow header values (NULL:
 * none), the body (copied; `head`: Content-Length only, as for HEAD).
 * A request reset meanwhile is only released. */
void grpc_call_respond_http(struct grpc_call *call, int status, const char *content_type,
                            const char *allow, const char *body, size_t len, bool head);
/* The call's server span (movie/trace.h), valid until grpc_call_finish:
 * the parent of the handler's own calls to other services. */
const struct trace_span *grpc_call_span(const struct grpc_call *call);
/* The path of the call ("/Service/Method"). */
const char *grpc_call_path(const struct grpc_call *call);

/* Current CLOCK_MONOTONIC time in ns. */
int64_t grpc_now_ns(void);

#endif
