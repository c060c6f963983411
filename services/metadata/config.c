#include "config.h"

#include <stddef.h>

#include "movie/banned.h"

static const struct cfg_option options[] = {
    SERVER_CONFIG_OPTIONS(struct metadata_config, server, "8081"),
    STORAGE_OPTIONS(struct metadata_config, storage, "data/metadata.db"),
};

const struct cfg_schema metadata_config_schema = {
    .program = "metadata",
    .env_prefix = "METADATA",
    .options = options,
    .option_count = sizeof(options) / sizeof(options[0]),
};
