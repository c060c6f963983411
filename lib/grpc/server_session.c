/*
 * gRPC server session: one HTTP/2 connection, driven by nghttp2's I/O-free core.
 *
 * gRPC rules enforced here (nghttp2 knows only HTTP/2): POST, content-type
 * application/grpc[+proto|;...], one length-prefixed request message per
 * stream (bidi-streaming methods: any number, each handled as it arrives),
 * grpc-timeout, response HEADERS + DATA + trailers for OK and a
 * trailers-only HEADERS frame (END_STREAM) for errors.
 *
 * A call is referenced by its stream (until nghttp2 closes the stream) and by
 * its handler (until grpc_call_finish). It is freed when both let go; a call
 * whose session is freed first is "orphaned" (session pointer NULL).
 */
#include "movie/grpc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/trace.h"
#include "movie/banned.h"

enum call_state {
	CALL_RECEIVING, /* headers seen, collecting the request message */
	CALL_HANDLING,  /* handler owns the completion */
	CALL_RESPONDED, /* response submitted (or being streamed) */
};

struct grpc_call {
	struct grpc_session *session; /* NULL once orphaned */
	int32_t stream_id;
	enum call_state state;
	bool stream_open;   /* nghttp2 still has the stream */
	bool handler_holds; /* handler has not called finish yet */
	bool cancelled;
	bool headers_sent; /* response HEADERS submitted (streaming / OK path) */
	bool finished;     /* grpc_call_finish called */
	bool bad_request;  /* request already answered with an error */
	bool counted_active;
	bool reported; /* call_done hook ran: a call ends in the metrics once */
	bool ready;    /* request complete, on the session's ready list */
	struct grpc_call *next_ready;
	bool headers_done;         /* the request's header block ended */
	bool remote_closed;        /* the client's END_STREAM arrived */
	bool refused;              /* over the request budget at its start: refuse it */
	bool reset_after_response; /* RST_STREAM(NO_ERROR) once the response is sent */
	bool response_sent;        /* our END_STREAM went out */
	bool not_post;             /* :method is not POST */
	bool grpc_content_type;    /* content-type application/grpc[+...|;...] */
	bool http;                 /* a plain HTTP request: grpc_session_hooks.http_request */
	int http_status;           /* 413/503 decided by the session, else 0 */
	char http_method[16];
	char content_type[128];
	char *long_target;    /* :path when it does not fit in path[] (plain HTTP only) */
	size_t header_bytes;  /* decoded header list so far, RFC 7541 sizes */
	size_t accounted;     /* request bytes counted in the budgets */
	_Atomic long *budget; /* the process budget counter (outlives sessions) */
	int status;           /* final status for trailers */
	const struct grpc_method *method;
	char path[128];
	int64_t deadline_ns;
	int64_t start_ns;
	struct buf request; /* length-prefixed request bytes */
	struct buf out;     /* framed response messages not yet sent */
	size_t out_sent;
	struct buf status_message; /* percent-encoded grpc-message */
	void (*cancel_fn)(struct grpc_call *call, void *arg);
	void *cancel_arg;
	struct grpc_call *next_in_session; /* calls list, for orphaning */
	struct grpc_call *prev_in_session;
	/* W3C Trace Context: the request's traceparent (parsed as it arrives;
	 * a second one makes it invalid) and its tracestate headers joined,
	 * until the header block ends and the server span starts. */
	struct trace_parent parent;
	uint8_t traceparents;   /* valid traceparent headers seen; 0xff: an invalid one */
	struct buf *tracestate; /* NULL until a tracestate header */
	bool tracestate_over;   /* more than TRACE_STATE_RAW_MAX bytes: discarded */
	struct trace_span span; /* this call's server span */
};

struct grpc_session {
	nghttp2_session *h2;
	const struct grpc_method *methods;
	size_t method_count;
	struct grpc_session_limits limits;
	struct grpc_session_hooks hooks;
	struct grpc_call *calls; /* every live call referencing this session */
	size_t active_calls;
	bool in_recv; /* suppress want_write while inside recv */
	/* Requests completed during one grpc_session_recv, dispatched after it. */
	struct grpc_call *ready_head, *ready_tail;
	bool goaway_sent;
	bool fatal;
	size_t buffered;            /* request bytes held by this session's calls */
	size_t open_streams;        /* streams nghttp2 still has */
	unsigned header_violations; /* header blocks over max_header_bytes */
	int64_t last_stream_ns;     /* last stream opened or closed */
};

/* Header blocks over the advertised limit tolerated on one connection before
 * it is closed with GOAWAY ENHANCE_YOUR_CALM: one may be a misconfigured
 * client, a run of them is an attack on the decoder. */
#define MAX_HEADER_VIOLATIONS 3

static void session_link(struct grpc_session *s, struct grpc_call *c)
{
	c->next_in_session = s->calls;
	c->prev_in_session = NULL;
	if (s->calls)
		s->calls->prev_in_session = c;
	s->calls = c;
}

static void session_unlink(struct grpc_session *s, struct grpc_call *c)
{
	if (c->prev_in_session)
		c->prev_in_session->next_in_session = c->next_in_session;
	else if (s->calls == c)
		s->calls = c->next_in_session;
	if (c->next_in_session)
		c->next_in_session->prev_in_session = c->prev_in_session;
	c->next_in_session = c->prev_in_session = NULL;
}

