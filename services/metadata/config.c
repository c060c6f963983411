/*
 * config.c - the metadata service's option table and its checks across
 * options. A library of its own (movie_metadata_config): the binary loads
 * with it, and moviectl lint loads ConfigMaps with the very same rules.
 */
#include "config.h"

#include <stddef.h>

#include "movie_ports.h" /* generated from services/services.txt */
#include "movie/banned.h"

static const struct cfg_option options[] = {
    SERVER_CONFIG_OPTIONS(struct metadata_config, server, MOVIE_PORT_metadata),
    STORAGE_OPTIONS(struct metadata_config, storage, "data/metadata.db"),
};

int metadata_config_validate(const struct cfg_schema *schema, const void *config,
                             struct cfg_errors *errs)
{
	/* Every metadata option is checked alone by the table. */
	return 0;
}

const struct cfg_schema metadata_config_schema = {
    .program = "metadata",
    .env_prefix = "METADATA",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
    .config_size = sizeof(struct metadata_config),
    .validate = metadata_config_validate,
};
