/*
 * gRPC client channel: calls, round-robin, deadlines, retries, cancellation.
 *
 * Layout: a channel owns addresses (one per resolved sockaddr), connections
 * (an address has at most one current connection; connections that received
 * GOAWAY or whose address disappeared are "draining" and belong only to the
 * channel list until their last stream ends) and calls. This file holds the
 * calls and the channel; connections are client_conn.c (over the I/O-free
 * client_session.c), addresses client_resolve.c (see client_internal.h).
 *
 * Timers: calls sit in one binary min-heap keyed by their next wake-up (the
 * deadline, or the end of a retry backoff) behind a single uv_timer, so a call
 * costs no timer handle. Connection upkeep (connect timeouts, reconnects,
 * re-resolution, closing drained connections) runs on a coarse tick.
 *
 * Re-entrancy: completion callbacks run inside nghttp2 and libuv callbacks and
 * may start calls or close the channel. Loops that complete calls pop the
 * list head each time; nothing is freed before libuv closes its handle.
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

static void call_attempt(struct grpc_client_call *c);
static void on_call_timer(uv_timer_t *t);

/* ---- small helpers ---- */

double grpc_channel_rand(struct grpc_channel *ch)
{
	/* xorshift64*: jitter only, not security. */
	uint64_t x = ch->rng;
	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	ch->rng = x;
	return (double)((x * 2685821657736338717ULL) >> 11) / 9007199254740992.0;
}

int64_t grpc_channel_now_ms(const struct grpc_channel *ch)
{
	return (int64_t)uv_now(ch->loop);
}

static void list_push(struct grpc_client_call_list *l, struct grpc_client_call *c)
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

static void list_remove(struct grpc_client_call_list *l, struct grpc_client_call *c)
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

static void heap_swap(struct grpc_client_call **h, size_t a, size_t b)
{
	struct grpc_client_call *t = h[a];
	h[a] = h[b];
	h[b] = t;
	h[a]->heap_index = a;
	h[b]->heap_index = b;
}

static void heap_up(struct grpc_client_call **h, size_t i)
{
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (h[p]->wake_ns <= h[i]->wake_ns)
			break;
		heap_swap(h, p, i);
		i = p;
	}
}

static void heap_down(struct grpc_client_call **h, size_t n, size_t i)
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

static void heap_remove(struct grpc_channel *ch, struct grpc_client_call *c)
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
static void heap_set(struct grpc_channel *ch, struct grpc_client_call *c, int64_t wake_ns)
{
	heap_remove(ch, c);
	c->wake_ns = wake_ns;
	c->heap_index = ch->heap_len;
	ch->heap[ch->heap_len++] = c;
	heap_up(ch->heap, c->heap_index);
	timer_arm(ch);
}

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

static void metrics_handled(struct grpc_channel *ch, struct grpc_client_call *c, int status)
{
	client_metrics_handled(&ch->call_metrics, c->metrics, status,
	                       (double)(grpc_now_ns() - c->start_ns) / 1e9);
}

static void call_free(struct grpc_client_call *c)
{
	struct grpc_channel *ch = c->ch;
	if (c->traced)
		trace_span_release(&c->span);
	heap_remove(ch, c);
	buf_release(&c->st.resp);
	ch->call_count--;
	metrics_gauge_add(ch->in_flight, -1);
	free(c);
}

/* Detach from its connection (or the queue) without touching the budget. */
static void call_detach(struct grpc_client_call *c)
{
	struct grpc_channel *ch = c->ch;
	if (c->state == CALL_ACTIVE && c->conn) {
		struct grpc_client_conn *cn = c->conn;
		list_remove(&cn->calls, c);
		if (cn->session) {
			grpc_client_session_detach(cn->session, &c->st);
			grpc_client_conn_want_flush(cn);
		}
		c->conn = NULL;
	} else if (c->state == CALL_QUEUED) {
		list_remove(&ch->queue, c);
	}
	c->state = CALL_NEW;
}

