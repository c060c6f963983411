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

extern const struct cfg_schema rating_config_schema;

#endif
