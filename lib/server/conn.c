/*
 * Connections: accept, protocol sniffing (HTTP/2 preface vs HTTP/1.1), reads,
 * writes with back-pressure, HTTP/1.1 request dispatch, close.
 *
 * The protocol is chosen by comparing the first bytes with the 24-byte HTTP/2
 * client preface incrementally: the first byte that differs means HTTP/1.1,
 * so a short HTTP/1.0 request is never kept waiting for 24 bytes.
 */
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/ioctl.h>

#include <linux/sockios.h>

#include "internal.h"
#include "movie/trace.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/banned.h"

static const char h2_preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
#define H2_PREFACE_LEN 24

enum conn_proto {
	PROTO_UNKNOWN,
	PROTO_H1,
	PROTO_H2
};

struct http_exchange {
	struct conn *conn;        /* HTTP/1.1: NULL once the connection is gone */
	struct grpc_call *h2;     /* HTTP/2: the stream (the session handles resets) */
	struct http1_request req; /* HTTP/2: the request handed to the handler */
	char allow[64];           /* HTTP/2: Allow header value of a 405 */
	struct server *srv;
	struct route_entry *route;
	int method;
	bool head;
	bool keep_alive;
	int64_t start_ns;
	char path[96];
	char extra_headers[96]; /* e.g. "Allow: GET, PUT\r\n" for a 405 */
	void (*cancel_fn)(struct http_exchange *ex, void *arg);
	void *cancel_arg;
	struct trace_span span; /* the request's server span */
};

struct conn {
	struct worker *worker;
	uv_tcp_t tcp;
	enum conn_proto proto;
	struct grpc_session *h2;
	struct http1_parser h1;
	struct http_exchange *exchange; /* HTTP/1.1 request being handled */
	struct buf in;                  /* sniffing bytes, or unprocessed HTTP/1.1 bytes */
	struct buf out;                 /* output not yet handed to the kernel */
	struct buf wbuf;                /* output owned by the in-flight uv_write */
	uv_write_t wreq;
	bool writing;
	bool reading;
	bool closing; /* uv_close called */
	bool close_after_write;
	bool goaway_sent;
	bool processing; /* inside conn_process_h1: it flushes and goes on */
	int64_t created_ms;
	int64_t last_active_ms;
	int64_t max_age_ms;        /* with jitter; 0 = none */
	int64_t write_progress_ms; /* pending output last moved (or began) */
	size_t seen_write_queue;   /* libuv's write queue size at that time */
	int64_t request_start_ms;  /* first byte of an incomplete HTTP/1.1 request; 0 none */
	size_t accounted;          /* HTTP/1.1 request bytes in the process budget */
	bool flush_pending;        /* on the worker's flush list */
	struct conn *flush_next;
	struct conn *next, *prev;
};

static void conn_flush(struct conn *c);
static void conn_process_h1(struct conn *c);

static int64_t now_ms(struct worker *w)
{
	return (int64_t)uv_now(&w->loop);
}

/* Output produced and not yet taken by the kernel. */
static size_t pending_output(const struct conn *c)
{
	return c->out.len + c->wbuf.len;
}

static bool output_full(const struct conn *c)
{
	return pending_output(c) >= (size_t)c->worker->srv->cfg->max_output_bytes;
}

/* Request bytes an HTTP/1.1 (or undecided) connection holds: unparsed input
 * plus the parser's request. */
static size_t h1_held(const struct conn *c)
{
	if (c->closing || c->proto != PROTO_H1)
		return c->proto == PROTO_UNKNOWN ? c->in.len : 0;
	return c->in.len + c->h1.request.body.len + c->h1.request.target.len;
}

/* Bring the process request budget in line with h1_held. */
static void h1_account(struct conn *c)
{
	size_t held = h1_held(c);
	_Atomic long *used = &c->worker->srv->request_bytes;
	if (held > c->accounted)
		atomic_fetch_add(used, (long)(held - c->accounted));
	else if (held < c->accounted)
		atomic_fetch_sub(used, (long)(c->accounted - held));
	c->accounted = held;
}

