/*
 * gRPC client channel: resolution, one HTTP/2 connection per address,
 * round-robin, deadlines, retries, GOAWAY draining.
 *
 * Layout: a channel owns addresses (one per resolved sockaddr), connections
 * (an address has at most one current connection; connections that received
 * GOAWAY or whose address disappeared are "draining" and belong only to the
 * channel list until their last stream ends) and calls. nghttp2 does the
 * HTTP/2 protocol; this file moves bytes with libuv.
 *
 * Timers: calls sit in one binary min-heap keyed by their next wake-up (the
 * deadline, or the end of a retry backoff) behind a single uv_timer, so a call
 * costs no timer handle. Connection upkeep (connect timeouts, reconnects,
 * re-resolution, closing drained connections) runs on a coarse tick.
 *
 * Writes are batched: whoever produces output puts the connection on the
 * channel's flush list, and a uv_prepare handle (run once per loop iteration,
 * before the loop blocks) serializes and writes everything at once.
 *
 * Re-entrancy: completion callbacks run inside nghttp2 and libuv callbacks and
 * may start calls or close the channel. Loops that complete calls pop the
 * list head each time; nothing is freed before libuv closes its handle.
 */
#include "movie/grpc_client.h"

#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <nghttp2/nghttp2.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "client_metrics.h"
#include "movie/banned.h"

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
#define STREAM_WINDOW    (1 << 20)
#define CONN_WINDOW      (4 << 20)
#define READ_BUF         65536
#define RETRY_TOKENS     100.0

enum call_state {
	CALL_QUEUED,
	CALL_BACKOFF,
	CALL_ACTIVE,
	CALL_NEW
};
enum conn_state {
	CONN_CONNECTING,
	CONN_READY,
	CONN_CLOSING
};

struct grpc_channel;
struct conn;
struct addr;

struct call {
	struct grpc_channel *ch;
	enum call_state state;
	int attempts;
	bool idempotent;
	bool headers_sent;     /* request HEADERS went out on this attempt */
	bool response_headers; /* this attempt got response headers */
	bool trailers;
	int http_status;
	int grpc_status; /* -1 until seen */
	int64_t deadline_ns;
	int64_t wake_ns;   /* heap key */
	size_t heap_index; /* SIZE_MAX when not in the heap */
	struct conn *conn; /* ACTIVE only */
	int32_t stream_id;
	const struct addr *last_addr; /* compared, never dereferenced */
	struct call *next, *prev;     /* channel queue or connection list */
	struct buf resp;
	char message[128]; /* decoded grpc-message */
	grpc_client_done_fn done;
	void *arg;
	struct client_method_metrics *metrics; /* NULL: not counted */
	int64_t start_ns;
	size_t path_len;
	size_t req_len; /* framed request length */
	size_t req_sent;
	char *path;   /* points into data[] */
	uint8_t *req; /* points into data[] */
	uint8_t data[];
};

struct call_list {
	struct call *head, *tail;
	size_t count;
};

struct conn {
	struct grpc_channel *ch;
	struct addr *addr; /* NULL once draining */
	enum conn_state state;
	bool draining;
	bool writing;
	bool in_flush_list;
	uv_tcp_t tcp;
	uv_connect_t creq;
	uv_write_t wreq;
	nghttp2_session *h2;
	struct buf out;
	struct buf wbuf;
	struct call_list calls;
	int64_t connect_deadline_ms;
	char label[64]; /* "127.0.0.1:8081", "[::1]:8081" */
	const char *authority;
	struct conn *next, *prev; /* channel list */
	struct conn *flush_next;
};

struct addr {
	struct sockaddr_storage sa;
	socklen_t sa_len;
	size_t target; /* index of the target that produced it */
	bool seen;     /* in the latest resolution of its target */
	struct conn *conn;
	int failures; /* consecutive connect failures */
	int64_t next_connect_ms;
	char label[64];
};

struct target {
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

	struct target *targets;
	size_t target_count;
	int64_t last_resolve_ms;

	struct addr *addrs[MAX_ADDRS];
	size_t addr_count;
	size_t rr;

	struct conn *conns;
	struct conn *flush_list;
	size_t ready_count;

	struct call_list queue; /* waiting for a connection with stream capacity */
	struct call **heap;
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

static void call_attempt(struct call *c);
static void call_attempt_failed(struct call *c, int status, const char *message, bool reached);
static void conn_fail(struct conn *cn, const char *why);
static void conn_want_flush(struct conn *cn);
static void channel_maybe_free(struct grpc_channel *ch);
static void queue_dispatch(struct grpc_channel *ch);
static void conn_open(struct grpc_channel *ch, struct addr *a);
static void conn_retire(struct conn *cn);
static void on_write(uv_write_t *req, int status);
static void on_call_timer(uv_timer_t *t);
static void on_flush(uv_prepare_t *p);

/* ---- small helpers ---- */

static double rng_next(struct grpc_channel *ch)
{
	/* xorshift64*: jitter only, not security. */
	uint64_t x = ch->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ch->rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

static int64_t loop_ms(const struct grpc_channel *ch)
{
	return (int64_t)uv_now(ch->loop);
}

static void list_push(struct call_list *l, struct call *c)
{
	c->next = NULL;
	c->prev = l->tail;
	if (l->tail)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->count++;
}

static void list_remove(struct call_list *l, struct call *c)
{
	if (c->prev)
		c->prev->next = c->next;
	else
		l->head = c->next;
	if (c->next)
		c->next->prev = c->prev;
	else
		l->tail = c->prev;
	c->next = c->prev = NULL;
	l->count--;
}

/* ---- deadline / backoff heap ---- */

static void heap_swap(struct call **h, size_t a, size_t b)
{
	struct call *t = h[a];
	h[a] = h[b];
	h[b] = t;
	h[a]->heap_index = a;
	h[b]->heap_index = b;
}

static void heap_up(struct call **h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h[p]->wake_ns <= h[i]->wake_ns)
			break;
		heap_swap(h, p, i);
		i = p;
	}
}

static void heap_down(struct call **h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && h[l]->wake_ns < h[m]->wake_ns)
			m = l;
		if (r < n && h[r]->wake_ns < h[m]->wake_ns)
			m = r;
		if (m == i)
			return;
		heap_swap(h, i, m);
		i = m;
	}
}

