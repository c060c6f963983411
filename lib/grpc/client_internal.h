/*
 * client_internal.h - what the pieces of the gRPC client share (not installed).
 *
 * The client is layered like the server (include/movie/grpc_client.h is the
 * public contract; docs/internals/grpc-client.md the overview):
 *   client_session.c  the HTTP/2 + gRPC protocol of one client connection
 *                     (nghttp2), I/O-free: bytes in, bytes out, no libuv;
 *   client_conn.c     a TCP connection carrying one session: connect, read,
 *                     batched writes, GOAWAY/stream-id draining, failure;
 *   client_resolve.c  targets, name resolution and re-resolution, the
 *                     address set (adds open connections, removals drain);
 *   client_channel.c  channels and calls: round robin, the deadline/backoff
 *                     heap, retries with a budget, cancellation, metrics;
 *   client_policy.c   pure policy (retry budget, backoff, status mapping).
 *
 * Everything here is used from one thread: the loop thread that owns the
 * channel, or the unit test / fuzzer that pumps a session by hand.
 */
#ifndef MOVIE_GRPC_CLIENT_INTERNAL_H
#define MOVIE_GRPC_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <sys/socket.h>

#include <uv.h>

#include "movie/buf.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "movie/trace.h"

#include "client_metrics.h"

struct grpc_client_session;

/* Longest grpc-message kept (decoded, NUL-terminated, truncated). */
#define GRPC_CLIENT_MESSAGE_MAX 128

/*
 * One attempt of a unary call on a session. The owner embeds it (a call
 * keeps one for its whole life and reuses it per attempt), initialises `resp`
 * with buf_init(&resp, max_message_bytes + GRPC_FRAME_HEADER), sets req /
 * req_len (the framed request, kept alive by the owner while the stream is
 * open) and `user`; grpc_client_session_submit resets the rest.
 */
struct grpc_client_stream {
	int32_t id;            /* 0 when not open on a session */
	bool headers_sent;     /* request HEADERS went out on this attempt */
	bool response_headers; /* this attempt got response headers */
	bool trailers;
	int http_status;
	int grpc_status; /* -1 until seen */
	char message[GRPC_CLIENT_MESSAGE_MAX];
	struct buf resp;    /* DATA received (gRPC-framed), capped by its limit */
	const uint8_t *req; /* framed request, owned by the owner */
	size_t req_len;
	size_t req_sent;
	void *user; /* the owner's call */
	/* W3C Trace Context metadata sent with the request (NULL: none), owned
	 * by the owner's call. */
	const char *traceparent;
	const char *tracestate;
};

/*
 * Events of a session, all called from inside grpc_client_session_recv /
 * _send / _submit (the session's caller's thread). `user` is the session's
 * user pointer. A callback may submit, cancel or detach streams on the same
 * session, but must not free the session.
 */
struct grpc_client_session_callbacks {
	/* The attempt `s` ended. The stream is already detached (s->id == 0), so
	 * the owner may free `s` here; nothing touches it afterwards. status is
	 * the gRPC status (see below); message is never NULL; msg/len is the
	 * response message for OK (valid only during the callback). `reached` is
	 * false when the request provably never reached the server (refused,
	 * never sent, GOAWAY below it): a retry costs nothing then.
	 *
	 * Outcomes: grpc-status from trailers (or a trailers-only response);
	 * for OK the body must be exactly one uncompressed message (else
	 * INTERNAL) no larger than max_message_bytes (else RESOURCE_EXHAUSTED,
	 * also while DATA arrives, which then resets the stream with CANCEL);
	 * an HTTP :status other than 200 maps through grpc_status_from_http;
	 * RST_STREAM(REFUSED_STREAM) or a stream closed before its HEADERS went
	 * out is UNAVAILABLE "stream refused" (not reached); a reset before any
	 * response headers UNAVAILABLE (reached iff our HEADERS went out); a
	 * server CANCEL after headers CANCELLED; anything else INTERNAL. */
	void (*on_result)(void *user, struct grpc_client_stream *s, int status, const char *message,
	                  const uint8_t *msg, size_t len, bool reached);
	/* The server sent GOAWAY (every one, not only the first). */
	void (*on_goaway)(void *user, int32_t last_stream_id, uint32_t error_code);
	/* The server sent (non-ACK) SETTINGS: MAX_CONCURRENT_STREAMS may have
	 * grown. */
	void (*on_settings)(void *user);
	/* A stream closed (after its on_result, if it still had an owner). */
	void (*on_stream_closed)(void *user);
};

/* Create a client session: queues the client preface and our SETTINGS (no
 * push, 1 MiB stream window, 4 MiB connection window, 64 KiB header list) for
 * the first grpc_client_session_send. max_message_bytes bounds an OK
 * response's message. Returns 0 with *out set, or MV_ENOMEM. */
int grpc_client_session_new(struct grpc_client_session **out,
                            const struct grpc_client_session_callbacks *cbs, void *user,
                            size_t max_message_bytes);

/* Free the session. Streams still open are not reported: their owners
 * detach them first (or fail them themselves). Not from inside a callback. */