/* Bring the budgets in line with the bytes the call's request buffer holds. */
static void call_account(struct grpc_call *c)
{
	size_t now = c->request.len;
	if (now == c->accounted)
		return;
	if (c->budget) {
		if (now > c->accounted)
			atomic_fetch_add(c->budget, (long)(now - c->accounted));
		else
			atomic_fetch_sub(c->budget, (long)(c->accounted - now));
	}
	if (c->session)
		c->session->buffered = c->session->buffered + now - c->accounted;
	c->accounted = now;
}

static void call_release_request(struct grpc_call *c)
{
	buf_release(&c->request);
	call_account(c);
}

static void call_drop_tracestate(struct grpc_call *c)
{
	if (c->tracestate) {
		buf_release(c->tracestate);
		free(c->tracestate);
		c->tracestate = NULL;
	}
}

/* The server span: the caller's trace when exactly one valid traceparent
 * came, else a new trace. Once, when the header block ends (or earlier when
 * the call ends before that). */
static void call_start_span(struct grpc_call *c)
{
	if (c->span.valid)
		return;
	bool ok = c->traceparents == 1;
	const char *ts = ok && c->tracestate && !c->tracestate_over ? c->tracestate->data : NULL;
	trace_span_start_server(&c->span, ok ? &c->parent : NULL, ts, ts ? c->tracestate->len : 0);
	call_drop_tracestate(c);
}

static void call_free(struct grpc_call *c)
{
	call_drop_tracestate(c);
	trace_span_release(&c->span);
	free(c->long_target);
	call_release_request(c);
	buf_release(&c->out);
	buf_release(&c->status_message);
	free(c);
}

/* Drop the call when neither the stream nor the handler references it. */
static void call_maybe_free(struct grpc_call *c)
{
	if (c->stream_open || c->handler_holds || c->ready)
		return;
	if (c->session)
		session_unlink(c->session, c);
	call_free(c);
}

/* The one place a call ends for the runtime (metrics, in-flight count, logs):
 * when its response is submitted, or when it is cancelled (stream reset,
 * connection gone) even though its handler may still be running. Once. */
static void call_mark_done(struct grpc_call *c, int status)
{
	struct grpc_session *s = c->session;
	if (!s || c->reported)
		return;
	c->reported = true;
	bool started = c->counted_active;
	if (started) {
		c->counted_active = false;
		s->active_calls--;
	}
	if (c->http)
		return; /* not a gRPC call: the HTTP layer counts it */
	if (s->hooks.call_done) {
		call_start_span(c);
		double seconds = (double)(grpc_now_ns() - c->start_ns) / 1e9;
		s->hooks.call_done(s->hooks.hook_ctx, c->method, c->path, status, seconds, started,
		                   &c->span);
	}
}

static void note_message(struct grpc_session *s, const struct grpc_call *c, bool sent)
{
	if (s->hooks.call_message && c->method)
		s->hooks.call_message(s->hooks.hook_ctx, c->method, sent);
}

static void notify_want_write(struct grpc_session *s)
{
	if (!s->in_recv && s->hooks.want_write)
		s->hooks.want_write(s->hooks.hook_ctx);
}

/* Header names are literals (not copied); values are copied by nghttp2. */
static nghttp2_nv make_nv(const char *name, const char *value)
{
	nghttp2_nv nv = {(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name),
	                 strlen(value), NGHTTP2_NV_FLAG_NO_COPY_NAME};
	return nv;
}
#define NV(name, value) make_nv((name), (value))

/* Trailers-only response: one HEADERS frame with END_STREAM. */
static void submit_trailers_only(struct grpc_call *c, int status, const char *message)
{
	struct grpc_session *s = c->session;
	char code[12];
	snprintf(code, sizeof(code), "%d", status);
	buf_reset(&c->status_message);
	if (message && *message)
		grpc_message_encode(message, &c->status_message);
	nghttp2_nv nv[4] = {
	    NV(":status", "200"),
	    NV("content-type", "application/grpc"),
	    NV("grpc-status", code),
	};
	size_t n = 3;
	if (c->status_message.len) {
		nv[n++] = NV("grpc-message", c->status_message.data);
	}
	/* nghttp2 copies header values at submit time unless NO_COPY_VALUE is set. */
	nghttp2_submit_response(s->h2, c->stream_id, nv, n, NULL);
	c->state = CALL_RESPONDED;
}

/* HTTP-level rejection of a request that is not gRPC at all. */
static void submit_http_error(struct grpc_call *c, const char *http_status)
{
	nghttp2_nv nv[1] = {NV(":status", http_status)};
	nghttp2_submit_response(c->session->h2, c->stream_id, nv, 1, NULL);
	c->state = CALL_RESPONDED;
	c->bad_request = true;
	c->handler_holds = false;
}

static void submit_trailers(struct grpc_call *c)
{
	char code[12];
	snprintf(code, sizeof(code), "%d", c->status);
	nghttp2_nv nv[2] = {NV("grpc-status", code)};
	size_t n = 1;
	if (c->status_message.len) {
		nv[n++] = NV("grpc-message", c->status_message.data);
	}
	nghttp2_submit_trailer(c->session->h2, c->stream_id, nv, n);
}

/* Answer a request that is still arriving with `status`, drop what it
 * buffered, and reset the stream (NO_ERROR: the response is complete) so the
 * client stops sending its body (RFC 9113 section 8.1). */
