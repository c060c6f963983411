/*
 * server.h - the runtime every service is built on: one port serving gRPC
 * (HTTP/2 prior knowledge) and HTTP/1.1, event loops, health, metrics, logs,
 * graceful drain.
 *
 * Threads: `api.workers` event-loop threads, each with its own SO_REUSEPORT
 * listener and connections; a probe thread running the service's blocking
 * readiness probe; libuv's thread pool for blocking work (server_queue_work);
 * the calling thread of server_run handles signals and the shutdown sequence.
 *
 * Handlers (gRPC and HTTP) run on the loop thread that owns the connection
 * and must not block: blocking work goes to server_queue_work, whose `done`
 * runs back on the same loop, where the handler completes its call.
 *
 * Shutdown on SIGTERM/SIGINT: readiness turns false at once (health
 * NOT_SERVING, /readyz 503) while serving continues for shutdown.drain_delay;
 * then listeners close, HTTP/2 connections get GOAWAY, HTTP/1.1 ones close
 * after their current response, and in-flight requests finish for at most
 * shutdown.grace_period. server_run then returns. A second signal forces it.
 */
#ifndef MOVIE_SERVER_H
#define MOVIE_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "movie/cfg.h"
#include "movie/grpc.h"
#include "movie/http1.h"

struct metrics_registry;

/* faults.*: failures injected on purpose (docs/release.md "Faults on
 * purpose"), all off by default. They apply to the service's own gRPC
 * methods and HTTP routes, never to health, reflection or /metrics, except
 * not_ready, which is exactly readiness. */
struct server_faults {
	double error_ratio;    /* share of calls answered with error_code, 0..1 */
	char *error_code;      /* a gRPC code name (server_fault_codes) */
	int64_t delay_ms;      /* added to every call (a timer, not a sleep) */
	bool not_ready;        /* readiness never SERVING */
	int64_t exit_after_ms; /* exit status 1 this long after start (0 = never) */
};

/* tracing.*: span export over OTLP/HTTP JSON (docs/tracing.md). Trace
 * Context headers are read and propagated whatever these say. */
struct server_tracing {
	char *otlp_endpoint;       /* "" = no export; else http(s)://host:port[/path] */
	double sample_ratio;       /* new traces sampled, 0..1 (parents decide for theirs) */
	int64_t batch_size;        /* spans per export request */
	int64_t batch_interval_ms; /* a partial batch waits at most this long */
	int64_t queue_size;        /* spans waiting at most; more are dropped */
	int64_t export_timeout_ms; /* one request; also the flush bound at shutdown */
};

/* tracing.otlp_endpoint's syntax (cfg_option.check): empty, or http:// or
 * https:// followed by a host, no whitespace or control bytes, no query. */
int server_check_otlp_endpoint(const char *value, size_t len, char *msg, size_t msg_size);

/* cfg_option entries of the tracing.* block for struct server_tracing at
 * `member` of `cfg_struct`; part of SERVER_CONFIG_OPTIONS. */
