/*
 * fuzz_grpc_client_session.c - libFuzzer target for the gRPC client session.
 *
 * The input is the byte stream a server sends on one connection (it should
 * start with the server's SETTINGS; the seeds do). Three unary calls are in
 * flight (streams 1, 3, 5) before the first byte arrives. The input is fed in
 * pseudo-random pieces, derived from a hash of the input so a crash
 * reproduces; after every piece the session's output is drained, and now and
 * then a call is started, cancelled or detached, as the channel does.
 *
 * Invariants checked (abort): each attempt is reported at most once, already
 * detached, with a status in 0..999 and a message; an OK carries at most
 * max_message_bytes; only open streams are reported.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../lib/grpc/client_internal.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/banned.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CALLS       8
#define MAX_MESSAGE 4096
#define MAX_PIECES  4096

struct fz_call {
	struct grpc_client_stream st;
	uint8_t req[GRPC_FRAME_HEADER + 4];
	bool open; /* submitted and not yet reported, cancelled or detached */
};

static struct {
	struct grpc_client_session *s;
	struct fz_call calls[CALLS];
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

static void on_result(void *user, struct grpc_client_stream *st, int status, const char *message,
                      const uint8_t *msg, size_t len, bool reached)
{
	struct fz_call *c = st->user;
	/* A server's grpc-status is passed through as sent (up to 3 digits). */
	if (!c->open || st->id != 0 || status < 0 || status > 999 || !message)
		abort();
	if (status == GRPC_STATUS_OK && (len > MAX_MESSAGE || (len && !msg)))
		abort();
	if (len)
		(void)msg[len - 1];
	c->open = false;
}

static void on_goaway(void *user, int32_t last, uint32_t code)
{
}

static void on_settings(void *user)
{
}

static void on_closed(void *user)
{
}

static const struct grpc_client_session_callbacks cbs = {on_result, on_goaway, on_settings,
                                                         on_closed};

static void call_start(struct fz_call *c)
{
	if (c->open)
		return;
	if (grpc_client_session_submit(fz.s, &c->st, "/MovieService/GetMovieDetails", 29,
	                               "movie:8083", "500m") == 0)
		c->open = true;
}

static void drain(void)
{
	struct buf out;
	buf_init(&out, 1 << 20);
	(void)grpc_client_session_send(fz.s, &out, NULL);
	buf_release(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	memset(&fz, 0, sizeof(fz));
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < size; i++)
		h = (h ^ data[i]) * 1099511628211ull;
	fz.rng = h | 1;
	if (grpc_client_session_new(&fz.s, &cbs, NULL, MAX_MESSAGE) != 0)
		return 0;
	for (size_t i = 0; i < CALLS; i++) {
		struct fz_call *c = &fz.calls[i];
		buf_init(&c->st.resp, MAX_MESSAGE + GRPC_FRAME_HEADER);
		c->req[4] = (uint8_t)(i % 5);
		memcpy(c->req + GRPC_FRAME_HEADER, "\x0a\x02id", 4);
		c->st.req = c->req;
		c->st.req_len = GRPC_FRAME_HEADER + i % 5;
		c->st.user = c;
	}
	for (size_t i = 0; i < 3; i++)
		call_start(&fz.calls[i]);
	drain();
	size_t off = 0;
	bool dead = false;
	for (int piece = 0; off < size && piece < MAX_PIECES && !dead; piece++) {
		uint64_t r = next_rand();
		size_t n = 1 + (size_t)(r % 512);
		if (n > size - off)
			n = size - off;
		if (grpc_client_session_recv(fz.s, data + off, n) != 0)
			dead = true; /* the connection layer closes here */
		off += n;
		struct fz_call *c = &fz.calls[(r >> 16) % CALLS];
		switch ((r >> 24) % 16) {
		case 0: call_start(c); break;
		case 1:
			if (c->open) {
				grpc_client_session_cancel(fz.s, &c->st);
				c->open = false;
			}
			break;
		case 2:
			if (c->open) {
				grpc_client_session_detach(fz.s, &c->st);
				c->open = false;
			}
			break;
		default: break;
		}
		drain();
	}
	for (size_t i = 0; i < CALLS; i++)
		if (fz.calls[i].open)
			grpc_client_session_detach(fz.s, &fz.calls[i].st);
	grpc_client_session_free(fz.s);
	for (size_t i = 0; i < CALLS; i++)
		buf_release(&fz.calls[i].st.resp);
	return 0;
}