static void call_reject(struct grpc_call *c, int status, const char *message)
{
	struct grpc_session *s = c->session;
	call_release_request(c);
	if (c->state == CALL_RECEIVING && !c->bad_request && c->http) {
		int http_status = status == GRPC_STATUS_DEADLINE_EXCEEDED ? 408 : 503;
		submit_http_error(c, http_status == 408 ? "408" : "503");
		call_mark_done(c, status);
		if (s->hooks.http_rejected)
			s->hooks.http_rejected(s->hooks.hook_ctx, http_status,
			                       (double)(grpc_now_ns() - c->start_ns) / 1e9);
	} else if (c->state == CALL_RECEIVING && !c->bad_request) {
		c->handler_holds = false;
		submit_trailers_only(c, status, message);
		call_mark_done(c, status);
	}
	c->bad_request = true;
	c->handler_holds = false;
	/* Only after the response: nghttp2 drops a response still queued
	 * behind a reset of its stream. */
	if (c->response_sent)
		nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_NO_ERROR);
	else
		c->reset_after_response = true;
}

static bool over_process_budget(const struct grpc_session *s, size_t extra)
{
	if (!s->limits.process_request_bytes)
		return false;
	long used = atomic_load(s->limits.process_request_bytes);
	return used > 0 && (size_t)used + extra > s->limits.max_process_request_bytes;
}

static bool over_session_budget(const struct grpc_session *s, size_t extra)
{
	return s->limits.max_buffered_request_bytes &&
	       s->buffered + extra > s->limits.max_buffered_request_bytes;
}

/* The incomplete request holding the most buffered bytes (the oldest of
 * equals: calls are listed newest first), or NULL. */
static struct grpc_call *largest_receiving(struct grpc_session *s)
{
	struct grpc_call *best = NULL;
	for (struct grpc_call *c = s->calls; c; c = c->next_in_session) {
		if (c->state == CALL_RECEIVING && !c->bad_request && c->stream_open &&
		    c->request.len && (!best || c->request.len >= best->request.len))
			best = c;
	}
	return best;
}

/* Make room for `extra` more bytes for `c`: reset the largest incomplete
 * requests of this session until the budgets hold, `c` itself included.
 * Returns false when `c` was reset. Only this session's streams can be reset
 * (the process budget is shared between threads); a session that holds
 * nothing cannot free anything, so its request is the one refused. */
static bool make_room(struct grpc_session *s, struct grpc_call *c, size_t extra)
{
	while (over_session_budget(s, extra) || over_process_budget(s, extra)) {
		struct grpc_call *victim = largest_receiving(s);
		if (!victim || victim->request.len < c->request.len + extra)
			victim = c;
		call_reject(victim, GRPC_STATUS_RESOURCE_EXHAUSTED,
		            "server request buffer budget exhausted");
		if (victim == c)
			return false;
	}
	return true;
}

static ssize_t data_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *dest, size_t length,
                            uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct grpc_call *c = source->ptr;
	size_t avail = c->out.len - c->out_sent;
	size_t n = avail < length ? avail : length;
	if (n)
		memcpy(dest, c->out.data + c->out_sent, n);
	c->out_sent += n;
	if (c->out_sent == c->out.len) {
		buf_reset(&c->out);
		c->out_sent = 0;
		if (c->finished) {
			*data_flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
			submit_trailers(c);
		} else if (n == 0) {
			return NGHTTP2_ERR_DEFERRED;
		}
	}
	return (ssize_t)n;
}

static int submit_response_headers(struct grpc_call *c)
{
	nghttp2_nv nv[2] = {NV(":status", "200"), NV("content-type", "application/grpc")};
	nghttp2_data_provider provider = {.source.ptr = c, .read_callback = data_read_cb};
	c->headers_sent = true;
	c->state = CALL_RESPONDED;
	return nghttp2_submit_response(c->session->h2, c->stream_id, nv, 2, &provider);
}

/* ---- bidirectional streaming (grpc_method.bidi_streaming) ---- */

/* End a bidi call with an error: through finish once the handler runs, else
 * the way dispatch rejects a unary request. */
static void bidi_fail(struct grpc_call *c, int status, const char *why)
{
	if (c->state == CALL_RECEIVING) {
		c->handler_holds = false;
		c->bad_request = true;
		submit_trailers_only(c, status, why);
		call_mark_done(c, status);
	} else {
		grpc_call_finish(c, status, why, NULL, 0);
	}
}

/* A reset or a closed connection ends the request stream too: the handler
 * gets its final msg NULL call and finishes (grpc_call_cancelled is true),
 * unless it set a cancel callback of its own. */
static void bidi_cancelled(struct grpc_call *c, void *arg)
{
	c->method->handler(c, NULL, 0, c->method->ctx);
}

