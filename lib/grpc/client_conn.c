/*
 * gRPC client connection: one TCP connection (libuv) carrying one client
 * session (client_session.c), to one resolved address.
 *
 * Writes are batched: whoever produces output puts the connection on the
 * channel's flush list, and a uv_prepare handle (run once per loop iteration,
 * before the loop blocks) serializes and writes everything at once.
 *
 * A connection that receives GOAWAY, whose stream ids run low or whose
 * address disappeared is "draining": it takes no new calls, belongs only to
 * the channel list, and closes when its last stream ends. Nothing is freed
 * before libuv closes the handle (on_conn_close).
 */
#include "client_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "movie/banned.h"

static void conn_retire(struct grpc_client_conn *cn);
static void on_write(uv_write_t *req, int status);
static void on_flush(uv_prepare_t *p);

/* A connection stopped taking new calls: the one place the connections
 * gauge goes down (on_connect is the one place it goes up). */
static void conn_left_ready(struct grpc_channel *ch)
{
	if (!ch->ready_count)
		return;
	ch->ready_count--;
	metrics_gauge_add(ch->connections, -1);
}

/* Stream ids run low: no new stream here (conn_flush retires the connection). */
static bool conn_ids_low(const struct grpc_client_conn *cn)
{
	return grpc_client_session_ids_low(cn->session);
}

bool grpc_client_conn_usable(const struct grpc_client_conn *cn)
{
	if (cn->state != CONN_READY || cn->draining || !cn->session || conn_ids_low(cn))
		return false;
	return cn->calls.count < grpc_client_session_max_streams(cn->session);
}

static void on_session_goaway(void *user, int32_t last_stream_id, uint32_t error_code)
{
	struct grpc_client_conn *cn = user;
	if (!cn->draining) {
		log_info("grpc client: GOAWAY, draining connection", MV_LOG_S("peer", cn->ch->name),
		         MV_LOG_S("addr", cn->label), MV_LOG_I("last_stream_id", last_stream_id));
		conn_retire(cn);
	}
}

static void on_session_settings(void *user)
{
	struct grpc_client_conn *cn = user;
	/* A larger MAX_CONCURRENT_STREAMS may admit queued calls. */
	if (cn->ch->queue.count)
		grpc_channel_dispatch(cn->ch);
}

static void on_session_stream_closed(void *user)
{
	struct grpc_client_conn *cn = user;
	if (cn->ch->queue.count && !cn->draining)
		grpc_channel_dispatch(cn->ch);
	grpc_client_conn_maybe_finish_drain(cn);
}

static const struct grpc_client_session_callbacks session_callbacks = {
    .on_result = grpc_client_call_on_result,
    .on_goaway = on_session_goaway,
    .on_settings = on_session_settings,
    .on_stream_closed = on_session_stream_closed,
};

void grpc_client_conn_want_flush(struct grpc_client_conn *cn)
{
	struct grpc_channel *ch = cn->ch;
	if (cn->in_flush_list || cn->state == CONN_CLOSING)
		return;
	cn->in_flush_list = true;
	cn->flush_next = ch->flush_list;
	ch->flush_list = cn;
	if (!ch->flusher_active && !ch->closed) {
		ch->flusher_active = true;
		uv_prepare_start(&ch->flusher, on_flush);
	}
}

static void on_conn_close(uv_handle_t *h)
{
	struct grpc_client_conn *cn = h->data;
	struct grpc_channel *ch = cn->ch;
	if (cn->in_flush_list) {
		for (struct grpc_client_conn **p = &ch->flush_list; *p; p = &(*p)->flush_next) {
			if (*p == cn) {
				*p = cn->flush_next;
				break;
			}
		}
	}
	if (cn->prev)
		cn->prev->next = cn->next;
	else
		ch->conns = cn->next;
	if (cn->next)
		cn->next->prev = cn->prev;
	grpc_client_session_free(cn->session);
	buf_release(&cn->out);
	buf_release(&cn->wbuf);
	free(cn);
	ch->open_handles--;
	grpc_channel_maybe_free(ch);
}