void grpc_client_session_free(struct grpc_client_session *s);

/* Open a stream for `st` (POST `path` with :authority `authority`,
 * grpc-timeout `timeout`, te: trailers, the request from st->req). Resets
 * st's per-attempt fields and sets st->id. Nothing is written before the next
 * grpc_client_session_send. Returns 0, or MV_EUNAVAIL when the session cannot
 * start a stream (ids exhausted, GOAWAY received, out of memory). */
int grpc_client_session_submit(struct grpc_client_session *s, struct grpc_client_stream *st,
                               const char *path, size_t path_len, const char *authority,
                               const char *timeout);

/* The owner gives `st` up (a call completed or moved away): no more events
 * for it; the stream itself ends as nghttp2 sees fit. No-op when st->id is
 * 0. */
void grpc_client_session_detach(struct grpc_client_session *s, struct grpc_client_stream *st);

/* Reset st's stream with RST_STREAM(CANCEL) (the server sees the
 * cancellation) and detach it. No-op when st->id is 0. */
void grpc_client_session_cancel(struct grpc_client_session *s, struct grpc_client_stream *st);

/* Queue our GOAWAY(NO_ERROR, last stream 0): we open no more streams. */
void grpc_client_session_goaway(struct grpc_client_session *s);

/* Feed `len` bytes received from the server; events run from here. Returns
 * 0, or MV_EPROTO when nghttp2 cannot go on (the connection is done). Bytes
 * that commit a connection error may still return 0: nghttp2 queues its
 * GOAWAY, see grpc_client_session_failed. */
int grpc_client_session_recv(struct grpc_client_session *s, const uint8_t *data, size_t len);

/* Append everything the session has to write to `out` (bounded passes).
 * Returns 0, MV_ENOMEM (out's limit or allocation) or MV_EPROTO (nghttp2
 * failed; *why, when not NULL, says how). */
int grpc_client_session_send(struct grpc_client_session *s, struct buf *out, const char **why);

/* The session ended the connection with an error: a frame of the server's
 * broke HTTP/2 (nghttp2 then queues GOAWAY with the error, and sets this once
 * grpc_client_session_send has yielded it). It reads nothing more and its open
 * streams never close: write that output, then fail the connection. */
bool grpc_client_session_failed(const struct grpc_client_session *s);

/* The session still wants to write (more than the last send drained). */
bool grpc_client_session_want_write(const struct grpc_client_session *s);

/* Its next stream id passed GRPC_CLIENT_MAX_STREAM_ID: start no stream here
 * and retire the connection. */
bool grpc_client_session_ids_low(const struct grpc_client_session *s);

/* The server's SETTINGS_MAX_CONCURRENT_STREAMS (100 until it says). */
uint32_t grpc_client_session_max_streams(const struct grpc_client_session *s);

/* Tests only: make the next stream id `next_id` (odd, not below the current
 * one). Returns 0 or MV_EINVAL. */
int grpc_client_session_set_next_stream_id(struct grpc_client_session *s, int32_t next_id);

/* ---- channels, connections, addresses (libuv; the channel's loop thread) ---- */

#define MAX_TARGETS          64
#define MAX_HOST             256
#define MAX_ADDRS_PER_TARGET 64
#define MAX_ADDRS            256
#define MAX_PATH             256
/* In-flight calls per channel: far above any sane concurrency, but bounded. */
#define MAX_CALLS         65536
#define TICK_MS           20
#define RETRY_BASE_MS     10
#define RETRY_CAP_MS      200
#define RECONNECT_BASE_MS 50
#define RECONNECT_CAP_MS  2000
/* A connection failure triggers re-resolution at most this often. */
#define MIN_RERESOLVE_MS 1000
#define READ_BUF         65536
#define RETRY_TOKENS     100.0

enum grpc_client_call_state {
	CALL_QUEUED,
	CALL_BACKOFF,
	CALL_ACTIVE,
	CALL_NEW
};
enum grpc_client_conn_state {
	CONN_CONNECTING,
	CONN_READY,
	CONN_CLOSING
};

struct grpc_client_conn;
struct grpc_client_addr;

struct grpc_client_call {
	struct grpc_channel *ch;
	enum grpc_client_call_state state;
	int attempts;
	bool idempotent;
	int64_t deadline_ns;
	int64_t wake_ns;                          /* heap key */
	size_t heap_index;                        /* SIZE_MAX when not in the heap */
	struct grpc_client_conn *conn;            /* ACTIVE only */
	struct grpc_client_stream st;             /* the current attempt's stream */
	const struct grpc_client_addr *last_addr; /* compared, never dereferenced */
	struct grpc_client_call *next, *prev;     /* channel queue or connection list */
	grpc_client_done_fn done;
	void *arg;
	struct client_method_metrics *metrics; /* NULL: not counted */
	int64_t start_ns;
	size_t path_len;
	size_t req_len; /* framed request length */
	char *path;     /* points into data[] */
	uint8_t *req;   /* points into data[] */
	/* grpc_channel_start_traced: the call's client span (all attempts). */
	bool traced;
	struct trace_span span;
	int64_t start_unix_ns;
	char traceparent[TRACE_PARENT_LEN + 1];
	uint8_t data[];
};