#define SERVER_TRACING_OPTIONS(cfg_struct, member)                                               \
	{.key = "tracing.otlp_endpoint",                                                         \
	 .type = CFG_STRING,                                                                     \
	 .offset = offsetof(cfg_struct, member.otlp_endpoint),                                   \
	 .default_value = "",                                                                    \
	 .max = 512,                                                                             \
	 .check = server_check_otlp_endpoint,                                                    \
	 .help = "OTLP/HTTP collector base URL (spans POSTed to <url>/v1/traces); empty = "      \
	         "no export"},                                                                   \
	    {.key = "tracing.sample_ratio",                                                      \
	     .type = CFG_DOUBLE,                                                                 \
	     .offset = offsetof(cfg_struct, member.sample_ratio),                                \
	     .default_value = "1",                                                               \
	     .dmin = 0.0,                                                                        \
	     .dmax = 1.0,                                                                        \
	     .help = "share of new traces sampled (a caller's traceparent decides for its "      \
	             "own)"},                                                                    \
	    {.key = "tracing.batch_size",                                                        \
	     .type = CFG_INT,                                                                    \
	     .offset = offsetof(cfg_struct, member.batch_size),                                  \
	     .default_value = "512",                                                             \
	     .min = 1,                                                                           \
	     .max = 10000,                                                                       \
	     .help = "spans per export request (at most tracing.queue_size)"},                   \
	    {.key = "tracing.batch_interval",                                                    \
	     .type = CFG_DURATION_MS,                                                            \
	     .offset = offsetof(cfg_struct, member.batch_interval_ms),                           \
	     .default_value = "1s",                                                              \
	     .min = 10,                                                                          \
	     .max = 60000,                                                                       \
	     .help = "a partial batch is exported after at most this long"},                     \
	    {.key = "tracing.queue_size",                                                        \
	     .type = CFG_INT,                                                                    \
	     .offset = offsetof(cfg_struct, member.queue_size),                                  \
	     .default_value = "4096",                                                            \
	     .min = 1,                                                                           \
	     .max = 1000000,                                                                     \
	     .help = "spans waiting for export at most; more are dropped and counted"},          \
	{                                                                                        \
		.key = "tracing.export_timeout", .type = CFG_DURATION_MS,                        \
		.offset = offsetof(cfg_struct, member.export_timeout_ms), .default_value = "5s", \
		.min = 100, .max = 60000,                                                        \
		.help = "one export request; also bounds the flush at shutdown"                  \
	}

/* True when any fault of `f` is on. */
bool server_faults_enabled(const struct server_faults *f);

/* Keys common to every service (see docs/config.md). */
struct server_config {
	char *host;
	int64_t port;
	int64_t workers;
	int64_t max_message_bytes;
	int64_t max_concurrent_streams;
	int64_t max_header_bytes;
	int64_t max_body_bytes;
	int64_t idle_timeout_ms;
	int64_t max_connection_age_ms;
	int64_t max_output_bytes;             /* unsent output per connection: stop reading above */
	int64_t write_timeout_ms;             /* pending output without progress: close */
	int64_t header_timeout_ms;            /* first byte of a request to its complete head */
	int64_t request_timeout_ms;           /* first byte of a request to its last */
	int64_t max_connection_request_bytes; /* buffered request bytes per connection */
	int64_t max_process_request_bytes;    /* buffered request bytes per process */
	char *log_level;
	bool log_requests;
	double log_requests_sample; /* share of successful requests logged (errors: all) */
	int64_t drain_delay_ms;
	int64_t grace_period_ms;
	struct server_faults faults;
	struct server_tracing tracing;
};

extern const char *const server_log_levels[];
/* faults.error_code values: the gRPC code names but OK (GRPC_STATUS_ERRORS of
 * movie/grpc.h), NULL-terminated. */
extern const char *const server_fault_codes[];

/* Largest faults.delay: a delayed call holds its memory and a stream. */
#define SERVER_FAULT_DELAY_MAX_MS (10LL * 60 * 1000)

/* cfg_option entries of the faults.* block for struct server_faults at
 * `member` of `cfg_struct`; part of SERVER_CONFIG_OPTIONS, so every service
 * schema has it. */