/* Stop using the connection; calls still on it fail with UNAVAILABLE. */
void grpc_client_conn_fail(struct grpc_client_conn *cn, const char *why)
{
	struct grpc_channel *ch = cn->ch;
	if (cn->state == CONN_CLOSING)
		return;
	bool was_ready = cn->state == CONN_READY && !cn->draining;
	cn->state = CONN_CLOSING;
	if (was_ready)
		conn_left_ready(ch);
	struct grpc_client_addr *a = cn->addr;
	if (a) {
		a->conn = NULL;
		/* A connection that had worked reconnects at once; repeated
		 * failures back off. */
		int64_t wait = was_ready
		                   ? 0
		                   : grpc_backoff_ms(a->failures, RECONNECT_BASE_MS,
		                                     RECONNECT_CAP_MS, 0.2, grpc_channel_rand(ch));
		a->next_connect_ms = grpc_channel_now_ms(ch) + wait;
		cn->addr = NULL;
	}
	if (a && was_ready && !ch->closed)
		grpc_client_conn_open(ch, a); /* calls queue behind the reconnect meanwhile */
	if (why)
		log_debug("grpc client: connection closed", MV_LOG_S("peer", ch->name),
		          MV_LOG_S("addr", cn->label), MV_LOG_S("reason", why));
	size_t n = cn->calls.count;
	while (n-- && cn->calls.head) {
		struct grpc_client_call *c = cn->calls.head;
		grpc_client_call_failed(c, GRPC_STATUS_UNAVAILABLE, "connection lost",
		                        c->st.headers_sent);
	}
	uv_close((uv_handle_t *)&cn->tcp, on_conn_close);
	if (!ch->closed) {
		if (grpc_channel_now_ms(ch) - ch->last_resolve_ms >= MIN_RERESOLVE_MS)
			ch->last_resolve_ms = INT64_MIN / 2; /* tick re-resolves now */
		grpc_channel_fail_if_hopeless(ch);
	}
}

/* Take no new calls on `cn`: its open streams finish, then it closes
 * (grpc_client_conn_maybe_finish_drain); new calls go to a fresh connection to the same
 * address (or elsewhere). */
static void conn_retire(struct grpc_client_conn *cn)
{
	struct grpc_channel *ch = cn->ch;
	struct grpc_client_addr *a = cn->addr;
	if (cn->draining)
		return;
	cn->draining = true;
	if (cn->state == CONN_READY)
		conn_left_ready(ch);
	if (a) {
		a->conn = NULL;
		cn->addr = NULL;
		if (!ch->closed)
			grpc_client_conn_open(ch, a);
	}
}

void grpc_client_conn_maybe_finish_drain(struct grpc_client_conn *cn)
{
	if (cn->draining && cn->calls.count == 0 && cn->state != CONN_CLOSING && !cn->writing &&
	    cn->out.len == 0)
		grpc_client_conn_fail(cn, NULL);
}

static void conn_flush(struct grpc_client_conn *cn)
{
	if (cn->state == CONN_CLOSING || !cn->session)
		return;
	if (!cn->draining && conn_ids_low(cn)) {
		/* As grpc-go: retire the connection well before HTTP/2 runs out of
		 * client stream ids (2^31-1), telling the server with our GOAWAY.
		 * Done here, not where the last stream was submitted, so that no
		 * completion runs from inside grpc_channel_call. */
		log_info("grpc client: stream ids running low, replacing connection",
		         MV_LOG_S("peer", cn->ch->name), MV_LOG_S("addr", cn->label));
		grpc_client_session_goaway(cn->session);
		conn_retire(cn);
		if (cn->state == CONN_CLOSING)
			return;
	}
	const char *why = NULL;
	if (grpc_client_session_send(cn->session, &cn->out, &why) != 0) {
		grpc_client_conn_fail(cn, why);
		return;
	}
	if (cn->state == CONN_CLOSING)
		return;
	if (!cn->writing && cn->out.len) {
		uv_buf_t b = uv_buf_init(cn->out.data, (unsigned)cn->out.len);
		int n = uv_try_write((uv_stream_t *)&cn->tcp, &b, 1);
		if (n > 0) {
			buf_consume(&cn->out, (size_t)n);
		} else if (n < 0 && n != UV_EAGAIN) {
			grpc_client_conn_fail(cn, uv_strerror(n));
			return;
		}
		if (cn->out.len) {
			struct buf tmp = cn->wbuf;
			cn->wbuf = cn->out;
			cn->out = tmp;
			buf_reset(&cn->out);
			uv_buf_t wb = uv_buf_init(cn->wbuf.data, (unsigned)cn->wbuf.len);
			cn->wreq.data = cn;
			if (uv_write(&cn->wreq, (uv_stream_t *)&cn->tcp, &wb, 1, on_write) != 0) {
				grpc_client_conn_fail(cn, "write failed");
				return;
			}
			cn->writing = true;
		}
	}
	if (grpc_client_session_failed(cn->session)) {
		/* Our GOAWAY(error) is on its way (best effort): the session is
		 * over, so its calls fail now like on a reset. */
		grpc_client_conn_fail(cn, "HTTP/2 connection error");
		return;
	}
	grpc_client_conn_maybe_finish_drain(cn);
}

