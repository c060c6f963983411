/*
 * test_grpc_session.c - the gRPC server session driven by a real nghttp2
 * client session in the same process.
 *
 * Bytes are pumped client -> server (grpc_session_recv) and server -> client
 * (grpc_session_send, then nghttp2_session_mem_recv) until both sides are
 * quiet. The client records, per stream, what a gRPC client would see:
 * :status, content-type, grpc-status, decoded grpc-message, DATA bytes and
 * whether the status came in separate trailers or as a trailers-only response.
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/trace.h"
#include "../testing.h"
#include "movie/banned.h"

#define MAX_PUMP_ROUNDS 10000
#define MAX_HELD        256

/* ---- server side: handlers and hooks record into one global state ---- */

struct srv_state {
	int handler_calls;
	int started;
	int done;
	int done_started; /* call_done with started == true */
	int want_write;
	int done_by_status[GRPC_STATUS_COUNT];
	int last_done_status;
	bool last_done_started;
	const struct grpc_method *last_done_method;
	char last_done_path[128];
	struct grpc_call *held[MAX_HELD];
	size_t held_n;
	int cancels;
	bool finish_in_cancel; /* the cancel callback finishes the call itself */
	int half_closes;       /* bidi handler calls with msg NULL */
	int64_t last_deadline;
	struct trace_span last_span; /* call_done's span (tracestate not kept) */
	char last_tracestate[TRACE_STATE_MAX_BYTES + 1];
};

static struct srv_state st;

static void hook_done(void *ctx, const struct grpc_method *method, const char *path, int status,
                      double seconds, bool started, const struct trace_span *span)
{
	st.done++;
	if (started)
		st.done_started++;
	if (status >= 0 && status < GRPC_STATUS_COUNT)
		st.done_by_status[status]++;
	st.last_done_status = status;
	st.last_done_started = started;
	st.last_done_method = method;
	snprintf(st.last_done_path, sizeof(st.last_done_path), "%s", path ? path : "(null)");
	CHECK(seconds >= 0.0);
	CHECK(span != NULL && span->valid);
	if (span) {
		st.last_span = *span;
		st.last_span.tracestate = NULL;
		snprintf(st.last_tracestate, sizeof(st.last_tracestate), "%s",
		         span->tracestate ? span->tracestate : "");
	}
}

static void hook_started(void *ctx, const struct grpc_method *method)
{
	st.started++;
	CHECK(method != NULL);
}

static void hook_want_write(void *ctx)
{
	st.want_write++;
}

static const struct grpc_session_hooks hooks = {
    .call_done = hook_done,
    .call_started = hook_started,
    .want_write = hook_want_write,
};

/* ---- plain HTTP requests and message counts (issue 13) ---- */

struct http_state {
	int requests;
	int msgs_received, msgs_sent;
	char method[16];
	char target[256];
	char content_type[64];
	char body[64];
	size_t body_len;
	int status;
	struct grpc_call *held;
};
static struct http_state hs;

static void hook_message(void *ctx, const struct grpc_method *method, bool sent)
{
	CHECK(method != NULL);
	if (sent)
		hs.msgs_sent++;
	else
		hs.msgs_received++;
}

static void hook_http(void *ctx, struct grpc_call *call, const struct grpc_http_request *req)
{
	hs.requests++;
	snprintf(hs.method, sizeof(hs.method), "%s", req->method);
	snprintf(hs.target, sizeof(hs.target), "%s", req->target);
	snprintf(hs.content_type, sizeof(hs.content_type), "%s", req->content_type);
	hs.body_len = req->body_len;
	if (req->body_len < sizeof(hs.body)) {
		if (req->body_len)
			memcpy(hs.body, req->body, req->body_len);
		hs.body[req->body_len] = '\0';
	}
	hs.status = req->status;
	if (strcmp(req->method, "HOLD") == 0) {
		hs.held = call; /* answered later */
		return;
	}
	grpc_call_respond_http(call, req->status ? req->status : 200, "application/json", NULL,
	                       "{\"ok\":1}", 8, strcmp(req->method, "HEAD") == 0);
}

static const struct grpc_session_hooks http_hooks = {
    .call_done = hook_done,
    .call_started = hook_started,
    .call_message = hook_message,
    .http_request = hook_http,
    .want_write = hook_want_write,
};

static const struct grpc_session_hooks *session_hooks = &hooks;

static void h_echo(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	st.handler_calls++;
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, msg, len);
}

static void h_fail(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	st.handler_calls++;
	grpc_call_finish(call, GRPC_STATUS_FAILED_PRECONDITION, "50% off\n", NULL, 0);
}

static void held_remove(struct grpc_call *call)
{
	for (size_t i = 0; i < st.held_n; i++) {
		if (st.held[i] == call) {
			st.held[i] = st.held[--st.held_n];
			return;
		}
	}
}

static void on_cancel(struct grpc_call *call, void *arg)
{
	st.cancels++;
	CHECK(grpc_call_cancelled(call));
	if (st.finish_in_cancel) {
		held_remove(call);
		grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL, NULL, 0);
	}
}

/* Keeps the call for the test to finish later (an asynchronous handler). */
static void h_hold(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	st.handler_calls++;
	st.last_deadline = grpc_call_deadline(call);
	if (st.held_n == MAX_HELD) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "test table full", NULL, 0);
		return;
	}
	grpc_call_on_cancel(call, on_cancel, NULL);
	st.held[st.held_n++] = call;
}

static void h_stream(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	st.handler_calls++;
	CHECK_INT_EQ(grpc_call_send(call, msg, len), 0);
	CHECK_INT_EQ(grpc_call_send(call, (const uint8_t *)"second", 6), 0);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
}

/* Bidirectional streaming: echo each message ("stop" finishes at once),
 * finish OK at half-close. */
static void h_bidi(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	st.handler_calls++;
	if (!msg) {
		st.half_closes++;
		grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
		return;
	}
	if (len == 4 && memcmp(msg, "stop", 4) == 0) {
		grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
		return;
	}
	if (grpc_call_send(call, msg, len) != 0)
		grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL, NULL, 0);
}

static const struct grpc_method methods[] = {
    {"/test.Echo/Unary", "test.Echo", "Unary", false, h_echo, NULL, NULL, false},
    {"/test.Echo/Fail", "test.Echo", "Fail", false, h_fail, NULL, NULL, false},
    {"/test.Echo/Hold", "test.Echo", "Hold", false, h_hold, NULL, NULL, false},
    {"/test.Echo/Stream", "test.Echo", "Stream", true, h_stream, NULL, NULL, false},
    {"/test.Echo/HoldStream", "test.Echo", "HoldStream", true, h_hold, NULL, NULL, false},
    {"/test.Echo/Bidi", "test.Echo", "Bidi", false, h_bidi, NULL, NULL, true},
};
#define METHOD_COUNT (sizeof(methods) / sizeof(methods[0]))

static const struct grpc_session_limits default_limits = {
    .max_message_bytes = 1024,
    .max_concurrent_streams = 128,
    .max_header_bytes = 8192,
};

/* ---- client side ---- */

struct rec {
	int32_t id;
	struct buf req; /* request body the data provider sends */
	size_t req_off;
	bool defer;     /* data provider defers: HEADERS go out without END_STREAM */
	size_t stop_at; /* if non-zero: defer once this much of the body is sent */
	bool open;      /* streaming request: no END_STREAM until `open` is false */
	int http_status;
	char content_type[64];
	int grpc_status; /* -1: none seen */
	bool status_in_trailers;
	char grpc_message_raw[256];
	char grpc_message[256];
	int header_frames;
	bool trailers_only;     /* the response HEADERS frame carried END_STREAM */
	bool separate_trailers; /* a second HEADERS frame carried the status */
	bool closed;
	uint32_t close_error;
	struct buf data;
	struct rec *next;
};

struct conn {
	nghttp2_session *cli;
	struct grpc_session *srv;
	struct buf out;
	struct rec *recs;
	int srv_recv_rc;
	int srv_send_rc;
	int goaways;
	int32_t goaway_last;
	uint32_t goaway_error;
};

static void copy_value(char *dst, size_t size, const uint8_t *v, size_t len)
{
	size_t n = len < size - 1 ? len : size - 1;
	memcpy(dst, v, n);
	dst[n] = '\0';
}

static int parse_small_int(const uint8_t *v, size_t len)
{
	int n = 0;
	if (len == 0 || len > 3)
		return -2;
	for (size_t i = 0; i < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -2;
		n = n * 10 + (v[i] - '0');
	}
	return n;
}

