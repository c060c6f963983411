/*
 * fuzz_grpc_session.c - libFuzzer target for the gRPC server session.
 *
 * The input is the byte stream a client sends on one connection (the 24-byte
 * HTTP/2 client preface is prepended unless the input starts with it). It is
 * fed in pseudo-random pieces, derived from a hash of the input so a crash
 * reproduces, and the session's output is drained after every piece.
 *
 * Methods: a synchronous echo, an asynchronous unary handler whose calls are
 * finished on the next piece (OK or an error, some from inside their cancel
 * callback), a synchronous server-streaming handler and an asynchronous one
 * that sends one message per piece. Held calls outlive the session in half
 * of the runs: finishing an orphaned call must be safe.
 *
 * Invariant checked (abort): the session's active-call count equals
 * call_started minus the call_done reports that had started == true.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_HELD   16
#define MAX_PIECES 4096

static const uint8_t preface[24] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct held {
	struct grpc_call *call;
	bool streaming;
	int sent;
};

static struct {
	struct held held[MAX_HELD];
	size_t held_n;
	long started;
	long done_started;
	uint64_t rng;
} fz;

static uint64_t next_rand(void)
{
	/* xorshift64*: fixed per input, so failures reproduce. */
	fz.rng ^= fz.rng >> 12;
	fz.rng ^= fz.rng << 25;
	fz.rng ^= fz.rng >> 27;
	return fz.rng * 2685821657736338717ull;
}

static void held_drop(struct grpc_call *call)
{
	for (size_t i = 0; i < fz.held_n; i++) {
		if (fz.held[i].call == call) {
			fz.held[i] = fz.held[--fz.held_n];
			return;
		}
	}
}

static void hook_done(void *ctx, const struct grpc_method *method, const char *path, int status,
                      double seconds, bool started, const struct trace_span *span)
{
	if (status < 0 || status >= GRPC_STATUS_COUNT || !path)
		abort();
	if (started)
		fz.done_started++;
}

static void hook_started(void *ctx, const struct grpc_method *method)
{
	fz.started++;
}

static void hook_message(void *ctx, const struct grpc_method *method, bool sent)
{
	if (!method)
		abort();
}

/* Plain HTTP requests (h2c): answered at once, with or without a body. */
static void hook_http(void *ctx, struct grpc_call *call, const struct grpc_http_request *req)
{
	if (!req->method || !req->target || !req->content_type || (req->body_len && !req->body))
		abort();
	if (req->status != 0 && req->status != 413 && req->status != 503)
		abort();
	bool head = next_rand() & 1;
	grpc_call_respond_http(call, req->status ? req->status : 200, "text/plain", NULL, "body", 4,
	                       head);
}

static const struct grpc_session_hooks hooks = {
    .call_done = hook_done,
    .call_started = hook_started,
    .call_message = hook_message,
    .http_request = hook_http,
};

static void on_cancel(struct grpc_call *call, void *arg)
{
	if (!grpc_call_cancelled(call))
		abort();
	if (grpc_call_send(call, (const uint8_t *)"x", 1) != MV_ECLOSED)
		abort();
	if (next_rand() & 1) {
		held_drop(call);
		grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL, NULL, 0);
	}
}

static void h_echo(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, msg, len);
}

static void h_stream(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	grpc_call_send(call, msg, len);
	grpc_call_send(call, (const uint8_t *)"more", 4);
	grpc_call_finish(call, len ? GRPC_STATUS_OK : GRPC_STATUS_OUT_OF_RANGE, "empty\n", NULL, 0);
}

static void hold(struct grpc_call *call, bool streaming)
{
	if (fz.held_n == MAX_HELD) {
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "busy", NULL, 0);
		return;
	}
	grpc_call_on_cancel(call, on_cancel, NULL);
	fz.held[fz.held_n++] = (struct held){call, streaming, 0};
}

static void h_async(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	hold(call, false);
}

static void h_async_stream(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	hold(call, true);
}

/* Bidirectional streaming: echo each message, finish at half-close. */
static void h_bidi(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	if (!msg || grpc_call_send(call, msg, len) != 0)
		grpc_call_finish(call, GRPC_STATUS_OK, NULL, NULL, 0);
}

