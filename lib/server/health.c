/*
 * grpc.health.v1.Health: Check and Watch.
 *
 * Names: "" , "readiness" and the service's own gRPC name report readiness
 * (listening, dependency probe OK, not draining); "liveness" reports SERVING
 * while the process runs and never depends on a database, so a slow database
 * cannot get pods killed. Any other name is NOT_FOUND (Check) or
 * SERVICE_UNKNOWN (Watch), as the protocol specifies.
 */
#include <stdlib.h>
#include <string.h>

#include "health.pb-c.h"
#include "internal.h"
#include "movie/err.h"
#include "movie/banned.h"

enum {
	HEALTH_READINESS = 0,
	HEALTH_LIVENESS = 1,
	HEALTH_UNKNOWN = -1,
	HEALTH_ANSWERED = -2, /* request_kind already finished the call */
};

static int name_kind(const struct server *srv, const char *name, size_t len)
{
	if (len == 0 || (len == 9 && memcmp(name, "readiness", 9) == 0) ||
	    (strlen(srv->grpc_service) == len && memcmp(name, srv->grpc_service, len) == 0))
		return HEALTH_READINESS;
	if (len == 8 && memcmp(name, "liveness", 8) == 0)
		return HEALTH_LIVENESS;
	return HEALTH_UNKNOWN;
}

/* Decode a HealthCheckRequest and classify its name; a malformed request is
 * answered INVALID_ARGUMENT here (HEALTH_ANSWERED). */
static int request_kind(const struct server *srv, struct grpc_call *call, const uint8_t *msg,
                        size_t len)
{
	Grpc__Health__V1__HealthCheckRequest *req =
	    grpc__health__v1__health_check_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest",
		                 NULL, 0);
		return HEALTH_ANSWERED;
	}
	int kind = name_kind(srv, req->service, strlen(req->service));
	grpc__health__v1__health_check_request__free_unpacked(req, NULL);
	return kind;
}

static int status_of_kind(const struct server *srv, int kind)
{
	if (kind == HEALTH_LIVENESS)
		return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (kind == HEALTH_READINESS)
		return server_is_ready(srv)
		           ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
		           : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
	return GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN;
}

int health_status_for(const struct server *srv, const char *name, size_t len)
{
	return status_of_kind(srv, name_kind(srv, name, len));
}

static size_t pack_status(int status, uint8_t *out)
{
	Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
	resp.status = status;
	return grpc__health__v1__health_check_response__pack(&resp, out);
}

static void health_check(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	struct server *srv = ctx;
	int kind = request_kind(srv, call, msg, len);
	if (kind == HEALTH_ANSWERED)
		return;
	if (kind == HEALTH_UNKNOWN) {
		grpc_call_finish(call, GRPC_STATUS_NOT_FOUND, "unknown service", NULL, 0);
		return;
	}
	uint8_t out[16];
	size_t n = pack_status(status_of_kind(srv, kind), out);
	grpc_call_finish(call, GRPC_STATUS_OK, NULL, out, n);
}

static void watch_unlink(struct watch_entry *e)
{
	struct worker *w = e->worker;
	if (e->prev)
		e->prev->next = e->next;
	else
		w->watches = e->next;
	if (e->next)
		e->next->prev = e->prev;
}

static void watch_cancelled(struct grpc_call *call, void *arg)
{
	struct watch_entry *e = arg;
	watch_unlink(e);
	free(e);
	grpc_call_finish(call, GRPC_STATUS_CANCELLED, NULL, NULL, 0);
}

static void health_watch(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	struct server *srv = ctx;
	struct worker *w = server_current_worker;
	int kind = request_kind(srv, call, msg, len);
	if (kind == HEALTH_ANSWERED)
		return;
	uint8_t out[16];
	int status = status_of_kind(srv, kind);
	size_t n = pack_status(status, out);
	struct watch_entry *e = calloc(1, sizeof(*e));
	if (!e || !w || grpc_call_send(call, out, n) != 0) {
		free(e);
		grpc_call_finish(call, GRPC_STATUS_UNAVAILABLE, "cannot watch", NULL, 0);
		return;
	}
	/* An unknown name stays SERVICE_UNKNOWN; the stream stays open as the
	 * protocol asks (the service might be registered later). */
	e->call = call;
	e->worker = w;
	e->kind = kind;
	e->last_sent = status;
	e->next = w->watches;
	if (w->watches)
		w->watches->prev = e;
	w->watches = e;
	grpc_call_on_cancel(call, watch_cancelled, e);
}

void health_broadcast(struct worker *w)
{
	for (struct watch_entry *e = w->watches; e; e = e->next) {
		int status = status_of_kind(w->srv, e->kind);
		if (status == e->last_sent)
			continue;
		uint8_t out[16];
		size_t n = pack_status(status, out);
		if (grpc_call_send(e->call, out, n) == 0)
			e->last_sent = status;
	}
}

void health_close_watches(struct worker *w)
{
	health_broadcast(w);
	struct watch_entry *e = w->watches;
	while (e) {
		struct watch_entry *next = e->next;
		grpc_call_on_cancel(e->call, NULL, NULL);
		grpc_call_finish(e->call, GRPC_STATUS_OK, NULL, NULL, 0);
		free(e);
		e = next;
	}
	w->watches = NULL;
}

int health_register(struct server *srv)
{
	/* The runtime's own methods: never faulted (faults.c). */
	int rc = server_add_grpc_builtin(srv, "grpc.health.v1.Health", "Check", false, health_check,
	                                 srv);
	if (rc)
		return rc;
	return server_add_grpc_builtin(srv, "grpc.health.v1.Health", "Watch", true, health_watch,
	                               srv);
}