static void heap_remove(struct grpc_channel *ch, struct call *c)
{
	size_t i = c->heap_index;
	if (i == SIZE_MAX)
		return;
	c->heap_index = SIZE_MAX;
	ch->heap_len--;
	if (i == ch->heap_len)
		return;
	ch->heap[i] = ch->heap[ch->heap_len];
	ch->heap[i]->heap_index = i;
	heap_down(ch->heap, ch->heap_len, i);
	heap_up(ch->heap, i);
}

static void timer_arm(struct grpc_channel *ch)
{
	if (ch->closed || ch->heap_len == 0)
		return;
	int64_t top = ch->heap[0]->wake_ns;
	if (ch->timer_armed_ns && ch->timer_armed_ns <= top)
		return;
	int64_t delta = top - grpc_now_ns();
	uint64_t ms = delta <= 0 ? 0 : (uint64_t)((delta + 999999) / 1000000);
	ch->timer_armed_ns = top;
	uv_timer_start(&ch->call_timer, on_call_timer, ms, 0);
}

/* Capacity was reserved in grpc_channel_call, so this cannot fail. */
static void heap_set(struct grpc_channel *ch, struct call *c, int64_t wake_ns)
{
	heap_remove(ch, c);
	c->wake_ns = wake_ns;
	c->heap_index = ch->heap_len;
	ch->heap[ch->heap_len++] = c;
	heap_up(ch->heap, c->heap_index);
	timer_arm(ch);
}

/* ---- metrics ---- */

static void metrics_setup(struct grpc_channel *ch, struct metrics_registry *reg)
{
	if (!reg)
		return;
	static const char *const peer[] = {"peer"};
	client_metrics_init(&ch->call_metrics, reg);
	struct metrics_family *f = metrics_counter_family(
	    reg, "grpc_client_retries_total", "Client call attempts that were retries.", 1, peer);
	const char *values[] = {ch->name};
	if (f)
		ch->retries = metrics_counter_get(f, values);
	f = metrics_gauge_family(reg, "grpc_client_connections",
	                         "Established HTTP/2 connections accepting new calls.", 1, peer);
	if (f)
		ch->connections = metrics_gauge_get(f, values);
	f = metrics_gauge_family(reg, "grpc_client_calls_in_flight",
	                         "Client calls started and not yet completed (any attempt state).",
	                         1, peer);
	if (f)
		ch->in_flight = metrics_gauge_get(f, values);
}

static void metrics_handled(struct grpc_channel *ch, struct call *c, int status)
{
	client_metrics_handled(&ch->call_metrics, c->metrics, status,
	                       (double)(grpc_now_ns() - c->start_ns) / 1e9);
}

/* ---- calls ---- */

static void call_free(struct call *c)
{
	struct grpc_channel *ch = c->ch;
	heap_remove(ch, c);
	buf_release(&c->resp);
	ch->call_count--;
	metrics_gauge_add(ch->in_flight, -1);
	free(c);
}

/* Detach from its connection (or the queue) without touching the budget. */
static void call_detach(struct call *c)
{
	struct grpc_channel *ch = c->ch;
	if (c->state == CALL_ACTIVE && c->conn) {
		struct conn *cn = c->conn;
		list_remove(&cn->calls, c);
		if (cn->h2 && c->stream_id > 0) {
			nghttp2_session_set_stream_user_data(cn->h2, c->stream_id, NULL);
			conn_want_flush(cn);
		}
		c->conn = NULL;
		c->stream_id = 0;
	} else if (c->state == CALL_QUEUED) {
		list_remove(&ch->queue, c);
	}
	c->state = CALL_NEW;
}

static void call_complete(struct call *c, int status, const char *message, const uint8_t *resp,
                          size_t len)
{
	struct grpc_channel *ch = c->ch;
	call_detach(c);
	heap_remove(ch, c);
	metrics_handled(ch, c, status);
	grpc_client_done_fn done = c->done;
	void *arg = c->arg;
	/* The response lives in c->resp: free after the callback. */
	done(arg, status, message ? message : "", resp, len);
	call_free(c);
}

/* Abandon the stream of an active call (deadline): tell the server. */
static void call_cancel_stream(struct call *c)
{
	if (c->state == CALL_ACTIVE && c->conn && c->conn->h2 && c->stream_id > 0) {
		nghttp2_submit_rst_stream(c->conn->h2, NGHTTP2_FLAG_NONE, c->stream_id,
		                          NGHTTP2_CANCEL);
		conn_want_flush(c->conn);
	}
}

static void call_on_timer(struct call *c)
{
	if (c->state == CALL_BACKOFF && grpc_now_ns() < c->deadline_ns) {
		c->state = CALL_NEW;
		heap_set(c->ch, c, c->deadline_ns);
		call_attempt(c);
		return;
	}
	call_cancel_stream(c);
	call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0);
}

static void on_call_timer(uv_timer_t *t)
{
	struct grpc_channel *ch = t->data;
	ch->timer_armed_ns = 0;
	int64_t now = grpc_now_ns();
	/* Bounded: each pass removes the top or moves it past `now`. */
	while (!ch->closed && ch->heap_len && ch->heap[0]->wake_ns <= now) {
		struct call *c = ch->heap[0];
		heap_remove(ch, c);
		call_on_timer(c);
	}
	timer_arm(ch);
}

int grpc_status_from_http(int http)
{
	switch (http) {
	case 400: return GRPC_STATUS_INTERNAL;
	case 401: return GRPC_STATUS_UNAUTHENTICATED;
	case 403: return GRPC_STATUS_PERMISSION_DENIED;
	case 404: return GRPC_STATUS_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504: return GRPC_STATUS_UNAVAILABLE;
	default: return GRPC_STATUS_UNKNOWN;
	}
}

/*
 * One attempt failed with `status`. UNAVAILABLE is retried (after backoff, on
 * another address when there is one) if attempts and budget remain, the
 * backoff fits before the deadline, and the call is idempotent or the request
 * never reached a server (`reached` false).
 */