static void on_close(uv_handle_t *handle)
{
	struct conn *c = handle->data;
	struct worker *w = c->worker;
	if (c->flush_pending) {
		struct conn **pp = &w->flush_list;
		while (*pp && *pp != c)
			pp = &(*pp)->flush_next;
		if (*pp)
			*pp = c->flush_next;
	}
	if (c->prev)
		c->prev->next = c->next;
	else
		w->conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	w->conn_count--;
	if (c->proto == PROTO_H2 || c->in.cap + c->out.cap + c->wbuf.cap >= 64 * 1024)
		w->trim_due = true;
	atomic_fetch_sub(&w->srv->connections, 1);
	atomic_fetch_sub(&w->srv->request_bytes, (long)c->accounted);
	grpc_session_free(c->h2);
	http1_parser_release(&c->h1);
	buf_release(&c->in);
	buf_release(&c->out);
	buf_release(&c->wbuf);
	free(c);
	worker_conn_closed(w);
	worker_maybe_finish(w);
}

/* Close; `reset` aborts with RST instead of FIN so that output a peer never
 * reads does not stay queued in the kernel after the connection is gone. */
static void conn_close_mode(struct conn *c, bool reset)
{
	if (c->closing)
		return;
	c->closing = true;
	struct http_exchange *ex = c->exchange;
	if (ex) {
		ex->conn = NULL; /* the handler still owns it */
		c->exchange = NULL;
	}
	/* Free the session now so late async completions see orphaned calls. */
	grpc_session_free(c->h2);
	c->h2 = NULL;
	if (!reset || uv_tcp_close_reset(&c->tcp, on_close) != 0)
		uv_close((uv_handle_t *)&c->tcp, on_close);
	/* Last: the callback may answer (and free) ex at once. */
	if (ex && ex->cancel_fn) {
		void (*fn)(struct http_exchange *, void *) = ex->cancel_fn;
		ex->cancel_fn = NULL;
		fn(ex, ex->cancel_arg);
	}
}

static void conn_close(struct conn *c)
{
	conn_close_mode(c, false);
}

static void on_alloc(uv_handle_t *handle, size_t suggested, uv_buf_t *b)
{
	struct conn *c = handle->data;
	b->base = c->worker->read_buf;
	b->len = sizeof(c->worker->read_buf);
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *c = req->data;
	c->writing = false;
	buf_reset(&c->wbuf);
	if (status < 0) {
		conn_close(c);
		return;
	}
	c->write_progress_ms = now_ms(c->worker);
	c->seen_write_queue = 0;
	conn_flush(c);
	/* Pipelined requests parked while the output was over the cap. */
	if (c->proto == PROTO_H1 && !c->closing && !c->processing && !c->exchange && c->in.len &&
	    !output_full(c))
		conn_process_h1(c);
}

static void feed_h2(struct conn *c, const uint8_t *data, size_t len);
static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b);

/* While an HTTP/1.1 request is handled the connection is still read, so that
 * a client that goes away (EOF, RST) cancels its request at once (as a gRPC
 * stream reset does) instead of being noticed after the answer. What it
 * pipelines meanwhile is only buffered, up to api.max_header_bytes, then
 * reading stops until the answer is out. */
static bool h1_busy_full(const struct conn *c)
{
	return c->proto == PROTO_H1 && c->exchange &&
	       c->in.len >= (size_t)c->worker->srv->cfg->max_header_bytes;
}

static void update_reading(struct conn *c)
{
	bool want = !c->closing && !output_full(c) && !h1_busy_full(c) && !c->close_after_write;
	if (want && !c->reading) {
		if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
			c->reading = true;
	} else if (!want && c->reading) {
		uv_read_stop((uv_stream_t *)&c->tcp);
		c->reading = false;
	}
}

