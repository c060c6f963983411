/*
 * test_grpc_client_session.c - the I/O-free gRPC client session pumped
 * against a real nghttp2 server session in memory (no sockets, no loop).
 *
 * pump() moves bytes both ways (grpc_client_session_send, then
 * nghttp2_session_mem_recv on the server; nghttp2_session_mem_send, then
 * grpc_client_session_recv) until neither side has anything to say. The
 * server side is plain nghttp2 driven by each test: it answers, resets or
 * sends GOAWAY exactly when the test says so.
 */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include <nghttp2/nghttp2.h>

#include "../../../lib/grpc/client_internal.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "../testing.h"
#include "movie/banned.h"

#define MAX_STREAMS 8

/* ---- the server side (plain nghttp2) ---- */

struct body_src {
	uint8_t data[256];
	size_t len, pos;
	const char *status; /* grpc-status for the trailers */
};

static struct srv {
	nghttp2_session *h2;
	int requests;         /* requests fully received (END_STREAM) */
	int32_t last_request; /* stream id of the latest one */
	char path[64];        /* :path of the latest one */
	char timeout[32];     /* its grpc-timeout */
	bool te_trailers;     /* it said te: trailers */
	uint8_t body[64];     /* its DATA */
	size_t body_len;
	uint32_t rst_code;  /* RST_STREAM code received from the client */
	int32_t rst_stream; /* ... and for which stream (0: none) */
	bool goaway_received;
	struct body_src src[MAX_STREAMS];
	int next_src;
} srv;

static int srv_on_header(nghttp2_session *h2, const nghttp2_frame *frame, const uint8_t *name,
                         size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                         void *user_data)
{
	if (namelen == 5 && memcmp(name, ":path", 5) == 0 && valuelen < sizeof(srv.path)) {
		memcpy(srv.path, value, valuelen);
		srv.path[valuelen] = '\0';
	} else if (namelen == 12 && memcmp(name, "grpc-timeout", 12) == 0 &&
	           valuelen < sizeof(srv.timeout)) {
		memcpy(srv.timeout, value, valuelen);
		srv.timeout[valuelen] = '\0';
	} else if (namelen == 2 && memcmp(name, "te", 2) == 0) {
		srv.te_trailers = valuelen == 8 && memcmp(value, "trailers", 8) == 0;
	}
	return 0;
}

static int srv_on_data(nghttp2_session *h2, uint8_t flags, int32_t id, const uint8_t *data,
                       size_t len, void *user_data)
{
	srv.body_len = 0;
	if (len <= sizeof(srv.body)) {
		memcpy(srv.body, data, len);
		srv.body_len = len;
	}
	return 0;
}

static int srv_on_frame(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
	    (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
		srv.requests++;
		srv.last_request = frame->hd.stream_id;
	} else if (frame->hd.type == NGHTTP2_RST_STREAM) {
		srv.rst_code = frame->rst_stream.error_code;
		srv.rst_stream = frame->hd.stream_id;
	} else if (frame->hd.type == NGHTTP2_GOAWAY) {
		srv.goaway_received = true;
	}
	return 0;
}

static void srv_start(void)
{
	memset(&srv, 0, sizeof(srv));
	nghttp2_session_callbacks *cbs;
	CHECK(nghttp2_session_callbacks_new(&cbs) == 0);
	nghttp2_session_callbacks_set_on_header_callback(cbs, srv_on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, srv_on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, srv_on_frame);
	CHECK(nghttp2_session_server_new(&srv.h2, cbs, NULL) == 0);
	nghttp2_session_callbacks_del(cbs);
	CHECK(nghttp2_submit_settings(srv.h2, NGHTTP2_FLAG_NONE, NULL, 0) == 0);
}

static ssize_t srv_read_body(nghttp2_session *h2, int32_t id, uint8_t *buf, size_t length,
                             uint32_t *flags, nghttp2_data_source *source, void *user_data)
{
	struct body_src *b = source->ptr;
	size_t n = b->len - b->pos;
	if (n > length)
		n = length;
	memcpy(buf, b->data + b->pos, n);
	b->pos += n;
	if (b->pos == b->len) {
		*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
		nghttp2_nv tr[] = {
		    {(uint8_t *)(uintptr_t) "grpc-status", (uint8_t *)(uintptr_t)b->status, 11,
		     strlen(b->status), NGHTTP2_NV_FLAG_NONE},
		};
		nghttp2_submit_trailer(h2, id, tr, 1);
	}
	return (ssize_t)n;
}

