/*
 * gRPC client session: the HTTP/2 protocol of one client connection.
 *
 * No I/O (as server_session.c): the connection layer feeds received bytes to
 * grpc_client_session_recv and writes what grpc_client_session_send yields;
 * unit tests and the fuzzer pump it by hand. nghttp2 does HTTP/2; this file
 * adds unary gRPC on top (request headers, response status, the one response
 * message) and turns the end of each stream into one gRPC outcome.
 *
 * A stream's nghttp2 user data is its grpc_client_stream while an owner holds
 * it, NULL once detached: an event for a detached stream is dropped, so an
 * owner that went away (deadline, cancel) is never called back.
 */
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "movie/banned.h"

#define STREAM_WINDOW (1 << 20)
#define CONN_WINDOW   (4 << 20)
/* Bound on mem_send passes per send: each yields at least one frame. */
#define SEND_PASSES 1024

struct grpc_client_session {
	nghttp2_session *h2;
	struct grpc_client_session_callbacks cbs;
	void *user;
	size_t max_message_bytes;
	bool failed; /* we sent GOAWAY with an error: nghttp2 reads no more */
};

static struct grpc_client_stream *stream_of(nghttp2_session *h2, int32_t id)
{
	return nghttp2_session_get_stream_user_data(h2, id);
}

/* The owner hears about `st` once: detach, then report. */
static void stream_report(struct grpc_client_session *s, struct grpc_client_stream *st, int status,
                          const char *message, const uint8_t *msg, size_t len, bool reached)
{
	grpc_client_session_detach(s, st);
	s->cbs.on_result(s->user, st, status, message ? message : "", msg, len, reached);
}

static ssize_t req_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *dest, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	/* Looked up by stream: a detached stream's owner may be gone. */
	struct grpc_client_stream *st = stream_of(h2, stream_id);
	if (!st)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = st->req_len - st->req_sent;
	if (n > length)
		n = length;
	memcpy(dest, st->req + st->req_sent, n);
	st->req_sent += n;
	if (st->req_sent == st->req_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_nv make_nv(const char *name, const char *value, size_t value_len)
{
	nghttp2_nv nv = {(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name),
	                 value_len, NGHTTP2_NV_FLAG_NO_COPY_NAME};
	return nv;
}

static bool name_is(const uint8_t *name, size_t len, const char *lit, size_t lit_len)
{
	return len == lit_len && memcmp(name, lit, len) == 0;
}

static int on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user_data)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct grpc_client_stream *st = stream_of(h2, frame->hd.stream_id);
	if (!st)
		return 0;
	if (name_is(name, namelen, ":status", 7)) {
		int v = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			v = v * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
		st->http_status = v;
	} else if (name_is(name, namelen, "grpc-status", 11)) {
		int v = 0;
		bool ok = valuelen > 0 && valuelen <= 3;
		for (size_t i = 0; ok && i < valuelen; i++) {
			if (value[i] < '0' || value[i] > '9')
				ok = false;
			else
				v = v * 10 + (value[i] - '0');
		}
		st->grpc_status = ok ? v : GRPC_STATUS_UNKNOWN;
	} else if (name_is(name, namelen, "grpc-message", 12)) {
		grpc_message_decode((const char *)value, valuelen, st->message,
		                    sizeof(st->message));
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct grpc_client_session *s = user_data;
	if (frame->hd.type == NGHTTP2_HEADERS) {
		struct grpc_client_stream *st = stream_of(h2, frame->hd.stream_id);
		if (!st)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
			st->response_headers = true;
		else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
			st->trailers = true;
	} else if (frame->hd.type == NGHTTP2_GOAWAY) {
		s->cbs.on_goaway(s->user, frame->goaway.last_stream_id, frame->goaway.error_code);
	} else if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		s->cbs.on_settings(s->user);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	if (frame->hd.type == NGHTTP2_GOAWAY && frame->goaway.error_code != NGHTTP2_NO_ERROR) {
		/* nghttp2 answered a connection error of the server's: it has
		 * stopped reading and will never close the open streams. */
		struct grpc_client_session *s = user_data;
		s->failed = true;
	} else if (frame->hd.type == NGHTTP2_HEADERS) {
		struct grpc_client_stream *st = stream_of(h2, frame->hd.stream_id);
		if (st)
			st->headers_sent = true;
	}
	return 0;
}

