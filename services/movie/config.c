/*
 * config.c - the movie service's option table and its checks across
 * options. A library of its own (movie_movie_config): the binary loads with
 * it, and moviectl lint loads ConfigMaps with the very same rules.
 */
#include "config.h"

#include <stddef.h>

#include "movie/err.h"
#include "movie_ports.h" /* generated from services/services.txt */
#include "movie/banned.h"

/* The gRPC channel's cap on targets (grpc_channel_new refuses more). */
#define PEER_TARGETS_MAX 64

static const struct cfg_option options[] = {
    SERVER_CONFIG_OPTIONS(struct movie_config, server, MOVIE_PORT_movie),
    {.key = "peers.metadata.addresses",
     .type = CFG_STRING_LIST,
     .offset = offsetof(struct movie_config, metadata_addresses),
     .default_value = "127.0.0.1:" MOVIE_PORT_metadata,
     .help = "metadata service host:port list; names resolve to every address",
     .check = cfg_check_host_port},
    {.key = "peers.rating.addresses",
     .type = CFG_STRING_LIST,
     .offset = offsetof(struct movie_config, rating_addresses),
     .default_value = "127.0.0.1:" MOVIE_PORT_rating,
     .help = "rating service host:port list; names resolve to every address",
     .check = cfg_check_host_port},
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

/* A peer list the channel would refuse: the service would start, say ready
 * and answer every call UNAVAILABLE. */
static int check_peer_list(const struct cfg_schema *schema, const void *config, const char *key,
                           const struct cfg_string_list *list, struct cfg_errors *errs)
{
	const char *where = cfg_origin(schema, config, key);
	if (list->count == 0) {
		cfg_errors_add(errs, MV_EINVAL, where, key,
		               "at least one host:port is needed to reach the peer");
		return MV_EINVAL;
	}
	if (list->count > PEER_TARGETS_MAX) {
		cfg_errors_add(errs, MV_EINVAL, where, key, "%zu addresses, at most %d",
		               list->count, PEER_TARGETS_MAX);
		return MV_EINVAL;
	}
	return 0;
}

int movie_config_validate(const struct cfg_schema *schema, const void *config,
                          struct cfg_errors *errs)
{
	const struct movie_config *cfg = config;
	int a = check_peer_list(schema, config, "peers.metadata.addresses",
	                        &cfg->metadata_addresses, errs);
	int b =
	    check_peer_list(schema, config, "peers.rating.addresses", &cfg->rating_addresses, errs);
	return a ? a : b;
}

const struct cfg_schema movie_config_schema = {
    .program = "movie",
    .env_prefix = "MOVIE",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
    .config_size = sizeof(struct movie_config),
    .validate = movie_config_validate,
};