/* The call reaches its handler on its first message (or at half-close). */
static bool bidi_start(struct grpc_session *s, struct grpc_call *c)
{
	if (c->state != CALL_RECEIVING)
		return true;
	if (c->deadline_ns && grpc_now_ns() >= c->deadline_ns) {
		bidi_fail(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
		return false;
	}
	c->state = CALL_HANDLING;
	c->counted_active = true;
	c->cancel_fn = bidi_cancelled;
	s->active_calls++;
	if (s->hooks.call_started)
		s->hooks.call_started(s->hooks.hook_ctx, c->method);
	return true;
}

/* Request bytes of a bidi call: hand each complete message to the handler.
 * c->request holds at most one message (capped at max_message_bytes): only
 * the bytes the current message still needs are taken from a chunk. */
static void bidi_recv(struct grpc_session *s, struct grpc_call *c, const uint8_t *data, size_t len)
{
	while (len && !c->finished && c->handler_holds) {
		size_t have = c->request.len, need;
		const uint8_t *p = (const uint8_t *)c->request.data;
		if (have < GRPC_FRAME_HEADER) {
			need = GRPC_FRAME_HEADER - have;
		} else {
			size_t declared = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
			                  ((size_t)p[3] << 8) | (size_t)p[4];
			need = GRPC_FRAME_HEADER + declared - have;
		}
		size_t take = need < len ? need : len;
		if (buf_append(&c->request, data, take) != 0) {
			bidi_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory");
			return;
		}
		data += take;
		len -= take;
		p = (const uint8_t *)c->request.data;
		if (c->request.len == GRPC_FRAME_HEADER) {
			size_t declared = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
			                  ((size_t)p[3] << 8) | (size_t)p[4];
			if (p[0] != 0) {
				bidi_fail(c, GRPC_STATUS_UNIMPLEMENTED,
				          "compressed messages are not supported");
				return;
			}
			if (declared > s->limits.max_message_bytes) {
				bidi_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
				          "request message larger than the server's maximum");
				return;
			}
			if (declared)
				continue;
		}
		if (c->request.len < GRPC_FRAME_HEADER || take < need)
			continue;
		/* One whole message. */
		if (!bidi_start(s, c))
			return;
		if (c->out.len - c->out_sent > s->limits.max_message_bytes) {
			grpc_call_finish(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			                 "client does not read the responses", NULL, 0);
			return;
		}
		note_message(s, c, false);
		c->method->handler(c, p + GRPC_FRAME_HEADER, c->request.len - GRPC_FRAME_HEADER,
		                   c->method->ctx);
		buf_reset(&c->request);
	}
}

/* END_STREAM on a bidi call: the client sends no more messages. */
static void bidi_half_close(struct grpc_session *s, struct grpc_call *c)
{
	if (c->finished || !c->handler_holds)
		return;
	if (c->request.len) {
		bidi_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "request stream ends inside a message");
		return;
	}
	if (bidi_start(s, c))
		c->method->handler(c, NULL, 0, c->method->ctx);
}

/* The request is complete: validate the frame and run the handler. */
static void http_dispatch(struct grpc_session *s, struct grpc_call *c)
{
	if (c->state != CALL_RECEIVING)
		return;
	struct grpc_http_request req = {
	    .method = c->http_method,
	    .target = c->long_target ? c->long_target : c->path,
	    .content_type = c->content_type,
	    .body = (const uint8_t *)c->request.data,
	    .body_len = c->request.len,
	    .status = c->http_status,
	    .span = &c->span,
	};
	c->state = CALL_HANDLING;
	c->counted_active = true;
	s->active_calls++;
	s->hooks.http_request(s->hooks.hook_ctx, c, &req);
}

