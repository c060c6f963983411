/*
 * metadata: the movie metadata service (MetadataService, port 8081).
 * Wiring only: configuration, logging, store, handlers, server.
 */
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "handlers.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "movie/server.h"
#include "movie/service.h"
#include "store.h"
#include "movie/banned.h"

int main(int argc, char **argv)
{
	struct metadata_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	bool done;
	int status = service_load_config(argc, argv, &metadata_config_schema, &cfg, &done);
	if (status != 0 || done)
		return status == 0 ? 0 : 1;

	enum log_level level = LOG_INFO;
	log_level_parse(cfg.server.log_level, &level);
	log_init("metadata", level, 1);

	status = 1;
	struct metrics_registry *metrics = metrics_registry_new();
	if (!metrics)
		goto fail_config;
	struct store_config store_cfg;
	storage_options_to_store_config(&cfg.storage, &store_cfg);
	char why[256] = "";
	struct metadata_store *store = metadata_store_open(&store_cfg, why, sizeof(why));
	if (!store) {
		log_error("cannot open the store", LOG_S("driver", store_cfg.driver),
		          LOG_S("error", why));
		goto fail_metrics;
	}
	struct server *srv = server_new(&cfg.server, "metadata", "MetadataService", metrics);
	if (!srv)
		goto fail_store;
	if (metadata_handlers_register(srv, store) != 0)
		goto fail_server;
	log_info("starting", LOG_S("storage", store_cfg.driver));
	status = server_run(srv) == 0 ? 0 : 1;
fail_server:
	server_free(srv);
fail_store:
	metadata_store_close(store);
fail_metrics:
	metrics_registry_free(metrics);
fail_config:
	cfg_release(&metadata_config_schema, &cfg);
	return status;
}