/* Hand pending output to the kernel: try a direct write first, queue the rest. */
static void conn_flush(struct conn *c)
{
	if (c->closing)
		return;
	if (c->h2 && grpc_session_send(c->h2, &c->out) != 0) {
		conn_close(c);
		return;
	}
	if (!c->writing && c->out.len) {
		uv_buf_t b = uv_buf_init(c->out.data, (unsigned)c->out.len);
		int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
		if (n > 0)
			buf_consume(&c->out, (size_t)n);
		else if (n < 0 && n != UV_EAGAIN) {
			conn_close(c);
			return;
		}
		if (c->out.len) {
			struct buf tmp = c->wbuf;
			c->wbuf = c->out;
			c->out = tmp;
			buf_reset(&c->out);
			uv_buf_t wb = uv_buf_init(c->wbuf.data, (unsigned)c->wbuf.len);
			c->wreq.data = c;
			if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &wb, 1, on_write) != 0) {
				conn_close(c);
				return;
			}
			c->writing = true;
			c->write_progress_ms = now_ms(c->worker);
			c->seen_write_queue = c->tcp.write_queue_size;
		}
	}
	if (!c->writing && !c->out.len) {
		if (c->close_after_write ||
		    (c->proto == PROTO_H2 && c->h2 && !grpc_session_want_io(c->h2))) {
			conn_close(c);
			return;
		}
	}
	update_reading(c);
}

/* Output from an asynchronous completion. Responses completed in the same loop
 * iteration leave in one write: the worker flushes its list once per iteration
 * (conn_flush_pending, from a uv_check handle) instead of one write per call. */
static void h2_want_write(void *ctx)
{
	struct conn *c = ctx;
	if (c->flush_pending || c->closing)
		return;
	c->flush_pending = true;
	c->flush_next = c->worker->flush_list;
	c->worker->flush_list = c;
}

void conn_flush_pending(struct worker *w)
{
	struct conn *c = w->flush_list;
	w->flush_list = NULL;
	while (c) {
		struct conn *next = c->flush_next;
		c->flush_pending = false;
		c->flush_next = NULL;
		conn_flush(c);
		c = next;
	}
}

static void h2_call_done(void *ctx, const struct grpc_method *m, const char *path, int status,
                         double seconds, bool started, const struct trace_span *span)
{
	struct conn *c = ctx;
	server_record_grpc(c->worker->srv, m, path, status, seconds, started, span);
}

static void h2_call_started(void *ctx, const struct grpc_method *m)
{
	struct conn *c = ctx;
	server_record_grpc_started(c->worker->srv, m);
}

static void h2_call_message(void *ctx, const struct grpc_method *m, bool sent)
{
	struct conn *c = ctx;
	server_record_grpc_message(c->worker->srv, m, sent);
}

static void h2_http_request(void *ctx, struct grpc_call *call, const struct grpc_http_request *hr);

/* Counted like HTTP/1.1's own 408/503 answers (h1_expire, budgets). */
static void h2_http_rejected(void *ctx, int status, double seconds)
{
	struct conn *c = ctx;
	server_record_http(c->worker->srv, &c->worker->srv->unrouted, HTTP1_OTHER, "", status,
	                   seconds, NULL);
}

static int start_h2(struct conn *c)
{
	struct server *srv = c->worker->srv;
	struct grpc_session_limits limits = {
	    .max_message_bytes = (size_t)srv->cfg->max_message_bytes,
	    .max_concurrent_streams = (uint32_t)srv->cfg->max_concurrent_streams,
	    .max_header_bytes = (size_t)srv->cfg->max_header_bytes,
	    .max_pending_output = (size_t)srv->cfg->max_output_bytes,
	    .max_buffered_request_bytes = (size_t)srv->cfg->max_connection_request_bytes,
	    .process_request_bytes = &srv->request_bytes,
	    .max_process_request_bytes = (size_t)srv->cfg->max_process_request_bytes,
	    .header_timeout_ns = srv->cfg->header_timeout_ms * 1000000,
	    .request_timeout_ns = srv->cfg->request_timeout_ms * 1000000,
	    .max_http_body_bytes = (size_t)srv->cfg->max_body_bytes,
	};
	struct grpc_session_hooks hooks = {
	    .call_done = h2_call_done,
	    .call_started = h2_call_started,
	    .call_message = h2_call_message,
	    .http_request = h2_http_request,
	    .http_rejected = h2_http_rejected,
	    .want_write = h2_want_write,
	    .hook_ctx = c,
	};
	c->h2 = grpc_session_new(srv->methods, srv->method_count, &limits, &hooks);
	if (!c->h2)
		return MV_ENOMEM;
	c->proto = PROTO_H2;
	if (atomic_load(&srv->stopping)) {
		grpc_session_goaway(c->h2);
		c->goaway_sent = true;
	}
	return 0;
}

