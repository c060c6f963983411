/*
 * The movie service's handlers. GetMovieDetails asks metadata and rating at
 * the same time and composes the answer:
 *   metadata NOT_FOUND            -> NOT_FOUND
 *   metadata failed otherwise     -> UNAVAILABLE (DEADLINE_EXCEEDED when the deadline ran out)
 *   rating NOT_FOUND (unrated)    -> OK, rating 0 (HTTP: "rating": null)
 *   rating failed otherwise       -> OK with metadata only: degraded, counted and logged
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateways.h"
#include "movie.pb-c.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/grpc_client.h"
#include "movie/log.h"
#include "movie/service.h"
#include "movie/text.h"
#include "movie/banned.h"

#define MOVIE_ID_MAX 256

struct handlers {
	struct server *srv;
	const struct movie_config *cfg;
	struct metrics_registry *metrics;
	struct metrics_counter *degraded;
	struct metrics_counter *unrated;
};

static struct handlers handlers_ctx;

struct request {
	struct handlers *h;
	struct grpc_call *call;   /* gRPC, or */
	struct http_exchange *ex; /* HTTP */
	char id[MOVIE_ID_MAX + 1];
	int outstanding; /* peer calls not yet completed */
	/* The peer calls while outstanding, to cancel them with the caller's call. */
	struct grpc_client_call *metadata_call;
	struct grpc_client_call *rating_call;
	bool cancelled; /* the caller went away: nobody reads the answer */
	int metadata_status;
	char metadata_message[160];
	struct movie_metadata metadata;
	int rating_status;
	double rating;
};

static void finish_grpc(struct request *r, bool has_rating)
{
	Metadata m = METADATA__INIT;
	m.id = r->metadata.id;
	m.title = r->metadata.title;
	m.description = r->metadata.description;
	m.director = r->metadata.director;
	MovieDetails details = MOVIE_DETAILS__INIT;
	details.metadata = &m;
	details.rating = has_rating ? r->rating : 0;
	GetMovieDetailsResponse resp = GET_MOVIE_DETAILS_RESPONSE__INIT;
	resp.movie_details = &details;
	service_grpc_finish_message(r->call, &resp.base);
}

static void finish_http(struct request *r, bool has_rating)
{
	struct buf body;
	buf_init(&body, 0);
	const struct movie_metadata *m = &r->metadata;
	int rc = buf_append_str(&body, "{\"metadata\":");
	rc = rc ? rc : service_json_metadata(&body, m->id, m->title, m->description, m->director);
	if (has_rating)
		rc = rc ? rc : buf_printf(&body, ",\"rating\":%.17g}\n", r->rating);
	else
		rc = rc ? rc : buf_append_str(&body, ",\"rating\":null}\n");
	if (rc)
		service_http_error(r->ex, 503,
		                   "out of memory"); /* retryable: docs/internals/core.md */
	else
		server_http_respond(r->ex, 200, "application/json", body.data, body.len);
	buf_release(&body);
}

static void fail(struct request *r, int status, const char *message)
{
	if (r->call) {
		grpc_call_finish(r->call, status, message, NULL, 0);
		return;
	}
	/* 499: the client closed the request (nobody reads it; for the metrics). */
	int http = status == GRPC_STATUS_NOT_FOUND          ? 404
	           : status == GRPC_STATUS_INVALID_ARGUMENT ? 400
	           : status == GRPC_STATUS_CANCELLED        ? 499
	                                                    : 503;
	service_http_error(r->ex, http, message);
}