static int cli_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                         size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *user_data)
{
	struct rec *r = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!r || frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
		r->http_status = parse_small_int(value, valuelen);
	} else if (namelen == 12 && memcmp(name, "content-type", 12) == 0) {
		copy_value(r->content_type, sizeof(r->content_type), value, valuelen);
	} else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
		r->grpc_status = parse_small_int(value, valuelen);
		r->status_in_trailers = frame->headers.cat == NGHTTP2_HCAT_HEADERS;
	} else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
		copy_value(r->grpc_message_raw, sizeof(r->grpc_message_raw), value, valuelen);
		grpc_message_decode((const char *)value, valuelen, r->grpc_message,
		                    sizeof(r->grpc_message));
	}
	return 0;
}

static int cli_on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct conn *k = user_data;
	if (frame->hd.type == NGHTTP2_GOAWAY) {
		k->goaways++;
		k->goaway_last = frame->goaway.last_stream_id;
		k->goaway_error = frame->goaway.error_code;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct rec *r = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!r)
		return 0;
	r->header_frames++;
	if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		r->trailers_only = true;
	if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
		r->separate_trailers = true;
	return 0;
}

static int cli_on_data(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                       size_t len, void *user_data)
{
	struct rec *r = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (r)
		CHECK_INT_EQ(buf_append(&r->data, data, len), 0);
	return 0;
}

static int cli_on_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                        void *user_data)
{
	struct rec *r = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (r) {
		r->closed = true;
		r->close_error = error_code;
	}
	return 0;
}

static ssize_t cli_read_body(nghttp2_session *h2, int32_t stream_id, uint8_t *dest, size_t length,
                             uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	struct rec *r = source->ptr;
	if (r->defer || (r->stop_at && r->req_off >= r->stop_at))
		return NGHTTP2_ERR_DEFERRED;
	size_t end = r->stop_at ? r->stop_at : r->req.len;
	size_t avail = end - r->req_off;
	size_t n = avail < length ? avail : length;
	if (n)
		memcpy(dest, r->req.data + r->req_off, n);
	r->req_off += n;
	if (r->req_off == r->req.len) {
		if (r->open)
			return n ? (ssize_t)n : NGHTTP2_ERR_DEFERRED;
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	}
	return (ssize_t)n;
}

static void conn_open(struct conn *k, const struct grpc_session_limits *limits)
{
	nghttp2_session_callbacks *cbs;
	memset(k, 0, sizeof(*k));
	buf_init(&k->out, 0);
	k->srv = grpc_session_new(methods, METHOD_COUNT, limits, session_hooks);
	CHECK(k->srv != NULL);
	CHECK_INT_EQ(nghttp2_session_callbacks_new(&cbs), 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, cli_on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, cli_on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, cli_on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, cli_on_close);
	CHECK_INT_EQ(nghttp2_session_client_new(&k->cli, cbs, k), 0);
	nghttp2_session_callbacks_del(cbs);
	CHECK_INT_EQ(nghttp2_submit_settings(k->cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static void conn_close(struct conn *k)
{
	nghttp2_session_del(k->cli);
	if (k->srv)
		grpc_session_free(k->srv);
	buf_release(&k->out);
	struct rec *r = k->recs;
	while (r) {
		struct rec *next = r->next;
		buf_release(&r->req);
		buf_release(&r->data);
		free(r);
		r = next;
	}
}

/* Client bytes -> server. Returns the byte count moved. */
static size_t flush_client(struct conn *k)
{
	size_t moved = 0;
	for (int i = 0; i < MAX_PUMP_ROUNDS; i++) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(k->cli, &d);
		CHECK(n >= 0);
		if (n <= 0)
			break;
		moved += (size_t)n;
		if (k->srv_recv_rc == 0 && k->srv)
			k->srv_recv_rc = grpc_session_recv(k->srv, d, (size_t)n);
	}
	return moved;
}

/* Server bytes -> client. Returns the byte count moved. */
static size_t flush_server(struct conn *k)
{
	if (!k->srv)
		return 0;
	buf_reset(&k->out);
	int rc = grpc_session_send(k->srv, &k->out);
	if (rc && !k->srv_send_rc)
		k->srv_send_rc = rc;
	if (k->out.len) {
		const uint8_t *d = (const uint8_t *)k->out.data;
		ssize_t n = nghttp2_session_mem_recv(k->cli, d, k->out.len);
		CHECK_INT_EQ(n, (ssize_t)k->out.len);
	}
	return k->out.len;
}

/* Until both directions are quiet; returns false if that never happened. */
static bool pump(struct conn *k)
{
	for (int i = 0; i < MAX_PUMP_ROUNDS; i++) {
		size_t moved = flush_client(k);
		moved += flush_server(k);
		if (moved == 0)
			return true;
	}
	return false;
}

/* Copies of one header the next start_call_ex adds (HPACK indexes the first
 * and refers to it from the others: the amplification pattern). */
static int extra_headers;
static const char *extra_value = "";
/* Other headers the next start_call_ex adds (name, value pairs). */
static const char *more_headers[8];
static int more_header_count;

static struct rec *start_call_ex(struct conn *k, const char *path, const char *method,
                                 const char *ctype, const char *timeout, const void *body,
                                 size_t body_len, bool with_body)
{
	struct rec *r = calloc(1, sizeof(*r));
	CHECK(r != NULL);
	if (!r)
		return NULL;
	buf_init(&r->req, 0);
	buf_init(&r->data, 0);
	r->grpc_status = -1;
	r->next = k->recs;
	k->recs = r;
	if (body_len)
		CHECK_INT_EQ(buf_append(&r->req, body, body_len), 0);
#define HDR(n, v) {(uint8_t *)(uintptr_t)(n), (uint8_t *)(uintptr_t)(v), strlen(n), strlen(v), 0}
	nghttp2_nv nv[7 + 8 + 4] = {
	    HDR(":method", method),         HDR(":scheme", "http"), HDR(":path", path),
	    HDR(":authority", "127.0.0.1"), HDR("te", "trailers"),
	};
	size_t n = 5;
	if (ctype)
		nv[n++] = (nghttp2_nv)HDR("content-type", ctype);
	if (timeout)
		nv[n++] = (nghttp2_nv)HDR("grpc-timeout", timeout);
	for (int i = 0; i < extra_headers && i < 8; i++)
		nv[n++] = (nghttp2_nv)HDR("x-pad", extra_value);
	for (int i = 0; i + 1 < more_header_count && i < 8; i += 2)
		nv[n++] = (nghttp2_nv)HDR(more_headers[i], more_headers[i + 1]);
#undef HDR
	nghttp2_data_provider prov = {.source.ptr = r, .read_callback = cli_read_body};
	r->id = nghttp2_submit_request(k->cli, NULL, nv, n, with_body ? &prov : NULL, r);
	CHECK(r->id > 0);
	return r;
}

/* A well-formed unary gRPC request carrying one framed `msg`. */
static struct rec *start_call(struct conn *k, const char *path, const char *msg)
{
	struct buf f;
	buf_init(&f, 0);
	CHECK_INT_EQ(grpc_frame_append(&f, (const uint8_t *)msg, strlen(msg)), 0);
	struct rec *r =
	    start_call_ex(k, path, "POST", "application/grpc", NULL, f.data, f.len, true);
	buf_release(&f);
	return r;
}

static bool data_is_frames(const struct rec *r, const char *a, const char *b)
{
	struct buf want;
	buf_init(&want, 0);
	grpc_frame_append(&want, (const uint8_t *)a, strlen(a));
	if (b)
		grpc_frame_append(&want, (const uint8_t *)b, strlen(b));
	bool same = want.len == r->data.len &&
	            (want.len == 0 || memcmp(want.data, r->data.data, want.len) == 0);
	buf_release(&want);
	return same;
}

/* The response shape of a successful unary call: HEADERS, DATA, trailers. */
static void check_ok_response(const struct rec *r, const char *msg)
{
	CHECK(r->closed);
	CHECK_INT_EQ(r->close_error, NGHTTP2_NO_ERROR);
	CHECK_INT_EQ(r->http_status, 200);
	CHECK_STR_EQ(r->content_type, "application/grpc");
	CHECK_INT_EQ(r->grpc_status, 0);
	CHECK(r->status_in_trailers);
	CHECK(r->separate_trailers);
	CHECK(!r->trailers_only);
	CHECK_INT_EQ(r->header_frames, 2);
	CHECK_STR_EQ(r->grpc_message_raw, "");
	CHECK(data_is_frames(r, msg, NULL));
}

/* An error answered as one HEADERS frame with END_STREAM. */
static void check_trailers_only(const struct rec *r, int status)
{
	CHECK(r->closed);
	CHECK_INT_EQ(r->http_status, 200);
	CHECK_STR_EQ(r->content_type, "application/grpc");
	CHECK_INT_EQ(r->grpc_status, status);
	CHECK(r->trailers_only);
	CHECK(!r->separate_trailers);
	CHECK_INT_EQ(r->header_frames, 1);
	CHECK_INT_EQ(r->data.len, 0);
}

static void reset_state(void)
{
	memset(&st, 0, sizeof(st));
	st.last_done_status = -1;
}

/* ---- tests ---- */

static void test_unary_ok(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Unary", "hello");
	CHECK(pump(&k));
	check_ok_response(r, "hello");
	CHECK_INT_EQ(st.handler_calls, 1);
	CHECK_INT_EQ(st.started, 1);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, 0);
	CHECK(st.last_done_started);
	CHECK(st.last_done_method == &methods[0]);
	CHECK_STR_EQ(st.last_done_path, "/test.Echo/Unary");
	CHECK_INT_EQ(st.want_write, 0); /* finished inside recv: no hook */
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	CHECK_INT_EQ(k.srv_recv_rc, 0);
	CHECK_INT_EQ(k.srv_send_rc, 0);
	CHECK(grpc_session_want_io(k.srv));

	/* An empty message is a valid message; +proto content type is gRPC too. */
	uint8_t empty_frame[5] = {0, 0, 0, 0, 0};
	r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc+proto", NULL,
	                  empty_frame, 5, true);
	CHECK(pump(&k));
	check_ok_response(r, "");
	CHECK_INT_EQ(st.done, 2);
	conn_close(&k);
}