static void feed_h2(struct conn *c, const uint8_t *data, size_t len)
{
	if (grpc_session_recv(c->h2, data, len) != 0) {
		/* Protocol error: nghttp2 queued a GOAWAY; send it, then close. */
		c->close_after_write = true;
	}
	conn_flush(c);
}

/* ---- HTTP/1.1 ---- */

/* docs/api.md: every error answer is {"error": ...} JSON. Reason phrases
 * are plain ASCII: nothing to escape. */
static size_t error_body(char *body, size_t size, int status)
{
	int n = snprintf(body, size, "{\"error\":\"%s\"}\n", http1_reason(status));
	return n < 0 ? 0 : (size_t)n < size ? (size_t)n : size - 1;
}

static void h1_send_simple(struct conn *c, int status, const char *extra, bool keep_alive)
{
	char body[96];
	size_t n = error_body(body, sizeof(body), status);
	http1_response_build(&c->out, status, "application/json", extra, body, n, keep_alive);
}

/* An h2c request's stream was reset (or its connection closed) while the
 * exchange waits: tell the exchange's owner, as a closed HTTP/1.1 connection
 * does. */
static void h2_exchange_cancelled(struct grpc_call *call, void *arg)
{
	struct http_exchange *ex = arg;
	(void)call;
	void (*fn)(struct http_exchange *, void *) = ex->cancel_fn;
	ex->cancel_fn = NULL;
	if (fn)
		fn(ex, ex->cancel_arg);
}

void server_http_on_cancel(struct http_exchange *ex,
                           void (*fn)(struct http_exchange *ex, void *arg), void *arg)
{
	ex->cancel_fn = fn;
	ex->cancel_arg = arg;
	if (ex->h2)
		grpc_call_on_cancel(ex->h2, fn ? h2_exchange_cancelled : NULL, fn ? ex : NULL);
}

void server_http_respond(struct http_exchange *ex, int status, const char *content_type,
                         const char *body, size_t len)
{
	struct conn *c = ex->conn;
	struct server *srv = ex->srv;
	double seconds = (double)(grpc_now_ns() - ex->start_ns) / 1e9;
	server_record_http(srv, ex->route, ex->method, ex->path, status, seconds, &ex->span);
	trace_span_release(&ex->span);
	atomic_fetch_sub(&srv->in_flight, 1);
	if (ex->h2) {
		grpc_call_respond_http(ex->h2, status, content_type, ex->allow, body, len,
		                       ex->head);
		buf_release(&ex->req.target);
		buf_release(&ex->req.body);
		free(ex);
		return;
	}
	if (!c) {
		free(ex);
		return;
	}
	bool keep_alive = ex->keep_alive && !atomic_load(&srv->stopping);
	/* HEAD answers carry no body (and so Content-Length: 0). */
	if (http1_response_build(&c->out, status, content_type,
	                         ex->extra_headers[0] ? ex->extra_headers : NULL,
	                         ex->head ? "" : body, ex->head ? 0 : len, keep_alive) != 0)
		keep_alive = false;
	c->exchange = NULL;
	free(ex);
	if (!keep_alive)
		c->close_after_write = true;
	http1_parser_next(&c->h1);
	/* An answer given inside conn_process_h1 is flushed by its loop, which
	 * then parses the next pipelined request; only an asynchronous answer
	 * resumes the connection from here. */
	if (!c->processing)
		conn_process_h1(c);
}

/* The request's server span (movie/server.h). */
const struct trace_span *server_http_span(const struct http_exchange *ex)
{
	return &ex->span;
}

/* The server span of an HTTP/1.1 request: its one valid traceparent
 * continued (with its tracestate), else a new trace. */
static void h1_start_span(struct http_exchange *ex, const struct http1_request *req)
{
	/* The parser reads 56 bytes at most, which the copy holds; the true
	 * length decides whether a longer value is valid. */
	struct trace_parent parent;
	bool ok = req->traceparent_count == 1 &&
	          trace_parent_parse(req->traceparent, req->traceparent_len, &parent) == 0;
	bool ts = ok && !req->tracestate_over && req->tracestate.len;
	trace_span_start_server(&ex->span, ok ? &parent : NULL, ts ? req->tracestate.data : NULL,
	                        ts ? req->tracestate.len : 0);
}

