/*
 * The rating service's handlers: RatingService over gRPC and /rating over
 * HTTP. Same shape as the metadata service: validate on the loop, run the
 * store call (thread pool when it blocks), answer on the loop.
 */
#include "handlers.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie.pb-c.h"
#include "movie/err.h"
#include "movie/service.h"
#include "movie/service_job.h"
#include "movie/text.h"
#include "movie/banned.h"

struct handlers {
	struct server *srv;
	struct rating_store *store;
	int32_t min_value, max_value;
};

static struct handlers handlers_ctx;

enum job_kind {
	JOB_GRPC_GET,
	JOB_GRPC_PUT,
	JOB_HTTP_GET,
	JOB_HTTP_PUT
};

struct job {
	struct service_job base; /* first: call, ex, rc */
	enum job_kind kind;
	struct handlers *h;
	char record_id[RATING_ID_MAX + 1];
	char record_type[RATING_ID_MAX + 1];
	char user_id[RATING_ID_MAX + 1];
	int32_t value;
	double mean;
	uint64_t count;
};

static void job_work(struct service_job *base)
{
	struct job *j = (struct job *)base;
	if (j->kind == JOB_GRPC_GET || j->kind == JOB_HTTP_GET) {
		j->base.rc = rating_store_aggregate(j->h->store, j->record_id, j->record_type,
		                                    &j->mean, &j->count);
	} else {
		struct rating_change change = {
		    .op = RATING_OP_PUT,
		    .record_id = j->record_id,
		    .record_type = j->record_type,
		    .user_id = j->user_id,
		    .value = j->value,
		};
		j->base.rc = rating_store_apply(j->h->store, &change, 1);
	}
}

static const char *store_error_message(int rc)
{
	switch (rc) {
	case MV_ENOTFOUND: return "no ratings for this record";
	case MV_EUNAVAIL: return "rating store unavailable";
	default: return mv_strerror(rc);
	}
}

static void finish_grpc(struct service_job *base)
{
	struct job *j = (struct job *)base;
	if (service_grpc_finish_failed(j->base.call, j->base.rc, store_error_message(j->base.rc)))
		return;
	if (j->kind == JOB_GRPC_PUT) {
		PutRatingResponse empty = PUT_RATING_RESPONSE__INIT;
		service_grpc_finish_message(j->base.call, &empty.base);
		return;
	}
	GetAggregatedRatingResponse resp = GET_AGGREGATED_RATING_RESPONSE__INIT;
	resp.rating_value = j->mean;
	service_grpc_finish_message(j->base.call, &resp.base);
}

static void finish_http(struct service_job *base)
{
	struct job *j = (struct job *)base;
	if (j->base.rc != 0) {
		service_http_error(j->base.ex, service_http_status_from_err(j->base.rc),
		                   store_error_message(j->base.rc));
		return;
	}
	if (j->kind == JOB_HTTP_PUT) {
		server_http_respond(j->base.ex, 204, NULL, "", 0);
		return;
	}
	char body[64];
	/* %.17g round-trips a double exactly; JSON has no NaN (a mean never is). */
	int n = snprintf(body, sizeof(body), "%.17g\n", j->mean);
	server_http_respond(j->base.ex, 200, "application/json", body, (size_t)n);
}

static void job_free(struct service_job *base)
{
	free(base);
}

static const struct service_job_ops job_ops = {
    .work = job_work,
    .finish_grpc = finish_grpc,
    .finish_http = finish_http,
    .free = job_free,
};

static void job_start(struct job *j)
{
	service_job_start(&j->base, rating_store_blocking(j->h->store));
}

/* Copy a required id; NULL when fine, else why not. The wire check
 * (service_grpc_check_text) has refused strings with an embedded NUL, so
 * strlen is the id's true length; the id rule (docs/api.md, "Strings") adds
 * no control characters. */
static const char *copy_id(char *dst, const char *src, const char *what_empty,
                           const char *what_long, const char *what_control)
{
	if (!src || !*src)
		return what_empty;
	size_t n = strlen(src);
	if (n > RATING_ID_MAX)
		return what_long;
	if (text_check_id(src, n))
		return what_control;
	memcpy(dst, src, n + 1);
	return NULL;
}

static const char *fill_ids(struct job *j, const char *record_id, const char *record_type,
                            const char *user_id)
{
	const char *why = copy_id(j->record_id, record_id, "record_id must not be empty",
	                          "record_id too long", "record_id: contains a control character");
	if (!why)
		why = copy_id(j->record_type, record_type, "record_type must not be empty",
		              "record_type too long", "record_type: contains a control character");
	if (!why && j->kind != JOB_GRPC_GET && j->kind != JOB_HTTP_GET)
		why = copy_id(j->user_id, user_id, "user_id must not be empty", "user_id too long",
		              "user_id: contains a control character");
	return why;
}

static struct job *job_new(struct handlers *h, enum job_kind kind)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j) {
		j->base.ops = &job_ops;
		j->base.srv = h->srv;
		j->kind = kind;
		j->h = h;
	}
	return j;
}