/* traceparent/tracestate metadata make the call's server span (call_done
 * sees it): continued when exactly one valid traceparent came, else a new
 * trace; several tracestate headers form one list. */
static void test_trace_context(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	static const char *const tp = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	struct trace_parent parent;
	CHECK_INT_EQ(trace_parent_parse(tp, strlen(tp), &parent), 0);
	more_headers[0] = "tracestate";
	more_headers[1] = "congo=t61rcWkgMzE";
	more_headers[2] = "traceparent";
	more_headers[3] = tp;
	more_headers[4] = "tracestate";
	more_headers[5] = "rojo=00f067aa0ba902b7";
	more_header_count = 6;
	struct rec *r = start_call(&k, "/test.Echo/Unary", "hello");
	CHECK(pump(&k));
	check_ok_response(r, "hello");
	CHECK(memcmp(st.last_span.trace_id, parent.trace_id, TRACE_ID_SIZE) == 0);
	CHECK(memcmp(st.last_span.parent_id, parent.parent_id, TRACE_SPAN_ID_SIZE) == 0);
	CHECK(trace_span_sampled(&st.last_span));
	CHECK_STR_EQ(st.last_tracestate, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
	/* Two traceparent headers: invalid, a new trace (and no tracestate). */
	more_headers[0] = "traceparent";
	more_headers[1] = tp;
	more_header_count = 6;
	r = start_call(&k, "/test.Echo/Unary", "hello");
	CHECK(pump(&k));
	check_ok_response(r, "hello");
	CHECK(memcmp(st.last_span.trace_id, parent.trace_id, TRACE_ID_SIZE) != 0);
	CHECK_STR_EQ(st.last_tracestate, "");
	/* Uppercase hex: invalid; none at all: a new root, on an unknown method too. */
	more_headers[1] = "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01";
	more_header_count = 2;
	r = start_call(&k, "/test.Echo/Unary", "hello");
	CHECK(pump(&k));
	CHECK(memcmp(st.last_span.trace_id, parent.trace_id, TRACE_ID_SIZE) != 0);
	more_header_count = 0;
	r = start_call(&k, "/test.Nope/X", "hello");
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_UNIMPLEMENTED);
	static const uint8_t zero[TRACE_SPAN_ID_SIZE] = {0};
	CHECK(memcmp(st.last_span.parent_id, zero, TRACE_SPAN_ID_SIZE) == 0);
	CHECK(memcmp(st.last_span.span_id, zero, TRACE_SPAN_ID_SIZE) != 0);
	conn_close(&k);
}

static void test_large_messages_flow_control(void)
{
	/* 200 KB each way: more than the peers' initial 64 KB windows. */
	static const struct grpc_session_limits big = {
	    .max_message_bytes = 1 << 20, .max_concurrent_streams = 16, .max_header_bytes = 8192};
	const size_t len = 200 * 1024;
	struct conn k;
	reset_state();
	conn_open(&k, &big);
	char *msg = malloc(len + 1);
	CHECK(msg != NULL);
	if (!msg)
		return;
	for (size_t i = 0; i < len; i++)
		msg[i] = (char)('a' + i % 26);
	msg[len] = '\0';
	struct rec *r = start_call(&k, "/test.Echo/Unary", msg);
	CHECK(pump(&k));
	check_ok_response(r, msg);
	CHECK_INT_EQ(r->data.len, len + GRPC_FRAME_HEADER);
	free(msg);
	conn_close(&k);
}

static void test_error_trailers_only(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Fail", "x");
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_FAILED_PRECONDITION);
	CHECK_STR_EQ(r->grpc_message_raw, "50%25 off%0A");
	CHECK_STR_EQ(r->grpc_message, "50% off\n");
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_FAILED_PRECONDITION);
	CHECK(st.last_done_started);
	conn_close(&k);
}

static void test_plain_http_and_message_hooks(void)
{
	static const struct grpc_session_limits limits = {
	    .max_message_bytes = 1024,
	    .max_concurrent_streams = 128,
	    .max_header_bytes = 8192,
	    .max_http_body_bytes = 16,
	};
	struct conn k;
	reset_state();
	memset(&hs, 0, sizeof(hs));
	session_hooks = &http_hooks;
	conn_open(&k, &limits);
	/* gRPC: one message each way, as go-grpc-prometheus counts them. */
	struct rec *r = start_call(&k, "/test.Echo/Unary", "hello");
	CHECK(pump(&k));
	check_ok_response(r, "hello");
	CHECK_INT_EQ(hs.msgs_received, 1);
	CHECK_INT_EQ(hs.msgs_sent, 1);
	CHECK_INT_EQ(hs.requests, 0);
	int done_before = st.done;

	/* A GET on a gRPC path is plain HTTP: handed over, never a gRPC call. */
	r = start_call_ex(&k, "/test.Echo/Unary?x=1", "GET", NULL, NULL, NULL, 0, false);
	CHECK(pump(&k));
	CHECK_INT_EQ(hs.requests, 1);
	CHECK_STR_EQ(hs.method, "GET");
	CHECK_STR_EQ(hs.target, "/test.Echo/Unary?x=1");
	CHECK_INT_EQ(hs.status, 0);
	CHECK_INT_EQ(r->http_status, 200);
	CHECK_STR_EQ(r->content_type, "application/json");
	CHECK_INT_EQ((long long)r->data.len, 8);
	CHECK(r->data.data && memcmp(r->data.data, "{\"ok\":1}", 8) == 0);
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, -1);

	/* POST with another content-type, body within the cap. */
	r = start_call_ex(&k, "/metadata", "PUT", "application/json", NULL, "{\"a\":1}", 7, true);
	CHECK(pump(&k));
	CHECK_INT_EQ(hs.requests, 2);
	CHECK_STR_EQ(hs.content_type, "application/json");
	CHECK_INT_EQ((long long)hs.body_len, 7);
	CHECK_STR_EQ(hs.body, "{\"a\":1}");
	CHECK_INT_EQ(r->http_status, 200);

	/* Over max_http_body_bytes: dropped, handed over with 413. */
	char big[100];
	memset(big, 'x', sizeof(big));
	r = start_call_ex(&k, "/metadata", "PUT", "text/plain", NULL, big, sizeof(big), true);
	CHECK(pump(&k));
	CHECK_INT_EQ(hs.requests, 3);
	CHECK_INT_EQ(hs.status, 413);
	CHECK_INT_EQ((long long)hs.body_len, 0);
	CHECK_INT_EQ(r->http_status, 413);
	CHECK_INT_EQ((long long)grpc_session_buffered_request_bytes(k.srv), 0);

	/* HEAD: headers only. */
	r = start_call_ex(&k, "/healthz", "HEAD", NULL, NULL, NULL, 0, false);
	CHECK(pump(&k));
	CHECK_INT_EQ(r->http_status, 200);
	CHECK_INT_EQ((long long)r->data.len, 0);
	CHECK(r->closed);

	/* Held, then the client resets: the late answer only releases it. */
	r = start_call_ex(&k, "/slow", "HOLD", NULL, NULL, NULL, 0, false);
	CHECK(pump(&k));
	CHECK(hs.held != NULL);
	CHECK_INT_EQ((long long)grpc_session_active_calls(k.srv), 1);
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL), 0);
	CHECK(pump(&k));
	CHECK_INT_EQ((long long)grpc_session_active_calls(k.srv), 0);
	grpc_call_respond_http(hs.held, 200, "text/plain", NULL, "late", 4, false);
	hs.held = NULL;
	CHECK(pump(&k));
	CHECK_INT_EQ(st.done, done_before); /* plain HTTP never reaches call_done */
	CHECK_INT_EQ(hs.msgs_received, 1);

	/* Held when the session goes: the answer after it only releases. */
	r = start_call_ex(&k, "/slow", "HOLD", NULL, NULL, NULL, 0, false);
	CHECK(pump(&k));
	CHECK(hs.held != NULL);
	conn_close(&k);
	grpc_call_respond_http(hs.held, 200, "text/plain", NULL, "late", 4, false);
	session_hooks = &hooks;
}