static void dispatch(struct grpc_session *s, struct grpc_call *c)
{
	if (c->http) {
		http_dispatch(s, c);
		return;
	}
	if (c->method && c->method->bidi_streaming) {
		bidi_half_close(s, c);
		return;
	}
	if (c->state != CALL_RECEIVING)
		return;
	if (!c->method) {
		c->handler_holds = false;
		submit_trailers_only(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
		call_mark_done(c, GRPC_STATUS_UNIMPLEMENTED);
		return;
	}
	const uint8_t *msg;
	size_t msg_len;
	int rc = grpc_frame_decode_single((const uint8_t *)c->request.data, c->request.len,
	                                  s->limits.max_message_bytes, &msg, &msg_len);
	if (rc) {
		int status = GRPC_STATUS_INVALID_ARGUMENT;
		const char *why = "request must be exactly one uncompressed message";
		if (rc == MV_ETOOBIG) {
			status = GRPC_STATUS_RESOURCE_EXHAUSTED;
			why = "request message larger than the server's maximum";
		} else if (c->request.len && (uint8_t)c->request.data[0] == 1) {
			status = GRPC_STATUS_UNIMPLEMENTED;
			why = "compressed messages are not supported";
		}
		c->handler_holds = false;
		submit_trailers_only(c, status, why);
		call_mark_done(c, status);
		return;
	}
	if (c->deadline_ns && grpc_now_ns() >= c->deadline_ns) {
		c->handler_holds = false;
		submit_trailers_only(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded");
		call_mark_done(c, GRPC_STATUS_DEADLINE_EXCEEDED);
		return;
	}
	c->state = CALL_HANDLING;
	c->counted_active = true;
	s->active_calls++;
	if (s->hooks.call_started)
		s->hooks.call_started(s->hooks.hook_ctx, c->method);
	note_message(s, c, false);
	c->method->handler(c, msg, msg_len, c->method->ctx);
}

static int on_begin_headers(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_session *s = user_data;
	if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	struct grpc_call *c = calloc(1, sizeof(*c));
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* RST_STREAM this stream */
	c->session = s;
	c->stream_id = frame->hd.stream_id;
	c->state = CALL_RECEIVING;
	c->stream_open = true;
	c->handler_holds = true;
	c->start_ns = grpc_now_ns();
	c->budget = s->limits.process_request_bytes;
	/* Over budget: answered RESOURCE_EXHAUSTED once its header block ends. */
	c->refused = over_session_budget(s, 0) || over_process_budget(s, 0);
	s->open_streams++;
	s->last_stream_ns = c->start_ns;
	buf_init(&c->request, s->limits.max_message_bytes + GRPC_FRAME_HEADER);
	buf_init(&c->out, 0);
	buf_init(&c->status_message, 4096);
	session_link(s, c);
	nghttp2_session_set_stream_user_data(h2, frame->hd.stream_id, c);
	return 0;
}

static const struct grpc_method *find_method(const struct grpc_session *s, const uint8_t *path,
                                             size_t len)
{
	for (size_t i = 0; i < s->method_count; i++) {
		const char *p = s->methods[i].path;
		if (strlen(p) == len && memcmp(p, path, len) == 0)
			return &s->methods[i];
	}
	return NULL;
}

static bool header_is(const uint8_t *name, size_t namelen, const char *literal)
{
	size_t n = strlen(literal);
	return namelen == n && memcmp(name, literal, n) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	struct grpc_session *s = user_data;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct grpc_call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!c)
		return 0;
	/* nghttp2 does not enforce SETTINGS_MAX_HEADER_LIST_SIZE on receipt,
	 * and HPACK lets one byte name a large table entry again and again:
	 * count the decoded list as RFC 7541 sizes it (trailers too, they cost
	 * the decoder as much) and stop at the limit. TEMPORAL_CALLBACK_FAILURE
	 * makes nghttp2 skip the rest of the block (it still updates the HPACK
	 * table, but no longer validates values or calls us). */
	c->header_bytes += namelen + valuelen + 32;
	if (c->header_bytes > s->limits.max_header_bytes) {
		if (++s->header_violations >= MAX_HEADER_VIOLATIONS) {
			nghttp2_session_terminate_session(h2, NGHTTP2_ENHANCE_YOUR_CALM);
			return NGHTTP2_ERR_CALLBACK_FAILURE;
		}
		if (!c->bad_request && c->state == CALL_RECEIVING)
			call_mark_done(c, GRPC_STATUS_RESOURCE_EXHAUSTED);
		c->bad_request = true;
		c->handler_holds = false;
		call_release_request(c);
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_ENHANCE_YOUR_CALM);
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	if (c->bad_request || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (header_is(name, namelen, ":path")) {
		size_t n = valuelen < sizeof(c->path) - 1 ? valuelen : sizeof(c->path) - 1;
		memcpy(c->path, value, n);
		c->path[n] = '\0';
		c->method = find_method(s, value, valuelen);
		/* Bounded by max_header_bytes (checked above). */
		if (valuelen >= sizeof(c->path) && s->hooks.http_request && !c->long_target) {
			c->long_target = malloc(valuelen + 1);
			if (c->long_target) {
				memcpy(c->long_target, value, valuelen);
				c->long_target[valuelen] = '\0';
			}
		}
	} else if (header_is(name, namelen, ":method")) {
		size_t n =
		    valuelen < sizeof(c->http_method) - 1 ? valuelen : sizeof(c->http_method) - 1;
		memcpy(c->http_method, value, n);
		c->http_method[n] = '\0';
		c->not_post = !(valuelen == 4 && memcmp(value, "POST", 4) == 0);
	} else if (header_is(name, namelen, "content-type")) {
		static const char grpc_ct[] = "application/grpc";
		size_t n = sizeof(grpc_ct) - 1;
		c->grpc_content_type = valuelen >= n && memcmp(value, grpc_ct, n) == 0 &&
		                       (valuelen == n || value[n] == '+' || value[n] == ';');
		size_t m =
		    valuelen < sizeof(c->content_type) - 1 ? valuelen : sizeof(c->content_type) - 1;
		memcpy(c->content_type, value, m);
		c->content_type[m] = '\0';
	} else if (header_is(name, namelen, "grpc-timeout")) {
		int64_t timeout_ns;
		if (grpc_timeout_parse((const char *)value, valuelen, &timeout_ns) == 0) {
			int64_t now = c->start_ns;
			c->deadline_ns = timeout_ns > INT64_MAX - now ? 0 : now + timeout_ns;
		}
	} else if (header_is(name, namelen, "traceparent")) {
		/* More than one traceparent is invalid (W3C Trace Context 3.2). */
		if (c->traceparents == 0 &&
		    trace_parent_parse((const char *)value, valuelen, &c->parent) == 0)
			c->traceparents = 1;
		else
			c->traceparents = 0xff;
	} else if (header_is(name, namelen, "tracestate")) {
		/* Several tracestate headers make one list (RFC 9110 5.3). The
		 * header cap bounds them; TRACE_STATE_RAW_MAX bounds what we keep. */
		if (!c->tracestate && !c->tracestate_over) {
			c->tracestate = malloc(sizeof(*c->tracestate));
			if (c->tracestate)
				buf_init(c->tracestate, TRACE_STATE_RAW_MAX);
			else
				c->tracestate_over = true;
		}
		if (c->tracestate &&
		    ((c->tracestate->len && buf_append(c->tracestate, ",", 1) != 0) ||
		     buf_append(c->tracestate, value, valuelen) != 0)) {
			c->tracestate_over = true;
			call_drop_tracestate(c);
		}
	} else if (header_is(name, namelen, "grpc-encoding")) {
		/* identity is the only encoding we speak; others are caught on the
		 * compressed flag of the message itself. */
	}
	return 0;
}

/* Body bytes of a plain HTTP request, within its cap and the budgets; over
 * them the body is dropped and the request handed over with 413 or 503 (the
 * HTTP layer answers, so that it counts and logs the answer). */
static void http_recv(struct grpc_session *s, struct grpc_call *c, const uint8_t *data, size_t len)
{
	if (c->state != CALL_RECEIVING || c->bad_request || c->http_status)
		return;
	if (over_session_budget(s, len) || over_process_budget(s, len)) {
		c->http_status = 503;
	} else if (c->request.len + len > s->limits.max_http_body_bytes ||
	           buf_append(&c->request, data, len) != 0) {
		c->http_status = 413;
	}
	if (c->http_status)
		call_release_request(c);
	else
		call_account(c);
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
	struct grpc_call *c = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (c && c->http) {
		http_recv(user_data, c, data, len);
		return 0;
	}
	if (c && c->method && c->method->bidi_streaming && !c->bad_request) {
		bidi_recv(user_data, c, data, len);
		return 0;
	}
	if (!c || c->state != CALL_RECEIVING || c->bad_request)
		return 0;
	/* An unknown method is answered UNIMPLEMENTED at the end of the request,
	 * whatever its body: keep none of it, so no size check applies. */
	if (!c->method)
		return 0;
	struct grpc_session *s = user_data;
	if (!make_room(s, c, len))
		return 0;
	int rc = buf_append(&c->request, data, len);
	call_account(c);
	if (rc != 0) {
		/* Over max_message_bytes + prefix: answer at once and ignore the rest. */
		c->bad_request = true;
		c->handler_holds = false;
		submit_trailers_only(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		                     "request message larger than the server's maximum");
		call_mark_done(c, GRPC_STATUS_RESOURCE_EXHAUSTED);
		return 0;
	}
	/* Reject early on the declared length, before the body arrives. */
	if (c->request.len >= GRPC_FRAME_HEADER) {
		const uint8_t *p = (const uint8_t *)c->request.data;
		size_t declared = ((size_t)p[1] << 24) | ((size_t)p[2] << 16) |
		                  ((size_t)p[3] << 8) | (size_t)p[4];
		if (declared > s->limits.max_message_bytes) {
			c->bad_request = true;
			c->handler_holds = false;
			call_release_request(c);
			submit_trailers_only(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			                     "request message larger than the server's maximum");
			call_mark_done(c, GRPC_STATUS_RESOURCE_EXHAUSTED);
		}
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_session *s = user_data;
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	struct grpc_call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!c)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS && !c->headers_done) {
		c->headers_done = true;
		call_start_span(c);
		if (!c->bad_request && (c->not_post || !c->grpc_content_type)) {
			if (!s->hooks.http_request) {
				submit_http_error(c, c->not_post ? "405" : "415");
			} else {
				/* Not gRPC: the HTTP layer answers it, body and all. */
				c->http = true;
				c->method = NULL;
				if (c->refused)
					c->http_status = 503;
				c->refused = false;
			}
		}
		if (c->refused && !c->bad_request)
			call_reject(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			            "server request buffer budget exhausted");
	}
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
		c->remote_closed = true;
		if (c->bad_request || c->ready)
			return 0;
		/* Handlers run once the whole input has been processed: a client
		 * that gave up sends RST_STREAM right behind the request (an
		 * abandoned call relayed by a proxy, a stopped server resuming),
		 * and a request already reset must not be executed. */
		c->ready = true;
		c->next_ready = NULL;
		if (s->ready_tail)
			s->ready_tail->next_ready = c;
		else
			s->ready_head = c;
		s->ready_tail = c;
	}
	return 0;
}