/* The route's handler, now or after faults.delay; the request stays parsed
 * in the connection (HTTP/1.1) or the exchange (h2c) until it is answered. */
static void run_handler(struct http_exchange *ex)
{
	const struct http1_request *req;
	if (ex->h2 ? grpc_call_cancelled(ex->h2) : !ex->conn) {
		/* The client went away meanwhile: nothing to answer. */
		server_http_respond(ex, 499, "text/plain; charset=utf-8", "", 0);
		return;
	}
	req = ex->h2 ? &ex->req : &ex->conn->h1.request;
	ex->route->handler(ex, req, ex->route->ctx);
}

/* Answer a parsed request, the one way for HTTP/1.1 and h2c so that faults,
 * metrics and request logs are the same on both: `idx` is its route
 * (http1_route_find) or < 0 with `status` the error to answer (404, 405 with
 * `allow`, 400, 413, 503). A service route goes through the faults; the
 * built-in endpoints (/healthz, /readyz, /metrics) never do. */
static void run_route(struct http_exchange *ex, int idx, int status)
{
	struct server *srv = ex->srv;
	if (idx < 0) {
		ex->route = &srv->unrouted;
		char body[96];
		size_t n = error_body(body, sizeof(body), status);
		server_http_respond(ex, status, "application/json", body, n);
		return;
	}
	ex->route = &srv->route_entries[idx];
	if (ex->route->faultable)
		faults_http_call(srv, ex, run_handler);
	else
		run_handler(ex);
}

static void h1_dispatch(struct conn *c)
{
	struct server *srv = c->worker->srv;
	const struct http1_request *req = &c->h1.request;
	char allow[64];
	int status = 0;
	int idx =
	    http1_route_find(srv->routes, srv->route_count, req, &status, allow, sizeof(allow));
	struct http_exchange *ex = calloc(1, sizeof(*ex));
	if (!ex) {
		h1_send_simple(c, 503, NULL, false);
		c->close_after_write = true;
		return;
	}
	ex->conn = c;
	ex->srv = srv;
	ex->method = req->method;
	ex->head = req->method == HTTP1_HEAD;
	ex->keep_alive = req->keep_alive;
	ex->start_ns = grpc_now_ns();
	h1_start_span(ex, req);
	c->request_start_ms = 0;
	size_t plen = req->path_len < sizeof(ex->path) - 1 ? req->path_len : sizeof(ex->path) - 1;
	memcpy(ex->path, req->target.data, plen);
	ex->path[plen] = '\0';
	c->exchange = ex;
	atomic_fetch_add(&srv->in_flight, 1);
	if (idx < 0 && status == 405)
		snprintf(ex->extra_headers, sizeof(ex->extra_headers), "Allow: %s\r\n", allow);
	run_route(ex, idx, status);
}

static enum http1_method method_from_name(const char *name)
{
	static const char *const names[] = {"", "GET", "HEAD", "POST", "PUT", "DELETE"};
	for (int m = HTTP1_GET; m <= HTTP1_DELETE; m++)
		if (strcmp(name, names[m]) == 0)
			return (enum http1_method)m;
	return HTTP1_OTHER;
}

/* A non-gRPC request on an HTTP/2 connection (h2c): the same routes and
 * handlers as HTTP/1.1, with the same caps (the session bounds the body at
 * api.max_body_bytes and the request budgets). */