static void call_attempt_failed(struct call *c, int status, const char *message, bool reached)
{
	struct grpc_channel *ch = c->ch;
	call_detach(c);
	if (status != GRPC_STATUS_UNAVAILABLE || ch->closed) {
		call_complete(c, status, message, NULL, 0);
		return;
	}
	/* A request that never reached a server is retried transparently (as
	 * gRPC does): it costs no budget, so a GOAWAY or a dead connection
	 * during a rolling restart cannot exhaust it. */
	if (reached)
		grpc_retry_budget_on_failure(&ch->budget);
	if (c->attempts >= ch->max_attempts || (reached && !c->idempotent) ||
	    (reached && !grpc_retry_budget_allows(&ch->budget))) {
		call_complete(c, status, message, NULL, 0);
		return;
	}
	int64_t wait_ms =
	    grpc_backoff_ms(c->attempts, RETRY_BASE_MS, RETRY_CAP_MS, 0.5, rng_next(ch));
	int64_t wake = grpc_now_ns() + wait_ms * 1000000;
	if (wake >= c->deadline_ns) {
		call_complete(c, status, message, NULL, 0);
		return;
	}
	metrics_counter_inc(ch->retries);
	c->state = CALL_BACKOFF;
	heap_set(ch, c, wake);
}

static ssize_t req_read_cb(nghttp2_session *h2, int32_t stream_id, uint8_t *dest, size_t length,
                           uint32_t *data_flags, nghttp2_data_source *source, void *user_data)
{
	/* Look the call up by stream: a detached call may already be freed. */
	struct call *c = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (!c)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	size_t n = c->req_len - c->req_sent;
	if (n > length)
		n = length;
	memcpy(dest, c->req + c->req_sent, n);
	c->req_sent += n;
	if (c->req_sent == c->req_len)
		*data_flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

static nghttp2_nv make_nv(const char *name, const char *value, size_t value_len)
{
	nghttp2_nv nv = {(uint8_t *)(uintptr_t)name, (uint8_t *)(uintptr_t)value, strlen(name),
	                 value_len, NGHTTP2_NV_FLAG_NO_COPY_NAME};
	return nv;
}

/* Stream ids run low: no new stream here (conn_flush retires the connection). */
static bool conn_ids_low(const struct conn *cn)
{
	return nghttp2_session_get_next_stream_id(cn->h2) > GRPC_CLIENT_MAX_STREAM_ID;
}

static bool conn_usable(const struct conn *cn)
{
	if (cn->state != CONN_READY || cn->draining || !cn->h2 || conn_ids_low(cn))
		return false;
	uint32_t max =
	    nghttp2_session_get_remote_settings(cn->h2, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	return cn->calls.count < max;
}

/* Round-robin over usable connections, avoiding `avoid` when another exists. */
static struct conn *channel_pick(struct grpc_channel *ch, const struct addr *avoid)
{
	size_t n = ch->addr_count;
	struct conn *fallback = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t idx = (ch->rr + i) % n;
		struct addr *a = ch->addrs[idx];
		if (!a->conn || !conn_usable(a->conn))
			continue;
		if (a == avoid && n > 1) {
			fallback = a->conn;
			continue;
		}
		ch->rr = idx + 1;
		return a->conn;
	}
	return fallback;
}

/* Submit the call on `cn`. Returns 0, or a negative nghttp2 error. */
static int call_submit(struct call *c, struct conn *cn)
{
	char timeout[24];
	int rc = grpc_deadline_header(c->deadline_ns, grpc_now_ns(), timeout, sizeof(timeout));
	if (rc)
		return rc;
	nghttp2_nv nv[] = {
	    make_nv(":method", "POST", 4),
	    make_nv(":scheme", "http", 4),
	    make_nv(":path", c->path, c->path_len),
	    make_nv(":authority", cn->authority, strlen(cn->authority)),
	    make_nv("content-type", "application/grpc", 16),
	    make_nv("te", "trailers", 8),
	    make_nv("grpc-timeout", timeout, strlen(timeout)),
	    make_nv("user-agent", "movie-grpc-c/0.1", 16),
	};
	nghttp2_data_provider prd = {.source.ptr = NULL, .read_callback = req_read_cb};
	int32_t id = nghttp2_submit_request(cn->h2, NULL, nv, sizeof(nv) / sizeof(nv[0]), &prd, c);
	if (id < 0)
		return id;
	c->stream_id = id;
	c->conn = cn;
	c->state = CALL_ACTIVE;
	c->req_sent = 0;
	c->headers_sent = false;
	c->response_headers = false;
	c->trailers = false;
	c->http_status = 0;
	c->grpc_status = -1;
	c->message[0] = '\0';
	buf_reset(&c->resp);
	c->last_addr = cn->addr;
	list_push(&cn->calls, c);
	conn_want_flush(cn);
	return 0;
}

static bool channel_connecting(const struct grpc_channel *ch)
{
	for (size_t i = 0; i < ch->addr_count; i++) {
		const struct conn *cn = ch->addrs[i]->conn;
		if (cn && cn->state != CONN_CLOSING)
			return true;
	}
	return false;
}

static bool channel_resolving(const struct grpc_channel *ch)
{
	for (size_t i = 0; i < ch->target_count; i++)
		if (ch->targets[i].resolving)
			return true;
	return false;
}

/* Start (or re-start) an attempt: submit now, or wait in the queue. */
static void call_attempt(struct call *c)
{
	struct grpc_channel *ch = c->ch;
	if (grpc_now_ns() >= c->deadline_ns) {
		call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0);
		return;
	}
	c->attempts++;
	struct conn *cn = channel_pick(ch, c->last_addr);
	if (cn) {
		int rc = call_submit(c, cn);
		if (rc == 0)
			return;
		if (rc == MV_ETIMEDOUT) {
			call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL,
			              0);
			return;
		}
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "stream not started", false);
		return;
	}
	if (!channel_connecting(ch) && !channel_resolving(ch) && ch->ready_count == 0) {
		/* Every address is down (or none resolved): fail fast, the retry
		 * policy decides whether to wait. */
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "no connection to the peer", false);
		return;
	}
	c->state = CALL_QUEUED;
	list_push(&ch->queue, c);
}

/* Hand queued calls to connections with free stream slots (FIFO). */
static void queue_dispatch(struct grpc_channel *ch)
{
	size_t budget = ch->queue.count;
	while (budget-- && ch->queue.head && !ch->closed) {
		struct call *c = ch->queue.head;
		struct conn *cn = channel_pick(ch, NULL);
		if (!cn)
			return;
		list_remove(&ch->queue, c);
		c->state = CALL_NEW;
		int rc = call_submit(c, cn);
		if (rc == MV_ETIMEDOUT)
			call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL,
			              0);
		else if (rc)
			call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "stream not started",
			                    false);
	}
}

