/*
 * Server lifecycle: registration, listeners, worker threads, the readiness
 * probe thread, signals and the drain sequence, the built-in HTTP endpoints
 * (/healthz, /readyz, /metrics) and request metrics/logs.
 */
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <netdb.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "movie/grpc_reflection.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/trace.h"
#include "movie/banned.h"

#ifndef MOVIE_VERSION_STRING
#define MOVIE_VERSION_STRING "0.0.0"
#endif
#ifndef MOVIE_GIT_COMMIT_STRING
#define MOVIE_GIT_COMMIT_STRING "unknown"
#endif

__thread struct worker *server_current_worker;

static const char *const grpc_labels[] = {"grpc_type", "grpc_service", "grpc_method", "grpc_code"};
static const char *const http_labels[] = {"handler", "code"};

/* ---- metrics and request logs ---- */

static int resolve_method_stats(struct server *srv, struct method_stats *st, const char *type,
                                const char *service, const char *method)
{
	struct metrics_family *started =
	    metrics_counter_family(srv->metrics, "grpc_server_started_total",
	                           "Total number of RPCs started on the server.", 3, grpc_labels);
	struct metrics_family *handled = metrics_counter_family(
	    srv->metrics, "grpc_server_handled_total",
	    "Total number of RPCs completed on the server, regardless of success or failure.", 4,
	    grpc_labels);
	struct metrics_family *seconds = metrics_histogram_family(
	    srv->metrics, "grpc_server_handling_seconds",
	    "Histogram of response latency (seconds) of gRPC that had been application-level "
	    "handled by the server.",
	    metrics_latency_buckets, metrics_latency_bucket_count, 3, grpc_labels);
	struct metrics_family *received = metrics_counter_family(
	    srv->metrics, "grpc_server_msg_received_total",
	    "Total number of RPC stream messages received on the server.", 3, grpc_labels);
	struct metrics_family *sent = metrics_counter_family(
	    srv->metrics, "grpc_server_msg_sent_total",
	    "Total number of gRPC stream messages sent by the server.", 3, grpc_labels);
	if (!started || !handled || !seconds || !received || !sent)
		return MV_ENOMEM;
	const char *values[4] = {type, service, method, NULL};
	st->started = metrics_counter_get(started, values);
	st->msg_received = metrics_counter_get(received, values);
	st->msg_sent = metrics_counter_get(sent, values);
	st->quiet = strcmp(service, "grpc.health.v1.Health") == 0;
	st->seconds = metrics_histogram_get(seconds, values);
	for (int code = 0; code < GRPC_STATUS_COUNT; code++) {
		values[3] = grpc_status_label(code);
		st->handled[code] = metrics_counter_get(handled, values);
	}
	return st->started && st->seconds && st->msg_received && st->msg_sent ? 0 : MV_ENOMEM;
}

static struct metrics_family *http_total_family(struct server *srv)
{
	return metrics_counter_family(
	    srv->metrics, "http_requests_total",
	    "HTTP requests (HTTP/1.1 and HTTP/2) by handler and status code.", 2, http_labels);
}

static int resolve_route_stats(struct server *srv, struct route_entry *r, const char *handler)
{
	struct metrics_family *total = http_total_family(srv);
	struct metrics_family *seconds = metrics_histogram_family(
	    srv->metrics, "http_request_duration_seconds",
	    "HTTP request latency (HTTP/1.1 and HTTP/2) by handler.", metrics_latency_buckets,
	    metrics_latency_bucket_count, 1, http_labels);
	if (!total || !seconds)
		return MV_ENOMEM;
	r->handler_label = handler;
	for (size_t i = 0; i < sizeof(r->by_status) / sizeof(r->by_status[0]); i++)
		atomic_init(&r->by_status[i], NULL);
	/* The usual answers exist from the start, so rate() sees their first one. */
	static const int common[] = {200};
	for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++) {
		char code[8];
		snprintf(code, sizeof(code), "%d", common[i]);
		const char *values[2] = {handler, code};
		atomic_store(&r->by_status[common[i] - SERVER_HTTP_STATUS_MIN],
		             metrics_counter_get(total, values));
	}
	const char *hv[1] = {handler};
	r->seconds = metrics_histogram_get(seconds, hv);
	return r->seconds ? 0 : MV_ENOMEM;
}

/* Milliseconds for logs, from whole nanoseconds so that they print short
 * (0.00034, not 0.00033999999999999997). */
static double duration_ms(double seconds)
{
	return (double)llround(seconds * 1e9) / 1e6;
}

/* log.requests_sample: errors are always logged; a success with probability
 * `sample`, drawn from the loop's own generator (no shared state). */
static bool request_log_sampled(const struct server *srv, bool error)
{
	double sample = srv->cfg->log_requests_sample;
	if (error || sample >= 1.0)
		return true;
	struct worker *w = server_current_worker;
	if (sample <= 0.0)
		return false;
	if (!w)
		return true; /* not on a loop: no generator to draw from */
	return (double)(prng_next(&w->prng) >> 11) * 0x1.0p-53 < sample;
}

static double counter_log_dropped(void *arg)
{
	(void)arg;
	return (double)log_dropped_total();
}

