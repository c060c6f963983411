/*
 * gateways.h - typed clients of the movie service's peers (metadata, rating).
 *
 * One gateway per worker loop, created lazily on first use on that loop and
 * closed when the worker stops; it owns one gRPC channel per peer. Calls and
 * their callbacks run on the loop thread.
 */
#ifndef MOVIE_GATEWAYS_H
#define MOVIE_GATEWAYS_H

#include <stdint.h>

#include "config.h"

struct metrics_registry;
struct gateways;

/* The gateway of the calling worker loop (created on first use).
 * Returns NULL outside a worker loop or on allocation failure. */
struct gateways *gateways_for_this_loop(const struct movie_config *cfg,
                                        struct metrics_registry *metrics);
/* Close the calling loop's gateway (pending calls fail with UNAVAILABLE). */
void gateways_close_this_loop(void);

/* Metadata as the movie service needs it (owned strings). */
struct movie_metadata {
	char *id, *title, *description, *director;
};
void movie_metadata_release(struct movie_metadata *m);

/* Completion: status is a gRPC status; on OK, *m / rating hold the result. */
typedef void (*gateway_metadata_fn)(void *arg, int status, const char *message,
                                    struct movie_metadata *m);
typedef void (*gateway_rating_fn)(void *arg, int status, const char *message, double rating);

struct grpc_client_call;
struct trace_span;

/* Start GetMetadata(movie_id) / GetAggregatedRating(movie_id, "movie") with
 * the absolute deadline (0 = none; peers.timeout caps it either way). The
 * callback runs exactly once, never before return. *call receives the peer
 * call for grpc_client_call_cancel (which runs the callback with CANCELLED);
 * it is valid until the callback starts. The peer call is a client span, child
 * of `parent` (the request's server span; copied), whose traceparent the peer
 * receives. Returns 0 or MV_ENOMEM / MV_ECLOSED (no callback). */
int gateway_get_metadata(struct gateways *gw, const char *movie_id, int64_t deadline_ns,
                         const struct trace_span *parent, gateway_metadata_fn done, void *arg,
                         struct grpc_client_call **call);
int gateway_get_rating(struct gateways *gw, const char *movie_id, int64_t deadline_ns,
                       const struct trace_span *parent, gateway_rating_fn done, void *arg,
                       struct grpc_client_call **call);

#endif