static int on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
                             void *user_data)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct grpc_client_stream *st = stream_of(h2, frame->hd.stream_id);
	if (st)
		stream_report(user_data, st, GRPC_STATUS_UNAVAILABLE, "stream refused", NULL, 0,
		              false);
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
	struct grpc_client_stream *st = stream_of(h2, stream_id);
	if (!st)
		return 0;
	if (buf_append(&st->resp, data, len) != 0) {
		grpc_client_session_cancel(user_data, st);
		stream_report(user_data, st, GRPC_STATUS_RESOURCE_EXHAUSTED,
		              "response larger than max_message_bytes", NULL, 0, true);
	}
	return 0;
}

/* The stream closed with `error_code` while its owner still held it. */
static void stream_finish(struct grpc_client_session *s, struct grpc_client_stream *st,
                          uint32_t error_code)
{
	if (st->grpc_status >= 0 && (st->trailers || st->response_headers)) {
		if (st->grpc_status != GRPC_STATUS_OK) {
			/* The owner reads st->message during the callback only. */
			stream_report(s, st, st->grpc_status, st->message, NULL, 0, true);
			return;
		}
		const uint8_t *msg;
		size_t msg_len;
		int rc = grpc_frame_decode_single((const uint8_t *)st->resp.data, st->resp.len,
		                                  s->max_message_bytes, &msg, &msg_len);
		if (rc == MV_ETOOBIG) {
			stream_report(s, st, GRPC_STATUS_RESOURCE_EXHAUSTED,
			              "response larger than max_message_bytes", NULL, 0, true);
			return;
		}
		if (rc) {
			stream_report(s, st, GRPC_STATUS_INTERNAL,
			              "response is not exactly one uncompressed message", NULL, 0,
			              true);
			return;
		}
		stream_report(s, st, GRPC_STATUS_OK, "", msg, msg_len, true);
		return;
	}
	if (st->response_headers && st->http_status != 200) {
		char why[48];
		snprintf(why, sizeof(why), "HTTP status %d", st->http_status);
		stream_report(s, st, grpc_status_from_http(st->http_status), why, NULL, 0, true);
		return;
	}
	if (error_code == NGHTTP2_REFUSED_STREAM) {
		/* GOAWAY below this stream, or RST REFUSED_STREAM: never processed. */
		stream_report(s, st, GRPC_STATUS_UNAVAILABLE, "stream refused", NULL, 0, false);
		return;
	}
	if (!st->response_headers) {
		stream_report(s, st, GRPC_STATUS_UNAVAILABLE, "stream reset before response", NULL,
		              0, st->headers_sent);
		return;
	}
	if (error_code == NGHTTP2_CANCEL) {
		stream_report(s, st, GRPC_STATUS_CANCELLED, "stream cancelled by the server", NULL,
		              0, true);
		return;
	}
	stream_report(s, st, GRPC_STATUS_INTERNAL, "response without grpc-status", NULL, 0, true);
}

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct grpc_client_session *s = user_data;
	struct grpc_client_stream *st = stream_of(h2, stream_id);
	if (st)
		stream_finish(s, st, error_code);
	s->cbs.on_stream_closed(s->user);
	return 0;
}