static void on_write(uv_write_t *req, int status)
{
	struct grpc_client_conn *cn = req->data;
	cn->writing = false;
	buf_reset(&cn->wbuf);
	if (status < 0) {
		grpc_client_conn_fail(cn, uv_strerror(status));
		return;
	}
	if (cn->out.len || (cn->session && grpc_client_session_want_write(cn->session)))
		grpc_client_conn_want_flush(cn);
	else
		grpc_client_conn_maybe_finish_drain(cn);
}

static void on_flush(uv_prepare_t *p)
{
	struct grpc_channel *ch = p->data;
	/* Flushing may queue more (a failed call retried elsewhere): bounded passes. */
	for (int pass = 0; pass < 4 && ch->flush_list; pass++) {
		struct grpc_client_conn *list = ch->flush_list;
		ch->flush_list = NULL;
		while (list) {
			struct grpc_client_conn *cn = list;
			list = cn->flush_next;
			cn->in_flush_list = false;
			cn->flush_next = NULL;
			conn_flush(cn);
		}
	}
	if (!ch->flush_list && ch->flusher_active) {
		ch->flusher_active = false;
		uv_prepare_stop(&ch->flusher);
	}
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b)
{
	struct grpc_client_conn *cn = h->data;
	b->base = (char *)cn->ch->read_buf;
	b->len = sizeof(cn->ch->read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct grpc_client_conn *cn = s->data;
	if (nread == 0 || cn->state == CONN_CLOSING)
		return;
	if (nread < 0) {
		grpc_client_conn_fail(cn, uv_strerror((int)nread));
		return;
	}
	int rc = grpc_client_session_recv(cn->session, (const uint8_t *)b->base, (size_t)nread);
	if (cn->state == CONN_CLOSING)
		return;
	if (rc) {
		grpc_client_conn_fail(cn, "HTTP/2 protocol error");
		return;
	}
	grpc_client_conn_want_flush(cn);
}

static void on_connect(uv_connect_t *req, int status)
{
	struct grpc_client_conn *cn = req->data;
	struct grpc_channel *ch = cn->ch;
	if (cn->state == CONN_CLOSING)
		return;
	if (status < 0) {
		if (cn->addr)
			cn->addr->failures++;
		log_debug("grpc client: connect failed", MV_LOG_S("peer", ch->name),
		          MV_LOG_S("addr", cn->label), MV_LOG_S("error", uv_strerror(status)));
		grpc_client_conn_fail(cn, NULL);
		return;
	}
	uv_tcp_nodelay(&cn->tcp, 1);
	if (grpc_client_session_new(&cn->session, &session_callbacks, cn, ch->max_message_bytes) !=
	    0) {
		grpc_client_conn_fail(cn, "out of memory");
		return;
	}
	if (uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0) {
		grpc_client_conn_fail(cn, "read_start failed");
		return;
	}
	if (cn->addr)
		cn->addr->failures = 0;
	cn->state = CONN_READY;
	if (!cn->draining) {
		ch->ready_count++;
		metrics_gauge_add(ch->connections, 1);
	}
	grpc_client_conn_want_flush(cn);
	if (ch->queue.count)
		grpc_channel_dispatch(ch);
}

/* Its address vanished from DNS (the address already forgot it): a working
 * connection drains, then closes; one still connecting closes now. */
void grpc_client_conn_orphan(struct grpc_client_conn *cn)
{
	cn->addr = NULL;
	if (cn->state == CONN_READY) {
		if (!cn->draining)
			conn_left_ready(cn->ch);
		cn->draining = true;
		grpc_client_conn_maybe_finish_drain(cn);
	} else {
		cn->draining = true;
		grpc_client_conn_fail(cn, "address removed");
	}
}

void grpc_client_conn_open(struct grpc_channel *ch, struct grpc_client_addr *a)
{
	struct grpc_client_conn *cn = calloc(1, sizeof(*cn));
	if (!cn)
		return;
	cn->ch = ch;
	cn->addr = a;
	cn->state = CONN_CONNECTING;
	buf_init(&cn->out, 0);
	buf_init(&cn->wbuf, 0);
	memcpy(cn->label, a->label, sizeof(cn->label));
	cn->authority = ch->targets[a->target].authority;
	cn->connect_deadline_ms = grpc_channel_now_ms(ch) + ch->connect_timeout_ms;
	if (uv_tcp_init(ch->loop, &cn->tcp) != 0) {
		free(cn);
		return;
	}
	cn->tcp.data = cn;
	cn->creq.data = cn;
	cn->next = ch->conns;
	if (ch->conns)
		ch->conns->prev = cn;
	ch->conns = cn;
	ch->open_handles++;
	a->conn = cn;
	int rc = uv_tcp_connect(&cn->creq, &cn->tcp, (const struct sockaddr *)&a->sa, on_connect);
	if (rc != 0) {
		a->failures++;
		grpc_client_conn_fail(cn, uv_strerror(rc));
	}
}
