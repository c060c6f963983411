/* config.h - the metadata service's configuration (docs/config.md). */
#ifndef METADATA_CONFIG_H
#define METADATA_CONFIG_H

#include "movie/cfg.h"
#include "movie/server.h"
#include "movie/service.h"

struct metadata_config {
	struct server_config server;
	struct storage_options storage;
};

/* The option table (schema->validate is metadata_config_validate). */
extern const struct cfg_schema metadata_config_schema;

/* Checks across options, run by cfg_load_all / cfg_check_all after every
 * layer (start-up, --check-config and moviectl lint alike). `config` is a
 * struct metadata_config. Adds errors to `errs`; returns 0 or MV_EINVAL. */
int metadata_config_validate(const struct cfg_schema *schema, const void *config,
                             struct cfg_errors *errs);

#endif