#define NV(n, v)                                                                     \
	{                                                                            \
		(uint8_t *)(uintptr_t)(n), (uint8_t *)(uintptr_t)(v), sizeof(n) - 1, \
		    sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE                              \
	}

/* Headers, one framed message `msg`, trailers with grpc-status `status`. */
static void srv_reply(int32_t id, const char *msg, size_t msg_len, const char *status)
{
	struct body_src *b = &srv.src[srv.next_src++ % MAX_STREAMS];
	CHECK(msg_len + GRPC_FRAME_HEADER <= sizeof(b->data));
	b->data[0] = 0;
	b->data[1] = (uint8_t)(msg_len >> 24);
	b->data[2] = (uint8_t)(msg_len >> 16);
	b->data[3] = (uint8_t)(msg_len >> 8);
	b->data[4] = (uint8_t)msg_len;
	memcpy(b->data + GRPC_FRAME_HEADER, msg, msg_len);
	b->len = GRPC_FRAME_HEADER + msg_len;
	b->pos = 0;
	b->status = status;
	nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc")};
	nghttp2_data_provider prd = {.source.ptr = b, .read_callback = srv_read_body};
	CHECK(nghttp2_submit_response(srv.h2, id, nv, 2, &prd) == 0);
}

/* ---- the client side under test ---- */

struct result {
	bool done;
	int status;
	char message[128];
	char msg[256];
	size_t len;
	bool reached;
};

static struct cli {
	struct grpc_client_session *s;
	struct grpc_client_stream st[MAX_STREAMS];
	uint8_t req[MAX_STREAMS][16];
	struct result res[MAX_STREAMS];
	int results;
	int goaways;
	int32_t goaway_last;
	int settings;
	int closed;
} cli;

static void on_result(void *user, struct grpc_client_stream *s, int status, const char *message,
                      const uint8_t *msg, size_t len, bool reached)
{
	CHECK(user == &cli);
	CHECK(s->id == 0); /* detached before the report */
	struct result *r = s->user;
	CHECK(!r->done); /* once per attempt */
	r->done = true;
	r->status = status;
	snprintf(r->message, sizeof(r->message), "%s", message);
	r->len = len < sizeof(r->msg) ? len : sizeof(r->msg);
	if (len)
		memcpy(r->msg, msg, r->len);
	r->reached = reached;
	cli.results++;
}

static void on_goaway(void *user, int32_t last, uint32_t code)
{
	cli.goaways++;
	cli.goaway_last = last;
}

static void on_settings(void *user)
{
	cli.settings++;
}

static void on_closed(void *user)
{
	cli.closed++;
}

static const struct grpc_client_session_callbacks cbs = {on_result, on_goaway, on_settings,
                                                         on_closed};

static void cli_start(size_t max_message)
{
	memset(&cli, 0, sizeof(cli));
	CHECK_INT_EQ(grpc_client_session_new(&cli.s, &cbs, &cli, max_message), 0);
	for (int i = 0; i < MAX_STREAMS; i++) {
		struct grpc_client_stream *st = &cli.st[i];
		buf_init(&st->resp, max_message + GRPC_FRAME_HEADER);
		cli.req[i][0] = 0;
		cli.req[i][4] = 3;
		memcpy(cli.req[i] + GRPC_FRAME_HEADER, "abc", 3);
		st->req = cli.req[i];
		st->req_len = GRPC_FRAME_HEADER + 3;
		st->user = &cli.res[i];
	}
}

static void stop(void)
{
	grpc_client_session_free(cli.s);
	for (int i = 0; i < MAX_STREAMS; i++)
		buf_release(&cli.st[i].resp);
	nghttp2_session_del(srv.h2);
}

static int submit(int i)
{
	return grpc_client_session_submit(cli.s, &cli.st[i], "/MetadataService/GetMetadata", 28,
	                                  "metadata:8081", "1000m");
}

/* Move bytes both ways until both are quiet (bounded). Returns the client's
 * last recv code. */