static void test_unknown_path_method_content_type(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *unknown = start_call(&k, "/test.Echo/Nope", "x");
	CHECK(pump(&k));
	check_trailers_only(unknown, GRPC_STATUS_UNIMPLEMENTED);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.started, 0);
	CHECK(st.last_done_method == NULL);
	CHECK(!st.last_done_started);
	CHECK_STR_EQ(st.last_done_path, "/test.Echo/Nope");
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_UNIMPLEMENTED);

	struct rec *get =
	    start_call_ex(&k, "/test.Echo/Unary", "GET", "application/grpc", NULL, NULL, 0, false);
	struct rec *json =
	    start_call_ex(&k, "/test.Echo/Unary", "POST", "application/json", NULL, "{}", 2, true);
	struct rec *prefix =
	    start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpcx", NULL, "{}", 2, true);
	CHECK(pump(&k));
	CHECK_INT_EQ(get->http_status, 405);
	CHECK_INT_EQ(get->grpc_status, -1);
	CHECK(get->closed);
	CHECK_INT_EQ(json->http_status, 415);
	CHECK_INT_EQ(json->grpc_status, -1);
	CHECK(json->closed);
	CHECK_INT_EQ(prefix->http_status, 415);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);

	/* An unknown method is UNIMPLEMENTED whatever the size of its body. */
	char *large = calloc(1, 4096);
	CHECK(large != NULL);
	struct rec *unknown_big = start_call_ex(&k, "/test.Echo/Nope", "POST", "application/grpc",
	                                        NULL, large, large ? 4096 : 0, true);
	free(large);
	CHECK(pump(&k));
	check_trailers_only(unknown_big, GRPC_STATUS_UNIMPLEMENTED);

	/* A request without any body is not one message. */
	struct rec *nobody =
	    start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, NULL, 0, false);
	CHECK(pump(&k));
	check_trailers_only(nobody, GRPC_STATUS_INVALID_ARGUMENT);
	CHECK_INT_EQ(st.handler_calls, 0);
	conn_close(&k);
}

static void test_malformed_frames(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);

	uint8_t two[12] = {0, 0, 0, 0, 1, 'a', 0, 0, 0, 0, 1, 'b'};
	struct rec *r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, two,
	                              sizeof(two), true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_INVALID_ARGUMENT);

	uint8_t compressed[6] = {1, 0, 0, 0, 1, 'z'};
	r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, compressed,
	                  sizeof(compressed), true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_UNIMPLEMENTED);

	uint8_t truncated[7] = {0, 0, 0, 0, 9, 'a', 'b'};
	r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, truncated,
	                  sizeof(truncated), true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_INVALID_ARGUMENT);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(st.done, 3);
	CHECK_INT_EQ(st.done_started, 0);

	/* Declared length over the cap, with the whole 200 KB body actually sent
	 * (more than the initial flow-control windows): answered early, the body
	 * is drained, and the connection serves the next call. */
	const size_t big = 200 * 1024;
	uint8_t *body = calloc(1, big + GRPC_FRAME_HEADER);
	CHECK(body != NULL);
	if (!body)
		goto out;
	body[1] = (uint8_t)(big >> 24);
	body[2] = (uint8_t)(big >> 16);
	body[3] = (uint8_t)(big >> 8);
	body[4] = (uint8_t)big;
	r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, body,
	                  big + GRPC_FRAME_HEADER, true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK_INT_EQ(r->req_off, big + GRPC_FRAME_HEADER); /* client could send it all */
	CHECK_INT_EQ(r->close_error, NGHTTP2_NO_ERROR);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_RESOURCE_EXHAUSTED);

	/* Declared length within the cap but more bytes than cap + prefix. */
	body[1] = body[2] = body[3] = 0;
	body[4] = 10;
	r = start_call_ex(&k, "/test.Echo/Unary", "POST", "application/grpc", NULL, body, 4096,
	                  true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_RESOURCE_EXHAUSTED);
	free(body);

	struct rec *next = start_call(&k, "/test.Echo/Unary", "still here");
	CHECK(pump(&k));
	check_ok_response(next, "still here");
	CHECK_INT_EQ(st.done, 6);
	CHECK_INT_EQ(st.handler_calls, 1);
	CHECK_INT_EQ(k.srv_recv_rc, 0);
	CHECK(grpc_session_want_io(k.srv));
out:
	conn_close(&k);
}

static void test_deadline_already_expired(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct buf f;
	buf_init(&f, 0);
	grpc_frame_append(&f, (const uint8_t *)"x", 1);
	struct rec *r = start_call_ex(&k, "/test.Echo/Hold", "POST", "application/grpc", "1n",
	                              f.data, f.len, true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_DEADLINE_EXCEEDED);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(st.started, 0);
	CHECK_INT_EQ(st.done, 1);
	CHECK(!st.last_done_started);

	/* A generous timeout reaches the handler with an absolute deadline. */
	int64_t before = grpc_now_ns();
	r = start_call_ex(&k, "/test.Echo/Hold", "POST", "application/grpc", "5S", f.data, f.len,
	                  true);
	CHECK(pump(&k));
	int64_t after = grpc_now_ns();
	CHECK_INT_EQ(st.handler_calls, 1);
	CHECK(st.last_deadline >= before + 5000000000LL);
	CHECK(st.last_deadline <= after + 5000000000LL);
	CHECK_INT_EQ(st.held_n, 1);
	if (st.held_n)
		grpc_call_finish(st.held[0], GRPC_STATUS_OK, NULL, (const uint8_t *)"x", 1);
	CHECK(pump(&k));
	check_ok_response(r, "x");
	buf_release(&f);
	conn_close(&k);
}

static void test_async_completion(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Hold", "ping");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 1);
	CHECK_INT_EQ(st.started, 1);
	CHECK_INT_EQ(st.done, 0);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 1);
	CHECK(!r->closed);
	CHECK_INT_EQ(r->header_frames, 0);
	CHECK_INT_EQ(st.want_write, 0);
	if (st.held_n != 1)
		goto out;
	struct grpc_call *call = st.held[0];
	CHECK_STR_EQ(grpc_call_path(call), "/test.Echo/Hold");
	CHECK(!grpc_call_cancelled(call));
	CHECK_INT_EQ(grpc_call_deadline(call), 0);
	st.held_n = 0;
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, (const uint8_t *)"pong", 4);
	CHECK_INT_EQ(st.want_write, 1);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	CHECK(pump(&k));
	check_ok_response(r, "pong");

	/* An asynchronous error is trailers-only too. */
	r = start_call(&k, "/test.Echo/Hold", "ping");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 1);
	if (st.held_n != 1)
		goto out;
	call = st.held[0];
	st.held_n = 0;
	grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "no such movie", NULL, 0);
	CHECK_INT_EQ(st.want_write, 2);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_NOT_FOUND);
	CHECK_STR_EQ(r->grpc_message, "no such movie");
out:
	conn_close(&k);
}