/* ---- gRPC ---- */

static void grpc_get_rating(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	if (!service_grpc_check_text(call, &get_aggregated_rating_request__descriptor, msg, len))
		return;
	GetAggregatedRatingRequest *req = get_aggregated_rating_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		                 "malformed GetAggregatedRatingRequest", NULL, 0);
		return;
	}
	struct job *j = job_new(ctx, JOB_GRPC_GET);
	const char *why = j ? fill_ids(j, req->record_id, req->record_type, NULL) : NULL;
	get_aggregated_rating_request__free_unpacked(req, NULL);
	if (!j || why) {
		free(j);
		grpc_call_finish(call,
		                 j ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_RESOURCE_EXHAUSTED,
		                 j ? why : "out of memory", NULL, 0);
		return;
	}
	j->base.call = call;
	job_start(j);
}

static void grpc_put_rating(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	struct handlers *h = ctx;
	if (!service_grpc_check_text(call, &put_rating_request__descriptor, msg, len))
		return;
	PutRatingRequest *req = put_rating_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed PutRatingRequest",
		                 NULL, 0);
		return;
	}
	struct job *j = job_new(h, JOB_GRPC_PUT);
	const char *why = j ? fill_ids(j, req->record_id, req->record_type, req->user_id) : NULL;
	if (j && !why) {
		j->value = req->rating_value;
		if (j->value < h->min_value || j->value > h->max_value)
			why = "rating_value out of range";
	}
	put_rating_request__free_unpacked(req, NULL);
	if (!j || why) {
		free(j);
		grpc_call_finish(call,
		                 j ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_RESOURCE_EXHAUSTED,
		                 j ? why : "out of memory", NULL, 0);
		return;
	}
	j->base.call = call;
	job_start(j);
}

/* ---- HTTP ---- */

/* Read query parameter `name` into dst; NULL when fine, else why not.
 * Percent-decoding can yield any byte: the id rule is checked on the decoded
 * length, so "alice%00x" is refused rather than read as "alice". */
static const char *query_param(const struct http1_request *req, const char *name, char *dst,
                               size_t size)
{
	static __thread char why[96]; /* per loop thread */
	int n = http1_query_get(req->query, name, dst, size);
	if (n > 0) {
		const char *bad = text_check_id(dst, (size_t)n);
		if (!bad)
			return NULL;
		snprintf(why, sizeof(why), "query parameter %s: %s", name, bad);
		return why;
	}
	if (n == MV_ETOOBIG)
		snprintf(why, sizeof(why), "query parameter %s too long", name);
	else if (n == MV_EINVAL)
		snprintf(why, sizeof(why), "query parameter %s is malformed", name);
	else
		snprintf(why, sizeof(why), "query parameter %s is required", name);
	return why;
}

static void http_rating(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	struct handlers *h = ctx;
	bool put = req->method == HTTP1_PUT;
	struct job *j = job_new(h, put ? JOB_HTTP_PUT : JOB_HTTP_GET);
	if (!j) {
		service_http_error(ex, 503, "out of memory");
		return;
	}
	const char *why = query_param(req, "id", j->record_id, sizeof(j->record_id));
	if (!why)
		why = query_param(req, "type", j->record_type, sizeof(j->record_type));
	if (!why && put)
		why = query_param(req, "userId", j->user_id, sizeof(j->user_id));
	if (!why && put) {
		char value[24];
		why = query_param(req, "value", value, sizeof(value));
		if (!why) {
			char *end;
			errno = 0;
			long long v = strtoll(value, &end, 10);
			if (errno || *end || end == value)
				why = "value must be an integer";
			else if (v < h->min_value || v > h->max_value)
				why = "value out of range";
			else
				j->value = (int32_t)v;
		}
	}
	if (why) {
		free(j);
		service_http_error(ex, 400, why);
		return;
	}
	j->base.ex = ex;
	job_start(j);
}

static int store_probe(void *ctx)
{
	struct handlers *h = ctx;
	return rating_store_ping(h->store);
}

int rating_handlers_register(struct server *srv, struct rating_store *store, int32_t min_value,
                             int32_t max_value)
{
	struct handlers *h = &handlers_ctx;
	h->srv = srv;
	h->store = store;
	h->min_value = min_value;
	h->max_value = max_value;
	int rc =
	    server_add_grpc(srv, "RatingService", "GetAggregatedRating", false, grpc_get_rating, h);
	rc =
	    rc ? rc : server_add_grpc(srv, "RatingService", "PutRating", false, grpc_put_rating, h);
	rc = rc ? rc
	        : server_add_http(srv, "/rating",
	                          HTTP1_METHOD_BIT(HTTP1_GET) | HTTP1_METHOD_BIT(HTTP1_PUT),
	                          http_rating, h);
	if (rc)
		return rc;
	if (rating_store_blocking(store))
		server_set_ready_probe(srv, store_probe, h, 1000);
	return 0;
}