/* Run the handlers of the requests completed during this recv whose streams
 * are still open; free the ones reset meanwhile (ended CANCELLED already).
 * After a fatal error (run false) none runs: the connection is closing and
 * grpc_session_free ends them. */
static void dispatch_ready(struct grpc_session *s, bool run)
{
	while (s->ready_head) {
		struct grpc_call *c = s->ready_head;
		s->ready_head = c->next_ready;
		if (!s->ready_head)
			s->ready_tail = NULL;
		c->ready = false;
		c->next_ready = NULL;
		/* A bidi call is already being handled when its half-close is
		 * dispatched (its messages went to the handler as they came). */
		bool bidi = c->method && c->method->bidi_streaming;
		if (run && c->stream_open && c->handler_holds &&
		    (c->state == CALL_RECEIVING || bidi))
			dispatch(s, c);
		else
			call_maybe_free(c);
	}
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	if (frame->hd.type != NGHTTP2_HEADERS || !(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	struct grpc_call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!c)
		return 0;
	c->response_sent = true;
	if (c->reset_after_response && c->stream_open && !c->remote_closed) {
		c->reset_after_response = false;
		nghttp2_submit_rst_stream(h2, NGHTTP2_FLAG_NONE, c->stream_id, NGHTTP2_NO_ERROR);
	}
	return 0;
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct grpc_call *c = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (!c)
		return 0;
	struct grpc_session *s = user_data;
	s->open_streams--;
	s->last_stream_ns = grpc_now_ns();
	c->stream_open = false;
	if (c->handler_holds && !c->finished) {
		if (c->state == CALL_RECEIVING) {
			/* Reset before the request completed: the handler never ran. */
			c->handler_holds = false;
			if (!c->bad_request)
				call_mark_done(c, GRPC_STATUS_CANCELLED);
		} else if (!c->cancelled) {
			c->cancelled = true;
			call_mark_done(c, GRPC_STATUS_CANCELLED);
			/* The handler may finish (and so free) the call from inside
			 * its cancel callback: do not touch c afterwards. While it has
			 * not finished, handler_holds keeps the call alive anyway. */
			if (c->cancel_fn)
				c->cancel_fn(c, c->cancel_arg);
			return 0;
		}
	}
	call_maybe_free(c);
	return 0;
}

struct grpc_session *grpc_session_new(const struct grpc_method *methods, size_t method_count,
                                      const struct grpc_session_limits *limits,
                                      const struct grpc_session_hooks *hooks)
{
	struct grpc_session *s = calloc(1, sizeof(*s));
	nghttp2_session_callbacks *cbs = NULL;
	nghttp2_option *opt = NULL;
	if (!s)
		return NULL;
	s->methods = methods;
	s->method_count = method_count;
	s->last_stream_ns = grpc_now_ns();
	s->limits = *limits;
	if (hooks)
		s->hooks = *hooks;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		goto fail;
	nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	if (nghttp2_option_new(&opt) != 0)
		goto fail_callbacks;
	/* Abuse limits: a client may not queue unbounded SETTINGS/PING acks, nor
	 * reset streams faster than 1000 per burst (CVE-2023-44487 "rapid reset"). */
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_stream_reset_rate_limit(opt, 1000, 33);
	nghttp2_option_set_max_send_header_block_length(opt, 64 * 1024);
	if (nghttp2_session_server_new2(&s->h2, cbs, s, opt) != 0)
		goto fail_option;
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(cbs);

	nghttp2_settings_entry settings[] = {
	    {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, limits->max_concurrent_streams},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, (uint32_t)limits->max_header_bytes},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 20},
	};
	if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, settings,
	                            sizeof(settings) / sizeof(settings[0])) != 0) {
		nghttp2_session_del(s->h2);
		free(s);
		return NULL;
	}
	/* A larger connection window so one big message does not stall on updates. */
	nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0, 4 << 20);
	return s;

