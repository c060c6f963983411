/*
 * handlers.h - the rating service's API: gRPC RatingService and the HTTP/JSON
 * endpoint /rating (GET the mean, PUT a rating), over a rating_store.
 */
#ifndef RATING_HANDLERS_H
#define RATING_HANDLERS_H

#include <stdint.h>

#include "movie/server.h"
#include "store.h"

/* Register every handler on `srv`; ratings outside [min_value, max_value] are
 * rejected. `store` must outlive the server. Returns 0 or MV_ENOMEM. */
int rating_handlers_register(struct server *srv, struct rating_store *store, int32_t min_value,
                             int32_t max_value);

#endif