/* The client span of a finished call (every attempt in one span). */
static void export_client_span(const struct grpc_client_call *c, int status)
{
	struct trace_record r;
	trace_record_init(&r, &c->span, TRACE_KIND_CLIENT, c->start_unix_ns, trace_now_unix_ns());
	const char *name = c->path[0] == '/' ? c->path + 1 : c->path;
	trace_record_set(r.name, sizeof(r.name), name, strlen(name));
	const char *slash = strchr(name, '/');
	trace_record_set(r.rpc_service, sizeof(r.rpc_service), name,
	                 slash ? (size_t)(slash - name) : strlen(name));
	if (slash)
		trace_record_set(r.rpc_method, sizeof(r.rpc_method), slash + 1, strlen(slash + 1));
	trace_record_set(r.peer, sizeof(r.peer), c->ch->name, strlen(c->ch->name));
	r.grpc_status = status;
	/* OpenTelemetry's gRPC client convention: every non-OK status is an error. */
	r.error = status != GRPC_STATUS_OK;
	trace_export_submit(&r);
}

static void call_complete(struct grpc_client_call *c, int status, const char *message,
                          const uint8_t *resp, size_t len)
{
	struct grpc_channel *ch = c->ch;
	call_detach(c);
	heap_remove(ch, c);
	metrics_handled(ch, c, status);
	if (c->traced && trace_span_sampled(&c->span))
		export_client_span(c, status);
	grpc_client_done_fn done = c->done;
	void *arg = c->arg;
	/* The response lives in c->st.resp: free after the callback. */
	done(arg, status, message ? message : "", resp, len);
	call_free(c);
}

/* Abandon the stream of an active call (deadline): tell the server. */
static void call_cancel_stream(struct grpc_client_call *c)
{
	if (c->state == CALL_ACTIVE && c->conn && c->conn->session && c->st.id > 0) {
		grpc_client_session_cancel(c->conn->session, &c->st);
		grpc_client_conn_want_flush(c->conn);
	}
}

static void call_on_timer(struct grpc_client_call *c)
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
		struct grpc_client_call *c = ch->heap[0];
		heap_remove(ch, c);
		call_on_timer(c);
	}
	timer_arm(ch);
}

/*
 * One attempt failed with `status`. UNAVAILABLE is retried (after backoff, on
 * another address when there is one) if attempts and budget remain, the
 * backoff fits before the deadline, and the call is idempotent or the request
 * never reached a server (`reached` false).
 */
void grpc_client_call_failed(struct grpc_client_call *c, int status, const char *message,
                             bool reached)
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
	    grpc_backoff_ms(c->attempts, RETRY_BASE_MS, RETRY_CAP_MS, 0.5, grpc_channel_rand(ch));
	int64_t wake = grpc_now_ns() + wait_ms * 1000000;
	if (wake >= c->deadline_ns) {
		call_complete(c, status, message, NULL, 0);
		return;
	}
	metrics_counter_inc(ch->retries);
	c->state = CALL_BACKOFF;
	heap_set(ch, c, wake);
}

/* Round-robin over usable connections, avoiding `avoid` when another exists. */
static struct grpc_client_conn *channel_pick(struct grpc_channel *ch,
                                             const struct grpc_client_addr *avoid)
{
	size_t n = ch->addr_count;
	struct grpc_client_conn *fallback = NULL;
	for (size_t i = 0; i < n; i++) {
		size_t idx = (ch->rr + i) % n;
		struct grpc_client_addr *a = ch->addrs[idx];
		if (!a->conn || !grpc_client_conn_usable(a->conn))
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

/* Submit the call on `cn`. Returns 0, MV_ETIMEDOUT (no time left) or
 * MV_EUNAVAIL (the session starts no stream). */
static int call_submit(struct grpc_client_call *c, struct grpc_client_conn *cn)
{
	char timeout[24];
	int rc = grpc_deadline_header(c->deadline_ns, grpc_now_ns(), timeout, sizeof(timeout));
	if (rc)
		return rc;
	rc = grpc_client_session_submit(cn->session, &c->st, c->path, c->path_len, cn->authority,
	                                timeout);
	if (rc)
		return rc;
	c->conn = cn;
	c->state = CALL_ACTIVE;
	c->last_addr = cn->addr;
	list_push(&cn->calls, c);
	grpc_client_conn_want_flush(cn);
	return 0;
}

static bool channel_connecting(const struct grpc_channel *ch)
{
	for (size_t i = 0; i < ch->addr_count; i++) {
		const struct grpc_client_conn *cn = ch->addrs[i]->conn;
		if (cn && cn->state != CONN_CLOSING)
			return true;
	}
	return false;
}

/* Start (or re-start) an attempt: submit now, or wait in the queue. */
static void call_attempt(struct grpc_client_call *c)
{
	struct grpc_channel *ch = c->ch;
	if (grpc_now_ns() >= c->deadline_ns) {
		call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL, 0);
		return;
	}
	c->attempts++;
	struct grpc_client_conn *cn = channel_pick(ch, c->last_addr);
	if (cn) {
		int rc = call_submit(c, cn);
		if (rc == 0)
			return;
		if (rc == MV_ETIMEDOUT) {
			call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL,
			              0);
			return;
		}
		grpc_client_call_failed(c, GRPC_STATUS_UNAVAILABLE, "stream not started", false);
		return;
	}
	if (!channel_connecting(ch) && !grpc_client_resolving(ch) && ch->ready_count == 0) {
		/* Every address is down (or none resolved): fail fast, the retry
		 * policy decides whether to wait. */
		grpc_client_call_failed(c, GRPC_STATUS_UNAVAILABLE, "no connection to the peer",
		                        false);
		return;
	}
	c->state = CALL_QUEUED;
	list_push(&ch->queue, c);
}