/* No connection can come up soon: queued calls fail (and maybe retry later). */
static void queue_fail_if_hopeless(struct grpc_channel *ch)
{
	if (ch->ready_count || channel_connecting(ch) || channel_resolving(ch))
		return;
	size_t n = ch->queue.count;
	while (n-- && ch->queue.head && !ch->closed)
		call_attempt_failed(ch->queue.head, GRPC_STATUS_UNAVAILABLE,
		                    "no connection to the peer", false);
}

/* ---- nghttp2 callbacks ---- */

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
	struct call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (!c)
		return 0;
	if (name_is(name, namelen, ":status", 7)) {
		int v = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			v = v * 10 + (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
		c->http_status = v;
	} else if (name_is(name, namelen, "grpc-status", 11)) {
		int v = 0;
		bool ok = valuelen > 0 && valuelen <= 3;
		for (size_t i = 0; ok && i < valuelen; i++) {
			if (value[i] < '0' || value[i] > '9')
				ok = false;
			else
				v = v * 10 + (value[i] - '0');
		}
		c->grpc_status = ok ? v : GRPC_STATUS_UNKNOWN;
	} else if (name_is(name, namelen, "grpc-message", 12)) {
		grpc_message_decode((const char *)value, valuelen, c->message, sizeof(c->message));
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	struct conn *cn = user_data;
	if (frame->hd.type == NGHTTP2_HEADERS) {
		struct call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (!c)
			return 0;
		if (frame->headers.cat == NGHTTP2_HCAT_RESPONSE)
			c->response_headers = true;
		else if (frame->headers.cat == NGHTTP2_HCAT_HEADERS)
			c->trailers = true;
	} else if (frame->hd.type == NGHTTP2_GOAWAY) {
		if (!cn->draining) {
			log_info("grpc client: GOAWAY, draining connection",
			         LOG_S("peer", cn->ch->name), LOG_S("addr", cn->label),
			         LOG_I("last_stream_id", frame->goaway.last_stream_id));
			conn_retire(cn);
		}
	} else if (frame->hd.type == NGHTTP2_SETTINGS && !(frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		/* A larger MAX_CONCURRENT_STREAMS may admit queued calls. */
		if (cn->ch->queue.count)
			queue_dispatch(cn->ch);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *h2, const nghttp2_frame *frame, void *user_data)
{
	if (frame->hd.type == NGHTTP2_HEADERS) {
		struct call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
		if (c)
			c->headers_sent = true;
	}
	return 0;
}

static int on_frame_not_send(nghttp2_session *h2, const nghttp2_frame *frame, int lib_error,
                             void *user_data)
{
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	struct call *c = nghttp2_session_get_stream_user_data(h2, frame->hd.stream_id);
	if (c)
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "stream refused", false);
	return 0;
}

static int on_data_chunk(nghttp2_session *h2, uint8_t flags, int32_t stream_id, const uint8_t *data,
                         size_t len, void *user_data)
{
	struct call *c = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (!c)
		return 0;
	if (buf_append(&c->resp, data, len) != 0) {
		call_cancel_stream(c);
		call_complete(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
		              "response larger than max_message_bytes", NULL, 0);
	}
	return 0;
}

static void call_finish_stream(struct call *c, uint32_t error_code)
{
	struct grpc_channel *ch = c->ch;
	if (c->grpc_status >= 0 && (c->trailers || c->response_headers)) {
		if (c->grpc_status != GRPC_STATUS_OK) {
			if (c->grpc_status == GRPC_STATUS_UNAVAILABLE) {
				call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, c->message, true);
				return;
			}
			call_complete(c, c->grpc_status, c->message, NULL, 0);
			return;
		}
		const uint8_t *msg;
		size_t msg_len;
		int rc = grpc_frame_decode_single((const uint8_t *)c->resp.data, c->resp.len,
		                                  ch->max_message_bytes, &msg, &msg_len);
		if (rc == MV_ETOOBIG) {
			call_complete(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
			              "response larger than max_message_bytes", NULL, 0);
			return;
		}
		if (rc) {
			call_complete(c, GRPC_STATUS_INTERNAL,
			              "response is not exactly one uncompressed message", NULL, 0);
			return;
		}
		grpc_retry_budget_on_success(&ch->budget);
		call_complete(c, GRPC_STATUS_OK, "", msg, msg_len);
		return;
	}
	if (c->response_headers && c->http_status != 200) {
		int st = grpc_status_from_http(c->http_status);
		char why[48];
		snprintf(why, sizeof(why), "HTTP status %d", c->http_status);
		if (st == GRPC_STATUS_UNAVAILABLE)
			call_attempt_failed(c, st, why, true);
		else
			call_complete(c, st, why, NULL, 0);
		return;
	}
	if (error_code == NGHTTP2_REFUSED_STREAM) {
		/* GOAWAY below this stream, or RST REFUSED_STREAM: never processed. */
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "stream refused", false);
		return;
	}
	if (!c->response_headers) {
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "stream reset before response",
		                    c->headers_sent);
		return;
	}
	if (error_code == NGHTTP2_CANCEL) {
		call_complete(c, GRPC_STATUS_CANCELLED, "stream cancelled by the server", NULL, 0);
		return;
	}
	call_complete(c, GRPC_STATUS_INTERNAL, "response without grpc-status", NULL, 0);
}

static void conn_maybe_finish_drain(struct conn *cn);

static int on_stream_close(nghttp2_session *h2, int32_t stream_id, uint32_t error_code,
                           void *user_data)
{
	struct conn *cn = user_data;
	struct call *c = nghttp2_session_get_stream_user_data(h2, stream_id);
	if (c)
		call_finish_stream(c, error_code);
	if (cn->ch->queue.count && !cn->draining)
		queue_dispatch(cn->ch);
	conn_maybe_finish_drain(cn);
	return 0;
}

/* ---- connections ---- */