static int pump(void)
{
	int rc = 0;
	for (int round = 0; round < 64; round++) {
		struct buf out;
		buf_init(&out, 0);
		CHECK_INT_EQ(grpc_client_session_send(cli.s, &out, NULL), 0);
		size_t to_server = out.len;
		if (out.len)
			CHECK_INT_EQ(
			    nghttp2_session_mem_recv(srv.h2, (const uint8_t *)out.data, out.len),
			    (ssize_t)out.len);
		buf_release(&out);
		size_t to_client = 0;
		for (int guard = 0; guard < 64; guard++) {
			const uint8_t *data;
			ssize_t n = nghttp2_session_mem_send(srv.h2, &data);
			CHECK(n >= 0);
			if (n <= 0)
				break;
			to_client += (size_t)n;
			int r = grpc_client_session_recv(cli.s, data, (size_t)n);
			if (r)
				rc = r;
		}
		if (to_server == 0 && to_client == 0)
			return rc;
	}
	CHECK(!"pump did not settle");
	return rc;
}

/* ---- tests ---- */

static void test_unary_ok(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	CHECK_INT_EQ(cli.st[0].id, 1);
	CHECK_INT_EQ(pump(), 0);
	CHECK(cli.settings >= 1);
	CHECK_INT_EQ(srv.requests, 1);
	CHECK_STR_EQ(srv.path, "/MetadataService/GetMetadata");
	CHECK_STR_EQ(srv.timeout, "1000m");
	CHECK(srv.te_trailers);
	CHECK_INT_EQ(srv.body_len, 8);
	CHECK(memcmp(srv.body + GRPC_FRAME_HEADER, "abc", 3) == 0);
	CHECK(cli.st[0].headers_sent);
	CHECK(!cli.res[0].done);
	srv_reply(1, "hello", 5, "0");
	CHECK_INT_EQ(pump(), 0);
	CHECK(cli.res[0].done);
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_OK);
	CHECK_INT_EQ(cli.res[0].len, 5);
	CHECK(memcmp(cli.res[0].msg, "hello", 5) == 0);
	CHECK(cli.res[0].reached);
	CHECK(cli.closed >= 1);
	/* The session carries the next call on the next odd id. */
	CHECK_INT_EQ(submit(1), 0);
	CHECK_INT_EQ(cli.st[1].id, 3);
	pump();
	srv_reply(3, "", 0, "0");
	pump();
	CHECK(cli.res[1].done);
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_OK);
	CHECK_INT_EQ(cli.res[1].len, 0);
	stop();
}

static void test_trailers_only_error(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	pump();
	nghttp2_nv nv[] = {NV(":status", "200"), NV("content-type", "application/grpc"),
	                   NV("grpc-status", "5"), NV("grpc-message", "no%20such%20movie")};
	CHECK(nghttp2_submit_response(srv.h2, 1, nv, 4, NULL) == 0);
	pump();
	CHECK(cli.res[0].done);
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_NOT_FOUND);
	CHECK_STR_EQ(cli.res[0].message, "no such movie");
	/* A non-numeric grpc-status is UNKNOWN, and an OK with a body that is not
	 * one message is INTERNAL. */
	CHECK_INT_EQ(submit(1), 0);
	pump();
	nghttp2_nv bad[] = {NV(":status", "200"), NV("grpc-status", "x")};
	CHECK(nghttp2_submit_response(srv.h2, 3, bad, 2, NULL) == 0);
	pump();
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_UNKNOWN);
	CHECK_INT_EQ(submit(2), 0);
	pump();
	nghttp2_nv ok[] = {NV(":status", "200"), NV("grpc-status", "0")};
	CHECK(nghttp2_submit_response(srv.h2, 5, ok, 2, NULL) == 0);
	pump();
	CHECK_INT_EQ(cli.res[2].status, GRPC_STATUS_INTERNAL);
	CHECK_STR_EQ(cli.res[2].message, "response is not exactly one uncompressed message");
	stop();
}

static void test_http_status(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	CHECK_INT_EQ(submit(1), 0);
	pump();
	nghttp2_nv n503[] = {NV(":status", "503")};
	nghttp2_nv n404[] = {NV(":status", "404")};
	CHECK(nghttp2_submit_response(srv.h2, 1, n503, 1, NULL) == 0);
	CHECK(nghttp2_submit_response(srv.h2, 3, n404, 1, NULL) == 0);
	pump();
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_UNAVAILABLE);
	CHECK_STR_EQ(cli.res[0].message, "HTTP status 503");
	CHECK(cli.res[0].reached);
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_UNIMPLEMENTED);
	stop();
}

