/*
 * client_internal.h - what the pieces of the gRPC client share (not installed).
 *
 * The client is layered like the server:
 *   client_session.c  the HTTP/2 + gRPC protocol of one client connection
 *                     (nghttp2), I/O-free: bytes in, bytes out, no libuv;
 *   client.c          channels, calls, connections and name resolution over
 *                     libuv (include/movie/grpc_client.h is its contract).
 *
 * Everything here is used from one thread: the loop thread that owns the
 * channel, or the unit test / fuzzer that pumps a session by hand.
 */
#ifndef MOVIE_GRPC_CLIENT_INTERNAL_H
#define MOVIE_GRPC_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "movie/buf.h"

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
 * 0, or MV_EPROTO when the bytes break HTTP/2 (the connection is done: send
 * what grpc_client_session_send still yields, then close). */
int grpc_client_session_recv(struct grpc_client_session *s, const uint8_t *data, size_t len);

/* Append everything the session has to write to `out` (bounded passes).
 * Returns 0, MV_ENOMEM (out's limit or allocation) or MV_EPROTO (nghttp2
 * failed; *why, when not NULL, says how). */
int grpc_client_session_send(struct grpc_client_session *s, struct buf *out, const char **why);

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

#endif