static void conn_want_flush(struct conn *cn)
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
	struct conn *cn = h->data;
	struct grpc_channel *ch = cn->ch;
	if (cn->in_flush_list) {
		for (struct conn **p = &ch->flush_list; *p; p = &(*p)->flush_next) {
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
	if (cn->h2)
		nghttp2_session_del(cn->h2);
	buf_release(&cn->out);
	buf_release(&cn->wbuf);
	free(cn);
	ch->open_handles--;
	channel_maybe_free(ch);
}

/* Stop using the connection; calls still on it fail with UNAVAILABLE. */
static void conn_fail(struct conn *cn, const char *why)
{
	struct grpc_channel *ch = cn->ch;
	if (cn->state == CONN_CLOSING)
		return;
	bool was_ready = cn->state == CONN_READY && !cn->draining;
	cn->state = CONN_CLOSING;
	if (was_ready && ch->ready_count) {
		ch->ready_count--;
		metrics_gauge_add(ch->connections, -1);
	}
	struct addr *a = cn->addr;
	if (a) {
		a->conn = NULL;
		/* A connection that had worked reconnects at once; repeated
		 * failures back off. */
		int64_t wait = was_ready ? 0
		                         : grpc_backoff_ms(a->failures, RECONNECT_BASE_MS,
		                                           RECONNECT_CAP_MS, 0.2, rng_next(ch));
		a->next_connect_ms = loop_ms(ch) + wait;
		cn->addr = NULL;
	}
	if (a && was_ready && !ch->closed)
		conn_open(ch, a); /* calls queue behind the reconnect meanwhile */
	if (why)
		log_debug("grpc client: connection closed", LOG_S("peer", ch->name),
		          LOG_S("addr", cn->label), LOG_S("reason", why));
	size_t n = cn->calls.count;
	while (n-- && cn->calls.head) {
		struct call *c = cn->calls.head;
		call_attempt_failed(c, GRPC_STATUS_UNAVAILABLE, "connection lost", c->headers_sent);
	}
	uv_close((uv_handle_t *)&cn->tcp, on_conn_close);
	if (!ch->closed) {
		if (loop_ms(ch) - ch->last_resolve_ms >= MIN_RERESOLVE_MS)
			ch->last_resolve_ms = INT64_MIN / 2; /* tick re-resolves now */
		queue_fail_if_hopeless(ch);
	}
}

/* Take no new calls on `cn`: its open streams finish, then it closes
 * (conn_maybe_finish_drain); new calls go to a fresh connection to the same
 * address (or elsewhere). */
static void conn_retire(struct conn *cn)
{
	struct grpc_channel *ch = cn->ch;
	struct addr *a = cn->addr;
	if (cn->draining)
		return;
	cn->draining = true;
	if (cn->state == CONN_READY && ch->ready_count) {
		ch->ready_count--;
		metrics_gauge_add(ch->connections, -1);
	}
	if (a) {
		a->conn = NULL;
		cn->addr = NULL;
		if (!ch->closed)
			conn_open(ch, a);
	}
}

static void conn_maybe_finish_drain(struct conn *cn)
{
	if (cn->draining && cn->calls.count == 0 && cn->state != CONN_CLOSING && !cn->writing &&
	    cn->out.len == 0)
		conn_fail(cn, NULL);
}

static void conn_flush(struct conn *cn)
{
	if (cn->state == CONN_CLOSING || !cn->h2)
		return;
	if (!cn->draining && conn_ids_low(cn)) {
		/* As grpc-go: retire the connection well before HTTP/2 runs out of
		 * client stream ids (2^31-1), telling the server with our GOAWAY.
		 * Done here, not where the last stream was submitted, so that no
		 * completion runs from inside grpc_channel_call. */
		log_info("grpc client: stream ids running low, replacing connection",
		         LOG_S("peer", cn->ch->name), LOG_S("addr", cn->label));
		nghttp2_submit_goaway(cn->h2, NGHTTP2_FLAG_NONE, 0, NGHTTP2_NO_ERROR, NULL, 0);
		conn_retire(cn);
		if (cn->state == CONN_CLOSING)
			return;
	}
	for (int guard = 0; guard < 1024; guard++) {
		const uint8_t *data;
		ssize_t n = nghttp2_session_mem_send(cn->h2, &data);
		if (n < 0) {
			conn_fail(cn, nghttp2_strerror((int)n));
			return;
		}
		if (n == 0)
			break;
		if (buf_append(&cn->out, data, (size_t)n) != 0) {
			conn_fail(cn, "out of memory");
			return;
		}
	}
	if (cn->state == CONN_CLOSING)
		return;
	if (!cn->writing && cn->out.len) {
		uv_buf_t b = uv_buf_init(cn->out.data, (unsigned)cn->out.len);
		int n = uv_try_write((uv_stream_t *)&cn->tcp, &b, 1);
		if (n > 0) {
			buf_consume(&cn->out, (size_t)n);
		} else if (n < 0 && n != UV_EAGAIN) {
			conn_fail(cn, uv_strerror(n));
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
				conn_fail(cn, "write failed");
				return;
			}
			cn->writing = true;
		}
	}
	conn_maybe_finish_drain(cn);
}

static void on_write(uv_write_t *req, int status)
{
	struct conn *cn = req->data;
	cn->writing = false;
	buf_reset(&cn->wbuf);
	if (status < 0) {
		conn_fail(cn, uv_strerror(status));
		return;
	}
	if (cn->out.len || (cn->h2 && nghttp2_session_want_write(cn->h2)))
		conn_want_flush(cn);
	else
		conn_maybe_finish_drain(cn);
}