void server_record_grpc_message(struct server *srv, const struct grpc_method *m, bool sent)
{
	const struct method_stats *st = m->user;
	metrics_counter_inc(sent ? st->msg_sent : st->msg_received);
}

void server_record_grpc_started(struct server *srv, const struct grpc_method *m)
{
	const struct method_stats *st = m->user;
	metrics_counter_inc(st->started);
	atomic_fetch_add(&srv->in_flight, 1);
}

/* The ids of a request's log line; a request answered before it had a span
 * (a malformed HTTP/1.1 head, a refused connection) gets fresh ones, so that
 * every request line carries both. */
struct log_ids {
	char trace[2 * TRACE_ID_SIZE + 1];
	char span[2 * TRACE_SPAN_ID_SIZE + 1];
};

static const struct trace_span *span_or_new(const struct trace_span *span, struct trace_span *tmp)
{
	if (span && span->valid)
		return span;
	trace_span_start_server(tmp, NULL, NULL, 0);
	return tmp;
}

static void log_ids_of(const struct trace_span *span, struct log_ids *ids)
{
	trace_hex(span->trace_id, TRACE_ID_SIZE, ids->trace);
	trace_hex(span->span_id, TRACE_SPAN_ID_SIZE, ids->span);
}

static void export_grpc_span(const struct trace_span *span, const struct grpc_method *m,
                             const char *path, int status, double seconds)
{
	int64_t end = trace_now_unix_ns();
	struct trace_record r;
	trace_record_init(&r, span, TRACE_KIND_SERVER, end - llround(seconds * 1e9), end);
	const char *name = path[0] == '/' ? path + 1 : path;
	trace_record_set(r.name, sizeof(r.name), name, strlen(name));
	if (m) {
		trace_record_set(r.rpc_service, sizeof(r.rpc_service), m->service,
		                 strlen(m->service));
		trace_record_set(r.rpc_method, sizeof(r.rpc_method), m->name, strlen(m->name));
	} else {
		const char *slash = strchr(name, '/');
		size_t sl = slash ? (size_t)(slash - name) : strlen(name);
		trace_record_set(r.rpc_service, sizeof(r.rpc_service), name, sl);
		if (slash)
			trace_record_set(r.rpc_method, sizeof(r.rpc_method), slash + 1,
			                 strlen(slash + 1));
	}
	r.grpc_status = status;
	/* OpenTelemetry's gRPC server convention: these codes are server errors. */
	r.error = status == GRPC_STATUS_UNKNOWN || status == GRPC_STATUS_DEADLINE_EXCEEDED ||
	          status == GRPC_STATUS_UNIMPLEMENTED || status == GRPC_STATUS_INTERNAL ||
	          status == GRPC_STATUS_UNAVAILABLE || status == GRPC_STATUS_DATA_LOSS;
	trace_export_submit(&r);
}

void server_record_grpc(struct server *srv, const struct grpc_method *m, const char *path,
                        int status, double seconds, bool started, const struct trace_span *span)
{
	const struct method_stats *st = m ? m->user : &srv->method_stats[SERVER_MAX_METHODS];
	if (status < 0 || status >= GRPC_STATUS_COUNT)
		status = GRPC_STATUS_UNKNOWN;
	/* A call the session answered itself (unknown method, bad message,
	 * deadline, budgets) never reached a handler: it starts and ends now,
	 * so that started and handled count the same calls. */
	if (!started)
		metrics_counter_inc(st->started);
	metrics_counter_inc(st->handled[status]);
	metrics_histogram_observe(st->seconds, seconds);
	if (started)
		atomic_fetch_sub(&srv->in_flight, 1);
	struct trace_span tmp = {0};
	/* Health checks are not traced: a probe every few seconds, no caller
	 * who wants its trace. */
	if (span && !st->quiet && trace_span_sampled(span))
		export_grpc_span(span, m, path, status, seconds);
	enum log_level level = st->quiet && status == GRPC_STATUS_OK ? MV_LOG_DEBUG : MV_LOG_INFO;
	if (srv->cfg->log_requests && log_enabled(level) &&
	    request_log_sampled(srv, status != GRPC_STATUS_OK)) {
		struct log_ids ids;
		log_ids_of(span_or_new(span, &tmp), &ids);
		log_emit(level, "grpc",
		         MV_LOG_FIELDS(
		             MV_LOG_S("method", path), MV_LOG_S("code", grpc_status_name(status)),
		             MV_LOG_D("ms", duration_ms(seconds)), MV_LOG_S("trace_id", ids.trace),
		             MV_LOG_S("span_id", ids.span)));
	}
	trace_span_release(&tmp);
}

static struct metrics_counter *route_status_counter(struct server *srv, struct route_entry *route,
                                                    int status)
{
	if (status < SERVER_HTTP_STATUS_MIN || status > SERVER_HTTP_STATUS_MAX)
		return NULL;
	_Atomic(struct metrics_counter *) *slot =
	    &route->by_status[status - SERVER_HTTP_STATUS_MIN];
	struct metrics_counter *c = atomic_load_explicit(slot, memory_order_acquire);
	if (!c) {
		/* First answer with this code on this route: one registry lookup. */
		char code[8];
		snprintf(code, sizeof(code), "%d", status);
		const char *values[2] = {route->handler_label, code};
		c = metrics_counter_get(http_total_family(srv), values);
		atomic_store_explicit(slot, c, memory_order_release);
	}
	return c;
}