static void h2_http_request(void *ctx, struct grpc_call *call, const struct grpc_http_request *hr)
{
	struct conn *c = ctx;
	struct server *srv = c->worker->srv;
	struct http_exchange *ex = calloc(1, sizeof(*ex));
	char body[96];
	if (!ex) {
		size_t n = error_body(body, sizeof(body), 503);
		grpc_call_respond_http(call, 503, "application/json", NULL, body, n, false);
		return;
	}
	ex->h2 = call;
	ex->srv = srv;
	trace_span_copy(&ex->span, hr->span);
	ex->method = method_from_name(hr->method);
	ex->head = ex->method == HTTP1_HEAD;
	ex->keep_alive = true;
	ex->start_ns = grpc_now_ns();
	struct http1_request *req = &ex->req;
	req->method = ex->method;
	req->keep_alive = true;
	req->http_minor = 1;
	snprintf(req->content_type, sizeof(req->content_type), "%s", hr->content_type);
	buf_init(&req->target, 0);
	buf_init(&req->body, 0);
	int status = hr->status;
	size_t tlen = strlen(hr->target);
	/* RFC 9113 8.3.1: :path is origin-form (or "*" for OPTIONS). */
	if (buf_append(&req->target, hr->target, tlen) != 0 ||
	    (hr->body_len && buf_append(&req->body, (const char *)hr->body, hr->body_len) != 0))
		status = status ? status : 503;
	else if (tlen == 0 || hr->target[0] != '/')
		status = status ? status : 400;
	req->path_len = req->target.len ? strcspn(req->target.data, "?#") : 0;
	req->query = req->target.len && req->target.data[req->path_len] == '?'
	                 ? req->target.data + req->path_len + 1
	                 : "";
	size_t plen = req->path_len < sizeof(ex->path) - 1 ? req->path_len : sizeof(ex->path) - 1;
	if (plen)
		memcpy(ex->path, req->target.data, plen);
	ex->path[plen] = '\0';
	atomic_fetch_add(&srv->in_flight, 1);
	int idx = -1;
	if (!status)
		idx = http1_route_find(srv->routes, srv->route_count, req, &status, ex->allow,
		                       sizeof(ex->allow));
	if (idx >= 0 || status != 405)
		ex->allow[0] = '\0';
	run_route(ex, idx, status);
}

/* Parse and answer as many buffered requests as possible: one round until the
 * output is over the cap (a client that sends and never reads), then another
 * if the kernel took that output at once; on_write resumes the rest. */
static void conn_process_h1(struct conn *c)
{
	bool more = true;
	while (more) {
		c->processing = true;
		/* Bounded: every answered request consumed at least one byte of input. */
		while (!c->closing && !c->close_after_write && !c->exchange && c->in.len > 0 &&
		       !output_full(c)) {
			size_t consumed = 0;
			int rc = http1_parser_feed(&c->h1, c->in.data, c->in.len, &consumed);
			buf_consume(&c->in, consumed);
			if (rc == HTTP1_NEED_MORE) {
				if (http1_parser_continue_due(&c->h1))
					buf_append_str(&c->out, "HTTP/1.1 100 Continue\r\n\r\n");
				break;
			}
			if (rc != HTTP1_REQUEST_READY) {
				struct server *srv = c->worker->srv;
				server_record_http(srv, &srv->unrouted, HTTP1_OTHER, "", rc, 0,
				                   NULL);
				h1_send_simple(c, rc, NULL, false);
				c->close_after_write = true;
				break;
			}
			h1_dispatch(c);
		}
		c->processing = false;
		if (!c->exchange && !c->request_start_ms &&
		    (c->in.len || http1_parser_started(&c->h1)))
			c->request_start_ms = now_ms(c->worker);
		h1_account(c);
		conn_flush(c);
		more = !c->closing && !c->close_after_write && !c->exchange && c->in.len &&
		       !output_full(c);
	}
}

