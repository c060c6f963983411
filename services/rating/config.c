#include "config.h"

#include <stddef.h>

#include "movie/banned.h"

static const struct cfg_option options[] = {
	SERVER_CONFIG_OPTIONS(struct rating_config, server, "8082"),
	STORAGE_OPTIONS(struct rating_config, storage, "data/rating.db"),
	{.key = "rating.min_value", .type = CFG_INT, .offset = offsetof(struct rating_config, min_value),
	 .default_value = "1", .min = -1000000, .max = 1000000, .help = "smallest accepted rating"},
	{.key = "rating.max_value", .type = CFG_INT, .offset = offsetof(struct rating_config, max_value),
	 .default_value = "5", .min = -1000000, .max = 1000000, .help = "largest accepted rating"},
	{.key = "kafka.brokers", .type = CFG_STRING_LIST,
	 .offset = offsetof(struct rating_config, kafka_brokers),
	 .help = "bootstrap servers host:port; empty = no Kafka ingestion"},
	{.key = "kafka.topic", .type = CFG_STRING, .offset = offsetof(struct rating_config, kafka_topic),
	 .default_value = "ratings", .max = 249, .help = "topic of rating events"},
	{.key = "kafka.group_id", .type = CFG_STRING,
	 .offset = offsetof(struct rating_config, kafka_group_id), .default_value = "rating",
	 .max = 255, .help = "consumer group"},
	{.key = "kafka.dead_letter_topic", .type = CFG_STRING,
	 .offset = offsetof(struct rating_config, kafka_dead_letter_topic), .default_value = "",
	 .max = 249, .help = "rejected events are produced here when set"},
	{.key = "kafka.batch_max", .type = CFG_INT,
	 .offset = offsetof(struct rating_config, kafka_batch_max), .default_value = "1000",
	 .min = 1, .max = 100000, .help = "events stored per transaction"},
	{.key = "kafka.session_timeout", .type = CFG_DURATION_MS,
	 .offset = offsetof(struct rating_config, kafka_session_timeout_ms), .default_value = "10s",
	 .min = 1000, .max = 3600000, .help = "consumer group session timeout"},
};

const struct cfg_schema rating_config_schema = {
	.program = "rating",
	.env_prefix = "RATING",
	.options = options,
	.option_count = sizeof(options) / sizeof(options[0]),
};