static const char *http_method_name(int method)
{
	static const char *const names[] = {"OTHER", "GET", "HEAD", "POST", "PUT", "DELETE"};
	return method >= 0 && method <= HTTP1_DELETE ? names[method] : "OTHER";
}

static void export_http_span(const struct trace_span *span, const struct route_entry *route,
                             const char *mname, int status, double seconds)
{
	int64_t end = trace_now_unix_ns();
	struct trace_record r;
	trace_record_init(&r, span, TRACE_KIND_SERVER, end - llround(seconds * 1e9), end);
	/* The route, not the path: span names stay few (OpenTelemetry's HTTP
	 * convention, "{method} {http.route}"). */
	const char *label = route && route->handler_label && route->handler_label[0] == '/'
	                        ? route->handler_label
	                        : NULL; /* unrouted ("other") */
	snprintf(r.name, sizeof(r.name), "%s%s%s", mname, label ? " " : "", label ? label : "");
	trace_record_set(r.http_method, sizeof(r.http_method), mname, strlen(mname));
	if (label)
		trace_record_set(r.http_route, sizeof(r.http_route), label, strlen(label));
	r.http_status = status;
	r.error = status >= 500;
	trace_export_submit(&r);
}

void server_record_http(struct server *srv, struct route_entry *route, int method, const char *path,
                        int status, double seconds, const struct trace_span *span)
{
	if (route) {
		metrics_counter_inc(route_status_counter(srv, route, status));
		metrics_histogram_observe(route->seconds, seconds);
	}
	const char *mname = http_method_name(method);
	/* Probes and Prometheus scrapes are not traced (as health checks). */
	bool traced = route && !route->quiet && route->handler_label &&
	              strcmp(route->handler_label, "/metrics") != 0;
	if (span && traced && trace_span_sampled(span))
		export_http_span(span, route, mname, status, seconds);
	enum log_level level = route && route->quiet && status < 500 ? MV_LOG_DEBUG : MV_LOG_INFO;
	if (srv->cfg->log_requests && log_enabled(level) &&
	    request_log_sampled(srv, status >= 400)) {
		struct trace_span tmp = {0};
		struct log_ids ids;
		log_ids_of(span_or_new(span, &tmp), &ids);
		log_emit(
		    level, "http",
		    MV_LOG_FIELDS(MV_LOG_S("method", mname), MV_LOG_S("path", path),
		                  MV_LOG_I("status", status), MV_LOG_D("ms", duration_ms(seconds)),
		                  MV_LOG_S("trace_id", ids.trace), MV_LOG_S("span_id", ids.span)));
		trace_span_release(&tmp);
	}
}

/* ---- registration ---- */

static int add_grpc(struct server *srv, const char *service, const char *method,
                    bool server_streaming, bool bidi_streaming, bool faultable,
                    grpc_handler_fn handler, void *ctx)
{
	if (srv->method_count >= SERVER_MAX_METHODS)
		return MV_ENOMEM;
	size_t plen = strlen(service) + strlen(method) + 3;
	char *path = malloc(plen);
	if (!path)
		return MV_ENOMEM;
	snprintf(path, plen, "/%s/%s", service, method);
	for (size_t i = 0; i < srv->method_count; i++) {
		if (strcmp(srv->methods[i].path, path) == 0) {
			free(path);
			return MV_EEXIST;
		}
	}
	struct method_stats *st = &srv->method_stats[srv->method_count];
	const char *type = bidi_streaming     ? "bidi_stream"
	                   : server_streaming ? "server_stream"
	                                      : "unary";
	int rc = resolve_method_stats(srv, st, type, service, method);
	if (rc) {
		free(path);
		return rc;
	}
	struct grpc_method *m = &srv->methods[srv->method_count++];
	m->path = path;
	m->service = service;
	m->name = method;
	m->server_streaming = server_streaming;
	m->bidi_streaming = bidi_streaming;
	m->handler = handler;
	m->ctx = ctx;
	m->user = st;
	if (faultable)
		faults_wrap_grpc(srv, m, st);
	return 0;
}

int server_add_grpc(struct server *srv, const char *service, const char *method,
                    bool server_streaming, grpc_handler_fn handler, void *ctx)
{
	return add_grpc(srv, service, method, server_streaming, false, true, handler, ctx);
}

int server_add_grpc_builtin(struct server *srv, const char *service, const char *method,
                            bool server_streaming, grpc_handler_fn handler, void *ctx)
{
	return add_grpc(srv, service, method, server_streaming, false, false, handler, ctx);
}

int server_add_grpc_bidi(struct server *srv, const char *service, const char *method,
                         grpc_handler_fn handler, void *ctx)
{
	return add_grpc(srv, service, method, false, true, false, handler, ctx);
}

static int add_http(struct server *srv, const char *path, unsigned method_mask, bool faultable,
                    server_http_fn handler, void *ctx)
{
	if (srv->route_count >= SERVER_MAX_ROUTES)
		return MV_ENOMEM;
	for (size_t i = 0; i < srv->route_count; i++)
		if (strcmp(srv->routes[i].path, path) == 0)
			return MV_EEXIST;
	struct route_entry *r = &srv->route_entries[srv->route_count];
	int rc = resolve_route_stats(srv, r, path);
	if (rc)
		return rc;
	r->handler = handler;
	r->ctx = ctx;
	r->faultable = faultable;
	srv->routes[srv->route_count].path = path;
	srv->routes[srv->route_count].method_mask = method_mask;
	srv->route_count++;
	return 0;
}

