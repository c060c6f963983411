#include "config.h"

#include <stddef.h>

#include "movie/banned.h"

static const struct cfg_option options[] = {
    SERVER_CONFIG_OPTIONS(struct movie_config, server, "8083"),
    {.key = "peers.metadata.addresses",
     .type = CFG_STRING_LIST,
     .offset = offsetof(struct movie_config, metadata_addresses),
     .default_value = "127.0.0.1:8081",
     .help = "metadata service host:port list; names resolve to every address"},
    {.key = "peers.rating.addresses",
     .type = CFG_STRING_LIST,
     .offset = offsetof(struct movie_config, rating_addresses),
     .default_value = "127.0.0.1:8082",
     .help = "rating service host:port list; names resolve to every address"},
    {.key = "peers.resolve_interval",
     .type = CFG_DURATION_MS,
     .offset = offsetof(struct movie_config, resolve_interval_ms),
     .default_value = "5s",
     .min = 100,
     .max = 3600000,
     .help = "re-resolve peer names this often"},
    {.key = "peers.timeout",
     .type = CFG_DURATION_MS,
     .offset = offsetof(struct movie_config, timeout_ms),
     .default_value = "1s",
     .min = 1,
     .max = 600000,
     .help = "deadline of a peer call when the caller sent none"},
    {.key = "peers.retry_budget",
     .type = CFG_DOUBLE,
     .offset = offsetof(struct movie_config, retry_budget),
     .default_value = "0.2",
     .dmin = 0.0,
     .dmax = 1.0,
     .help = "retries allowed per call made"},
    {.key = "peers.max_attempts",
     .type = CFG_INT,
     .offset = offsetof(struct movie_config, max_attempts),
     .default_value = "3",
     .min = 1,
     .max = 5,
     .help = "attempts per peer call, bounded by the deadline"},
};

const struct cfg_schema movie_config_schema = {
    .program = "movie",
    .env_prefix = "MOVIE",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
};
