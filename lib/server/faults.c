/*
 * Faults on purpose (faults.*): the one place where a service's calls are
 * made slow or wrong, so that a bad version can be built from a good binary
 * (docs/release.md). Every service method registered with server_add_grpc
 * and every route of server_add_http goes through here when a fault is on;
 * the runtime's own endpoints (health, reflection, /healthz, /readyz,
 * /metrics) never do. With every fault off nothing is wrapped: the call path
 * is the plain one.
 *
 * The delay is a timer on the call's loop; the error draw uses the loop's
 * own generator (struct worker.prng), so no state is shared between loops.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/banned.h"

struct fault_delay {
	uv_timer_t timer;
	struct worker *worker;
	/* gRPC */
	struct grpc_call *call;
	const struct method_stats *st;
	uint8_t *msg;
	size_t len;
	/* HTTP */
	struct http_exchange *ex;
	void (*run)(struct http_exchange *ex);
	struct fault_delay *next, *prev;
};

static const char *const fault_names[FAULT_KIND_COUNT] = {"error_ratio", "delay", "not_ready",
                                                          "exit_after"};

int faults_init(struct server *srv)
{
	const struct server_faults *f = &srv->cfg->faults;
	static const char *const labels[] = {"fault"};
	struct metrics_family *enabled = metrics_gauge_family(
	    srv->metrics, "movie_faults_enabled",
	    "1 for each fault (faults.*) this process injects on purpose.", 1, labels);
	struct metrics_family *injected = metrics_counter_family(
	    srv->metrics, "movie_faults_injected_total",
	    "Calls a fault was injected into: error (faults.error_ratio), delay (faults.delay).", 1,
	    labels);
	if (!enabled || !injected)
		return MV_ENOMEM;
	bool on[FAULT_KIND_COUNT] = {f->error_ratio > 0, f->delay_ms > 0, f->not_ready,
	                             f->exit_after_ms > 0};
	for (int i = 0; i < FAULT_KIND_COUNT; i++) {
		const char *v[1] = {fault_names[i]};
		struct metrics_gauge *g = metrics_gauge_get(enabled, v);
		if (!g)
			return MV_ENOMEM;
		metrics_gauge_set(g, on[i] ? 1 : 0);
	}
	const char *ve[1] = {"error"};
	const char *vd[1] = {"delay"};
	srv->fault_errors = metrics_counter_get(injected, ve);
	srv->fault_delays = metrics_counter_get(injected, vd);
	if (!srv->fault_errors || !srv->fault_delays)
		return MV_ENOMEM;
	srv->fault_code = GRPC_STATUS_UNAVAILABLE;
	for (int code = 1; code < GRPC_STATUS_COUNT; code++)
		if (f->error_code && strcmp(f->error_code, grpc_status_name(code)) == 0)
			srv->fault_code = code;
	srv->faults_on_calls = f->error_ratio > 0 || f->delay_ms > 0;
	return 0;
}

void faults_log_start(const struct server *srv)
{
	const struct server_faults *f = &srv->cfg->faults;
	if (!server_faults_enabled(f))
		return;
	/* Every line carries "service" already (log_init). */
	log_warn("FAULTS ENABLED: this process fails on purpose (faults.*); never in production",
	         MV_LOG_D("error_ratio", f->error_ratio),
	         MV_LOG_S("error_code", grpc_status_name(srv->fault_code)),
	         MV_LOG_I("delay_ms", f->delay_ms), MV_LOG_B("not_ready", f->not_ready),
	         MV_LOG_I("exit_after_ms", f->exit_after_ms));
}

static void on_exit_after(uv_timer_t *t)
{
	const struct server *srv = t->data;
	log_error("faults.exit_after reached: exiting with status 1 on purpose",
	          MV_LOG_I("exit_after_ms", srv->cfg->faults.exit_after_ms));
	/* A crash, as the fault means: no drain, no destructors racing the loops;
	 * but the lines so far, this one included, are written (at most 1 s when
	 * stdout is stuck). */
	log_writer_stop(1000);
	_exit(1);
}