int server_add_http(struct server *srv, const char *path, unsigned method_mask,
                    server_http_fn handler, void *ctx)
{
	return add_http(srv, path, method_mask, true, handler, ctx);
}

void server_set_ready_probe(struct server *srv, int (*probe)(void *ctx), void *ctx,
                            int64_t interval_ms)
{
	srv->probe = probe;
	srv->probe_ctx = ctx;
	srv->probe_interval_ms = interval_ms > 0 ? interval_ms : 1000;
	atomic_store(&srv->probe_ok, false);
}

bool server_is_ready(const struct server *srv)
{
	return atomic_load(&srv->listening) && atomic_load(&srv->probe_ok) &&
	       !atomic_load(&srv->draining) && !srv->cfg->faults.not_ready;
}

bool server_is_draining(const struct server *srv)
{
	return atomic_load(&srv->draining);
}

void server_wake_workers(struct server *srv)
{
	for (size_t i = 0; i < srv->worker_count; i++) {
		struct worker *w = &srv->workers[i];
		/* A finished worker has closed its wake handle: sending would abort. */
		pthread_mutex_lock(&w->wake_mutex);
		if (!w->wake_closed)
			uv_async_send(&w->wake);
		pthread_mutex_unlock(&w->wake_mutex);
	}
}

void server_report_unavailable(struct server *srv)
{
	if (srv->probe && atomic_exchange(&srv->probe_ok, false)) {
		log_warn("dependency unavailable: not ready until the probe succeeds");
		server_wake_workers(srv);
		pthread_mutex_lock(&srv->probe_mutex);
		pthread_cond_signal(&srv->probe_cond); /* probe again soon */
		pthread_mutex_unlock(&srv->probe_mutex);
	}
}

/* ---- built-in endpoints ---- */

static void http_healthz(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	server_http_respond(ex, 200, "text/plain; charset=utf-8", "ok\n", 3);
}

static void http_readyz(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	struct server *srv = ctx;
	if (server_is_ready(srv))
		server_http_respond(ex, 200, "text/plain; charset=utf-8", "ready\n", 6);
	else if (server_is_draining(srv))
		server_http_respond(ex, 503, "application/json", "{\"error\":\"draining\"}\n", 21);
	else
		server_http_respond(ex, 503, "application/json", "{\"error\":\"not ready\"}\n", 22);
}

static void http_metrics(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	struct server *srv = ctx;
	struct buf out;
	buf_init(&out, 0);
	metrics_gauge_set(srv->ready_gauge, server_is_ready(srv) ? 1 : 0);
	if (metrics_render(srv->metrics, &out) != 0) {
		buf_release(&out);
		server_http_respond(ex, 500, "application/json", "{\"error\":\"render failed\"}\n",
		                    26);
		return;
	}
	server_http_respond(ex, 200, "text/plain; version=0.0.4; charset=utf-8", out.data, out.len);
	buf_release(&out);
}

static double gauge_in_flight(void *arg)
{
	struct server *srv = arg;
	return (double)atomic_load(&srv->in_flight);
}

static double gauge_connections(void *arg)
{
	struct server *srv = arg;
	return (double)atomic_load(&srv->connections);
}