struct grpc_client_call_list {
	struct grpc_client_call *head, *tail;
	size_t count;
};

struct grpc_client_conn {
	struct grpc_channel *ch;
	struct grpc_client_addr *addr; /* NULL once draining */
	enum grpc_client_conn_state state;
	bool draining;
	bool writing;
	bool in_flush_list;
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	struct grpc_client_session *session; /* NULL until connected */
	struct buf out;
	struct buf wbuf;
	struct grpc_client_call_list calls;
	int64_t connect_deadline_ms;
	char label[64]; /* "127.0.0.1:8081", "[::1]:8081" */
	const char *authority;
	struct grpc_client_conn *next, *prev; /* channel list */
	struct grpc_client_conn *flush_next;
};

struct grpc_client_addr {
	struct sockaddr_storage sa;
	socklen_t sa_len;
	size_t target; /* index of the target that produced it */
	bool seen;     /* in the latest resolution of its target */
	struct grpc_client_conn *conn;
	int failures; /* consecutive connect failures */
	int64_t next_connect_ms;
	char label[64];
};

struct grpc_client_target {
	struct grpc_channel *ch;
	size_t index;
	char host[MAX_HOST];
	char port[8];
	char authority[MAX_HOST + 8];
	uv_getaddrinfo_t req;
	bool resolving;
};

struct grpc_channel {
	uv_loop_t *loop;
	char name[64];
	int64_t resolve_interval_ms;
	int64_t default_timeout_ns;
	int max_attempts;
	size_t max_message_bytes;
	int64_t connect_timeout_ms;
	struct grpc_retry_budget budget;
	uint64_t rng;

	struct grpc_client_target *targets;
	size_t target_count;
	int64_t last_resolve_ms;

	struct grpc_client_addr *addrs[MAX_ADDRS];
	size_t addr_count;
	size_t rr;

	struct grpc_client_conn *conns;
	struct grpc_client_conn *flush_list;
	size_t ready_count;

	struct grpc_client_call_list queue; /* waiting for a connection with stream capacity */
	struct grpc_client_call **heap;
	size_t heap_len, heap_cap;
	size_t call_count;
	int64_t timer_armed_ns; /* 0 = not armed */

	uv_timer_t call_timer;
	uv_timer_t tick;
	uv_prepare_t flusher;
	bool flusher_active;
	size_t open_handles; /* handles + resolutions libuv still holds */
	bool closed;

	struct client_metrics call_metrics; /* grpc_client_{started,handled}_total, ... */
	struct metrics_counter *retries;
	/* Shared by the peer's channels on every loop: only ever added to. */
	struct metrics_gauge *connections;
	struct metrics_gauge *in_flight;

	uint8_t read_buf[READ_BUF];
};

/* client_channel.c */
double grpc_channel_rand(struct grpc_channel *ch);           /* [0, 1), jitter only */
int64_t grpc_channel_now_ms(const struct grpc_channel *ch);  /* the loop's clock */
void grpc_channel_dispatch(struct grpc_channel *ch);         /* queued calls -> free slots */
void grpc_channel_fail_if_hopeless(struct grpc_channel *ch); /* nothing can connect soon */
void grpc_channel_maybe_free(struct grpc_channel *ch);       /* closed and no handle left */
/* An attempt of `c` failed: UNAVAILABLE may be retried (see the .c), the rest
 * completes the call. `reached`: the request may have reached a server. */
void grpc_client_call_failed(struct grpc_client_call *c, int status, const char *message,
                             bool reached);
/* grpc_client_session_callbacks.on_result of every connection's session. */
void grpc_client_call_on_result(void *user, struct grpc_client_stream *st, int status,
                                const char *message, const uint8_t *msg, size_t len, bool reached);

/* client_conn.c */
void grpc_client_conn_open(struct grpc_channel *ch, struct grpc_client_addr *a);
/* Close now; calls on it fail with UNAVAILABLE (why: debug log, may be NULL). */
void grpc_client_conn_fail(struct grpc_client_conn *cn, const char *why);
void grpc_client_conn_want_flush(struct grpc_client_conn *cn);
void grpc_client_conn_maybe_finish_drain(struct grpc_client_conn *cn);
/* Its address vanished (the address already forgot it). */
void grpc_client_conn_orphan(struct grpc_client_conn *cn);
/* Ready, not draining, stream ids and the server's stream limit allow one more. */
bool grpc_client_conn_usable(const struct grpc_client_conn *cn);

/* client_resolve.c */
/* "host:port" or "[v6]:port" (port 1..65535) into t, exactly what
 * cfg_check_host_port accepts. Returns 0 or MV_EINVAL. */
int grpc_client_target_parse(const char *s, struct grpc_client_target *t);
/* Resolve every target not resolving already (uv_getaddrinfo, off the loop). */
void grpc_client_resolve(struct grpc_channel *ch);
bool grpc_client_resolving(const struct grpc_channel *ch);

#endif