static void on_flush(uv_prepare_t *p)
{
	struct grpc_channel *ch = p->data;
	/* Flushing may queue more (a failed call retried elsewhere): bounded passes. */
	for (int pass = 0; pass < 4 && ch->flush_list; pass++) {
		struct conn *list = ch->flush_list;
		ch->flush_list = NULL;
		while (list) {
			struct conn *cn = list;
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
	struct conn *cn = h->data;
	b->base = (char *)cn->ch->read_buf;
	b->len = sizeof(cn->ch->read_buf);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *b)
{
	struct conn *cn = s->data;
	if (nread == 0 || cn->state == CONN_CLOSING)
		return;
	if (nread < 0) {
		conn_fail(cn, uv_strerror((int)nread));
		return;
	}
	ssize_t n = nghttp2_session_mem_recv(cn->h2, (const uint8_t *)b->base, (size_t)nread);
	if (cn->state == CONN_CLOSING)
		return;
	if (n < 0 || n != nread) {
		conn_fail(cn, "HTTP/2 protocol error");
		return;
	}
	conn_want_flush(cn);
}

static int conn_start_h2(struct conn *cn)
{
	nghttp2_session_callbacks *cbs;
	nghttp2_option *opt;
	int rc = MV_ENOMEM;
	if (nghttp2_session_callbacks_new(&cbs) != 0)
		return MV_ENOMEM;
	nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_frame_not_send_callback(cbs, on_frame_not_send);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk);
	nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	if (nghttp2_option_new(&opt) != 0)
		goto fail_callbacks;
	/* Bound what a misbehaving server can make us queue. */
	nghttp2_option_set_max_outbound_ack(opt, 1000);
	nghttp2_option_set_max_settings(opt, 32);
	nghttp2_option_set_peer_max_concurrent_streams(opt, 100);
	if (nghttp2_session_client_new2(&cn->h2, cbs, cn, opt) != 0)
		goto fail_option;
	nghttp2_settings_entry settings[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, STREAM_WINDOW},
	    {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
	};
	if (nghttp2_submit_settings(cn->h2, NGHTTP2_FLAG_NONE, settings,
	                            sizeof(settings) / sizeof(settings[0])) != 0)
		goto fail_session;
	nghttp2_session_set_local_window_size(cn->h2, NGHTTP2_FLAG_NONE, 0, CONN_WINDOW);
	rc = 0;
	goto fail_option; /* success: only the temporaries go */

fail_session:
	nghttp2_session_del(cn->h2);
	cn->h2 = NULL;
fail_option:
	nghttp2_option_del(opt);
fail_callbacks:
	nghttp2_session_callbacks_del(cbs);
	return rc;
}

static void on_connect(uv_connect_t *req, int status)
{
	struct conn *cn = req->data;
	struct grpc_channel *ch = cn->ch;
	if (cn->state == CONN_CLOSING)
		return;
	if (status < 0) {
		if (cn->addr)
			cn->addr->failures++;
		log_debug("grpc client: connect failed", LOG_S("peer", ch->name),
		          LOG_S("addr", cn->label), LOG_S("error", uv_strerror(status)));
		conn_fail(cn, NULL);
		return;
	}
	uv_tcp_nodelay(&cn->tcp, 1);
	if (conn_start_h2(cn) != 0) {
		conn_fail(cn, "out of memory");
		return;
	}
	if (uv_read_start((uv_stream_t *)&cn->tcp, on_alloc, on_read) != 0) {
		conn_fail(cn, "read_start failed");
		return;
	}
	if (cn->addr)
		cn->addr->failures = 0;
	cn->state = CONN_READY;
	if (!cn->draining) {
		ch->ready_count++;
		metrics_gauge_add(ch->connections, 1);
	}
	conn_want_flush(cn);
	if (ch->queue.count)
		queue_dispatch(ch);
}

static void conn_open(struct grpc_channel *ch, struct addr *a)
{
	struct conn *cn = calloc(1, sizeof(*cn));
	if (!cn)
		return;
	cn->ch = ch;
	cn->addr = a;
	cn->state = CONN_CONNECTING;
	buf_init(&cn->out, 0);
	buf_init(&cn->wbuf, 0);
	memcpy(cn->label, a->label, sizeof(cn->label));
	cn->authority = ch->targets[a->target].authority;
	cn->connect_deadline_ms = loop_ms(ch) + ch->connect_timeout_ms;
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
		conn_fail(cn, uv_strerror(rc));
	}
}

/* ---- addresses and resolution ---- */

static void addr_label(const struct sockaddr *sa, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;
		uv_ip6_name(s6, ip, sizeof(ip));
		port = ntohs(s6->sin6_port);
		snprintf(out, size, "[%s]:%d", ip, port);
	} else {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;
		uv_ip4_name(s4, ip, sizeof(ip));
		port = ntohs(s4->sin_port);
		snprintf(out, size, "%s:%d", ip, port);
	}
}

static struct addr *addr_find(struct grpc_channel *ch, const struct sockaddr *sa, socklen_t len)
{
	for (size_t i = 0; i < ch->addr_count; i++) {
		struct addr *a = ch->addrs[i];
		if (a->sa_len == len && memcmp(&a->sa, sa, len) == 0)
			return a;
	}
	return NULL;
}

/* The address vanished from DNS: its connection drains, then closes. */
static void addr_remove(struct grpc_channel *ch, size_t i)
{
	struct addr *a = ch->addrs[i];
	log_info("grpc client: address removed", LOG_S("peer", ch->name), LOG_S("addr", a->label));
	struct conn *cn = a->conn;
	if (cn) {
		cn->addr = NULL;
		a->conn = NULL;
		if (cn->state == CONN_READY) {
			if (!cn->draining && ch->ready_count) {
				ch->ready_count--;
				metrics_gauge_add(ch->connections, -1);
			}
			cn->draining = true;
			conn_maybe_finish_drain(cn);
		} else {
			cn->draining = true;
			conn_fail(cn, "address removed");
		}
	}
	free(a);
	ch->addrs[i] = ch->addrs[--ch->addr_count];
}