fail_option:
	nghttp2_option_del(opt);
fail_callbacks:
	nghttp2_session_callbacks_del(cbs);
fail:
	free(s);
	return NULL;
}

void grpc_session_free(struct grpc_session *s)
{
	if (!s)
		return;
	/* Streams close inside nghttp2_session_del; mark them closed first so
	 * no callback runs against a half-freed session. */
	struct grpc_call *c = s->calls;
	while (c) {
		struct grpc_call *next = c->next_in_session;
		/* The hooks' context goes with the session: end the call in the
		 * metrics now, its handler's finish will not be able to. */
		call_mark_done(c, GRPC_STATUS_CANCELLED);
		c->stream_open = false;
		c->session = NULL;
		c->next_in_session = c->prev_in_session = NULL;
		/* A request still being received never reached a handler: nobody
		 * else will release it. */
		if (c->state == CALL_RECEIVING)
			c->handler_holds = false;
		if (!c->handler_holds) {
			call_free(c);
		} else if (!c->cancelled) {
			/* Once per call (a reset stream was cancelled already); the
			 * callback may finish, and so free, the call. */
			c->cancelled = true;
			if (c->cancel_fn)
				c->cancel_fn(c, c->cancel_arg);
		}
		c = next;
	}
	s->calls = NULL;
	nghttp2_session_del(s->h2);
	free(s);
}

int grpc_session_recv(struct grpc_session *s, const uint8_t *data, size_t len)
{
	s->in_recv = true;
	ssize_t n = nghttp2_session_mem_recv(s->h2, data, len);
	dispatch_ready(s, n >= 0 && (size_t)n == len);
	s->in_recv = false;
	if (n < 0 || (size_t)n != len) {
		s->fatal = true;
		return MV_EPROTO;
	}
	return 0;
}

int grpc_session_send(struct grpc_session *s, struct buf *out)
{
	/* Frames left in nghttp2 cost nothing more than they already do (their
	 * data is in the calls' buffers); serialised into `out` for a client that
	 * does not read, they would only grow the connection. */
	while (!s->limits.max_pending_output || out->len < s->limits.max_pending_output) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(s->h2, &data);
		if (n < 0) {
			s->fatal = true;
			return MV_EPROTO;
		}
		if (n == 0)
			return 0;
		int rc = buf_append(out, data, (size_t)n);
		if (rc)
			return rc;
	}
	return 0;
}

bool grpc_session_want_io(struct grpc_session *s)
{
	if (s->fatal)
		return false;
	return nghttp2_session_want_read(s->h2) || nghttp2_session_want_write(s->h2);
}

void grpc_session_goaway(struct grpc_session *s)
{
	if (s->goaway_sent)
		return;
	s->goaway_sent = true;
	nghttp2_submit_goaway(s->h2, NGHTTP2_FLAG_NONE,
	                      nghttp2_session_get_last_proc_stream_id(s->h2), NGHTTP2_NO_ERROR,
	                      NULL, 0);
	notify_want_write(s);
}

size_t grpc_session_active_calls(const struct grpc_session *s)
{
	return s->active_calls;
}

int grpc_session_expire(struct grpc_session *s, int64_t now_ns)
{
	if (s->fatal)
		return 0;
	struct grpc_call *c = s->calls;
	while (c) {
		struct grpc_call *next = c->next_in_session;
		int64_t age = now_ns - c->start_ns;
		if (!c->stream_open || c->remote_closed) {
			/* complete, or gone */
		} else if (!c->headers_done && s->limits.header_timeout_ns &&
		           age >= s->limits.header_timeout_ns) {
			/* CONTINUATION frames must follow without interleaving (RFC
			 * 9113 section 6.10): the whole connection is stuck on it. */
			nghttp2_session_terminate_session(s->h2, NGHTTP2_NO_ERROR);
			s->fatal = true;
			notify_want_write(s);
			return MV_ETIMEDOUT;
		} else if (c->headers_done && s->limits.request_timeout_ns &&
		           age >= s->limits.request_timeout_ns) {
			/* The call may be freed once its stream closes, which happens
			 * only when nghttp2 sends the reset: `next` stays valid. */
			call_reject(
			    c, GRPC_STATUS_DEADLINE_EXCEEDED,
			    "request body not received within the server's request timeout");
			notify_want_write(s);
		}
		c = next;
	}
	return 0;
}

