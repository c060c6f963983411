/*
 * internal.h - state shared by the server runtime's files (not installed).
 */
#ifndef SERVER_INTERNAL_H
#define SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include <uv.h>

#include "movie/buf.h"
#include "movie/grpc.h"
#include "movie/http1.h"
#include "movie/metrics.h"
#include "movie/prng.h"
#include "movie/server.h"

/* Sanitizer builds replace malloc. glibc's arena tuning (mallopt, malloc_trim)
 * does nothing useful there, and malloc_trim called first from a worker thread
 * attaches that thread to glibc's main arena without counting it: the next
 * worker to exit then dies on "malloc assertion failure in
 * __malloc_arena_thread_freeres" (seen under ASan in integration.call_lifecycle). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SERVER_GLIBC_MALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SERVER_GLIBC_MALLOC 0
#endif
#endif
#ifndef SERVER_GLIBC_MALLOC
#define SERVER_GLIBC_MALLOC 1
#endif

#define SERVER_MAX_METHODS 32
#define SERVER_MAX_ROUTES  32
#define SERVER_MAX_WORKERS 64
/* Accepts per listener wake-up, and how long accepting pauses when out of fds. */
#define SERVER_ACCEPT_BATCH    64
#define SERVER_ACCEPT_PAUSE_MS 100

/* Per-method metric children, resolved at registration (hot path: no lookups). */
struct method_stats {
	struct metrics_counter *started;
	struct metrics_counter *handled[GRPC_STATUS_COUNT];
	struct metrics_counter *msg_received;
	struct metrics_counter *msg_sent;
	struct metrics_histogram *seconds;
	bool quiet; /* health checks: request log lines at debug level */
	/* faults.c: the method's own handler when a fault wraps it. */
	struct server *srv;
	grpc_handler_fn inner;
	void *inner_ctx;
};

#define SERVER_HTTP_STATUS_MIN 100
#define SERVER_HTTP_STATUS_MAX 599

struct route_entry {
	server_http_fn handler;
	void *ctx;
	const char *handler_label;
	/* http_requests_total{handler,code} children by status, resolved on
	 * first use (any worker: atomic pointers, the registry dedups). */
	_Atomic(struct metrics_counter *)
	    by_status[SERVER_HTTP_STATUS_MAX - SERVER_HTTP_STATUS_MIN + 1];
	struct metrics_histogram *seconds;
	bool quiet;     /* probes (/healthz, /readyz): request log lines at debug level */
	bool faultable; /* a service route, not a built-in endpoint (faults.c) */
};

struct worker;

enum {
	FAULT_KIND_COUNT = 4
};
struct fault_delay;

struct server {
	const struct server_config *cfg;
	const char *program;
	const char *grpc_service;
	struct metrics_registry *metrics;

	struct grpc_method methods[SERVER_MAX_METHODS];
	struct method_stats method_stats[SERVER_MAX_METHODS + 1]; /* +1: unknown methods */
	size_t method_count;
	struct http1_route routes[SERVER_MAX_ROUTES];
	struct route_entry route_entries[SERVER_MAX_ROUTES];
	size_t route_count;
	struct route_entry unrouted; /* 404/405/400 answers */

	void (*worker_stop_fn)(void *ctx);
	void *worker_stop_ctx;
	int (*probe)(void *ctx);
	void *probe_ctx;
	int64_t probe_interval_ms;

	atomic_bool listening;
	atomic_bool probe_ok;
	atomic_bool draining;
	atomic_bool stopping; /* drain delay over: close listeners, GOAWAY */
	atomic_bool forced;   /* grace period over: close everything */
	atomic_long in_flight;
	atomic_long connections;
	atomic_long
	    request_bytes; /* buffered request bytes, every connection (api.max_process_request_bytes) */
	atomic_long workers_done;

	struct worker *workers;
	size_t worker_count;

	pthread_t probe_thread;
	bool probe_thread_started;
	pthread_mutex_t probe_mutex;
	pthread_cond_t probe_cond;

	uv_loop_t main_loop;
	uv_signal_t sigterm, sigint;
	uv_timer_t drain_timer, grace_timer;
	uv_async_t shutdown_async;
	int exit_status; /* server_run's result: 0 or an MV_E* code */

	struct grpc_reflection *reflection; /* reflection.c */

	struct metrics_gauge *ready_gauge;
	struct metrics_counter *accepted;
	struct metrics_counter *accept_paused; /* EMFILE/ENFILE pauses */

	/* faults.c */
	bool faults_on_calls; /* error_ratio or delay: service calls are wrapped */
	int fault_code;       /* faults.error_code as a grpc_status */
	struct metrics_counter *fault_errors, *fault_delays;
	uv_timer_t exit_timer; /* faults.exit_after, on main_loop */
};