#define SERVER_FAULTS_OPTIONS(cfg_struct, member)                                           \
	{.key = "faults.error_ratio",                                                       \
	 .type = CFG_DOUBLE,                                                                \
	 .offset = offsetof(cfg_struct, member.error_ratio),                                \
	 .default_value = "0",                                                              \
	 .dmin = 0.0,                                                                       \
	 .dmax = 1.0,                                                                       \
	 .help = "FAULT: share of calls (0..1) answered with faults.error_code"},           \
	    {.key = "faults.error_code",                                                    \
	     .type = CFG_ENUM,                                                              \
	     .offset = offsetof(cfg_struct, member.error_code),                             \
	     .default_value = "UNAVAILABLE",                                                \
	     .enum_values = server_fault_codes,                                             \
	     .help = "FAULT: gRPC code of the injected errors (HTTP: its usual status)"},   \
	    {.key = "faults.delay",                                                         \
	     .type = CFG_DURATION_MS,                                                       \
	     .offset = offsetof(cfg_struct, member.delay_ms),                               \
	     .default_value = "0",                                                          \
	     .min = 0,                                                                      \
	     .max = SERVER_FAULT_DELAY_MAX_MS,                                              \
	     .help = "FAULT: added to every call"},                                         \
	    {.key = "faults.not_ready",                                                     \
	     .type = CFG_BOOL,                                                              \
	     .offset = offsetof(cfg_struct, member.not_ready),                              \
	     .default_value = "false",                                                      \
	     .help = "FAULT: readiness never SERVING"},                                     \
	{                                                                                   \
		.key = "faults.exit_after", .type = CFG_DURATION_MS,                        \
		.offset = offsetof(cfg_struct, member.exit_after_ms), .default_value = "0", \
		.min = 0, .max = 30LL * 24 * 3600 * 1000,                                   \
		.help = "FAULT: exit with status 1 this long after start (0 = never)"       \
	}

/* cfg_option entries for struct server_config embedded as `member` of the
 * program's config struct `type`; `port` is the default port as a string. */