static void target_apply(struct grpc_channel *ch, struct target *t, const struct addrinfo *res)
{
	for (size_t i = 0; i < ch->addr_count; i++)
		if (ch->addrs[i]->target == t->index)
			ch->addrs[i]->seen = false;
	size_t taken = 0;
	for (const struct addrinfo *ai = res; ai && taken < MAX_ADDRS_PER_TARGET;
	     ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(struct sockaddr_storage))
			continue;
		taken++;
		struct addr *a = addr_find(ch, ai->ai_addr, (socklen_t)ai->ai_addrlen);
		if (a) {
			if (a->target == t->index)
				a->seen = true;
			continue; /* duplicates (also across targets) collapse */
		}
		if (ch->addr_count >= MAX_ADDRS)
			continue;
		a = calloc(1, sizeof(*a));
		if (!a)
			continue;
		memcpy(&a->sa, ai->ai_addr, ai->ai_addrlen);
		a->sa_len = (socklen_t)ai->ai_addrlen;
		a->target = t->index;
		a->seen = true;
		addr_label(ai->ai_addr, a->label, sizeof(a->label));
		ch->addrs[ch->addr_count++] = a;
		log_info("grpc client: address added", LOG_S("peer", ch->name),
		         LOG_S("addr", a->label));
		conn_open(ch, a);
	}
	for (size_t i = ch->addr_count; i-- > 0;)
		if (ch->addrs[i]->target == t->index && !ch->addrs[i]->seen)
			addr_remove(ch, i);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct target *t = req->data;
	struct grpc_channel *ch = t->ch;
	t->resolving = false;
	ch->open_handles--;
	if (ch->closed) {
		uv_freeaddrinfo(res);
		channel_maybe_free(ch);
		return;
	}
	if (status < 0) {
		/* Keep the addresses we have: a DNS hiccup must not empty the channel. */
		log_warn("grpc client: resolution failed", LOG_S("peer", ch->name),
		         LOG_S("target", t->authority), LOG_S("error", uv_strerror(status)));
	} else {
		target_apply(ch, t, res);
	}
	uv_freeaddrinfo(res);
	if (ch->queue.count)
		queue_dispatch(ch);
	queue_fail_if_hopeless(ch);
}

static void channel_resolve(struct grpc_channel *ch)
{
	ch->last_resolve_ms = loop_ms(ch);
	for (size_t i = 0; i < ch->target_count; i++) {
		struct target *t = &ch->targets[i];
		if (t->resolving)
			continue;
		struct addrinfo hints = {.ai_family = AF_UNSPEC,
		                         .ai_socktype = SOCK_STREAM,
		                         .ai_protocol = IPPROTO_TCP,
		                         .ai_flags = AI_NUMERICSERV};
		t->req.data = t;
		if (uv_getaddrinfo(ch->loop, &t->req, on_resolved, t->host, t->port, &hints) == 0) {
			t->resolving = true;
			ch->open_handles++;
		}
	}
}

static void on_tick(uv_timer_t *timer)
{
	struct grpc_channel *ch = timer->data;
	int64_t now = loop_ms(ch);
	if (now - ch->last_resolve_ms >= ch->resolve_interval_ms)
		channel_resolve(ch);
	for (size_t i = 0; i < ch->addr_count; i++) {
		struct addr *a = ch->addrs[i];
		if (!a->conn && now >= a->next_connect_ms)
			conn_open(ch, a);
	}
	/* conn_fail unlinks nothing synchronously and conn_open links at the
	 * head, so this walk is safe. */
	for (struct conn *cn = ch->conns; cn; cn = cn->next) {
		if (cn->state == CONN_CONNECTING && now >= cn->connect_deadline_ms) {
			if (cn->addr)
				cn->addr->failures++;
			conn_fail(cn, "connect timeout");
		} else if (cn->draining)
			conn_maybe_finish_drain(cn);
	}
}

/* ---- channel ---- */

static int parse_target(const char *s, struct target *t)
{
	size_t len = strlen(s);
	const char *colon;
	const char *host = s;
	size_t host_len;
	if (len == 0 || len >= MAX_HOST)
		return MV_EINVAL;
	if (s[0] == '[') {
		const char *end = memchr(s, ']', len);
		if (!end || end[1] != ':')
			return MV_EINVAL;
		host = s + 1;
		host_len = (size_t)(end - host);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (!colon)
			return MV_EINVAL;
		host_len = (size_t)(colon - s);
	}
	const char *port = colon + 1;
	size_t port_len = strlen(port);
	if (host_len == 0 || port_len == 0 || port_len > 5)
		return MV_EINVAL;
	long p = 0;
	for (size_t i = 0; i < port_len; i++) {
		if (port[i] < '0' || port[i] > '9')
			return MV_EINVAL;
		p = p * 10 + (port[i] - '0');
	}
	if (p < 1 || p > 65535)
		return MV_EINVAL;
	memcpy(t->host, host, host_len);
	t->host[host_len] = '\0';
	memcpy(t->port, port, port_len);
	t->port[port_len] = '\0';
	snprintf(t->authority, sizeof(t->authority), "%s", s);
	return 0;
}

struct grpc_channel *grpc_channel_new(uv_loop_t *loop, const struct grpc_channel_config *cfg)
{
	if (!loop || !cfg || !cfg->targets || cfg->target_count == 0 ||
	    cfg->target_count > MAX_TARGETS || cfg->max_attempts < 0 || cfg->max_attempts > 5 ||
	    cfg->retry_budget_ratio < 0.0 || cfg->resolve_interval_ms < 0 ||
	    cfg->default_timeout_ms < 0 || cfg->connect_timeout_ms < 0)
		return NULL;
	struct grpc_channel *ch = calloc(1, sizeof(*ch));
	if (!ch)
		return NULL;
	ch->loop = loop;
	snprintf(ch->name, sizeof(ch->name), "%s", cfg->name ? cfg->name : "peer");
	ch->resolve_interval_ms = cfg->resolve_interval_ms ? cfg->resolve_interval_ms : 5000;
	ch->default_timeout_ns =
	    (cfg->default_timeout_ms ? cfg->default_timeout_ms : 1000) * 1000000LL;
	ch->max_attempts = cfg->max_attempts ? cfg->max_attempts : 3;
	ch->max_message_bytes = cfg->max_message_bytes ? cfg->max_message_bytes : (4u << 20);
	ch->connect_timeout_ms = cfg->connect_timeout_ms ? cfg->connect_timeout_ms : 1000;
	grpc_retry_budget_init(
	    &ch->budget, cfg->retry_budget_tokens > 0 ? cfg->retry_budget_tokens : RETRY_TOKENS,
	    cfg->retry_budget_ratio > 0.0 ? cfg->retry_budget_ratio : 0.2);
	ch->rng = (uv_hrtime() ^ (uint64_t)(uintptr_t)ch) | 1;
	ch->targets = calloc(cfg->target_count, sizeof(*ch->targets));
	if (!ch->targets)
		goto fail_channel;
	ch->target_count = cfg->target_count;
	for (size_t i = 0; i < cfg->target_count; i++) {
		ch->targets[i].ch = ch;
		ch->targets[i].index = i;
		if (!cfg->targets[i] || parse_target(cfg->targets[i], &ch->targets[i]) != 0)
			goto fail_targets;
	}
	ch->heap_cap = 64;
	ch->heap = malloc(ch->heap_cap * sizeof(*ch->heap));
	if (!ch->heap)
		goto fail_targets;
	uv_timer_init(loop, &ch->call_timer);
	ch->call_timer.data = ch;
	uv_timer_init(loop, &ch->tick);
	ch->tick.data = ch;
	uv_prepare_init(loop, &ch->flusher);
	ch->flusher.data = ch;
	ch->open_handles = 3;
	metrics_setup(ch, cfg->metrics);
	uv_timer_start(&ch->tick, on_tick, TICK_MS, TICK_MS);
	channel_resolve(ch);
	return ch;

fail_targets:
	free(ch->targets);
fail_channel:
	free(ch);
	return NULL;
}