struct server *server_new(const struct server_config *cfg, const char *program,
                          const char *grpc_service, struct metrics_registry *metrics)
{
	struct server *srv = calloc(1, sizeof(*srv));
	if (!srv)
		return NULL;
	srv->cfg = cfg;
	srv->program = program;
	srv->grpc_service = grpc_service;
	srv->metrics = metrics;
	atomic_init(&srv->probe_ok, true);
	/* Request and response buffers a client makes us grow (up to the
	 * api.max_* caps) are returned to the system when they are freed:
	 * a fixed mmap threshold stops glibc from raising it after the first
	 * large free, which kept such buffers in the loop threads' arenas
	 * after their connections closed. */
	if (SERVER_GLIBC_MALLOC)
		mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	pthread_mutex_init(&srv->probe_mutex, NULL);
	pthread_cond_init(&srv->probe_cond, NULL);

	static const char *const build_labels[] = {"service", "version", "commit"};
	struct metrics_family *build = metrics_gauge_family(
	    metrics, "movie_build_info", "Build of the running binary; always 1.", 3, build_labels);
	const char *bv[3] = {program, MOVIE_VERSION_STRING, MOVIE_GIT_COMMIT_STRING};
	metrics_gauge_set(metrics_gauge_get(build, bv), 1);
	struct metrics_family *ready = metrics_gauge_family(
	    metrics, "server_ready", "1 when the server reports ready.", 0, NULL);
	srv->ready_gauge = metrics_gauge_get(ready, NULL);
	struct metrics_family *accepted = metrics_counter_family(
	    metrics, "server_connections_accepted_total", "Connections accepted.", 0, NULL);
	srv->accepted = metrics_counter_get(accepted, NULL);
	struct metrics_family *paused = metrics_counter_family(
	    metrics, "server_accept_paused_total",
	    "Times a worker stopped accepting for a moment because the process was out of file "
	    "descriptors (EMFILE/ENFILE) or socket memory.",
	    0, NULL);
	srv->accept_paused = metrics_counter_get(paused, NULL);
	metrics_gauge_callback(metrics, "server_requests_in_flight",
	                       "Requests (gRPC calls and HTTP requests) being handled.",
	                       gauge_in_flight, srv);
	metrics_gauge_callback(metrics, "server_connections_open", "Open client connections.",
	                       gauge_connections, srv);
	metrics_register_process(metrics);
	metrics_counter_callback(metrics, "log_lines_dropped_total",
	                         "Log lines dropped because the log output (stdout) was too slow.",
	                         counter_log_dropped, NULL);

	const char *unknown = "unknown";
	if (resolve_method_stats(srv, &srv->method_stats[SERVER_MAX_METHODS], "unary", unknown,
	                         unknown) != 0 ||
	    resolve_route_stats(srv, &srv->unrouted, "other") != 0 || health_register(srv) != 0 ||
	    faults_init(srv) != 0 || reflection_register(srv) != 0 ||
	    add_http(srv, "/healthz", HTTP1_METHOD_BIT(HTTP1_GET), false, http_healthz, srv) ||
	    add_http(srv, "/readyz", HTTP1_METHOD_BIT(HTTP1_GET), false, http_readyz, srv) ||
	    add_http(srv, "/metrics", HTTP1_METHOD_BIT(HTTP1_GET), false, http_metrics, srv)) {
		server_free(srv);
		return NULL;
	}
	/* Kubernetes probes every few seconds: their lines would drown the rest. */
	for (size_t i = 0; i < srv->route_count; i++)
		if (strcmp(srv->routes[i].path, "/healthz") == 0 ||
		    strcmp(srv->routes[i].path, "/readyz") == 0)
			srv->route_entries[i].quiet = true;
	return srv;
}

void server_free(struct server *srv)
{
	if (!srv)
		return;
	for (size_t i = 0; i < srv->method_count; i++)
		free((char *)(uintptr_t)srv->methods[i].path);
	grpc_reflection_free(srv->reflection);
	pthread_mutex_destroy(&srv->probe_mutex);
	pthread_cond_destroy(&srv->probe_cond);
	free(srv->workers);
	free(srv);
}

struct uv_loop_s *server_current_loop(void)
{
	return server_current_worker ? &server_current_worker->loop : NULL;
}

void server_on_worker_stop(struct server *srv, void (*fn)(void *ctx), void *ctx)
{
	srv->worker_stop_fn = fn;
	srv->worker_stop_ctx = ctx;
}

/* ---- thread pool ---- */

struct queued_work {
	uv_work_t req;
	void (*work)(void *arg);
	void (*done)(void *arg);
	void *arg;
};

static void run_work(uv_work_t *req)
{
	struct queued_work *q = req->data;
	q->work(q->arg);
}

static void after_work(uv_work_t *req, int status)
{
	struct queued_work *q = req->data;
	q->done(q->arg);
	free(q);
}

int server_queue_work(void (*work)(void *arg), void (*done)(void *arg), void *arg)
{
	struct worker *w = server_current_worker;
	if (!w)
		return MV_EINTERNAL;
	struct queued_work *q = malloc(sizeof(*q));
	if (!q)
		return MV_ENOMEM;
	q->work = work;
	q->done = done;
	q->arg = arg;
	q->req.data = q;
	if (uv_queue_work(&w->loop, &q->req, run_work, after_work) != 0) {
		free(q);
		return MV_EINTERNAL;
	}
	return 0;
}

/* ---- workers ---- */

static void on_listener_readable(uv_poll_t *poll, int status, int events);

static void resume_accepting(struct worker *w)
{
	if (w->listener_closed || !w->accept_paused)
		return;
	w->accept_paused = false;
	uv_timer_stop(&w->accept_pause);
	uv_poll_start(&w->listener, UV_READABLE, on_listener_readable);
}

static void on_accept_pause_over(uv_timer_t *t)
{
	resume_accepting(t->data);
}

void worker_conn_closed(struct worker *w)
{
	/* Its fd is free now: take the next waiting connection without waiting
	 * for the timer (which covers fds freed elsewhere in the process). */
	resume_accepting(w);
}

/*
 * Out of file descriptors (EMFILE/ENFILE; ENOBUFS/ENOMEM for socket memory):
 * the pending connection cannot be taken, and the listening socket stays
 * readable, so retrying at once spins the loop at 100% CPU and starves
 * everything else on it (its connections, its wake-ups: SIGTERM's drain).
 * Stop polling the listener for a moment instead; connections wait in the
 * kernel's backlog meanwhile, existing ones are served and free fds as they
 * close: a connection closing on this worker resumes accepting at once, the
 * timer covers fds freed elsewhere. Each worker pauses its own listener, so
 * nothing is shared between loops.
 */