static void test_client_reset_while_held(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Hold", "ping");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 1);
	if (st.held_n != 1)
		goto out;
	struct grpc_call *call = st.held[0];
	st.held_n = 0;
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL), 0);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.cancels, 1);
	CHECK(grpc_call_cancelled(call));
	CHECK_INT_EQ(grpc_call_send(call, (const uint8_t *)"x", 1), MV_ECLOSED);
	/* Ended in the metrics at the reset (CANCELLED), not when the handler
	 * gets round to finishing; the finish does not count it again. */
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_CANCELLED);
	CHECK(st.last_done_started);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, (const uint8_t *)"late", 4);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->header_frames, 0);
	CHECK_INT_EQ(st.cancels, 1);

	/* The connection goes on. */
	struct rec *next = start_call(&k, "/test.Echo/Unary", "after");
	CHECK(pump(&k));
	check_ok_response(next, "after");
out:
	conn_close(&k);
}

/* Client bytes, collected without handing them to the server. */
static void collect_client(struct conn *k, struct buf *wire)
{
	for (int i = 0; i < MAX_PUMP_ROUNDS; i++) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(k->cli, &d);
		CHECK(n >= 0);
		if (n <= 0)
			break;
		CHECK_INT_EQ(buf_append(wire, d, (size_t)n), 0);
	}
}

static void test_reset_in_same_input_not_dispatched(void)
{
	/* A request and its RST_STREAM in one read (a caller that gave up while
	 * this server was stopped or slow): the handler must not run. */
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	CHECK(pump(&k));
	struct rec *gone = start_call(&k, "/test.Echo/Hold", "gone");
	struct rec *kept = start_call(&k, "/test.Echo/Hold", "kept");
	struct buf wire;
	buf_init(&wire, 0);
	collect_client(&k, &wire);
	CHECK(gone->id > 0 && kept->id > 0);
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, gone->id, NGHTTP2_CANCEL),
	             0);
	collect_client(&k, &wire);
	CHECK_INT_EQ(grpc_session_recv(k.srv, (const uint8_t *)wire.data, wire.len), 0);
	buf_release(&wire);
	CHECK_INT_EQ(st.handler_calls, 1);
	CHECK_INT_EQ(st.started, 1);
	CHECK_INT_EQ(st.held_n, 1);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.done_by_status[GRPC_STATUS_CANCELLED], 1);
	CHECK(!st.last_done_started);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 1);
	if (st.held_n == 1) {
		st.held_n = 0;
		grpc_call_finish(st.held[0], GRPC_STATUS_OK, NULL, (const uint8_t *)"ok", 2);
	}
	CHECK(pump(&k));
	check_ok_response(kept, "ok");
	CHECK_INT_EQ(st.done, 2);
	CHECK_INT_EQ(st.done_started, st.started);
	conn_close(&k);
}

static void test_cancel_callback_finishes(void)
{
	/* Finishing from inside the cancel callback is allowed by the contract
	 * ("the handler must still call grpc_call_finish"); the session must not
	 * touch the call after the callback. */
	struct conn k;
	reset_state();
	st.finish_in_cancel = true;
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Hold", "ping");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 1);
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL), 0);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.cancels, 1);
	CHECK_INT_EQ(st.held_n, 0);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_CANCELLED);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);

	/* Same while the session is freed. */
	start_call(&k, "/test.Echo/Hold", "ping");
	start_call(&k, "/test.Echo/HoldStream", "ping");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 2);
	grpc_session_free(k.srv);
	k.srv = NULL;
	CHECK_INT_EQ(st.cancels, 3);
	CHECK_INT_EQ(st.held_n, 0);
	conn_close(&k);
}

static void test_session_freed_while_held(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	start_call(&k, "/test.Echo/Hold", "ping");
	struct rec *reset = start_call(&k, "/test.Echo/Hold", "ping");
	struct rec *partial = start_call(&k, "/test.Echo/Unary", "never completed");
	partial->defer = true; /* HEADERS only: the request stays incomplete */
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 2);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 2);
	if (st.held_n != 2)
		goto out;
	/* One held call was reset before the session goes: its cancel callback
	 * must not run a second time at free. */
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, reset->id, NGHTTP2_CANCEL),
	             0);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.cancels, 1);
	struct grpc_call *a = st.held[0], *b = st.held[1];
	st.held_n = 0;
	int done_before = st.done;
	CHECK_INT_EQ(done_before, 1); /* the reset one */
	grpc_session_free(k.srv);
	k.srv = NULL;
	/* Issue 12 item 7: every call ends in the metrics when its connection
	 * goes, the held one (started) and the incomplete one (never started). */
	CHECK_INT_EQ(st.done, done_before + 2);
	CHECK_INT_EQ(st.done_started, st.started);
	CHECK_INT_EQ(st.done_by_status[GRPC_STATUS_CANCELLED], 3);
	CHECK_INT_EQ(st.cancels, 2);
	CHECK(grpc_call_cancelled(a));
	CHECK(grpc_call_cancelled(b));
	CHECK_INT_EQ(grpc_call_send(a, (const uint8_t *)"x", 1), MV_ECLOSED);
	CHECK_STR_EQ(grpc_call_path(a), "/test.Echo/Hold");
	grpc_call_finish(a, GRPC_STATUS_OK, NULL, (const uint8_t *)"late", 4);
	grpc_call_finish(b, GRPC_STATUS_INTERNAL, "late", NULL, 0);
	CHECK_INT_EQ(st.done, done_before + 2); /* no hooks once the session is gone */
out:
	conn_close(&k);
}

static void test_server_streaming(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_call(&k, "/test.Echo/Stream", "first");
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->http_status, 200);
	CHECK_INT_EQ(r->grpc_status, 0);
	CHECK(r->separate_trailers);
	CHECK(!r->trailers_only);
	CHECK(data_is_frames(r, "first", "second"));
	CHECK_INT_EQ(st.done, 1);

	/* Asynchronous streaming: messages flow before the status. */
	r = start_call(&k, "/test.Echo/HoldStream", "go");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 1);
	if (st.held_n != 1)
		goto out;
	struct grpc_call *call = st.held[0];
	st.held_n = 0;
	CHECK_INT_EQ(grpc_call_send(call, (const uint8_t *)"one", 3), 0);
	CHECK(pump(&k));
	CHECK(data_is_frames(r, "one", NULL));
	CHECK_INT_EQ(r->header_frames, 1);
	CHECK(!r->closed);
	CHECK_INT_EQ(grpc_call_send(call, (const uint8_t *)"two", 3), 0);
	CHECK(pump(&k));
	CHECK(data_is_frames(r, "one", "two"));
	grpc_call_finish(call, GRPC_STATUS_ABORTED, "stopped", NULL, 0);
	CHECK_INT_EQ(st.want_write, 3);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, GRPC_STATUS_ABORTED);
	CHECK(r->status_in_trailers);
	CHECK(!r->trailers_only);
	CHECK_STR_EQ(r->grpc_message, "stopped");
	CHECK(data_is_frames(r, "one", "two"));
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_ABORTED);
out:
	conn_close(&k);
}

/* Open a bidi call whose request stream stays open. */
static struct rec *start_bidi(struct conn *k)
{
	struct rec *r =
	    start_call_ex(k, "/test.Echo/Bidi", "POST", "application/grpc", NULL, NULL, 0, true);
	if (r)
		r->open = true;
	return r;
}

/* Queue one more request message (raw frame bytes) and let the client send it;
 * `end` half-closes after it. */
static void bidi_push(struct conn *k, struct rec *r, const void *frame, size_t len, bool end)
{
	CHECK_INT_EQ(buf_append(&r->req, frame, len), 0);
	r->open = !end;
	/* Fails (harmlessly) while the provider has not deferred yet. */
	nghttp2_session_resume_data(k->cli, r->id);
}

static void bidi_push_msg(struct conn *k, struct rec *r, const char *msg, bool end)
{
	struct buf f;
	buf_init(&f, 0);
	CHECK_INT_EQ(grpc_frame_append(&f, (const uint8_t *)msg, strlen(msg)), 0);
	bidi_push(k, r, f.data, f.len, end);
	buf_release(&f);
}

