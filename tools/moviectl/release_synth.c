/*
 * release_synth.c - synthetic canary load (see release_synth.h).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "release_synth.h"

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "movie/banned.h"

/* gRPC status codes counted as the server failing (the guard's classes). */
static int server_error(int status)
{
	return status == 2 || status == 4 || status == 13 || status == 14 || status == 15;
}

struct track {
	struct release_synth *s;
	int idx;
	struct grpc_channel *ch;
	char *targets[RELEASE_SYNTH_MAX_TARGETS];
	size_t n_targets;
	_Atomic int inflight;
	size_t next_call;
};

struct release_synth {
	pthread_t thread;
	uv_loop_t loop;
	uv_timer_t timer;
	uv_async_t stop;
	struct track tracks[2];
	struct release_synth_call calls[RELEASE_MAX_SYNTH_CALLS];
	size_t n_calls;
	uint64_t period_ms;
	_Atomic uint64_t sent[2], ok[2], failed[2];
};

size_t release_synth_encode(const struct release_synth_call *call, uint8_t *out, size_t cap)
{
	size_t n = 0;
	for (size_t i = 0; i < call->n_args; i++) {
		size_t len = strlen(call->args[i]);
		if (len > 127 || n + 2 + len > cap)
			return 0;
		out[n++] = (uint8_t)(((i + 1) << 3) | 2);
		out[n++] = (uint8_t)len;
		memcpy(out + n, call->args[i], len);
		n += len;
	}
	return n;
}

static void on_done(void *arg, int status, const char *message, const uint8_t *resp, size_t len)
{
	(void)message;
	(void)resp;
	(void)len;
	struct track *t = arg;
	atomic_fetch_sub(&t->inflight, 1);
	if (server_error(status))
		atomic_fetch_add(&t->s->failed[t->idx], 1);
	else
		atomic_fetch_add(&t->s->ok[t->idx], 1);
}

static void on_tick(uv_timer_t *timer)
{
	struct release_synth *s = timer->data;
	for (int i = 0; i < 2; i++) {
		struct track *t = &s->tracks[i];
		if (!t->ch || atomic_load(&t->inflight) >= RELEASE_SYNTH_MAX_INFLIGHT)
			continue;
		const struct release_synth_call *c = &s->calls[t->next_call++ % s->n_calls];
		uint8_t req[512];
		size_t len = release_synth_encode(c, req, sizeof(req));
		atomic_fetch_add(&t->inflight, 1);
		int64_t deadline = grpc_now_ns() + (int64_t)2000 * 1000000;
		if (grpc_channel_call(t->ch, c->path, req, len, deadline, true, on_done, t)) {
			atomic_fetch_sub(&t->inflight, 1);
			continue;
		}
		atomic_fetch_add(&s->sent[i], 1);
	}
}

static void on_close_noop(uv_handle_t *h)
{
	(void)h;
}

static void on_stop(uv_async_t *a)
{
	struct release_synth *s = a->data;
	uv_timer_stop(&s->timer);
	uv_close((uv_handle_t *)&s->timer, on_close_noop);
	uv_close((uv_handle_t *)&s->stop, on_close_noop);
	for (int i = 0; i < 2; i++)
		if (s->tracks[i].ch)
			grpc_channel_close(s->tracks[i].ch);
}

static void *run(void *arg)
{
	struct release_synth *s = arg;
	for (int i = 0; i < 2; i++) {
		struct track *t = &s->tracks[i];
		struct grpc_channel_config cfg = {
		    .name = i == 0 ? "synthetic-canary" : "synthetic-production",
		    .targets = (const char *const *)t->targets,
		    .target_count = t->n_targets,
		    .default_timeout_ms = 2000,
		    /* One attempt: a retry on another pod would hide which pod failed. */
		    .max_attempts = 1,
		};
		t->ch = grpc_channel_new(&s->loop, &cfg);
	}
	uv_timer_start(&s->timer, on_tick, s->period_ms, s->period_ms);
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

int release_synth_start(const char *service, const struct release_synth_call *calls, size_t n_calls,
                        const char *const *canary, size_t n_canary, const char *const *production,
                        size_t n_production, double rate, struct release_synth **out)
{
	*out = NULL;
	if (n_canary == 0 || n_production == 0 || n_canary > RELEASE_SYNTH_MAX_TARGETS ||
	    n_production > RELEASE_SYNTH_MAX_TARGETS || !(rate > 0))
		return MV_EINVAL;
	struct release_synth *s = calloc(1, sizeof(*s));
	if (!s)
		return MV_ENOMEM;
	for (size_t i = 0; i < n_calls; i++)
		if (strcmp(calls[i].service, service) == 0)
			s->calls[s->n_calls++] = calls[i];
	if (s->n_calls == 0) {
		free(s);
		return MV_EINVAL;
	}
	if (rate > RELEASE_MAX_SYNTH_RATE)
		rate = RELEASE_MAX_SYNTH_RATE;
	s->period_ms = (uint64_t)(1000.0 / rate);
	if (s->period_ms == 0)
		s->period_ms = 1;
	const char *const *lists[2] = {canary, production};
	size_t counts[2] = {n_canary, n_production};
	int rc = 0;
	for (int i = 0; i < 2 && !rc; i++) {
		s->tracks[i].s = s;
		s->tracks[i].idx = i;
		for (size_t k = 0; k < counts[i] && !rc; k++) {
			s->tracks[i].targets[k] = strdup(lists[i][k]);
			if (!s->tracks[i].targets[k])
				rc = MV_ENOMEM;
			else
				s->tracks[i].n_targets++;
		}
	}
	if (!rc && uv_loop_init(&s->loop))
		rc = MV_EIO;
	if (rc)
		goto fail;
	uv_timer_init(&s->loop, &s->timer);
	s->timer.data = s;
	uv_async_init(&s->loop, &s->stop, on_stop);
	s->stop.data = s;
	if (pthread_create(&s->thread, NULL, run, s)) {
		uv_close((uv_handle_t *)&s->timer, NULL);
		uv_close((uv_handle_t *)&s->stop, NULL);
		uv_run(&s->loop, UV_RUN_DEFAULT);
		uv_loop_close(&s->loop);
		rc = MV_EIO;
		goto fail;
	}
	*out = s;
	return 0;
fail:
	for (int i = 0; i < 2; i++)
		for (size_t k = 0; k < s->tracks[i].n_targets; k++)
			free(s->tracks[i].targets[k]);
	free(s);
	return rc;
}

void release_synth_counts(const struct release_synth *s, struct release_synth_counts *out)
{
	memset(out, 0, sizeof(*out));
	if (!s)
		return;
	struct release_synth *m = (struct release_synth *)(uintptr_t)s;
	for (int i = 0; i < 2; i++) {
		out->sent[i] = atomic_load(&m->sent[i]);
		out->ok[i] = atomic_load(&m->ok[i]);
		out->failed[i] = atomic_load(&m->failed[i]);
	}
}

void release_synth_stop(struct release_synth *s)
{
	if (!s)
		return;
	uv_async_send(&s->stop);
	pthread_join(s->thread, NULL);
	uv_loop_close(&s->loop);
	for (int i = 0; i < 2; i++)
		for (size_t k = 0; k < s->tracks[i].n_targets; k++)
			free(s->tracks[i].targets[k]);
	free(s);
}