static void start_h1(struct conn *c)
{
	struct server *srv = c->worker->srv;
	struct http1_limits limits = {
	    .max_header_bytes = (size_t)srv->cfg->max_header_bytes,
	    .max_body_bytes = (size_t)srv->cfg->max_body_bytes,
	};
	http1_parser_init(&c->h1, &limits);
	c->proto = PROTO_H1;
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *b)
{
	struct conn *c = stream->data;
	if (nread < 0) {
		conn_close(c);
		return;
	}
	if (nread == 0)
		return;
	c->last_active_ms = now_ms(c->worker);
	if (c->proto == PROTO_UNKNOWN && !c->request_start_ms)
		c->request_start_ms = c->last_active_ms;
	const char *data = b->base;
	size_t len = (size_t)nread;
	if (c->proto == PROTO_H2) {
		feed_h2(c, (const uint8_t *)data, len);
		return;
	}
	if (c->proto == PROTO_UNKNOWN) {
		size_t have = c->in.len;
		size_t cmp = H2_PREFACE_LEN - have < len ? H2_PREFACE_LEN - have : len;
		bool is_h2 = memcmp(data, h2_preface + have, cmp) == 0;
		if (is_h2 && have + cmp < H2_PREFACE_LEN) {
			buf_append(&c->in, data, len); /* still undecided */
			return;
		}
		if (is_h2) {
			if (start_h2(c) != 0) {
				conn_close(c);
				return;
			}
			struct buf early = c->in;
			buf_init(&c->in, 0);
			if (early.len)
				grpc_session_recv(c->h2, (const uint8_t *)early.data, early.len);
			buf_release(&early);
			feed_h2(c, (const uint8_t *)data, len);
			return;
		}
		struct buf early = c->in;
		start_h1(c);
		/* Pipelined input is bounded by one maximal request plus slack. */
		buf_init(&c->in, (size_t)(c->worker->srv->cfg->max_header_bytes +
		                          c->worker->srv->cfg->max_body_bytes) +
		                     65536);
		if (early.len)
			buf_append(&c->in, early.data, early.len);
		buf_release(&early);
	}
	/* Bounded while busy (h1_busy_full): below max_header_bytes plus one
	 * read, always under the buffer's cap. */
	if (buf_append(&c->in, data, len) != 0) {
		h1_send_simple(c, 413, NULL, false);
		c->close_after_write = true;
		conn_flush(c);
		return;
	}
	struct server *srv = c->worker->srv;
	long others = atomic_load(&srv->request_bytes) - (long)c->accounted;
	/* A busy connection cannot answer now (its response comes first); what
	 * it holds meanwhile is bounded by h1_busy_full and counted. */
	if (!c->exchange && (size_t)(others > 0 ? others : 0) + h1_held(c) >
	                        (size_t)srv->cfg->max_process_request_bytes) {
		/* Over the process budget: refuse the request this connection is
		 * sending rather than buffer it. */
		buf_reset(&c->in);
		h1_account(c);
		server_record_http(srv, &srv->unrouted, HTTP1_OTHER, "", 503, 0, NULL);
		h1_send_simple(c, 503, NULL, false);
		c->close_after_write = true;
		conn_flush(c);
		return;
	}
	conn_process_h1(c);
}

void conn_accept(struct worker *w, int fd)
{
	struct server *srv = w->srv;
	struct conn *c = calloc(1, sizeof(*c));
	if (!c) {
		close(fd);
		return;
	}
	c->worker = w;
	buf_init(&c->in, 0);
	buf_init(&c->out, 0);
	buf_init(&c->wbuf, 0);
	uv_tcp_init(&w->loop, &c->tcp);
	c->tcp.data = c;
	if (uv_tcp_open(&c->tcp, fd) != 0) {
		close(fd);
		uv_close((uv_handle_t *)&c->tcp, (uv_close_cb)free);
		return;
	}
	uv_tcp_nodelay(&c->tcp, 1);
	c->next = w->conns;
	if (w->conns)
		w->conns->prev = c;
	w->conns = c;
	w->conn_count++;
	atomic_fetch_add(&srv->connections, 1);
	metrics_counter_inc(srv->accepted);
	c->created_ms = c->last_active_ms = now_ms(w);
	if (srv->cfg->max_connection_age_ms > 0) {
		/* +-10% jitter so connections made together do not all leave together. */
		int64_t age = srv->cfg->max_connection_age_ms;
		int64_t jitter = age / 10;
		c->max_age_ms =
		    age - jitter + (int64_t)prng_below(&w->prng, (uint64_t)(2 * jitter + 1));
	}
	update_reading(c);
}

static void conn_goaway(struct conn *c)
{
	if (c->goaway_sent || c->closing)
		return;
	c->goaway_sent = true;
	if (c->proto == PROTO_H2 && c->h2) {
		grpc_session_goaway(c->h2);
		conn_flush(c);
	} else if (c->proto == PROTO_H1 && c->exchange) {
		/* Busy: the response will carry Connection: close. */
		c->exchange->keep_alive = false;
	} else {
		conn_close(c);
	}
}