static const struct grpc_method methods[] = {
    {"/fuzz.F/Echo", "fuzz.F", "Echo", false, h_echo, NULL, NULL, false},
    {"/fuzz.F/Async", "fuzz.F", "Async", false, h_async, NULL, NULL, false},
    {"/fuzz.F/Stream", "fuzz.F", "Stream", true, h_stream, NULL, NULL, false},
    {"/fuzz.F/AsyncStream", "fuzz.F", "AsyncStream", true, h_async_stream, NULL, NULL, false},
    {"/fuzz.F/Bidi", "fuzz.F", "Bidi", false, h_bidi, NULL, NULL, true},
};

/* The asynchronous work of one loop turn: every held call moves on. */
static void progress_held(void)
{
	size_t i = 0;
	while (i < fz.held_n) {
		struct held *h = &fz.held[i];
		struct grpc_call *call = h->call;
		if (h->streaming && h->sent < 2 && !grpc_call_cancelled(call)) {
			if (grpc_call_send(call, (const uint8_t *)"part", 4) != 0)
				abort();
			h->sent++;
			i++;
			continue;
		}
		fz.held[i] = fz.held[--fz.held_n];
		if (next_rand() & 1)
			grpc_call_finish(call, GRPC_STATUS_OK, NULL, (const uint8_t *)"done", 4);
		else
			grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "not\tfound%", NULL, 0);
	}
}

static void check_active(const struct grpc_session *s)
{
	if ((long)grpc_session_active_calls(s) != fz.started - fz.done_started)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Small budgets and caps, so that inputs reach the reset and refusal
	 * paths; the process counter must come back to zero. */
	static _Atomic long process_bytes;
	static const struct grpc_session_limits limits = {
	    .max_message_bytes = 64,
	    .max_concurrent_streams = 8,
	    .max_header_bytes = 4096,
	    .max_pending_output = 256,
	    .max_buffered_request_bytes = 160,
	    .process_request_bytes = &process_bytes,
	    .max_process_request_bytes = 200,
	    .header_timeout_ns = 1000,
	    .request_timeout_ns = 2000,
	    .max_http_body_bytes = 32,
	};
	struct buf in, out;
	memset(&fz, 0, sizeof(fz));
	fz.rng = 0x9e3779b97f4a7c15ull;
	for (size_t i = 0; i < size; i++)
		fz.rng = (fz.rng ^ data[i]) * 1099511628211ull;
	fz.rng |= 1;

	buf_init(&in, 0);
	buf_init(&out, 1 << 24);
	if (size < sizeof(preface) || memcmp(data, preface, sizeof(preface)) != 0)
		buf_append(&in, preface, sizeof(preface));
	buf_append(&in, data, size);

	struct grpc_session *s =
	    grpc_session_new(methods, sizeof(methods) / sizeof(methods[0]), &limits, &hooks);
	if (!s)
		goto out;
	bool goaway = next_rand() % 4 == 0;
	size_t off = 0;
	for (int piece = 0; piece < MAX_PIECES && off < in.len; piece++) {
		size_t n = 1 + (size_t)(next_rand() % 64);
		if (n > in.len - off)
			n = in.len - off;
		int rc = grpc_session_recv(s, (const uint8_t *)in.data + off, n);
		off += n;
		check_active(s);
		progress_held();
		check_active(s);
		if (goaway && piece == 3)
			grpc_session_goaway(s);
		if (next_rand() % 8 == 0)
			grpc_session_expire(s, grpc_now_ns() + (int64_t)(next_rand() % 4000));
		buf_reset(&out);
		if (grpc_session_send(s, &out) != 0 || rc != 0)
			break;
	}
	buf_reset(&out);
	grpc_session_send(s, &out);
	grpc_session_want_io(s);
	if (next_rand() & 1) {
		/* The connection closes under the held calls. */
		grpc_session_free(s);
		s = NULL;
		progress_held();
		progress_held();
		progress_held();
	} else {
		progress_held();
		progress_held();
		progress_held();
		check_active(s);
		grpc_session_free(s);
	}
	if (fz.held_n || atomic_load(&process_bytes) != 0)
		abort();
out:
	buf_release(&out);
	buf_release(&in);
	return 0;
}