#define SERVER_CONFIG_OPTIONS(cfg_struct, member, default_port)                                 \
	{.key = "api.host",                                                                     \
	 .type = CFG_STRING,                                                                    \
	 .offset = offsetof(cfg_struct, member.host),                                           \
	 .default_value = "0.0.0.0",                                                            \
	 .max = 255,                                                                            \
	 .help = "bind address"},                                                               \
	    {.key = "api.port",                                                                 \
	     .type = CFG_INT,                                                                   \
	     .offset = offsetof(cfg_struct, member.port),                                       \
	     .default_value = default_port,                                                     \
	     .min = 1,                                                                          \
	     .max = 65535,                                                                      \
	     .help = "port for gRPC and HTTP/1.1"},                                             \
	    {.key = "api.workers",                                                              \
	     .type = CFG_INT,                                                                   \
	     .offset = offsetof(cfg_struct, member.workers),                                    \
	     .default_value = "0",                                                              \
	     .min = 0,                                                                          \
	     .max = 64,                                                                         \
	     .help = "event-loop threads (0 = number of cores)"},                               \
	    {.key = "api.max_message_bytes",                                                    \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_message_bytes),                          \
	     .default_value = "4MiB",                                                           \
	     .min = 1024,                                                                       \
	     .max = 64 * 1024 * 1024,                                                           \
	     .help = "largest gRPC request message"},                                           \
	    {.key = "api.max_concurrent_streams",                                               \
	     .type = CFG_INT,                                                                   \
	     .offset = offsetof(cfg_struct, member.max_concurrent_streams),                     \
	     .default_value = "100",                                                            \
	     .min = 1,                                                                          \
	     .max = 10000,                                                                      \
	     .help = "HTTP/2 concurrent streams per connection"},                               \
	    {.key = "api.max_header_bytes",                                                     \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_header_bytes),                           \
	     .default_value = "16KiB",                                                          \
	     .min = 1024,                                                                       \
	     .max = 1024 * 1024,                                                                \
	     .help = "request header cap"},                                                     \
	    {.key = "api.max_body_bytes",                                                       \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_body_bytes),                             \
	     .default_value = "1MiB",                                                           \
	     .min = 1024,                                                                       \
	     .max = 64 * 1024 * 1024,                                                           \
	     .help = "HTTP/1.1 request body cap"},                                              \
	    {.key = "api.idle_timeout",                                                         \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.idle_timeout_ms),                            \
	     .default_value = "5m",                                                             \
	     .min = 1000,                                                                       \
	     .max = 24LL * 3600 * 1000,                                                         \
	     .help = "close idle connections after"},                                           \
	    {.key = "api.max_connection_age",                                                   \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.max_connection_age_ms),                      \
	     .default_value = "0",                                                              \
	     .min = 0,                                                                          \
	     .max = 24LL * 3600 * 1000,                                                         \
	     .help = "GOAWAY connections older than this (0 = never)"},                         \
	    {.key = "api.max_output_bytes",                                                     \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_output_bytes),                           \
	     .default_value = "256KiB",                                                         \
	     .min = 16 * 1024,                                                                  \
	     .max = 64 * 1024 * 1024,                                                           \
	     .help = "unsent output per connection above which it is not read"},                \
	    {.key = "api.write_timeout",                                                        \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.write_timeout_ms),                           \
	     .default_value = "30s",                                                            \
	     .min = 1000,                                                                       \
	     .max = 3600 * 1000,                                                                \
	     .help = "reset a connection whose output stalls this long"},                       \
	    {.key = "api.header_timeout",                                                       \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.header_timeout_ms),                          \
	     .default_value = "10s",                                                            \
	     .min = 1000,                                                                       \
	     .max = 3600 * 1000,                                                                \
	     .help = "time from a request's first byte to its complete header block"},          \
	    {.key = "api.request_timeout",                                                      \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.request_timeout_ms),                         \
	     .default_value = "60s",                                                            \
	     .min = 1000,                                                                       \
	     .max = 24LL * 3600 * 1000,                                                         \
	     .help = "time from a request's first byte to its last (body included)"},           \
	    {.key = "api.max_connection_request_bytes",                                         \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_connection_request_bytes),               \
	     .default_value = "16MiB",                                                          \
	     .min = 64 * 1024,                                                                  \
	     .max = 1024LL * 1024 * 1024,                                                       \
	     .help = "request bytes one HTTP/2 connection may buffer"},                         \
	    {.key = "api.max_process_request_bytes",                                            \
	     .type = CFG_SIZE,                                                                  \
	     .offset = offsetof(cfg_struct, member.max_process_request_bytes),                  \
	     .default_value = "128MiB",                                                         \
	     .min = 1024 * 1024,                                                                \
	     .max = 16LL * 1024 * 1024 * 1024,                                                  \
	     .help = "request bytes the whole process may buffer"},                             \
	    {.key = "log.level",                                                                \
	     .type = CFG_ENUM,                                                                  \
	     .offset = offsetof(cfg_struct, member.log_level),                                  \
	     .default_value = "info",                                                           \
	     .enum_values = server_log_levels,                                                  \
	     .help = "minimum log level"},                                                      \
	    {.key = "log.requests",                                                             \
	     .type = CFG_BOOL,                                                                  \
	     .offset = offsetof(cfg_struct, member.log_requests),                               \
	     .default_value = "true",                                                           \
	     .help = "one log line per request"},                                               \
	    {.key = "log.requests_sample",                                                      \
	     .type = CFG_DOUBLE,                                                                \
	     .offset = offsetof(cfg_struct, member.log_requests_sample),                        \
	     .default_value = "1",                                                              \
	     .dmin = 0.0,                                                                       \
	     .dmax = 1.0,                                                                       \
	     .help = "share (0..1) of successful requests logged; errors always (gRPC non-OK, " \
	             "HTTP >= 400)"},                                                           \
	    {.key = "shutdown.drain_delay",                                                     \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.drain_delay_ms),                             \
	     .default_value = "5s",                                                             \
	     .min = 0,                                                                          \
	     .max = 600000,                                                                     \
	     .help = "keep serving, not ready, this long after SIGTERM"},                       \
	    {.key = "shutdown.grace_period",                                                    \
	     .type = CFG_DURATION_MS,                                                           \
	     .offset = offsetof(cfg_struct, member.grace_period_ms),                            \
	     .default_value = "20s",                                                            \
	     .min = 0,                                                                          \
	     .max = 600000,                                                                     \
	     .help = "then finish in-flight requests for at most this long"},                   \
	    SERVER_FAULTS_OPTIONS(cfg_struct, member.faults),                                   \
	    SERVER_TRACING_OPTIONS(cfg_struct, member.tracing)

struct server;
struct http_exchange;