/* Hand queued calls to connections with free stream slots (FIFO). */
void grpc_channel_dispatch(struct grpc_channel *ch)
{
	size_t budget = ch->queue.count;
	while (budget-- && ch->queue.head && !ch->closed) {
		struct grpc_client_call *c = ch->queue.head;
		struct grpc_client_conn *cn = channel_pick(ch, NULL);
		if (!cn)
			return;
		list_remove(&ch->queue, c);
		c->state = CALL_NEW;
		int rc = call_submit(c, cn);
		if (rc == MV_ETIMEDOUT)
			call_complete(c, GRPC_STATUS_DEADLINE_EXCEEDED, "deadline exceeded", NULL,
			              0);
		else if (rc)
			grpc_client_call_failed(c, GRPC_STATUS_UNAVAILABLE, "stream not started",
			                        false);
	}
}

/* No connection can come up soon: queued calls fail (and maybe retry later). */
void grpc_channel_fail_if_hopeless(struct grpc_channel *ch)
{
	if (ch->ready_count || channel_connecting(ch) || grpc_client_resolving(ch))
		return;
	size_t n = ch->queue.count;
	while (n-- && ch->queue.head && !ch->closed)
		grpc_client_call_failed(ch->queue.head, GRPC_STATUS_UNAVAILABLE,
		                        "no connection to the peer", false);
}

/* The attempt's outcome: OK feeds the retry budget, UNAVAILABLE goes to the
 * retry policy, anything else is final. */
void grpc_client_call_on_result(void *user, struct grpc_client_stream *st, int status,
                                const char *message, const uint8_t *msg, size_t len, bool reached)
{
	struct grpc_client_call *c = st->user;
	if (status == GRPC_STATUS_OK) {
		grpc_retry_budget_on_success(&c->ch->budget);
		call_complete(c, GRPC_STATUS_OK, "", msg, len);
	} else if (status == GRPC_STATUS_UNAVAILABLE) {
		grpc_client_call_failed(c, status, message, reached);
	} else {
		call_complete(c, status, message, NULL, 0);
	}
}

static void on_tick(uv_timer_t *timer)
{
	struct grpc_channel *ch = timer->data;
	int64_t now = grpc_channel_now_ms(ch);
	if (now - ch->last_resolve_ms >= ch->resolve_interval_ms)
		grpc_client_resolve(ch);
	for (size_t i = 0; i < ch->addr_count; i++) {
		struct grpc_client_addr *a = ch->addrs[i];
		if (!a->conn && now >= a->next_connect_ms)
			grpc_client_conn_open(ch, a);
	}
	/* conn_fail unlinks nothing synchronously and conn_open links at the
	 * head, so this walk is safe. */
	for (struct grpc_client_conn *cn = ch->conns; cn; cn = cn->next) {
		if (cn->state == CONN_CONNECTING && now >= cn->connect_deadline_ms) {
			if (cn->addr)
				cn->addr->failures++;
			grpc_client_conn_fail(cn, "connect timeout");
		} else if (cn->draining)
			grpc_client_conn_maybe_finish_drain(cn);
	}
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
		if (!cfg->targets[i] ||
		    grpc_client_target_parse(cfg->targets[i], &ch->targets[i]) != 0)
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
	grpc_client_resolve(ch);
	return ch;

fail_targets:
	free(ch->targets);
fail_channel:
	free(ch);
	return NULL;
}