int64_t grpc_session_last_stream_activity(const struct grpc_session *s)
{
	return s->last_stream_ns;
}

size_t grpc_session_open_streams(const struct grpc_session *s)
{
	return s->open_streams;
}

size_t grpc_session_buffered_request_bytes(const struct grpc_session *s)
{
	return s->buffered;
}

int64_t grpc_call_deadline(const struct grpc_call *call)
{
	return call->deadline_ns;
}

bool grpc_call_cancelled(const struct grpc_call *call)
{
	return call->cancelled || !call->session;
}

const struct trace_span *grpc_call_span(const struct grpc_call *call)
{
	return &call->span;
}

const char *grpc_call_path(const struct grpc_call *call)
{
	return call->path;
}

void grpc_call_on_cancel(struct grpc_call *call, void (*fn)(struct grpc_call *call, void *arg),
                         void *arg)
{
	call->cancel_fn = fn;
	call->cancel_arg = arg;
}

int grpc_call_send(struct grpc_call *call, const uint8_t *msg, size_t len)
{
	struct grpc_session *s = call->session;
	if (!s || call->cancelled || !call->stream_open || call->finished)
		return MV_ECLOSED;
	int rc = grpc_frame_append(&call->out, msg, len);
	if (rc)
		return rc;
	note_message(s, call, true);
	if (!call->headers_sent) {
		if (submit_response_headers(call) != 0)
			return MV_ENOMEM;
	} else {
		nghttp2_session_resume_data(s->h2, call->stream_id);
	}
	notify_want_write(s);
	return 0;
}

void grpc_call_finish(struct grpc_call *call, int status, const char *message, const uint8_t *msg,
                      size_t len)
{
	struct grpc_session *s = call->session;
	if (call->finished || !call->handler_holds)
		return;
	call->finished = true;
	call->handler_holds = false;
	if (!s || !call->stream_open || call->cancelled) {
		if (s)
			call_mark_done(call, call->cancelled ? GRPC_STATUS_CANCELLED : status);
		call_maybe_free(call);
		return;
	}
	call->status = status;
	if (status != GRPC_STATUS_OK && !call->headers_sent) {
		submit_trailers_only(call, status, message);
	} else {
		buf_reset(&call->status_message);
		if (status != GRPC_STATUS_OK && message && *message)
			grpc_message_encode(message, &call->status_message);
		int rc = 0;
		if (msg)
			rc = grpc_frame_append(&call->out, msg, len);
		if (msg && !rc)
			note_message(s, call, true);
		if (rc) {
			call->status = GRPC_STATUS_INTERNAL;
			if (!call->headers_sent) {
				submit_trailers_only(call, GRPC_STATUS_INTERNAL,
				                     "response too large");
				status = GRPC_STATUS_INTERNAL;
			}
		}
		if (!call->headers_sent && call->state != CALL_RESPONDED)
			submit_response_headers(call);
		else
			nghttp2_session_resume_data(s->h2, call->stream_id);
	}
	call_mark_done(call, status);
	/* Release our reference before flushing: sending may close the stream,
	 * which frees the call. */
	call_maybe_free(call);
	notify_want_write(s);
}

/* Plain HTTP response body: DATA frames from call->out, END_STREAM on the last. */
static ssize_t http_data_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *dest,
                                 size_t length, uint32_t *data_flags, nghttp2_data_source *source,
                                 void *user_data)
{
	struct grpc_call *c = source->ptr;
	size_t avail = c->out.len - c->out_sent;
	size_t n = avail < length ? avail : length;
	if (n)
		memcpy(dest, c->out.data + c->out_sent, n);
	c->out_sent += n;
	if (c->out_sent == c->out.len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

void grpc_call_respond_http(struct grpc_call *call, int status, const char *content_type,
                            const char *allow, const char *body, size_t len, bool head)
{
	struct grpc_session *s = call->session;
	if (call->finished || !call->handler_holds)
		return;
	call->finished = true;
	call->handler_holds = false;
	if (!s || !call->stream_open || call->cancelled) {
		if (s)
			call_mark_done(call, GRPC_STATUS_CANCELLED);
		call_maybe_free(call);
		return;
	}
	/* The request body is no longer needed: give its budget back now. */
	call_release_request(call);
	buf_reset(&call->out);
	call->out_sent = 0;
	if (!head && len && buf_append(&call->out, body, len) != 0) {
		status = 500;
		len = 0;
	}
	char code[12], length[24];
	snprintf(code, sizeof(code), "%d", status < 100 || status > 999 ? 500 : status);
	snprintf(length, sizeof(length), "%zu", len);
	nghttp2_nv nv[4];
	size_t n = 0;
	nv[n++] = NV(":status", code);
	if (content_type && *content_type)
		nv[n++] = NV("content-type", content_type);
	nv[n++] = NV("content-length", length);
	if (allow && *allow)
		nv[n++] = NV("allow", allow);
	nghttp2_data_provider provider = {.source.ptr = call, .read_callback = http_data_read_cb};
	nghttp2_submit_response(s->h2, call->stream_id, nv, n, call->out.len ? &provider : NULL);
	call->headers_sent = true;
	call->state = CALL_RESPONDED;
	call_mark_done(call, GRPC_STATUS_OK);
	call_maybe_free(call);
	notify_want_write(s);
}