static void test_rst_stream(void)
{
	srv_start();
	cli_start(1024);
	for (int i = 0; i < 3; i++)
		CHECK_INT_EQ(submit(i), 0);
	pump();
	CHECK_INT_EQ(srv.requests, 3);
	/* REFUSED_STREAM: never processed, a free retry. */
	CHECK(nghttp2_submit_rst_stream(srv.h2, NGHTTP2_FLAG_NONE, 1, NGHTTP2_REFUSED_STREAM) == 0);
	/* Any other reset before the response: the request did reach the server. */
	CHECK(nghttp2_submit_rst_stream(srv.h2, NGHTTP2_FLAG_NONE, 3, NGHTTP2_INTERNAL_ERROR) == 0);
	pump();
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_UNAVAILABLE);
	CHECK_STR_EQ(cli.res[0].message, "stream refused");
	CHECK(!cli.res[0].reached);
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_UNAVAILABLE);
	CHECK_STR_EQ(cli.res[1].message, "stream reset before response");
	CHECK(cli.res[1].reached);
	/* CANCEL after the response headers: the server gave up. */
	nghttp2_nv nv[] = {NV(":status", "200")};
	CHECK(nghttp2_submit_headers(srv.h2, NGHTTP2_FLAG_NONE, 5, NULL, nv, 1, NULL) == 0);
	pump();
	CHECK(!cli.res[2].done);
	CHECK(nghttp2_submit_rst_stream(srv.h2, NGHTTP2_FLAG_NONE, 5, NGHTTP2_CANCEL) == 0);
	pump();
	CHECK_INT_EQ(cli.res[2].status, GRPC_STATUS_CANCELLED);
	CHECK_INT_EQ(cli.results, 3);
	stop();
}

static void test_goaway_mid_call(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	CHECK_INT_EQ(submit(1), 0);
	pump();
	CHECK_INT_EQ(srv.requests, 2);
	/* Stream 1 is being processed, stream 3 is not. */
	CHECK(nghttp2_submit_goaway(srv.h2, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, NULL, 0) == 0);
	pump();
	CHECK_INT_EQ(cli.goaways, 1);
	CHECK_INT_EQ(cli.goaway_last, 1);
	CHECK(!cli.res[0].done);
	CHECK(!grpc_client_session_failed(cli.s)); /* a graceful GOAWAY */
	CHECK(cli.res[1].done);
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_UNAVAILABLE);
	CHECK(!cli.res[1].reached);
	/* The call below last_stream_id still finishes. */
	srv_reply(1, "late", 4, "0");
	pump();
	CHECK(cli.res[0].done);
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_OK);
	CHECK_INT_EQ(cli.res[0].len, 4);
	/* No new stream after GOAWAY: refused at submit or when sent, never
	 * reaching the server. */
	int rc = submit(2);
	if (rc == 0) {
		pump();
		CHECK(cli.res[2].done);
		CHECK_INT_EQ(cli.res[2].status, GRPC_STATUS_UNAVAILABLE);
		CHECK(!cli.res[2].reached);
	} else {
		CHECK_INT_EQ(rc, MV_EUNAVAIL);
	}
	CHECK_INT_EQ(srv.requests, 2);
	stop();
}

static void test_cancel_and_detach(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	CHECK_INT_EQ(submit(1), 0);
	pump();
	grpc_client_session_cancel(cli.s, &cli.st[0]);
	CHECK_INT_EQ(cli.st[0].id, 0);
	pump();
	CHECK_INT_EQ(srv.rst_stream, 1);
	CHECK_INT_EQ(srv.rst_code, NGHTTP2_CANCEL);
	/* A detached stream's response is dropped: no report for either. */
	grpc_client_session_detach(cli.s, &cli.st[1]);
	srv_reply(3, "x", 1, "0");
	pump();
	CHECK_INT_EQ(cli.results, 0);
	stop();
}

