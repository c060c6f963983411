/*
 * grpc_client.h - gRPC client channels over long-lived HTTP/2 connections.
 *
 * A channel is bound to one event loop (uv_loop_t) and is used only from that
 * loop's thread: the movie service keeps one channel per peer per worker loop,
 * so nothing is shared between threads and nothing is locked.
 *
 * A channel has a list of targets ("host:port"). Each host is resolved (off the
 * loop, uv_getaddrinfo) to ALL its addresses - a Kubernetes headless Service
 * name yields every ready pod - and re-resolved every resolve_interval_ms and
 * after a connection failure. The channel keeps one HTTP/2 connection per
 * address, each carrying many concurrent streams, and spreads calls round-robin
 * over the connected, healthy addresses. Connections are never opened per call.
 *
 * Every call has a deadline: now + the default timeout, or the caller's
 * (absolute) deadline when that is earlier - a caller's generous deadline never
 * lets a stuck peer hold the call longer than the peer timeout. The remaining
 * time is sent as grpc-timeout. A caller that gives up (its own client went
 * away) cancels the call: the stream is reset with RST_STREAM(CANCEL) and the
 * call's state is freed at once. UNAVAILABLE failures
 * (connection refused/reset, GOAWAY before the stream was processed, the
 * server's own UNAVAILABLE) are retried on another address with jittered
 * exponential backoff while the deadline allows, up to max_attempts, and only
 * while the retry budget has tokens. A connection that receives GOAWAY is
 * drained: its open streams finish, new calls go elsewhere, and a replacement
 * connection is made. A connection whose stream ids run low (past
 * GRPC_CLIENT_MAX_STREAM_ID, 3/4 of HTTP/2's 2^31-1, as grpc-go) is retired the
 * same way, sending its own GOAWAY. Failed addresses reconnect with capped,
 * jittered backoff.
 */
#ifndef MOVIE_GRPC_CLIENT_H
#define MOVIE_GRPC_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <uv.h>

struct metrics_registry;

struct grpc_channel_config {
	const char *name;           /* peer name for logs/metrics: "metadata" */
	const char *const *targets; /* "host:port" entries, copied */
	size_t target_count;
	int64_t resolve_interval_ms;      /* re-resolve period; 0 = 5000 */
	int64_t default_timeout_ms;       /* deadline when the caller has none; 0 = 1000 */
	int max_attempts;                 /* total attempts per call, 1..5; 0 = 3 */
	double retry_budget_ratio;        /* retries allowed per call made (0.2 = 20%); 0 = 0.2 */
	double retry_budget_tokens;       /* token bucket size (see grpc_retry_budget); 0 = 100 */
	size_t max_message_bytes;         /* largest response accepted; 0 = 4 MiB */
	int64_t connect_timeout_ms;       /* 0 = 1000 */
	struct metrics_registry *metrics; /* optional: client metrics (grpc_client_*) */
};

struct grpc_channel;
struct grpc_client_call;
struct trace_span;

/* A connection starts no stream above this id: once its next id passes it, the
 * connection is drained and replaced (HTTP/2 client ids are odd, < 2^31). */
#define GRPC_CLIENT_MAX_STREAM_ID 0x5fffffff

/* Completion of a call, on the channel's loop thread. status is a gRPC status
 * code; message is the decoded grpc-message (or a local reason), never NULL;
 * resp/len is the response message for OK (valid only during the callback). */
typedef void (*grpc_client_done_fn)(void *arg, int status, const char *message, const uint8_t *resp,
                                    size_t len);

/* Create a channel on `loop` (call on that loop's thread). Starts resolving at
 * once. Returns NULL on allocation failure, an empty/invalid target list
 * (each "host:port" or "[v6]:port", port 1..65535, as cfg_check_host_port
 * accepts them; at most 64 targets) or a
 * setting out of range (max_attempts > 5, negative durations). */
struct grpc_channel *grpc_channel_new(uv_loop_t *loop, const struct grpc_channel_config *cfg);

/* Start a unary call of `path` ("/MetadataService/GetMetadata") with the
 * serialized request (copied). deadline_ns is absolute CLOCK_MONOTONIC ns (see
 * grpc_now_ns), 0 = default timeout. `idempotent` permits retries after the
 * request may have reached a server; a request that provably never reached one
 * (connect failure, no connection, GOAWAY/REFUSED_STREAM) is retried either
 * way and costs no retry budget. `done` is called exactly once, never
 * before this function returns. Returns 0, or MV_ENOMEM, MV_ECLOSED (channel
 * closed), MV_EINVAL (empty path or longer than 256 bytes, NULL done),
 * MV_EAGAIN (65536 calls already pending on the channel); then `done` is not
 * called. */