static void pause_accepting(struct worker *w, int err)
{
	struct server *srv = w->srv;
	uv_poll_stop(&w->listener);
	w->accept_paused = true;
	metrics_counter_inc(srv->accept_paused);
	/* Every pause is counted; the log says it at most once a second per worker. */
	int64_t now = (int64_t)uv_now(&w->loop);
	if (!w->pause_logged_ms || now - w->pause_logged_ms >= 1000) {
		w->pause_logged_ms = now;
		log_warn("cannot accept: out of file descriptors, pausing accepts",
		         MV_LOG_I("worker", (long long)w->index), MV_LOG_S("error", strerror(err)),
		         MV_LOG_I("pause_ms", SERVER_ACCEPT_PAUSE_MS),
		         MV_LOG_I("connections", atomic_load(&srv->connections)));
	}
	uv_timer_start(&w->accept_pause, on_accept_pause_over, SERVER_ACCEPT_PAUSE_MS, 0);
}

static void on_listener_readable(uv_poll_t *poll, int status, int events)
{
	struct worker *w = poll->data;
	if (w->listener_closed)
		return;
	/* Bounded per wake-up so one busy listener cannot hold the loop; the
	 * poll is level-triggered and comes back for the rest. */
	for (int i = 0; i < SERVER_ACCEPT_BATCH; i++) {
		int fd = accept4(w->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			conn_accept(w, fd);
			if (w->listener_closed)
				return;
			continue;
		}
		int err = errno;
		if (err == EAGAIN || err == EWOULDBLOCK)
			return;
		if (err == EINTR || err == ECONNABORTED || err == EPROTO || err == EPERM)
			continue; /* that connection is gone (or refused by a filter) */
		if (err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM) {
			pause_accepting(w, err);
			return;
		}
		log_error("accept failed", MV_LOG_S("error", strerror(err)));
		pause_accepting(w, err);
		return;
	}
}

static void close_listener(struct worker *w)
{
	if (!w->listener_closed) {
		w->listener_closed = true;
		uv_timer_stop(&w->accept_pause);
		uv_close((uv_handle_t *)&w->accept_pause, NULL);
		uv_poll_stop(&w->listener);
		uv_close((uv_handle_t *)&w->listener, NULL);
		close(w->listen_fd);
		w->listen_fd = -1;
	}
}

static void on_worker_wake(uv_async_t *async)
{
	struct worker *w = async->data;
	struct server *srv = w->srv;
	health_broadcast(w);
	if (atomic_load(&srv->stopping) && !w->stop_seen) {
		w->stop_seen = true;
		close_listener(w);
		health_close_watches(w);
		conn_close_all(w, true);
	}
	if (atomic_load(&srv->forced) && !w->force_seen) {
		w->force_seen = true;
		conn_close_all(w, false);
		faults_flush_delays(w);
	}
	worker_maybe_finish(w);
}

void worker_maybe_finish(struct worker *w)
{
	if (w->stop_seen && w->conn_count == 0 && !w->finished) {
		w->finished = true;
		faults_flush_delays(w); /* their calls are orphaned: nothing waits */
		if (w->srv->worker_stop_fn)
			w->srv->worker_stop_fn(w->srv->worker_stop_ctx);
		pthread_mutex_lock(&w->wake_mutex);
		w->wake_closed = true;
		uv_close((uv_handle_t *)&w->wake, NULL);
		pthread_mutex_unlock(&w->wake_mutex);
		uv_close((uv_handle_t *)&w->sweep, NULL);
		uv_close((uv_handle_t *)&w->flush_check, NULL);
	}
}

/* The end of each loop iteration: this iteration's log lines in one go (they
 * never wait for stdout: see log.h), queued before the responses go out, then
 * the responses. */
static void on_flush_check(uv_check_t *check)
{
	log_flush();
	conn_flush_pending(check->data);
}

static void on_sweep(uv_timer_t *timer)
{
	struct worker *w = timer->data;
	conn_sweep(w);
	log_flush(); /* lines of close callbacks, which run after the check phase */
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	server_current_worker = w;
	log_batch_begin();
	/* Returns once every handle is closed and queued work has completed. */
	uv_run(&w->loop, UV_RUN_DEFAULT);
	log_batch_end();
	uv_loop_close(&w->loop);
	atomic_fetch_add(&w->srv->workers_done, 1);
	uv_async_send(&w->srv->shutdown_async);
	return NULL;
}

static int open_listener(const struct server_config *cfg, int *out_fd)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
	                         .ai_socktype = SOCK_STREAM,
	                         .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
	struct addrinfo *res = NULL;
	char port[16];
	snprintf(port, sizeof(port), "%lld", (long long)cfg->port);
	int rc = getaddrinfo(cfg->host, port, &hints, &res);
	if (rc != 0) {
		log_error("cannot resolve api.host", MV_LOG_S("host", cfg->host),
		          MV_LOG_S("error", gai_strerror(rc)));
		return MV_EIO;
	}
	int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	int one = 1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Every worker binds its own socket: the kernel spreads connections. */
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0)
		goto fail_fd;
	if (bind(fd, res->ai_addr, res->ai_addrlen) != 0)
		goto fail_fd;
	if (listen(fd, 1024) != 0)
		goto fail_fd;
	freeaddrinfo(res);
	*out_fd = fd;
	return 0;
fail_fd:
	close(fd);
fail:
	log_error("cannot listen", MV_LOG_S("host", cfg->host), MV_LOG_I("port", cfg->port),
	          MV_LOG_S("error", strerror(errno)));
	freeaddrinfo(res);
	return MV_EIO;
}

