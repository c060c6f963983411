/* config.h - the movie service's configuration (docs/config.md). */
#ifndef MOVIE_SVC_CONFIG_H
#define MOVIE_SVC_CONFIG_H

#include "movie/cfg.h"
#include "movie/server.h"

struct movie_config {
	struct server_config server;
	struct cfg_string_list metadata_addresses;
	struct cfg_string_list rating_addresses;
	int64_t resolve_interval_ms;
	int64_t timeout_ms;
	double retry_budget;
	int64_t max_attempts;
};

extern const struct cfg_schema movie_config_schema;

#endif