int grpc_client_session_new(struct grpc_client_session **out,
                            const struct grpc_client_session_callbacks *cbs, void *user,
                            size_t max_message_bytes)
{
	nghttp2_session_callbacks *h2cbs;
	nghttp2_option *opt;
	int rc = MV_ENOMEM;
	struct grpc_client_session *s = calloc(1, sizeof(*s));
	if (!s)
		return MV_ENOMEM;
	s->cbs = *cbs;
	s->user = user;
	s->max_message_bytes = max_message_bytes;
	if (nghttp2_session_callbacks_new(&h2cbs) != 0)
		goto fail_session_struct;
	nghttp2_session_callbacks_set_on_header_callback(h2cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h2cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(h2cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(h2cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(h2cbs, on_stream_close);
	if (nghttp2_option_new(&opt) != 0)
		goto fail_callbacks;
	/* Bound what a misbehaving server can make us queue. */
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
	if (nghttp2_session_client_new2(&s->h2, h2cbs, s, opt) != 0)
		goto fail_option;
	nghttp2_settings_entry settings[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
	};
	if (nghttp2_submit_settings(s->h2, NGHTTP2_FLAG_NONE, settings,
	                            sizeof(settings) / sizeof(settings[0])) != 0)
		goto fail_h2;
	nghttp2_session_set_local_window_size(s->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
	nghttp2_option_del(opt);
	nghttp2_session_callbacks_del(h2cbs);
	*out = s;
	return 0;

fail_h2:
	nghttp2_session_del(s->h2);
fail_option:
	nghttp2_option_del(opt);
fail_callbacks:
	nghttp2_session_callbacks_del(h2cbs);
fail_session_struct:
	free(s);
	return rc;
}

void grpc_client_session_free(struct grpc_client_session *s)
{
	if (!s)
		return;
	nghttp2_session_del(s->h2);
	free(s);
}

int grpc_client_session_submit(struct grpc_client_session *s, struct grpc_client_stream *st,
                               const char *path, size_t path_len, const char *authority,
                               const char *timeout)
{
	nghttp2_nv nv[10] = {
	    make_nv(":method", "POST", 4),
	    make_nv(":scheme", "http", 4),
	    make_nv(":path", path, path_len),
	    make_nv(":authority", authority, strlen(authority)),
	    make_nv("content-type", "application/grpc", 16),
	    make_nv("te", "trailers", 8),
	    make_nv("grpc-timeout", timeout, strlen(timeout)),
	    make_nv("user-agent", "movie-grpc-c/0.1", 16),
	};
	size_t n = 8;
	if (st->traceparent)
		nv[n++] = make_nv("traceparent", st->traceparent, strlen(st->traceparent));
	if (st->traceparent && st->tracestate && st->tracestate[0])
		nv[n++] = make_nv("tracestate", st->tracestate, strlen(st->tracestate));
	nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = req_read_cb};
	int32_t id = nghttp2_submit_request(s->h2, NULL, nv, n, &prd, st);
	if (id < 0)
		return MV_EUNAVAIL;
	st->id = id;
	st->req_sent = 0;
	st->headers_sent = false;
	st->response_headers = false;
	st->trailers = false;
	st->http_status = 0;
	st->grpc_status = -1;
	st->message[0] = '\0';
	buf_reset(&st->resp);
	return 0;
}

void grpc_client_session_detach(struct grpc_client_session *s, struct grpc_client_stream *st)
{
	if (st->id <= 0)
		return;
	nghttp2_session_set_stream_user_data(s->h2, st->id, NULL);
	st->id = 0;
}

void grpc_client_session_cancel(struct grpc_client_session *s, struct grpc_client_stream *st)
{
	if (st->id <= 0)
		return;
	nghttp2_submit_rst_stream(s->h2, NGHTTP2_FLAG_NONE, st->id, NGHTTP2_CANCEL);
	grpc_client_session_detach(s, st);
}

void grpc_client_session_goaway(struct grpc_client_session *s)
{
	nghttp2_submit_goaway(s->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
}

int grpc_client_session_recv(struct grpc_client_session *s, const uint8_t *data, size_t len)
{
	ssize_t n = nghttp2_session_mem_recv(s->h2, data, len);
	if (n < 0 || (size_t)n != len)
		return MV_EPROTO;
	return 0;
}

int grpc_client_session_send(struct grpc_client_session *s, struct buf *out, const char **why)
{
	for (int pass = 0; pass < SEND_PASSES; pass++) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(s->h2, &data);
		if (n < 0) {
			if (why)
				*why = nghttp2_strerror((int)n);
			return MV_EPROTO;
		}
		if (n == 0)
			break;
		if (buf_append(out, data, (size_t)n) != 0) {
			if (why)
				*why = "out of memory";
			return MV_ENOMEM;
		}
	}
	return 0;
}

bool grpc_client_session_failed(const struct grpc_client_session *s)
{
	return s->failed;
}

bool grpc_client_session_want_write(const struct grpc_client_session *s)
{
	return nghttp2_session_want_write(s->h2) != 0;
}

bool grpc_client_session_ids_low(const struct grpc_client_session *s)
{
	return nghttp2_session_get_next_stream_id(s->h2) > GRPC_CLIENT_MAX_STREAM_ID;
}

uint32_t grpc_client_session_max_streams(const struct grpc_client_session *s)
{
	return nghttp2_session_get_remote_settings(s->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
}

int grpc_client_session_set_next_stream_id(struct grpc_client_session *s, int32_t next_id)
{
	return nghttp2_session_set_next_stream_id(s->h2, next_id) == 0 ? 0 : MV_EINVAL;
}