static void test_bidi_streaming(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	/* Each request is answered while the request stream stays open, as
	 * reflection clients (grpcurl, grpcio) expect. */
	struct rec *r = start_bidi(&k);
	bidi_push_msg(&k, r, "one", false);
	CHECK(pump(&k));
	CHECK(data_is_frames(r, "one", NULL));
	CHECK(!r->closed);
	CHECK_INT_EQ(st.started, 1);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 1);
	/* Two messages in one DATA frame, then one split over three frames. */
	struct buf two;
	buf_init(&two, 0);
	CHECK_INT_EQ(grpc_frame_append(&two, (const uint8_t *)"two", 3), 0);
	CHECK_INT_EQ(grpc_frame_append(&two, (const uint8_t *)"", 0), 0);
	bidi_push(&k, r, two.data, two.len, false);
	CHECK(pump(&k));
	buf_reset(&two);
	CHECK_INT_EQ(grpc_frame_append(&two, (const uint8_t *)"three", 5), 0);
	bidi_push(&k, r, two.data, 2, false);
	CHECK(pump(&k));
	bidi_push(&k, r, two.data + 2, 5, false);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.handler_calls, 3);
	bidi_push(&k, r, two.data + 7, two.len - 7, false);
	CHECK(pump(&k));
	buf_release(&two);
	CHECK_INT_EQ(st.handler_calls, 4);
	CHECK(!r->closed);
	/* Half-close: the handler is told and finishes OK. */
	bidi_push(&k, r, "", 0, true);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, 0);
	CHECK(r->separate_trailers);
	CHECK_INT_EQ(st.half_closes, 1);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.done_started, 1);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	struct buf want;
	buf_init(&want, 0);
	grpc_frame_append(&want, (const uint8_t *)"one", 3);
	grpc_frame_append(&want, (const uint8_t *)"two", 3);
	grpc_frame_append(&want, (const uint8_t *)"", 0);
	grpc_frame_append(&want, (const uint8_t *)"three", 5);
	CHECK(want.len == r->data.len && memcmp(want.data, r->data.data, want.len) == 0);
	buf_release(&want);

	/* No message at all: the handler still sees the half-close. */
	reset_state();
	r = start_call_ex(&k, "/test.Echo/Bidi", "POST", "application/grpc", NULL, NULL, 0, false);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, 0);
	CHECK_INT_EQ(st.half_closes, 1);
	CHECK_INT_EQ(r->data.len, 0);

	/* The handler finishes early: later messages are dropped. */
	reset_state();
	r = start_bidi(&k);
	bidi_push_msg(&k, r, "a", false);
	bidi_push_msg(&k, r, "stop", false);
	CHECK(pump(&k));
	CHECK_INT_EQ(r->grpc_status, 0);
	bidi_push_msg(&k, r, "late", true);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK(data_is_frames(r, "a", NULL));
	CHECK_INT_EQ(st.handler_calls, 2);
	CHECK_INT_EQ(st.done, 1);
	conn_close(&k);
}

static void test_bidi_bad_requests(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	/* Too big before any message: trailers-only, the handler never runs. */
	struct rec *r = start_bidi(&k);
	bidi_push(&k, r, "\0\0\0\x10\0", 5, false);
	CHECK(pump(&k));
	CHECK_INT_EQ(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	/* Clients end their side once the status came (grpc-go and grpc-core
	 * send RST_STREAM or END_STREAM); later bytes are dropped. */
	bidi_push(&k, r, "more", 4, true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(st.started, 0);
	CHECK_INT_EQ(st.done, 1);
	/* Too big after a good one: the status comes in trailers. */
	reset_state();
	r = start_bidi(&k);
	bidi_push_msg(&k, r, "ok", false);
	bidi_push(&k, r, "\0\0\0\x10\0", 5, true);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK(r->separate_trailers);
	CHECK(data_is_frames(r, "ok", NULL));
	CHECK_INT_EQ(st.handler_calls, 1);
	/* Compressed. */
	reset_state();
	r = start_bidi(&k);
	bidi_push(&k, r, "\1\0\0\0\1x", 6, true);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_UNIMPLEMENTED);
	/* The stream ends inside a message. */
	reset_state();
	r = start_bidi(&k);
	bidi_push_msg(&k, r, "ok", false);
	bidi_push(&k, r, "\0\0\0\0\5ab", 7, true);
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->grpc_status, GRPC_STATUS_INVALID_ARGUMENT);
	CHECK_INT_EQ(st.half_closes, 0);
	/* The client resets mid-stream: counted cancelled, no more handler calls. */
	reset_state();
	r = start_bidi(&k);
	bidi_push_msg(&k, r, "ok", false);
	CHECK(pump(&k));
	CHECK_INT_EQ(nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, r->id, NGHTTP2_CANCEL), 0);
	CHECK(pump(&k));
	/* The handler was called once more (msg NULL) and finished. */
	CHECK_INT_EQ(st.handler_calls, 2);
	CHECK_INT_EQ(st.half_closes, 1);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_CANCELLED);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	/* The connection goes away under an open bidi call: same end. */
	reset_state();
	r = start_bidi(&k);
	bidi_push_msg(&k, r, "ok", false);
	CHECK(pump(&k));
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 1);
	grpc_session_free(k.srv);
	k.srv = NULL;
	CHECK_INT_EQ(st.half_closes, 1);
	conn_close(&k);
}

/* A client that sends but never reads: at most max_message_bytes of
 * responses wait, then the call ends RESOURCE_EXHAUSTED. */
static void test_bidi_unread_responses_capped(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *r = start_bidi(&k);
	char big[601];
	memset(big, 'x', 600);
	big[600] = '\0';
	for (int i = 0; i < 4; i++)
		bidi_push_msg(&k, r, big, false);
	flush_client(&k); /* the server's output is never taken */
	CHECK_INT_EQ(st.handler_calls, 2);
	CHECK_INT_EQ(st.done, 1);
	CHECK_INT_EQ(st.last_done_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK(pump(&k));
	CHECK_INT_EQ(r->grpc_status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	conn_close(&k);
}

static void test_goaway(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	struct rec *done = start_call(&k, "/test.Echo/Unary", "a");
	struct rec *held = start_call(&k, "/test.Echo/Hold", "b");
	CHECK(pump(&k));
	check_ok_response(done, "a");
	CHECK_INT_EQ(st.held_n, 1);
	if (st.held_n != 1)
		goto out;

	/* A request the client sent before it could see the GOAWAY. */
	struct rec *late = start_call(&k, "/test.Echo/Unary", "c");
	struct buf in_flight;
	buf_init(&in_flight, 0);
	for (int i = 0; i < 100; i++) {
		const uint8_t *d;
		ssize_t n = nghttp2_session_mem_send(k.cli, &d);
		if (n <= 0)
			break;
		buf_append(&in_flight, d, (size_t)n);
	}
	CHECK(in_flight.len > 0);
	grpc_session_goaway(k.srv);
	CHECK_INT_EQ(st.want_write, 1);
	grpc_session_goaway(k.srv); /* once only */
	flush_server(&k);
	CHECK_INT_EQ(k.goaways, 1);
	CHECK_INT_EQ(k.goaway_last, held->id);
	CHECK_INT_EQ(k.goaway_error, NGHTTP2_NO_ERROR);
	CHECK_INT_EQ(grpc_session_recv(k.srv, (const uint8_t *)in_flight.data, in_flight.len), 0);
	buf_release(&in_flight);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.handler_calls, 2); /* the late stream was not processed */
	CHECK(late->closed);
	CHECK_INT_EQ(late->close_error, NGHTTP2_REFUSED_STREAM);
	CHECK_INT_EQ(late->header_frames, 0);
	CHECK(grpc_session_want_io(k.srv)); /* the held call is still open */

	struct grpc_call *call = st.held[0];
	st.held_n = 0;
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, (const uint8_t *)"bye", 3);
	CHECK(pump(&k));
	check_ok_response(held, "bye");
	CHECK(!grpc_session_want_io(k.srv));
out:
	conn_close(&k);
}

static uint32_t remote_setting(struct conn *k, nghttp2_settings_id id)
{
	return nghttp2_session_get_remote_settings(k->cli, id);
}

static void test_settings_advertised(void)
{
	static const struct grpc_session_limits lim = {
	    .max_message_bytes = 4096, .max_concurrent_streams = 7, .max_header_bytes = 3000};
	struct conn k;
	reset_state();
	conn_open(&k, &lim);
	CHECK(pump(&k));
	CHECK_INT_EQ(remote_setting(&k, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS), 7);
	CHECK_INT_EQ(remote_setting(&k, NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE), 3000);
	CHECK_INT_EQ(remote_setting(&k, NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE), 1 << 20);
	/* The client keeps to the limit: 10 held requests, 7 reach handlers. */
	for (int i = 0; i < 10; i++)
		start_call(&k, "/test.Echo/Hold", "x");
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 7);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 7);
	while (st.held_n) {
		struct grpc_call *c = st.held[--st.held_n];
		grpc_call_finish(c, GRPC_STATUS_OK, NULL, (const uint8_t *)"y", 1);
		CHECK(pump(&k));
	}
	CHECK_INT_EQ(st.handler_calls, 10);
	CHECK_INT_EQ(st.done, 10);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	conn_close(&k);

	/* Enforced, not only advertised: requests sent before the client saw the
	 * SETTINGS (it assumes 100 until then) are refused past the 7th. */
	reset_state();
	conn_open(&k, &lim);
	struct rec *recs[10];
	for (int i = 0; i < 10; i++)
		recs[i] = start_call(&k, "/test.Echo/Hold", "x");
	flush_client(&k);
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 7);
	int refused = 0;
	for (int i = 0; i < 10; i++)
		refused += recs[i]->closed && recs[i]->close_error == NGHTTP2_REFUSED_STREAM;
	CHECK_INT_EQ(refused, 3);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 7);
	while (st.held_n) {
		struct grpc_call *c = st.held[--st.held_n];
		grpc_call_finish(c, GRPC_STATUS_OK, NULL, (const uint8_t *)"y", 1);
	}
	CHECK(pump(&k));
	CHECK_INT_EQ(st.done, 7);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	conn_close(&k);
}

