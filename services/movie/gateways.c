/* Typed peer clients over per-loop gRPC channels (see gateways.h). */
#include "gateways.h"

#include <stdlib.h>
#include <string.h>

#include "movie.pb-c.h"
#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/grpc_client.h"
#include "movie/server.h"
#include "movie/banned.h"

struct gateways {
	struct grpc_channel *metadata;
	struct grpc_channel *rating;
};

static __thread struct gateways *loop_gateways;

static struct grpc_channel *open_channel(const char *name, const struct cfg_string_list *targets,
                                         const struct movie_config *cfg,
                                         struct metrics_registry *metrics)
{
	struct grpc_channel_config cc = {
	    .name = name,
	    .targets = (const char *const *)targets->items,
	    .target_count = targets->count,
	    .resolve_interval_ms = cfg->resolve_interval_ms,
	    .default_timeout_ms = cfg->timeout_ms,
	    .max_attempts = (int)cfg->max_attempts,
	    .retry_budget_ratio = cfg->retry_budget,
	    .max_message_bytes = (size_t)cfg->server.max_message_bytes,
	    .metrics = metrics,
	};
	return grpc_channel_new(server_current_loop(), &cc);
}

struct gateways *gateways_for_this_loop(const struct movie_config *cfg,
                                        struct metrics_registry *metrics)
{
	if (loop_gateways)
		return loop_gateways;
	if (!server_current_loop())
		return NULL;
	struct gateways *gw = calloc(1, sizeof(*gw));
	if (!gw)
		return NULL;
	gw->metadata = open_channel("metadata", &cfg->metadata_addresses, cfg, metrics);
	gw->rating = open_channel("rating", &cfg->rating_addresses, cfg, metrics);
	if (!gw->metadata || !gw->rating) {
		if (gw->metadata)
			grpc_channel_close(gw->metadata);
		if (gw->rating)
			grpc_channel_close(gw->rating);
		free(gw);
		return NULL;
	}
	loop_gateways = gw;
	return gw;
}

void gateways_close_this_loop(void)
{
	struct gateways *gw = loop_gateways;
	if (!gw)
		return;
	loop_gateways = NULL;
	grpc_channel_close(gw->metadata);
	grpc_channel_close(gw->rating);
	free(gw);
}

void movie_metadata_release(struct movie_metadata *m)
{
	free(m->id);
	free(m->title);
	free(m->description);
	free(m->director);
	memset(m, 0, sizeof(*m));
}

struct pending {
	union {
		gateway_metadata_fn metadata;
		gateway_rating_fn rating;
	} done;
	void *arg;
};

static void metadata_done(void *arg, int status, const char *message, const uint8_t *resp,
                          size_t len)
{
	struct pending *p = arg;
	struct movie_metadata m = {0};
	if (status == GRPC_STATUS_OK) {
		GetMetadataResponse *r = get_metadata_response__unpack(NULL, len, resp);
		if (!r || !r->metadata) {
			status = GRPC_STATUS_INTERNAL;
			message = "malformed GetMetadataResponse from the metadata service";
		} else {
			m.id = strdup(r->metadata->id);
			m.title = strdup(r->metadata->title);
			m.description = strdup(r->metadata->description);
			m.director = strdup(r->metadata->director);
			if (!m.id || !m.title || !m.description || !m.director) {
				movie_metadata_release(&m);
				status = GRPC_STATUS_RESOURCE_EXHAUSTED;
				message = "out of memory";
			}
		}
		if (r)
			get_metadata_response__free_unpacked(r, NULL);
	}
	p->done.metadata(p->arg, status, message, &m);
	movie_metadata_release(&m);
	free(p);
}

static void rating_done(void *arg, int status, const char *message, const uint8_t *resp, size_t len)
{
	struct pending *p = arg;
	double value = 0;
	if (status == GRPC_STATUS_OK) {
		GetAggregatedRatingResponse *r =
		    get_aggregated_rating_response__unpack(NULL, len, resp);
		if (!r) {
			status = GRPC_STATUS_INTERNAL;
			message = "malformed GetAggregatedRatingResponse from the rating service";
		} else {
			value = r->rating_value;
			get_aggregated_rating_response__free_unpacked(r, NULL);
		}
	}
	p->done.rating(p->arg, status, message, value);
	free(p);
}

static int call_packed(struct grpc_channel *ch, const char *path, const ProtobufCMessage *msg,
                       int64_t deadline_ns, const struct trace_span *parent,
                       grpc_client_done_fn done, struct pending *p, struct grpc_client_call **call)
{
	uint8_t stack[512];
	size_t size = protobuf_c_message_get_packed_size(msg);
	uint8_t *buf = size <= sizeof(stack) ? stack : malloc(size);
	if (!buf) {
		free(p);
		return MV_ENOMEM;
	}
	protobuf_c_message_pack(msg, buf);
	/* Both calls are reads: retrying them on another replica is always safe. */
	int rc = grpc_channel_start_traced(ch, path, buf, size, deadline_ns, true, parent, done, p,
	                                   call);
	if (buf != stack)
		free(buf);
	if (rc)
		free(p);
	return rc;
}

int gateway_get_metadata(struct gateways *gw, const char *movie_id, int64_t deadline_ns,
                         const struct trace_span *parent, gateway_metadata_fn done, void *arg,
                         struct grpc_client_call **call)
{
	struct pending *p = malloc(sizeof(*p));
	if (!p)
		return MV_ENOMEM;
	p->done.metadata = done;
	p->arg = arg;
	GetMetadataRequest req = GET_METADATA_REQUEST__INIT;
	req.movie_id = (char *)(uintptr_t)movie_id;
	return call_packed(gw->metadata, "/MetadataService/GetMetadata", &req.base, deadline_ns,
	                   parent, metadata_done, p, call);
}

int gateway_get_rating(struct gateways *gw, const char *movie_id, int64_t deadline_ns,
                       const struct trace_span *parent, gateway_rating_fn done, void *arg,
                       struct grpc_client_call **call)
{
	struct pending *p = malloc(sizeof(*p));
	if (!p)
		return MV_ENOMEM;
	p->done.rating = done;
	p->arg = arg;
	GetAggregatedRatingRequest req = GET_AGGREGATED_RATING_REQUEST__INIT;
	req.record_id = (char *)(uintptr_t)movie_id;
	req.record_type = (char *)(uintptr_t) "movie";
	return call_packed(gw->rating, "/RatingService/GetAggregatedRating", &req.base, deadline_ns,
	                   parent, rating_done, p, call);
}