void faults_start_exit_timer(struct server *srv)
{
	if (srv->cfg->faults.exit_after_ms <= 0)
		return;
	uv_timer_init(&srv->main_loop, &srv->exit_timer);
	srv->exit_timer.data = srv;
	uv_timer_start(&srv->exit_timer, on_exit_after, (uint64_t)srv->cfg->faults.exit_after_ms,
	               0);
}

/* True when this call draws an injected error (faults.error_ratio). */
static bool draw_error(struct server *srv, struct worker *w)
{
	double ratio = srv->cfg->faults.error_ratio;
	if (ratio <= 0 || !w)
		return false;
	/* 53 random bits as a double in [0, 1): ratio 1 always fails. */
	double u = (double)(prng_next(&w->prng) >> 11) * 0x1.0p-53;
	if (u >= ratio)
		return false;
	metrics_counter_inc(srv->fault_errors);
	return true;
}

/* The usual HTTP status of a gRPC code (the gRPC-gateway mapping). */
static int http_status_of(int code)
{
	switch (code) {
	case GRPC_STATUS_CANCELLED: return 499;
	case GRPC_STATUS_INVALID_ARGUMENT:
	case GRPC_STATUS_FAILED_PRECONDITION:
	case GRPC_STATUS_OUT_OF_RANGE: return 400;
	case GRPC_STATUS_DEADLINE_EXCEEDED: return 504;
	case GRPC_STATUS_NOT_FOUND: return 404;
	case GRPC_STATUS_ALREADY_EXISTS:
	case GRPC_STATUS_ABORTED: return 409;
	case GRPC_STATUS_PERMISSION_DENIED: return 403;
	case GRPC_STATUS_UNAUTHENTICATED: return 401;
	case GRPC_STATUS_RESOURCE_EXHAUSTED: return 429;
	case GRPC_STATUS_UNIMPLEMENTED: return 501;
	case GRPC_STATUS_UNAVAILABLE: return 503;
	default: return 500;
	}
}

static void grpc_proceed(struct server *srv, struct worker *w, struct grpc_call *call,
                         const struct method_stats *st, const uint8_t *msg, size_t len)
{
	if (draw_error(srv, w)) {
		grpc_call_finish(call, srv->fault_code, "fault injected (faults.error_ratio)", NULL,
		                 0);
		return;
	}
	st->inner(call, msg, len, st->inner_ctx);
}

static void http_proceed(struct server *srv, struct worker *w, struct http_exchange *ex,
                         void (*run)(struct http_exchange *ex))
{
	if (draw_error(srv, w)) {
		char body[96];
		int n = snprintf(body, sizeof(body),
		                 "{\"error\":\"fault injected (faults.error_ratio): %s\"}\n",
		                 grpc_status_name(srv->fault_code));
		server_http_respond(ex, http_status_of(srv->fault_code), "application/json", body,
		                    (size_t)n);
		return;
	}
	run(ex);
}

static void delay_unlink(struct fault_delay *d)
{
	struct worker *w = d->worker;
	if (d->prev)
		d->prev->next = d->next;
	else
		w->fault_delays = d->next;
	if (d->next)
		d->next->prev = d->prev;
	d->next = d->prev = NULL;
}

static void delay_free(uv_handle_t *h)
{
	struct fault_delay *d = h->data;
	free(d->msg);
	free(d);
}