static int worker_init(struct server *srv, struct worker *w, size_t index)
{
	w->srv = srv;
	w->index = index;
	prng_seed(&w->prng);
	if (uv_loop_init(&w->loop) != 0)
		return MV_EINTERNAL;
	if (uv_poll_init(&w->loop, &w->listener, w->listen_fd) != 0)
		return MV_EIO;
	w->listener.data = w;
	uv_timer_init(&w->loop, &w->accept_pause);
	w->accept_pause.data = w;
	if (uv_poll_start(&w->listener, UV_READABLE, on_listener_readable) != 0)
		return MV_EIO;
	pthread_mutex_init(&w->wake_mutex, NULL);
	uv_async_init(&w->loop, &w->wake, on_worker_wake);
	w->wake.data = w;
	uv_timer_init(&w->loop, &w->sweep);
	w->sweep.data = w;
	uv_check_init(&w->loop, &w->flush_check);
	w->flush_check.data = w;
	uv_check_start(&w->flush_check, on_flush_check);
	uv_timer_start(&w->sweep, on_sweep, 1000, 1000);
	return 0;
}

/* ---- readiness probe thread ---- */

static void *probe_main(void *arg)
{
	struct server *srv = arg;
	bool first = true;
	pthread_mutex_lock(&srv->probe_mutex);
	while (!atomic_load(&srv->stopping)) {
		pthread_mutex_unlock(&srv->probe_mutex);
		bool ok = srv->probe(srv->probe_ctx) == 0;
		bool was = atomic_exchange(&srv->probe_ok, ok);
		if (ok != was || first) {
			first = false;
			if (ok)
				log_info("dependencies reachable: ready");
			else
				log_warn("dependency probe failed: not ready");
			server_wake_workers(srv);
		}
		pthread_mutex_lock(&srv->probe_mutex);
		if (atomic_load(&srv->stopping))
			break;
		struct timespec deadline;
		clock_gettime(CLOCK_REALTIME, &deadline);
		/* Probe faster while failing so recovery is noticed quickly. */
		int64_t ms = ok ? srv->probe_interval_ms : srv->probe_interval_ms / 4 + 1;
		deadline.tv_sec += ms / 1000;
		deadline.tv_nsec += (ms % 1000) * 1000000;
		if (deadline.tv_nsec >= 1000000000) {
			deadline.tv_sec++;
			deadline.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&srv->probe_cond, &srv->probe_mutex, &deadline);
	}
	pthread_mutex_unlock(&srv->probe_mutex);
	return NULL;
}

/* ---- shutdown sequence (main loop) ---- */

static void on_grace_expired(uv_timer_t *t)
{
	struct server *srv = t->data;
	long left = atomic_load(&srv->in_flight);
	log_warn("grace period over: closing remaining connections", MV_LOG_I("in_flight", left),
	         MV_LOG_I("connections", atomic_load(&srv->connections)));
	if (left > 0)
		srv->exit_status = MV_ETIMEDOUT;
	atomic_store(&srv->forced, true);
	server_wake_workers(srv);
}

static void on_drain_delay_over(uv_timer_t *t)
{
	struct server *srv = t->data;
	log_info("drain delay over: closing listeners, sending GOAWAY",
	         MV_LOG_I("connections", atomic_load(&srv->connections)),
	         MV_LOG_I("grace_ms", srv->cfg->grace_period_ms));
	atomic_store(&srv->stopping, true);
	pthread_mutex_lock(&srv->probe_mutex);
	pthread_cond_signal(&srv->probe_cond);
	pthread_mutex_unlock(&srv->probe_mutex);
	server_wake_workers(srv);
	uv_timer_start(&srv->grace_timer, on_grace_expired, (uint64_t)srv->cfg->grace_period_ms, 0);
}

static void begin_shutdown(struct server *srv, const char *why)
{
	if (atomic_exchange(&srv->draining, true)) {
		if (!atomic_load(&srv->forced)) {
			log_warn("second signal: stopping now", MV_LOG_S("reason", why));
			uv_timer_stop(&srv->drain_timer);
			atomic_store(&srv->stopping, true);
			atomic_store(&srv->forced, true);
			srv->exit_status = MV_ECLOSED;
			server_wake_workers(srv);
		}
		return;
	}
	log_info("shutting down: not ready, still serving", MV_LOG_S("reason", why),
	         MV_LOG_I("drain_delay_ms", srv->cfg->drain_delay_ms));
	metrics_gauge_set(srv->ready_gauge, 0);
	server_wake_workers(srv); /* health watchers see NOT_SERVING now */
	uv_timer_start(&srv->drain_timer, on_drain_delay_over, (uint64_t)srv->cfg->drain_delay_ms,
	               0);
}

static void on_signal(uv_signal_t *handle, int signum)
{
	begin_shutdown(handle->data, signum == SIGTERM ? "SIGTERM" : "SIGINT");
}

static void on_shutdown_async(uv_async_t *a)
{
	struct server *srv = a->data;
	if (atomic_load(&srv->workers_done) == (long)srv->worker_count) {
		uv_stop(&srv->main_loop);
		return;
	}
	if (!atomic_load(&srv->draining))
		begin_shutdown(srv, "requested");
}