static void complete(struct request *r)
{
	struct handlers *h = r->h;
	if (r->cancelled) {
		/* Not a degraded answer: there is no answer (and no one to log for). */
		fail(r, GRPC_STATUS_CANCELLED, "cancelled by the caller");
	} else if (r->metadata_status == GRPC_STATUS_NOT_FOUND) {
		fail(r, GRPC_STATUS_NOT_FOUND, "movie not found");
	} else if (r->metadata_status == GRPC_STATUS_DEADLINE_EXCEEDED) {
		fail(r, GRPC_STATUS_DEADLINE_EXCEEDED, "metadata service: deadline exceeded");
	} else if (r->metadata_status != GRPC_STATUS_OK) {
		char why[224];
		snprintf(why, sizeof(why), "metadata service unavailable: %s", r->metadata_message);
		fail(r, GRPC_STATUS_UNAVAILABLE, why);
	} else {
		bool has_rating = r->rating_status == GRPC_STATUS_OK;
		if (r->rating_status == GRPC_STATUS_NOT_FOUND) {
			metrics_counter_inc(h->unrated);
		} else if (!has_rating) {
			metrics_counter_inc(h->degraded);
			log_warn("rating unavailable: answering with metadata only",
			         MV_LOG_S("movie_id", r->id),
			         MV_LOG_S("rating_status", grpc_status_name(r->rating_status)));
		}
		if (r->call)
			finish_grpc(r, has_rating);
		else
			finish_http(r, has_rating);
	}
	movie_metadata_release(&r->metadata);
	free(r);
}

static void on_metadata(void *arg, int status, const char *message, struct movie_metadata *m)
{
	struct request *r = arg;
	r->metadata_call = NULL;
	r->metadata_status = status;
	snprintf(r->metadata_message, sizeof(r->metadata_message), "%s", message ? message : "");
	if (status == GRPC_STATUS_OK) {
		r->metadata = *m;
		memset(m, 0, sizeof(*m)); /* ownership moves to the request */
	}
	if (--r->outstanding == 0)
		complete(r);
}

static void on_rating(void *arg, int status, const char *message, double rating)
{
	struct request *r = arg;
	r->rating_call = NULL;
	r->rating_status = status;
	r->rating = rating;
	if (--r->outstanding == 0)
		complete(r);
}

/* Peer channels could not be created on this loop (out of memory or fds):
 * every request fails the same way until they can, so say it once per loop
 * per CHANNEL_LOG_INTERVAL_NS with the count of the failures in between,
 * not once per request. */
#define CHANNEL_LOG_INTERVAL_NS (10LL * 1000000000)
static void log_channels_failed(void)
{
	static __thread int64_t last_ns; /* per loop thread */
	static __thread long suppressed;
	int64_t now = grpc_now_ns();
	if (last_ns && now - last_ns < CHANNEL_LOG_INTERVAL_NS) {
		suppressed++;
		return;
	}
	log_error("cannot create peer channels: answering UNAVAILABLE",
	          MV_LOG_I("suppressed", suppressed));
	last_ns = now;
	suppressed = 0;
}

/* Start both peer calls; on a local failure answer at once. */
static void start(struct request *r, int64_t deadline_ns, const struct trace_span *span)
{
	struct gateways *gw = gateways_for_this_loop(r->h->cfg, r->h->metrics);
	if (!gw) {
		log_channels_failed();
		fail(r, GRPC_STATUS_UNAVAILABLE, "cannot create peer channels");
		free(r);
		return;
	}
	r->outstanding = 2;
	if (gateway_get_metadata(gw, r->id, deadline_ns, span, on_metadata, r, &r->metadata_call) !=
	    0) {
		r->outstanding--;
		r->metadata_status = GRPC_STATUS_UNAVAILABLE;
		snprintf(r->metadata_message, sizeof(r->metadata_message), "call not started");
	}
	if (gateway_get_rating(gw, r->id, deadline_ns, span, on_rating, r, &r->rating_call) != 0) {
		r->outstanding--;
		r->rating_status = GRPC_STATUS_UNAVAILABLE;
	}
	if (r->outstanding == 0)
		complete(r);
}

/* The caller cancelled or its connection went: nobody wants the answer, so
 * the peer calls are cancelled too (RST_STREAM downstream) and the request is
 * freed now, not when the peers answer or time out. Each cancel completes its
 * call synchronously; the last completion finishes (and frees) r. */
static void cancel_peers(struct request *r)
{
	struct grpc_client_call *peers[2] = {r->metadata_call, r->rating_call};
	r->cancelled = true;
	for (int i = 0; i < 2; i++)
		if (peers[i])
			grpc_client_call_cancel(peers[i]);
}

static void on_caller_cancelled(struct grpc_call *call, void *arg)
{
	cancel_peers(arg);
}