/* The delay is over (or cut short by a forced shutdown): run the call. */
static void delay_fire(struct fault_delay *d)
{
	struct worker *w = d->worker;
	struct server *srv = w->srv;
	delay_unlink(d);
	uv_timer_stop(&d->timer);
	if (d->call) {
		grpc_call_on_cancel(d->call, NULL, NULL);
		if (grpc_call_cancelled(d->call))
			grpc_call_finish(d->call, GRPC_STATUS_CANCELLED, "cancelled", NULL, 0);
		else
			grpc_proceed(srv, w, d->call, d->st, d->msg, d->len);
	} else {
		server_http_on_cancel(d->ex, NULL, NULL);
		http_proceed(srv, w, d->ex, d->run);
	}
	uv_close((uv_handle_t *)&d->timer, delay_free);
}

static void on_delay_over(uv_timer_t *t)
{
	delay_fire(t->data);
}

/* The caller went away while its call waited: end it now, not when the
 * timer fires. */
static void on_delayed_call_cancelled(struct grpc_call *call, void *arg)
{
	struct fault_delay *d = arg;
	delay_unlink(d);
	uv_timer_stop(&d->timer);
	grpc_call_finish(call, GRPC_STATUS_CANCELLED, "cancelled", NULL, 0);
	uv_close((uv_handle_t *)&d->timer, delay_free);
}

static void on_delayed_http_gone(struct http_exchange *ex, void *arg)
{
	struct fault_delay *d = arg;
	delay_unlink(d);
	uv_timer_stop(&d->timer);
	server_http_respond(ex, 499, "text/plain; charset=utf-8", "", 0);
	uv_close((uv_handle_t *)&d->timer, delay_free);
}

static struct fault_delay *delay_start(struct worker *w)
{
	struct fault_delay *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->worker = w;
	if (uv_timer_init(&w->loop, &d->timer) != 0) {
		free(d);
		return NULL;
	}
	d->timer.data = d;
	d->next = w->fault_delays;
	if (w->fault_delays)
		w->fault_delays->prev = d;
	w->fault_delays = d;
	metrics_counter_inc(w->srv->fault_delays);
	uv_timer_start(&d->timer, on_delay_over, (uint64_t)w->srv->cfg->faults.delay_ms, 0);
	return d;
}

/* The handler of every faulted gRPC method; ctx is its method_stats. */
static void faulted_grpc_handler(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	const struct method_stats *st = ctx;
	struct worker *w = server_current_worker;
	struct server *srv = st->srv;
	if (srv->cfg->faults.delay_ms <= 0 || !w) {
		grpc_proceed(srv, w, call, st, msg, len);
		return;
	}
	/* msg is valid only during this call: the handler gets a copy. */
	uint8_t *copy = malloc(len ? len : 1);
	if (!copy) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	memcpy(copy, msg, len);
	struct fault_delay *d = delay_start(w);
	if (!d) {
		free(copy);
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	d->call = call;
	d->st = st;
	d->msg = copy;
	d->len = len;
	grpc_call_on_cancel(call, on_delayed_call_cancelled, d);
}

void faults_wrap_grpc(struct server *srv, struct grpc_method *m, struct method_stats *st)
{
	if (!srv->faults_on_calls)
		return;
	st->srv = srv;
	st->inner = m->handler;
	st->inner_ctx = m->ctx;
	m->handler = faulted_grpc_handler;
	m->ctx = st;
}

void faults_http_call(struct server *srv, struct http_exchange *ex,
                      void (*run)(struct http_exchange *ex))
{
	struct worker *w = server_current_worker;
	if (!srv->faults_on_calls) {
		run(ex);
		return;
	}
	if (srv->cfg->faults.delay_ms <= 0 || !w) {
		http_proceed(srv, w, ex, run);
		return;
	}
	struct fault_delay *d = delay_start(w);
	if (!d) {
		server_http_respond(ex, 503, "text/plain; charset=utf-8", "out of memory\n", 14);
		return;
	}
	d->ex = ex;
	d->run = run;
	server_http_on_cancel(ex, on_delayed_http_gone, d);
}

void faults_flush_delays(struct worker *w)
{
	while (w->fault_delays)
		delay_fire(w->fault_delays);
}