int grpc_channel_call(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                      int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg);

/* grpc_channel_call that also hands back the call (when `handle` is not NULL,
 * and only on success) for grpc_client_call_cancel. The handle is valid until
 * `done` starts running; the caller must forget it there. */
int grpc_channel_start(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                       int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg,
                       struct grpc_client_call **handle);

/* grpc_channel_start as a traced call: the call is a client span, child of
 * `parent` (movie/trace.h; NULL or not started: a new trace), sent as the
 * `traceparent` (and `tracestate`) metadata of every attempt and exported
 * when sampled, once `done` is due (kind CLIENT, rpc.* attributes,
 * server.address = the channel's name). Same results as grpc_channel_start. */
int grpc_channel_start_traced(struct grpc_channel *ch, const char *path, const uint8_t *req,
                              size_t len, int64_t deadline_ns, bool idempotent,
                              const struct trace_span *parent, grpc_client_done_fn done, void *arg,
                              struct grpc_client_call **handle);

/* Cancel a call whose `done` has not run yet: an open stream is reset with
 * RST_STREAM(CANCEL) (the server sees the cancellation), the call leaves the
 * channel and `done` runs before this returns, with CANCELLED. Loop thread
 * only; may be called from any callback on that loop, except that call's own
 * `done`. */
void grpc_client_call_cancel(struct grpc_client_call *call);

/* Number of addresses with a usable connection now (tests, readiness). */
size_t grpc_channel_ready_addresses(const struct grpc_channel *ch);

/* Close the channel: pending calls complete with UNAVAILABLE ("channel
 * closed"), connections close. The memory is freed once libuv has closed
 * every handle. Call on the loop thread. */
void grpc_channel_close(struct grpc_channel *ch);

/* Tests only: make every established connection's next stream id `next_id`
 * (odd), to reach stream-id exhaustion without 2^30 calls. Returns how many
 * connections were changed. */
size_t grpc_channel_test_set_next_stream_id(struct grpc_channel *ch, int32_t next_id);

/* ---- pure policy pieces, exposed for unit tests ---- */

/* Retry budget (token bucket, as gRPC's retry throttling): starts full at
 * max_tokens; a failed attempt costs 1 token, a success returns `ratio`
 * tokens; retries are allowed while tokens > max_tokens / 2. */
struct grpc_retry_budget {
	double tokens;
	double max_tokens;
	double ratio;
};
void grpc_retry_budget_init(struct grpc_retry_budget *b, double max_tokens, double ratio);
void grpc_retry_budget_on_success(struct grpc_retry_budget *b);
void grpc_retry_budget_on_failure(struct grpc_retry_budget *b);
bool grpc_retry_budget_allows(const struct grpc_retry_budget *b);

/* Backoff before attempt n (1-based retry count): min(cap, base * 2^(n-1)),
 * multiplied by a jitter factor in [1 - jitter, 1 + jitter] drawn from `rnd`
 * in [0, 1). */
int64_t grpc_backoff_ms(int retry, int64_t base_ms, int64_t cap_ms, double jitter, double rnd);
/* (retry < 1 counts as 1; jitter is clamped to [0, 1]; rnd outside [0, 1)
 * counts as 0.5, i.e. no jitter.) */

/* The gRPC status of a response that has an HTTP :status other than 200 and
 * no grpc-status (gRPC's HTTP-to-status mapping): 400 INTERNAL, 401
 * UNAUTHENTICATED, 403 PERMISSION_DENIED, 404 UNIMPLEMENTED, 429/502/503/504
 * UNAVAILABLE (retryable), anything else UNKNOWN. */
int grpc_status_from_http(int http_status);

/* The grpc-timeout to send for an absolute deadline: remaining = deadline -
 * now, rounded down to the unit used; returns MV_ETIMEDOUT when nothing
 * remains, MV_EINVAL when out_size < 16, else 0 with `out` formatted
 * (grpc_timeout_format). */
int grpc_deadline_header(int64_t deadline_ns, int64_t now_ns, char *out, size_t out_size);

#endif
