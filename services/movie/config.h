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

/* The option table (schema->validate is movie_config_validate). Each peer
 * address is checked by cfg_check_host_port as it is loaded. */
extern const struct cfg_schema movie_config_schema;

/* Checks across options (each peer list has 1..64 addresses), run by
 * cfg_load_all / cfg_check_all after every layer (start-up, --check-config
 * and moviectl lint alike). `config` is a struct movie_config. Adds errors to
 * `errs`; returns 0 or MV_EINVAL. */
int movie_config_validate(const struct cfg_schema *schema, const void *config,
                          struct cfg_errors *errs);

#endif