/* HTTP handler: `req` is valid only during the call; copy what async work
 * needs. Must call server_http_respond exactly once (now or later, on this
 * loop thread). */
typedef void (*server_http_fn)(struct http_exchange *ex, const struct http1_request *req,
                               void *ctx);

/* Create a server. `grpc_service` is the service's gRPC name
 * ("MetadataService"), also a health name; `program` ("metadata") labels
 * metrics and logs. The config is borrowed and must outlive the server.
 * Returns NULL on allocation failure. */
struct server *server_new(const struct server_config *cfg, const char *program,
                          const char *grpc_service, struct metrics_registry *metrics);
void server_free(struct server *srv);

/* Register a gRPC method at /<service>/<method>. Before server_run only.
 * Returns 0, MV_ENOMEM, MV_EEXIST. */
int server_add_grpc(struct server *srv, const char *service, const char *method,
                    bool server_streaming, grpc_handler_fn handler, void *ctx);

/* Register an HTTP route (exact path). Before server_run only.
 * Returns 0, MV_ENOMEM, MV_EEXIST. */
int server_add_http(struct server *srv, const char *path, unsigned method_mask,
                    server_http_fn handler, void *ctx);

/* Call `fn(ex, arg)` once if the client goes away (its connection closes: EOF,
 * reset, a forced shutdown) before the request is answered, so that the
 * handler can stop work nobody waits for (as grpc_call_on_cancel). The
 * handler must still call server_http_respond, from fn or later. A later call
 * replaces the callback; fn NULL removes it. Loop thread only. */
void server_http_on_cancel(struct http_exchange *ex,
                           void (*fn)(struct http_exchange *ex, void *arg), void *arg);

/* The request's server span (movie/trace.h): the parent of the handler's own
 * calls to other services. Valid until server_http_respond. */
const struct trace_span *server_http_span(const struct http_exchange *ex);

/* Answer an HTTP request. `body` is copied. Safe after the client went away. */
void server_http_respond(struct http_exchange *ex, int status, const char *content_type,
                         const char *body, size_t len);

/* Set the readiness probe: `probe(ctx)` returns 0 when dependencies are
 * reachable. It may block (it runs on its own thread every interval_ms).
 * Before server_run only. Without a probe the server is ready once listening. */
void server_set_ready_probe(struct server *srv, int (*probe)(void *ctx), void *ctx,
                            int64_t interval_ms);

/* Report a dependency failure seen by a request (MV_EUNAVAIL): readiness turns
 * false at once, until the probe next succeeds. Any thread. */
void server_report_unavailable(struct server *srv);

/* True when ready: listening, probe OK, not draining. Any thread. */
bool server_is_ready(const struct server *srv);
bool server_is_draining(const struct server *srv);

/* Bind, start the workers and serve until shutdown completes.
 * Returns 0 after a clean drain, MV_EIO when the port cannot be bound
 * (logged), MV_ENOMEM, MV_EINTERNAL when a worker cannot start,
 * MV_ETIMEDOUT when the grace period expired with requests still in flight,
 * MV_ECLOSED when a second signal cut the drain short. Every non-zero result
 * means the process should exit 1. */
int server_run(struct server *srv);

/* Run `work(arg)` on the thread pool, then `done(arg)` on the calling loop.
 * Only from a handler (a loop thread). Returns 0 or MV_ENOMEM / MV_EINTERNAL
 * (then neither callback runs). */
int server_queue_work(void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* The event loop of the calling worker thread (a uv_loop_t), or NULL when
 * called from any other thread. For per-loop resources such as client channels. */
struct uv_loop_s *server_current_loop(void);

/* Register `fn(ctx)`, called on each worker's loop thread once that worker has
 * drained (no connections left), before its loop ends: close per-loop
 * resources there. Before server_run only. */
void server_on_worker_stop(struct server *srv, void (*fn)(void *ctx), void *ctx);

/* Start a graceful shutdown as if SIGTERM had arrived (tests, tools). Any thread. */
void server_shutdown(struct server *srv);

#endif