static void test_many_calls(void)
{
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits);
	char msg[32];
	int ok = 0;
	for (int i = 0; i < 500; i++) {
		snprintf(msg, sizeof(msg), "seq-%d", i);
		struct rec *r = start_call(&k, "/test.Echo/Unary", msg);
		CHECK(pump(&k));
		if (r->closed && r->grpc_status == 0 && data_is_frames(r, msg, NULL))
			ok++;
	}
	CHECK_INT_EQ(ok, 500);
	CHECK_INT_EQ(st.started, 500);
	CHECK_INT_EQ(st.done, 500);

	/* 100 concurrent held calls, finished in reverse order. */
	struct rec *recs[100];
	for (int i = 0; i < 100; i++) {
		snprintf(msg, sizeof(msg), "con-%d", i);
		recs[i] = start_call(&k, "/test.Echo/Hold", msg);
	}
	CHECK(pump(&k));
	CHECK_INT_EQ(st.held_n, 100);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 100);
	CHECK_INT_EQ(st.started, 600);
	while (st.held_n) {
		struct grpc_call *c = st.held[--st.held_n];
		grpc_call_finish(c, GRPC_STATUS_OK, NULL, (const uint8_t *)grpc_call_path(c), 15);
	}
	CHECK_INT_EQ(st.want_write, 100);
	CHECK(pump(&k));
	ok = 0;
	for (int i = 0; i < 100; i++) {
		if (recs[i]->closed && recs[i]->grpc_status == 0 &&
		    data_is_frames(recs[i], "/test.Echo/Hold", NULL))
			ok++;
	}
	CHECK_INT_EQ(ok, 100);
	CHECK_INT_EQ(st.started, 600);
	CHECK_INT_EQ(st.done, 600);
	CHECK_INT_EQ(st.done_started, 600);
	CHECK_INT_EQ(st.done_by_status[0], 600);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	conn_close(&k);
}

/*
 * CVE-2023-44487: a client that opens and resets streams as fast as it can.
 * The attack bytes are generated up front (the attacker ignores what the
 * server says) and fed in 4 KB pieces, flushing the server after each.
 */
static void test_rapid_reset_flood(void)
{
	enum {
		STREAMS = 5000,
		PIECE = 4096
	};
	struct conn k;
	struct buf attack;
	reset_state();
	conn_open(&k, &default_limits);
	CHECK(pump(&k));
	buf_init(&attack, 0);
	int submitted = 0;
	for (int i = 0; i < STREAMS; i++) {
		struct rec *r = start_call(&k, "/test.Echo/Unary", "x");
		r->defer = true;
		for (int j = 0; j < 4; j++) { /* HEADERS, then RST_STREAM */
			const uint8_t *d;
			ssize_t n;
			while ((n = nghttp2_session_mem_send(k.cli, &d)) > 0)
				buf_append(&attack, d, (size_t)n);
			if (j == 0)
				nghttp2_submit_rst_stream(k.cli, NGHTTP2_FLAG_NONE, r->id,
				                          NGHTTP2_CANCEL);
		}
		submitted++;
	}
	CHECK_INT_EQ(submitted, STREAMS);

	struct mallinfo2 before = mallinfo2();
	size_t fed = 0;
	int recv_rc = 0;
	while (fed < attack.len && recv_rc == 0) {
		size_t n = attack.len - fed < PIECE ? attack.len - fed : PIECE;
		recv_rc = grpc_session_recv(k.srv, (const uint8_t *)attack.data + fed, n);
		fed += n;
		flush_server(&k);
	}
	struct mallinfo2 after = mallinfo2();
	/* What nghttp2 1.52 (Debian's CVE backport) does with our limit of a
	 * 1000-reset burst: it answers GOAWAY(INTERNAL_ERROR) and ignores every
	 * later stream, so at most one piece's worth of streams past the burst
	 * ever reaches the session. */
	CHECK_INT_EQ(recv_rc, 0);
	CHECK_INT_EQ(k.goaways, 1);
	CHECK_INT_EQ(k.goaway_error, NGHTTP2_INTERNAL_ERROR);
	CHECK(k.goaway_last > 2000 && k.goaway_last < 2 * 1000 + 2 * PIECE / 10);
	CHECK(st.done > 1000 && st.done < 1000 + PIECE / 10);
	CHECK_INT_EQ(st.done, st.done_by_status[GRPC_STATUS_CANCELLED]);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(grpc_session_active_calls(k.srv), 0);
	/* Nothing per stream survives the flood (meaningful without ASan, whose
	 * allocator mallinfo2 does not see). */
	CHECK(after.uordblks < before.uordblks + 1024 * 1024);
	fprintf(stderr,
	        "  rapid reset: %zu bytes, %d calls seen, GOAWAY last_stream_id %d err %u, "
	        "heap delta %lld\n",
	        attack.len, st.done, k.goaway_last, k.goaway_error,
	        (long long)after.uordblks - (long long)before.uordblks);
	/* Every stream is gone and the GOAWAY is out: the connection is done. */
	CHECK(!grpc_session_want_io(k.srv));
	buf_release(&attack);
	conn_close(&k);
}

