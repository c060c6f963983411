/*
 * rating: the rating service (RatingService, port 8082), plus ingestion of
 * rating events from Kafka when kafka.brokers is set.
 * Wiring only: configuration, logging, store, ingestion, handlers, server.
 */
#include <string.h>

#include "config.h"
#include "handlers.h"
#include "ingest.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "movie/server.h"
#include "movie/service.h"
#include "store.h"
#include "movie/banned.h"

static struct ingest *start_ingestion(const struct rating_config *cfg, struct rating_store *store,
                                      struct metrics_registry *metrics, bool *failed)
{
	*failed = false;
	if (cfg->kafka_brokers.count == 0) {
		log_info("kafka ingestion off (no kafka.brokers)");
		return NULL;
	}
	struct ingest_config icfg = {
	    .brokers = (const char *const *)cfg->kafka_brokers.items,
	    .broker_count = cfg->kafka_brokers.count,
	    .topic = cfg->kafka_topic,
	    .group_id = cfg->kafka_group_id,
	    .dead_letter_topic = cfg->kafka_dead_letter_topic,
	    .batch_max = cfg->kafka_batch_max,
	    .session_timeout_ms = cfg->kafka_session_timeout_ms,
	    .min_value = (int32_t)cfg->min_value,
	    .max_value = (int32_t)cfg->max_value,
	};
	char why[256] = "";
	struct ingest *in = ingest_start(&icfg, store, metrics, why, sizeof(why));
	if (!in) {
		log_error("cannot start kafka ingestion", LOG_S("error", why));
		*failed = true;
	}
	return in;
}

int main(int argc, char **argv)
{
	struct rating_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	bool done;
	int status = service_load_config(argc, argv, &rating_config_schema, &cfg, &done);
	if (status != 0 || done)
		return status == 0 ? 0 : 1;

	enum log_level level = LOG_INFO;
	log_level_parse(cfg.server.log_level, &level);
	log_init("rating", level, 1);

	status = 1;
	struct metrics_registry *metrics = metrics_registry_new();
	if (!metrics)
		goto fail_config;
	struct store_config store_cfg;
	storage_options_to_store_config(&cfg.storage, &store_cfg);
	char why[256] = "";
	struct rating_store *store = rating_store_open(&store_cfg, why, sizeof(why));
	if (!store) {
		log_error("cannot open the store", LOG_S("driver", store_cfg.driver),
		          LOG_S("error", why));
		goto fail_metrics;
	}
	struct server *srv = server_new(&cfg.server, "rating", "RatingService", metrics);
	if (!srv)
		goto fail_store;
	if (rating_handlers_register(srv, store, (int32_t)cfg.min_value, (int32_t)cfg.max_value) !=
	    0)
		goto fail_server;
	bool ingest_failed;
	struct ingest *ingest = start_ingestion(&cfg, store, metrics, &ingest_failed);
	if (ingest_failed)
		goto fail_server;
	log_info("starting", LOG_S("storage", store_cfg.driver), LOG_B("kafka", ingest != NULL));
	status = server_run(srv) == 0 ? 0 : 1;
	/* Stop ingestion after the API drained: commits what was stored, leaves the group. */
	if (ingest)
		ingest_stop(ingest);
fail_server:
	server_free(srv);
fail_store:
	rating_store_close(store);
fail_metrics:
	metrics_registry_free(metrics);
fail_config:
	cfg_release(&rating_config_schema, &cfg);
	return status;
}