void server_shutdown(struct server *srv)
{
	uv_async_send(&srv->shutdown_async);
}

static void close_walk_cb(uv_handle_t *h, void *arg)
{
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

/* The span exporter, when tracing.otlp_endpoint is set (before the workers:
 * they submit spans). */
static int start_tracing(struct server *srv)
{
	const struct server_tracing *t = &srv->cfg->tracing;
	if (!t->otlp_endpoint || !t->otlp_endpoint[0])
		return 0;
	struct trace_export_config tc = {
	    .endpoint = t->otlp_endpoint,
	    .service = srv->program,
	    .version = MOVIE_VERSION_STRING,
	    .sample_ratio = t->sample_ratio,
	    .batch_size = (size_t)t->batch_size,
	    .interval_ms = t->batch_interval_ms,
	    .queue_size = (size_t)t->queue_size,
	    .timeout_ms = t->export_timeout_ms,
	    .metrics = srv->metrics,
	};
	int rc = trace_export_start(&tc);
	if (rc) {
		log_error("cannot start the span exporter", MV_LOG_S("error", mv_strerror(rc)));
		return rc;
	}
	log_info("exporting spans", MV_LOG_S("otlp_endpoint", t->otlp_endpoint),
	         MV_LOG_D("sample_ratio", t->sample_ratio));
	return 0;
}

int server_run(struct server *srv)
{
	const struct server_config *cfg = srv->cfg;
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	size_t n = cfg->workers > 0 ? (size_t)cfg->workers : (size_t)(cores > 0 ? cores : 1);
	if (n > SERVER_MAX_WORKERS)
		n = SERVER_MAX_WORKERS;
	srv->workers = calloc(n, sizeof(*srv->workers));
	if (!srv->workers)
		return MV_ENOMEM;
	/* Blocking store calls share libuv's pool; size it before first use. */
	setenv("UV_THREADPOOL_SIZE", "8", 0);
	signal(SIGPIPE, SIG_IGN);

	for (size_t i = 0; i < n; i++) {
		int rc = open_listener(cfg, &srv->workers[i].listen_fd);
		if (rc) {
			for (size_t j = 0; j < i; j++)
				close(srv->workers[j].listen_fd);
			return rc;
		}
	}
	int trc = start_tracing(srv);
	if (trc) {
		for (size_t j = 0; j < n; j++)
			close(srv->workers[j].listen_fd);
		return trc;
	}
	uv_loop_init(&srv->main_loop);
	uv_signal_init(&srv->main_loop, &srv->sigterm);
	uv_signal_init(&srv->main_loop, &srv->sigint);
	srv->sigterm.data = srv->sigint.data = srv;
	uv_signal_start(&srv->sigterm, on_signal, SIGTERM);
	uv_signal_start(&srv->sigint, on_signal, SIGINT);
	uv_timer_init(&srv->main_loop, &srv->drain_timer);
	uv_timer_init(&srv->main_loop, &srv->grace_timer);
	srv->drain_timer.data = srv->grace_timer.data = srv;
	uv_async_init(&srv->main_loop, &srv->shutdown_async, on_shutdown_async);
	srv->shutdown_async.data = srv;

	for (size_t i = 0; i < n; i++) {
		if (worker_init(srv, &srv->workers[i], i) != 0) {
			log_error("cannot start worker", MV_LOG_I("worker", (long long)i));
			trace_export_stop(0);
			return MV_EINTERNAL;
		}
	}
	/* Signals are handled by the main loop only: block them in workers. */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigaddset(&block, SIGINT);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	for (size_t i = 0; i < n; i++) {
		pthread_create(&srv->workers[i].thread, NULL, worker_main, &srv->workers[i]);
		srv->worker_count++;
	}
	if (srv->probe) {
		if (pthread_create(&srv->probe_thread, NULL, probe_main, srv) == 0)
			srv->probe_thread_started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	atomic_store(&srv->listening, true);
	faults_log_start(srv);
	faults_start_exit_timer(srv);
	/* Every line carries "service" already (log_init). */
	log_info("listening", MV_LOG_S("host", cfg->host), MV_LOG_I("port", cfg->port),
	         MV_LOG_I("workers", (long long)n), MV_LOG_S("version", MOVIE_VERSION_STRING));

	uv_run(&srv->main_loop, UV_RUN_DEFAULT);

	for (size_t i = 0; i < srv->worker_count; i++)
		pthread_join(srv->workers[i].thread, NULL);
	/* Every span is finished once the workers are done: flush them, for at
	 * most one export timeout. */
	trace_export_stop(cfg->tracing.export_timeout_ms);
	if (srv->probe_thread_started) {
		pthread_mutex_lock(&srv->probe_mutex);
		pthread_cond_signal(&srv->probe_cond);
		pthread_mutex_unlock(&srv->probe_mutex);
		pthread_join(srv->probe_thread, NULL);
	}
	uv_walk(&srv->main_loop, close_walk_cb, NULL);
	uv_run(&srv->main_loop, UV_RUN_DEFAULT);
	uv_loop_close(&srv->main_loop);
	log_info("stopped", MV_LOG_I("exit_status", srv->exit_status));
	return srv->exit_status;
}
