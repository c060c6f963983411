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

extern const struct cfg_schema metadata_config_schema;

#endif