static void test_oversized_response(void)
{
	srv_start();
	cli_start(16);
	CHECK_INT_EQ(submit(0), 0);
	pump();
	char big[100];
	memset(big, 'x', sizeof(big));
	srv_reply(1, big, sizeof(big), "0");
	pump();
	CHECK(cli.res[0].done);
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_RESOURCE_EXHAUSTED);
	CHECK_INT_EQ(srv.rst_stream, 1);
	CHECK_INT_EQ(srv.rst_code, NGHTTP2_CANCEL);
	CHECK_INT_EQ(cli.results, 1);
	stop();
}

static void test_malformed_frames(void)
{
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	pump();
	/* Garbage where a frame header belongs: a 16 MiB frame of type 0xee. */
	static const uint8_t junk[] = {0xff, 0xff, 0xff, 0xee, 0x00, 0x00, 0x00, 0x00, 0x01};
	int rc = grpc_client_session_recv(cli.s, junk, sizeof(junk));
	struct buf out;
	buf_init(&out, 0);
	int src = grpc_client_session_send(cli.s, &out, NULL);
	/* Either an error from recv, or the session answers with GOAWAY. */
	CHECK(rc == MV_EPROTO || (src == 0 && out.len > 0));
	if (src == 0 && out.len)
		nghttp2_session_mem_recv(srv.h2, (const uint8_t *)out.data, out.len);
	buf_release(&out);
	CHECK(rc == MV_EPROTO || srv.goaway_received);
	stop();

	/* DATA on stream 0 is a connection error (PROTOCOL_ERROR). */
	srv_start();
	cli_start(1024);
	CHECK_INT_EQ(submit(0), 0);
	pump();
	static const uint8_t data0[] = {0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 'x'};
	rc = grpc_client_session_recv(cli.s, data0, sizeof(data0));
	pump();
	CHECK(rc == MV_EPROTO || srv.goaway_received);
	CHECK(!grpc_client_session_want_write(cli.s));
	/* The session is over and says so: its stream will never close. */
	CHECK(grpc_client_session_failed(cli.s));
	CHECK_INT_EQ(cli.results, 0);
	stop();
}

static void test_stream_id_exhaustion(void)
{
	srv_start();
	cli_start(1024);
	CHECK(!grpc_client_session_ids_low(cli.s));
	CHECK_INT_EQ(grpc_client_session_max_streams(cli.s), 100);
	/* Just below the client's own limit: this stream is fine, the next
	 * id is past it and the owner retires the connection. */
	CHECK_INT_EQ(grpc_client_session_set_next_stream_id(cli.s, GRPC_CLIENT_MAX_STREAM_ID), 0);
	CHECK(!grpc_client_session_ids_low(cli.s));
	CHECK_INT_EQ(submit(0), 0);
	CHECK_INT_EQ(cli.st[0].id, GRPC_CLIENT_MAX_STREAM_ID);
	CHECK(grpc_client_session_ids_low(cli.s));
	/* Going backwards is refused. */
	CHECK_INT_EQ(grpc_client_session_set_next_stream_id(cli.s, 1), MV_EINVAL);
	/* At HTTP/2's last id, the next submit has no id left. */
	CHECK_INT_EQ(grpc_client_session_set_next_stream_id(cli.s, 0x7fffffff), 0);
	CHECK_INT_EQ(submit(1), 0);
	CHECK_INT_EQ(cli.st[1].id, 0x7fffffff);
	CHECK_INT_EQ(submit(2), MV_EUNAVAIL);
	CHECK_INT_EQ(cli.st[2].id, 0);
	pump();
	CHECK_INT_EQ(srv.requests, 2);
	srv_reply(GRPC_CLIENT_MAX_STREAM_ID, "a", 1, "0");
	srv_reply(0x7fffffff, "b", 1, "0");
	pump();
	CHECK_INT_EQ(cli.res[0].status, GRPC_STATUS_OK);
	CHECK_INT_EQ(cli.res[1].status, GRPC_STATUS_OK);
	/* Retiring: our GOAWAY reaches the server. */
	grpc_client_session_goaway(cli.s);
	pump();
	CHECK(srv.goaway_received);
	stop();
}

int main(void)
{
	RUN(test_unary_ok);
	RUN(test_trailers_only_error);
	RUN(test_http_status);
	RUN(test_rst_stream);
	RUN(test_goaway_mid_call);
	RUN(test_cancel_and_detach);
	RUN(test_oversized_response);
	RUN(test_malformed_frames);
	RUN(test_stream_id_exhaustion);
	return TEST_SUMMARY();
}
