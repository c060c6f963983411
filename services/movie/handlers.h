/*
 * handlers.h - the movie service's API: gRPC MovieService.GetMovieDetails and
 * HTTP GET /movie, composed from the metadata and rating services, which are
 * called concurrently through per-loop gRPC client channels (the gateways).
 */
#ifndef MOVIE_HANDLERS_H
#define MOVIE_HANDLERS_H

#include "config.h"
#include "movie/metrics.h"
#include "movie/server.h"

/* Register the handlers; `cfg` and `metrics` must outlive the server.
 * Returns 0 or MV_ENOMEM. */
int movie_handlers_register(struct server *srv, const struct movie_config *cfg,
                            struct metrics_registry *metrics);

#endif