static void test_garbage_is_fatal(void)
{
	struct grpc_session *s = grpc_session_new(methods, METHOD_COUNT, &default_limits, &hooks);
	CHECK(s != NULL);
	if (!s)
		return;
	static const char junk[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_INT_EQ(grpc_session_recv(s, (const uint8_t *)junk, sizeof(junk) - 1), MV_EPROTO);
	CHECK(!grpc_session_want_io(s));
	grpc_session_free(s);
}

/* ---- abuse limits (issue 12) ---- */

static void test_header_list_limit(void)
{
	static char big[4001];
	memset(big, 'a', 4000);
	struct conn k;
	reset_state();
	conn_open(&k, &default_limits); /* max_header_bytes 8192 */
	/* 3 x (5 + 4000 + 32) decoded bytes from a few hundred on the wire. */
	extra_headers = 3;
	extra_value = big;
	struct rec *r = start_call(&k, "/test.Echo/Unary", "x");
	extra_headers = 0;
	CHECK(pump(&k));
	CHECK(r->closed);
	CHECK_INT_EQ(r->close_error, NGHTTP2_ENHANCE_YOUR_CALM);
	CHECK_INT_EQ(r->header_frames, 0);
	CHECK_INT_EQ(st.handler_calls, 0);
	CHECK_INT_EQ(st.done_by_status[GRPC_STATUS_RESOURCE_EXHAUSTED], 1);
	CHECK_INT_EQ(k.srv_recv_rc, 0);

	/* The decoder stayed in step: a request under the limit (one copy of
	 * the header, which is now an indexed reference) still works. */
	extra_headers = 1;
	r = start_call(&k, "/test.Echo/Unary", "after");
	extra_headers = 0;
	CHECK(pump(&k));
	check_ok_response(r, "after");

	/* The third oversized block closes the connection. */
	extra_headers = 3;
	r = start_call(&k, "/test.Echo/Unary", "x");
	CHECK(pump(&k));
	CHECK_INT_EQ(r->close_error, NGHTTP2_ENHANCE_YOUR_CALM);
	CHECK_INT_EQ(k.goaways, 0);
	r = start_call(&k, "/test.Echo/Unary", "x");
	extra_headers = 0;
	CHECK(pump(&k));
	CHECK_INT_EQ(k.goaways, 1);
	CHECK_INT_EQ(k.goaway_error, NGHTTP2_ENHANCE_YOUR_CALM);
	CHECK_INT_EQ(k.srv_recv_rc, MV_EPROTO);
	CHECK(!grpc_session_want_io(k.srv));
	CHECK_INT_EQ(st.handler_calls, 1);
	conn_close(&k);
}

/* A request of `len` message bytes sent all but its last byte. */
static struct rec *start_partial(struct conn *k, size_t len)
{
	static char msg[2048];
	memset(msg, 'm', sizeof(msg));
	struct buf f;
	buf_init(&f, 0);
	CHECK_INT_EQ(grpc_frame_append(&f, (const uint8_t *)msg, len), 0);
	struct rec *r = start_call_ex(k, "/test.Echo/Unary", "POST", "application/grpc", NULL,
	                              f.data, f.len, true);
	r->stop_at = f.len - 1;
	buf_release(&f);
	return r;
}

static void test_request_budget_per_session(void)
{
	struct grpc_session_limits lim = default_limits; /* max_message_bytes 1024 */
	lim.max_buffered_request_bytes = 2500;
	struct conn k;
	reset_state();
	conn_open(&k, &lim);
	struct rec *a = start_partial(&k, 1000);
	CHECK(pump(&k));
	struct rec *b = start_partial(&k, 1000);
	CHECK(pump(&k));
	CHECK_INT_EQ(grpc_session_buffered_request_bytes(k.srv), 2008);
	CHECK(!a->closed && !b->closed);
	/* The third does not fit: the largest (the oldest of equals) goes. */
	struct rec *c = start_partial(&k, 1000);
	CHECK(pump(&k));
	check_trailers_only(a, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK_STR_EQ(a->grpc_message, "server request buffer budget exhausted");
	CHECK_INT_EQ(a->close_error, NGHTTP2_NO_ERROR);
	CHECK(!b->closed && !c->closed);
	CHECK_INT_EQ(grpc_session_buffered_request_bytes(k.srv), 2008);
	CHECK_INT_EQ(st.handler_calls, 0);
	/* The survivors complete normally. */
	b->stop_at = 0;
	c->stop_at = 0;
	nghttp2_session_resume_data(k.cli, b->id);
	nghttp2_session_resume_data(k.cli, c->id);
	CHECK(pump(&k));
	CHECK_INT_EQ(b->grpc_status, 0);
	CHECK_INT_EQ(c->grpc_status, 0);
	CHECK_INT_EQ(st.handler_calls, 2);
	CHECK_INT_EQ(grpc_session_buffered_request_bytes(k.srv), 0);
	conn_close(&k);
}

static void test_request_budget_per_process(void)
{
	_Atomic long used = 0;
	struct grpc_session_limits lim = default_limits;
	lim.process_request_bytes = &used;
	lim.max_process_request_bytes = 1500;
	struct conn k1, k2;
	reset_state();
	conn_open(&k1, &lim);
	conn_open(&k2, &lim);
	struct rec *a = start_partial(&k1, 1000);
	CHECK(pump(&k1));
	CHECK_INT_EQ(atomic_load(&used), 1004);
	/* Another session cannot reset k1's stream: its own request is refused. */
	struct rec *b = start_partial(&k2, 1000);
	CHECK(pump(&k2));
	check_trailers_only(b, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK(!a->closed);
	CHECK_INT_EQ(atomic_load(&used), 1004);
	/* Over budget (others hold the rest): a new stream is refused at once. */
	atomic_fetch_add(&used, 1000);
	struct rec *c = start_call(&k2, "/test.Echo/Unary", "tiny");
	CHECK(pump(&k2));
	check_trailers_only(c, GRPC_STATUS_RESOURCE_EXHAUSTED);
	atomic_fetch_sub(&used, 1000);
	c = start_call(&k2, "/test.Echo/Unary", "tiny");
	CHECK(pump(&k2));
	check_ok_response(c, "tiny");
	/* Every byte is given back, however the call ends. */
	conn_close(&k1);
	CHECK_INT_EQ(atomic_load(&used), 0);
	conn_close(&k2);
	CHECK_INT_EQ(atomic_load(&used), 0);
}

static void test_request_and_header_timeouts(void)
{
	struct grpc_session_limits lim = default_limits;
	lim.request_timeout_ns = 5000000000LL;
	lim.header_timeout_ns = 2000000000LL;
	struct conn k;
	reset_state();
	conn_open(&k, &lim);
	struct rec *r = start_partial(&k, 100);
	CHECK(pump(&k));
	int64_t now = grpc_now_ns();
	CHECK_INT_EQ(grpc_session_expire(k.srv, now), 0);
	CHECK(pump(&k));
	CHECK(!r->closed);
	CHECK_INT_EQ(grpc_session_expire(k.srv, now + 6000000000LL), 0);
	CHECK(pump(&k));
	check_trailers_only(r, GRPC_STATUS_DEADLINE_EXCEEDED);
	CHECK_INT_EQ(r->close_error, NGHTTP2_NO_ERROR);
	CHECK_INT_EQ(st.done_by_status[GRPC_STATUS_DEADLINE_EXCEEDED], 1);
	CHECK_INT_EQ(grpc_session_open_streams(k.srv), 0);

	/* A header block left open blocks the connection: GOAWAY. Stream 99
	 * is not one the client library will use; the fields are literals
	 * without indexing, so no HPACK state changes. */
	static const uint8_t headers_frame[] = {0,
	                                        0,
	                                        13,
	                                        NGHTTP2_HEADERS,
	                                        0 /* no END_HEADERS */,
	                                        0,
	                                        0,
	                                        0,
	                                        99,
	                                        0x00,
	                                        7,
	                                        ':',
	                                        'm',
	                                        'e',
	                                        't',
	                                        'h',
	                                        'o',
	                                        'd',
	                                        4,
	                                        'P',
	                                        'O',
	                                        'S',
	                                        'T'};
	CHECK_INT_EQ(grpc_session_recv(k.srv, headers_frame, sizeof(headers_frame)), 0);
	now = grpc_now_ns();
	CHECK_INT_EQ(grpc_session_expire(k.srv, now + 1000000000LL), 0);
	CHECK_INT_EQ(grpc_session_expire(k.srv, now + 3000000000LL), MV_ETIMEDOUT);
	CHECK(!grpc_session_want_io(k.srv));
	flush_server(&k);
	CHECK_INT_EQ(k.goaways, 1);
	conn_close(&k);
}

static void test_output_cap(void)
{
	static char msg[1001];
	memset(msg, 'o', 1000);
	struct grpc_session_limits lim = default_limits;
	lim.max_pending_output = 100;
	struct conn k;
	reset_state();
	conn_open(&k, &lim);
	struct rec *r[40];
	for (int i = 0; i < 40; i++)
		r[i] = start_call(&k, "/test.Echo/Unary", msg);
	flush_client(&k);
	CHECK_INT_EQ(st.handler_calls, 40);
	/* ~41 KB of answers: a send stops soon after `out` holds the cap. */
	struct buf out;
	buf_init(&out, 0);
	CHECK_INT_EQ(grpc_session_send(k.srv, &out), 0);
	CHECK(out.len >= 100);
	CHECK(out.len < 20000);
	CHECK_INT_EQ(nghttp2_session_mem_recv(k.cli, (const uint8_t *)out.data, out.len),
	             (ssize_t)out.len);
	buf_release(&out);
	/* The rest is still queued in the session and follows on later sends. */
	CHECK(pump(&k));
	for (int i = 0; i < 40; i++)
		check_ok_response(r[i], msg);
	conn_close(&k);
}

int main(void)
{
	RUN(test_unary_ok);
	RUN(test_trace_context);
	RUN(test_large_messages_flow_control);
	RUN(test_error_trailers_only);
	RUN(test_unknown_path_method_content_type);
	RUN(test_plain_http_and_message_hooks);
	RUN(test_malformed_frames);
	RUN(test_deadline_already_expired);
	RUN(test_async_completion);
	RUN(test_client_reset_while_held);
	RUN(test_cancel_callback_finishes);
	RUN(test_reset_in_same_input_not_dispatched);
	RUN(test_session_freed_while_held);
	RUN(test_server_streaming);
	RUN(test_bidi_streaming);
	RUN(test_bidi_bad_requests);
	RUN(test_bidi_unread_responses_capped);
	RUN(test_goaway);
	RUN(test_settings_advertised);
	RUN(test_many_calls);
	RUN(test_rapid_reset_flood);
	RUN(test_garbage_is_fatal);
	RUN(test_header_list_limit);
	RUN(test_request_budget_per_session);
	RUN(test_request_budget_per_process);
	RUN(test_request_and_header_timeouts);
	RUN(test_output_cap);
	return TEST_SUMMARY();
}