static int start_call(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                      int64_t deadline_ns, bool idempotent, bool traced,
                      const struct trace_span *parent, grpc_client_done_fn done, void *arg,
                      struct grpc_client_call **handle);

int grpc_channel_call(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                      int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg)
{
	return grpc_channel_start(ch, path, req, len, deadline_ns, idempotent, done, arg, NULL);
}

int grpc_channel_start(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                       int64_t deadline_ns, bool idempotent, grpc_client_done_fn done, void *arg,
                       struct grpc_client_call **handle)
{
	return start_call(ch, path, req, len, deadline_ns, idempotent, false, NULL, done, arg,
	                  handle);
}

int grpc_channel_start_traced(struct grpc_channel *ch, const char *path, const uint8_t *req,
                              size_t len, int64_t deadline_ns, bool idempotent,
                              const struct trace_span *parent, grpc_client_done_fn done, void *arg,
                              struct grpc_client_call **handle)
{
	return start_call(ch, path, req, len, deadline_ns, idempotent, true, parent, done, arg,
	                  handle);
}

void grpc_client_call_cancel(struct grpc_client_call *h)
{
	struct grpc_client_call *c = h;
	call_cancel_stream(c);
	call_complete(c, GRPC_STATUS_CANCELLED, "cancelled by the caller", NULL, 0);
}

size_t grpc_channel_test_set_next_stream_id(struct grpc_channel *ch, int32_t next_id)
{
	size_t n = 0;
	for (struct grpc_client_conn *cn = ch->conns; cn; cn = cn->next) {
		if (cn->state == CONN_READY && cn->session &&
		    grpc_client_session_set_next_stream_id(cn->session, next_id) == 0)
			n++;
	}
	return n;
}

static int start_call(struct grpc_channel *ch, const char *path, const uint8_t *req, size_t len,
                      int64_t deadline_ns, bool idempotent, bool traced,
                      const struct trace_span *parent, grpc_client_done_fn done, void *arg,
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
		struct grpc_client_call **h = realloc(ch->heap, cap * sizeof(*h));
		if (!h)
			return MV_ENOMEM;
		ch->heap = h;
		ch->heap_cap = cap;
	}
	struct grpc_client_call *c = malloc(sizeof(*c) + path_len + 1 + GRPC_FRAME_HEADER + len);
	if (!c)
		return MV_ENOMEM;
	memset(c, 0, sizeof(*c));
	c->ch = ch;
	c->done = done;
	c->arg = arg;
	c->idempotent = idempotent;
	c->heap_index = SIZE_MAX;
	c->st.grpc_status = -1;
	c->st.user = c;
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
	c->st.req = c->req;
	c->st.req_len = c->req_len;
	if (traced) {
		/* A child of the caller's span; every attempt carries it. */
		c->traced = true;
		trace_span_start_child(&c->span, parent);
		c->start_unix_ns = trace_now_unix_ns();
		trace_parent_format(c->span.trace_id, c->span.span_id, c->span.flags,
		                    c->traceparent);
		c->st.traceparent = c->traceparent;
		c->st.tracestate = c->span.tracestate;
	}
	buf_init(&c->st.resp, ch->max_message_bytes + GRPC_FRAME_HEADER);
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
	struct grpc_client_conn *cn = channel_pick(ch, NULL);
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
	grpc_channel_maybe_free(ch);
}

void grpc_channel_maybe_free(struct grpc_channel *ch)
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
		struct grpc_client_call *c = ch->heap[ch->heap_len - 1];
		call_cancel_stream(c);
		call_complete(c, GRPC_STATUS_UNAVAILABLE, "channel closed", NULL, 0);
	}
	for (size_t i = 0; i < ch->target_count; i++)
		if (ch->targets[i].resolving)
			uv_cancel((uv_req_t *)&ch->targets[i].req);
	for (struct grpc_client_conn *cn = ch->conns; cn; cn = cn->next)
		grpc_client_conn_fail(cn, NULL);
	uv_close((uv_handle_t *)&ch->call_timer, on_channel_handle_close);
	uv_close((uv_handle_t *)&ch->tick, on_channel_handle_close);
	uv_close((uv_handle_t *)&ch->flusher, on_channel_handle_close);
}
