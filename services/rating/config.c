/*
 * config.c - the rating service's option table and its checks across
 * options. A library of its own (movie_rating_config): the binary loads with
 * it, and moviectl lint loads ConfigMaps with the very same rules.
 */
#include "config.h"

#include <stddef.h>

#include "movie/err.h"
#include "movie_ports.h" /* generated from services/services.txt */
#include "movie/banned.h"

static const struct cfg_option options[] = {
    SERVER_CONFIG_OPTIONS(struct rating_config, server, MOVIE_PORT_rating),
    STORAGE_OPTIONS(struct rating_config, storage, "data/rating.db"),
    {.key = "rating.min_value",
     .type = CFG_INT,
     .offset = offsetof(struct rating_config, min_value),
     .default_value = "1",
     .min = -1000000,
     .max = 1000000,
     .help = "smallest accepted rating"},
    {.key = "rating.max_value",
     .type = CFG_INT,
     .offset = offsetof(struct rating_config, max_value),
     .default_value = "5",
     .min = -1000000,
     .max = 1000000,
     .help = "largest accepted rating"},
    {.key = "kafka.brokers",
     .type = CFG_STRING_LIST,
     .offset = offsetof(struct rating_config, kafka_brokers),
     .help = "bootstrap servers host:port; empty = no Kafka ingestion",
     .check = cfg_check_host_port},
    {.key = "kafka.topic",
     .type = CFG_STRING,
     .offset = offsetof(struct rating_config, kafka_topic),
     .default_value = "ratings",
     .max = 249,
     .help = "topic of rating events"},
    {.key = "kafka.group_id",
     .type = CFG_STRING,
     .offset = offsetof(struct rating_config, kafka_group_id),
     .default_value = "rating",
     .max = 255,
     .help = "consumer group"},
    {.key = "kafka.dead_letter_topic",
     .type = CFG_STRING,
     .offset = offsetof(struct rating_config, kafka_dead_letter_topic),
     .default_value = "",
     .max = 249,
     .help = "rejected events are produced here when set"},
    {.key = "kafka.batch_max",
     .type = CFG_INT,
     .offset = offsetof(struct rating_config, kafka_batch_max),
     .default_value = "1000",
     .min = 1,
     .max = 100000,
     .help = "events stored per transaction"},
    {.key = "kafka.session_timeout",
     .type = CFG_DURATION_MS,
     .offset = offsetof(struct rating_config, kafka_session_timeout_ms),
     .default_value = "10s",
     .min = 1000,
     .max = 3600000,
     .help = "consumer group session timeout"},
};

int rating_config_validate(const struct cfg_schema *schema, const void *config,
                           struct cfg_errors *errs)
{
	const struct rating_config *cfg = config;
	if (cfg->min_value <= cfg->max_value)
		return 0;
	/* Placed where the smaller bound was written, or else the larger one. */
	const char *where = cfg_origin(schema, config, "rating.min_value");
	if (!where)
		where = cfg_origin(schema, config, "rating.max_value");
	cfg_errors_add(errs, MV_EINVAL, where, "rating.min_value",
	               "%lld is greater than rating.max_value (%lld)", (long long)cfg->min_value,
	               (long long)cfg->max_value);
	return MV_EINVAL;
}

const struct cfg_schema rating_config_schema = {
    .program = "rating",
    .env_prefix = "RATING",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
    .config_size = sizeof(struct rating_config),
    .validate = rating_config_validate,
};