struct conn;
struct trace_span;

struct watch_entry {
	struct grpc_call *call;
	struct worker *worker;
	int kind;      /* health name class: 0 readiness, 1 liveness */
	int last_sent; /* last status sent */
	struct watch_entry *next, *prev;
};

struct worker {
	struct server *srv;
	size_t index;
	uv_loop_t loop;
	/* The listening socket is polled and accepted here, not by uv_listen:
	 * libuv's EMFILE fallback keeps one spare fd per loop, which the other
	 * workers' loops race for, and retries accept in a tight loop. */
	uv_poll_t listener;
	int listen_fd;
	uv_timer_t accept_pause; /* out of fds: accepting resumes when it fires */
	bool accept_paused;
	int64_t pause_logged_ms;    /* loop time of the last "out of fds" log line */
	uv_async_t wake;            /* health change, stop, force */
	pthread_mutex_t wake_mutex; /* guards wake_closed against senders */
	bool wake_closed;
	uv_timer_t sweep; /* idle timeout, connection age */
	struct prng prng; /* this loop's jitter (connection age) */
	pthread_t thread;
	struct conn *conns;      /* doubly linked */
	struct conn *flush_list; /* connections with output from async completions */
	uv_check_t flush_check;  /* flushes flush_list once per loop iteration */
	size_t conn_count;
	bool listener_closed;
	bool stop_seen;
	bool force_seen;
	bool finished;
	bool
	    trim_due; /* a connection that held much memory closed: malloc_trim on the next sweep */
	struct watch_entry *watches;
	struct fault_delay *fault_delays; /* calls waiting out faults.delay */
	char read_buf[64 * 1024];
};

/* conn.c */
/* Take over an accepted socket (non-blocking). Closes it on failure. */
void conn_accept(struct worker *w, int fd);
void conn_close_all(struct worker *w, bool graceful);
void conn_sweep(struct worker *w);
void conn_flush_pending(struct worker *w);

/* faults.c */
/* Metrics and the parsed faults.* values; from server_new. Returns 0, MV_ENOMEM. */
int faults_init(struct server *srv);
/* The loud start-up line when any fault is on. */
void faults_log_start(const struct server *srv);
/* faults.exit_after's timer on srv->main_loop (server_run, before its loop runs). */
void faults_start_exit_timer(struct server *srv);
/* Route a service method through the faults when error_ratio or delay is on. */
void faults_wrap_grpc(struct server *srv, struct grpc_method *m, struct method_stats *st);
/* Run `run(ex)` (the route's handler) through the faults: now, after
 * faults.delay, or not at all when an error is drawn (answered here). `run`
 * must cope with a connection gone meanwhile (ex's conn NULL). Loop thread. */
void faults_http_call(struct server *srv, struct http_exchange *ex,
                      void (*run)(struct http_exchange *ex));
/* End every delay of this worker now (forced shutdown): the calls proceed. */
void faults_flush_delays(struct worker *w);

/* health.c */
int health_register(struct server *srv);
void health_broadcast(struct worker *w);
void health_close_watches(struct worker *w);
int health_status_for(const struct server *srv, const char *name, size_t len);

/* reflection.c: both reflection services over the build-time descriptors. */
int reflection_register(struct server *srv);

/* server.c */
/* server_add_grpc for the runtime's own methods (never faulted). */
int server_add_grpc_builtin(struct server *srv, const char *service, const char *method,
                            bool server_streaming, grpc_handler_fn handler, void *ctx);
/* server_add_grpc for a bidirectional-streaming method (never faulted). */
int server_add_grpc_bidi(struct server *srv, const char *service, const char *method,
                         grpc_handler_fn handler, void *ctx);
/* The worker whose loop runs on this thread (NULL elsewhere). */
extern __thread struct worker *server_current_worker;
/* A call or request ended: metrics, its log line (with the span's ids; a
 * NULL span gets fresh ones) and its span's export when sampled. */
void server_record_grpc(struct server *srv, const struct grpc_method *m, const char *path,
                        int status, double seconds, bool started, const struct trace_span *span);
/* After a connection closed: end the worker's loop once it is stopping and idle. */
void worker_maybe_finish(struct worker *w);
/* A connection of this worker closed (its fd is free): resume paused accepts. */
void worker_conn_closed(struct worker *w);
void server_record_grpc_started(struct server *srv, const struct grpc_method *m);
void server_record_grpc_message(struct server *srv, const struct grpc_method *m, bool sent);
void server_record_http(struct server *srv, struct route_entry *route, int method, const char *path,
                        int status, double seconds, const struct trace_span *span);
void server_wake_workers(struct server *srv);

#endif
