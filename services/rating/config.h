/* config.h - the rating service's configuration (docs/config.md). */
#ifndef RATING_CONFIG_H
#define RATING_CONFIG_H

#include "movie/cfg.h"
#include "movie/server.h"
#include "movie/service.h"

struct rating_config {
	struct server_config server;
	struct storage_options storage;
	int64_t min_value;
	int64_t max_value;
	struct cfg_string_list kafka_brokers;
	char *kafka_topic;
	char *kafka_group_id;
	char *kafka_dead_letter_topic;
	int64_t kafka_batch_max;
	int64_t kafka_session_timeout_ms;
};

/* The option table (schema->validate is rating_config_validate). */
extern const struct cfg_schema rating_config_schema;

/* Checks across options (rating.min_value <= rating.max_value), run by
 * cfg_load_all / cfg_check_all after every layer (start-up, --check-config
 * and moviectl lint alike). `config` is a struct rating_config. Adds errors
 * to `errs`; returns 0 or MV_EINVAL. */
int rating_config_validate(const struct cfg_schema *schema, const void *config,
                           struct cfg_errors *errs);

#endif