void conn_close_all(struct worker *w, bool graceful)
{
	struct conn *c = w->conns;
	while (c) {
		struct conn *next = c->next;
		if (graceful)
			conn_goaway(c);
		else
			conn_close(c);
		c = next;
	}
}

/* A connection whose pending output has not moved for api.write_timeout.
 * Progress is libuv's write queue shrinking, so a slow reader is not
 * mistaken for a stuck one. */
static bool write_stuck(struct conn *c, int64_t now)
{
	/* Output the kernel took and the peer did not read counts too: an
	 * unread response can sit whole in the socket's send buffer. */
	size_t queued = c->writing ? c->tcp.write_queue_size : 0;
	uv_os_fd_t fd;
	int unsent = 0;
	if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0 && ioctl(fd, SIOCOUTQ, &unsent) == 0 &&
	    unsent > 0)
		queued += (size_t)unsent;
	if (queued == 0) {
		c->seen_write_queue = 0;
		return false;
	}
	if (queued != c->seen_write_queue) {
		c->seen_write_queue = queued;
		c->write_progress_ms = now;
	}
	return now - c->write_progress_ms >= c->worker->srv->cfg->write_timeout_ms;
}

/* HTTP/1.1 (or undecided) request started and not complete in time: 408. */
static void h1_expire(struct conn *c, int64_t now)
{
	const struct server_config *cfg = c->worker->srv->cfg;
	/* A request parked behind our own output or handler is not the
	 * client's delay. */
	if (!c->request_start_ms || c->exchange || c->close_after_write || output_full(c))
		return;
	bool head = c->proto == PROTO_UNKNOWN || !http1_parser_head_complete(&c->h1);
	int64_t limit = head ? cfg->header_timeout_ms : cfg->request_timeout_ms;
	if (now - c->request_start_ms < limit)
		return;
	struct server *srv = c->worker->srv;
	server_record_http(srv, &srv->unrouted, HTTP1_OTHER, "", 408, 0, NULL);
	h1_send_simple(c, 408, NULL, false);
	c->close_after_write = true;
	conn_flush(c);
}

void conn_sweep(struct worker *w)
{
	struct server *srv = w->srv;
	int64_t now = now_ms(w);
	struct conn *c = w->conns;
	while (c) {
		struct conn *next = c->next;
		if (c->closing) {
			c = next;
			continue;
		}
		if (write_stuck(c, now)) {
			conn_close_mode(c, true);
			c = next;
			continue;
		}
		int64_t idle_ms;
		bool busy;
		if (c->proto == PROTO_H2 && c->h2) {
			if (grpc_session_expire(c->h2, grpc_now_ns()) != 0)
				c->close_after_write = true;
			conn_flush(c);
			if (c->closing || !c->h2) {
				c = next;
				continue;
			}
			/* Idle means no streams: PINGs alone do not keep it open. */
			busy = grpc_session_open_streams(c->h2) > 0 ||
			       grpc_session_active_calls(c->h2) > 0 || c->writing;
			idle_ms =
			    (grpc_now_ns() - grpc_session_last_stream_activity(c->h2)) / 1000000;
		} else {
			h1_expire(c, now);
			if (c->closing) {
				c = next;
				continue;
			}
			busy = c->exchange || c->writing;
			idle_ms = now - c->last_active_ms;
		}
		if (!busy && idle_ms >= srv->cfg->idle_timeout_ms) {
			if (c->proto == PROTO_H2 && !c->goaway_sent)
				conn_goaway(c);
			else
				conn_close(c);
		} else if (c->max_age_ms && now - c->created_ms >= c->max_age_ms) {
			if (!c->goaway_sent)
				log_debug("connection reached its maximum age",
				          MV_LOG_I("max_age_ms", c->max_age_ms));
			conn_goaway(c);
		}
		c = next;
	}
	/* What a closed connection freed sits in this thread's malloc arena,
	 * mostly in small chunks no threshold returns: give the free pages back
	 * (at most once a second per loop, and only after a big connection). */
	if (w->trim_due) {
		w->trim_due = false;
		if (SERVER_GLIBC_MALLOC)
			malloc_trim(0);
	}
}