/* The HTTP/1.1 client went away (EOF or reset): the same as a gRPC cancel. */
static void on_http_caller_gone(struct http_exchange *ex, void *arg)
{
	cancel_peers(arg);
}

/* The id rule of docs/api.md ("Strings"); len is the id's true length. */
static const char *check_id(const char *id, size_t len)
{
	if (!id || len == 0)
		return "movie id must not be empty";
	if (len > MOVIE_ID_MAX)
		return "movie id too long";
	const char *bad = text_check_id(id, len);
	if (bad) {
		static __thread char why[64]; /* per loop thread */
		snprintf(why, sizeof(why), "movie id: %s", bad);
		return why;
	}
	return NULL;
}

static void grpc_get_movie_details(struct grpc_call *call, const uint8_t *msg, size_t len,
                                   void *ctx)
{
	if (!service_grpc_check_text(call, &get_movie_details_request__descriptor, msg, len))
		return;
	GetMovieDetailsRequest *req = get_movie_details_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT,
		                 "malformed GetMovieDetailsRequest", NULL, 0);
		return;
	}
	const char *why = check_id(req->movie_id, req->movie_id ? strlen(req->movie_id) : 0);
	struct request *r = why ? NULL : calloc(1, sizeof(*r));
	if (r)
		memcpy(r->id, req->movie_id, strlen(req->movie_id) + 1);
	get_movie_details_request__free_unpacked(req, NULL);
	if (!r) {
		grpc_call_finish(
		    call, why ? GRPC_STATUS_INVALID_ARGUMENT : GRPC_STATUS_RESOURCE_EXHAUSTED,
		    why ? why : "out of memory", NULL, 0);
		return;
	}
	r->h = ctx;
	r->call = call;
	grpc_call_on_cancel(call, on_caller_cancelled, r);
	/* The caller's deadline travels downstream (the channel sends what is
	 * left, capped at peers.timeout). */
	start(r, grpc_call_deadline(call), grpc_call_span(call));
}

static void http_movie(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	struct request *r = calloc(1, sizeof(*r));
	if (!r) {
		service_http_error(ex, 503, "out of memory");
		return;
	}
	int n = http1_query_get(req->query, "id", r->id, sizeof(r->id));
	if (n <= 0) {
		free(r);
		service_http_error(ex, 400,
		                   n == MV_ETOOBIG  ? "movie id too long"
		                   : n == MV_EINVAL ? "malformed query string"
		                                    : "query parameter id is required");
		return;
	}
	const char *why = check_id(r->id, (size_t)n);
	if (why) {
		free(r);
		service_http_error(ex, 400, why);
		return;
	}
	r->h = ctx;
	r->ex = ex;
	server_http_on_cancel(ex, on_http_caller_gone, r);
	start(r, 0, server_http_span(ex));
}

static void worker_stopped(void *ctx)
{
	gateways_close_this_loop();
}

int movie_handlers_register(struct server *srv, const struct movie_config *cfg,
                            struct metrics_registry *metrics)
{
	struct handlers *h = &handlers_ctx;
	h->srv = srv;
	h->cfg = cfg;
	h->metrics = metrics;
	struct metrics_family *degraded = metrics_counter_family(
	    metrics, "movie_rating_degraded_total",
	    "GetMovieDetails answers without a rating because the rating service failed.", 0, NULL);
	struct metrics_family *unrated =
	    metrics_counter_family(metrics, "movie_unrated_total",
	                           "GetMovieDetails answers for movies with no ratings.", 0, NULL);
	h->degraded = degraded ? metrics_counter_get(degraded, NULL) : NULL;
	h->unrated = unrated ? metrics_counter_get(unrated, NULL) : NULL;
	if (!h->degraded || !h->unrated)
		return MV_ENOMEM;
	server_on_worker_stop(srv, worker_stopped, h);
	int rc = server_add_grpc(srv, "MovieService", "GetMovieDetails", false,
	                         grpc_get_movie_details, h);
	return rc ? rc : server_add_http(srv, "/movie", HTTP1_METHOD_BIT(HTTP1_GET), http_movie, h);
}