int grpc_channel_call(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                      int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg)
{
	return grpc_channel_start(ch, path, req, len, deadline_ns, idempotent, done, arg, NULL);
}

/* The public handle is the call itself, opaque outside this file. */
static struct call *call_of(struct grpc_client_call *h)
{
	return (struct call *)(void *)h;
}

void grpc_client_call_cancel(struct grpc_client_call *h)
{
	struct call *c = call_of(h);
	call_cancel_stream(c);
	call_complete(c, GRPC_STATUS_CANCELLED, "cancelled by the caller", NULL, 0);
}

size_t grpc_channel_test_set_next_stream_id(struct grpc_channel *ch, int32_t next_id)
{
	size_t n = 0;
	for (struct conn *cn = ch->conns; cn; cn = cn->next) {
		if (cn->state == CONN_READY && cn->h2 &&
		    nghttp2_session_set_next_stream_id(cn->h2, next_id) == 0)
			n++;
	}
	return n;
}

int grpc_channel_start(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                       int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg,
                       struct grpc_client_call **handle)
{
	if (!ch || ch->closed)
		return MV_ECLOSED;
	size_t path_len = strlen(path);
	if (path_len == 0 || path_len > MAX_PATH || !done || len > 0xffffffffu)
		return MV_EINVAL;
	if (ch->call_count >= MAX_CALLS)
		return MV_EAGAIN;
	if (ch->heap_len == ch->heap_cap) {
		size_t cap = ch->heap_cap * 2;
		struct call **h = realloc(ch->heap, cap * sizeof(*h));
		if (!h)
			return MV_ENOMEM;
		ch->heap = h;
		ch->heap_cap = cap;
	}
	struct call *c = malloc(sizeof(*c) + path_len + 1 + GRPC_FRAME_HEADER + len);
	if (!c)
		return MV_ENOMEM;
	memset(c, 0, sizeof(*c));
	c->ch = ch;
	c->done = done;
	c->arg = arg;
	c->idempotent = idempotent;
	c->heap_index = SIZE_MAX;
	c->grpc_status = -1;
	c->state = CALL_NEW;
	c->path = (char *)c->data;
	memcpy(c->path, path, path_len + 1);
	c->path_len = path_len;
	c->req = c->data + path_len + 1;
	c->req[0] = 0;
	c->req[1] = (uint8_t)(len >> 24);
	c->req[2] = (uint8_t)(len >> 16);
	c->req[3] = (uint8_t)(len >> 8);
	c->req[4] = (uint8_t)len;
	if (len)
		memcpy(c->req + GRPC_FRAME_HEADER, req, len);
	c->req_len = GRPC_FRAME_HEADER + len;
	buf_init(&c->resp, ch->max_message_bytes + GRPC_FRAME_HEADER);
	int64_t now = grpc_now_ns();
	/* The peer timeout bounds every call, and a caller's deadline shortens it:
	 * a stuck peer costs at most default_timeout, whatever the caller allows. */
	c->deadline_ns = now + ch->default_timeout_ns;
	if (deadline_ns > 0 && deadline_ns < c->deadline_ns)
		c->deadline_ns = deadline_ns;
	ch->call_count++;
	metrics_gauge_add(ch->in_flight, 1);
	c->start_ns = now;
	c->metrics = client_metrics_started(&ch->call_metrics, path, path_len);
	/* `done` must not run before we return: the first attempt (and with it
	 * every possible completion) starts from the timer, not from here, when
	 * the call cannot be submitted at once. */
	heap_set(ch, c, c->deadline_ns);
	if (handle)
		*handle = (struct grpc_client_call *)(void *)c;
	struct conn *cn = channel_pick(ch, NULL);
	if (cn && call_submit(c, cn) == 0) {
		c->attempts = 1;
		return 0;
	}
	c->state = CALL_BACKOFF;
	heap_set(ch, c, now);
	return 0;
}

size_t grpc_channel_ready_addresses(const struct grpc_channel *ch)
{
	return ch ? ch->ready_count : 0;
}

static void on_channel_handle_close(uv_handle_t *h)
{
	struct grpc_channel *ch = h->data;
	ch->open_handles--;
	channel_maybe_free(ch);
}

static void channel_maybe_free(struct grpc_channel *ch)
{
	if (!ch->closed || ch->open_handles)
		return;
	for (size_t i = 0; i < ch->addr_count; i++)
		free(ch->addrs[i]);
	free(ch->heap);
	free(ch->targets);
	free(ch);
}

void grpc_channel_close(struct grpc_channel *ch)
{
	if (!ch || ch->closed)
		return;
	ch->closed = true;
	/* Every call is in the heap (deadline or backoff): fail them all. */
	size_t n = ch->heap_len;
	while (n-- && ch->heap_len) {
		struct call *c = ch->heap[ch->heap_len - 1];
		call_cancel_stream(c);
		call_complete(c, GRPC_STATUS_UNAVAILABLE, "channel closed", NULL, 0);
	}
	for (size_t i = 0; i < ch->target_count; i++)
		if (ch->targets[i].resolving)
			uv_cancel((uv_req_t *)&ch->targets[i].req);
	for (struct conn *cn = ch->conns; cn; cn = cn->next)
		conn_fail(cn, NULL);
	uv_close((uv_handle_t *)&ch->call_timer, on_channel_handle_close);
	uv_close((uv_handle_t *)&ch->tick, on_channel_handle_close);
	uv_close((uv_handle_t *)&ch->flusher, on_channel_handle_close);
}
