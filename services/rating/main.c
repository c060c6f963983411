/*
 * rating: the rating service (RatingService, port 8082), plus ingestion of
 * rating events from Kafka when kafka.brokers is set.
 * Its declaration: configuration, store, handlers and ingestion as start and
 * stop hooks; movie/service_main.h runs it.
 */
#include <stddef.h>

#include "config.h"
#include "handlers.h"
#include "ingest.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/service_main.h"
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
		log_error("cannot start kafka ingestion", MV_LOG_S("error", why));
		*failed = true;
	}
	return in;
}

static void *store_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	return rating_store_open(cfg, errbuf, errbuf_size);
}

static void store_close(void *store)
{
	rating_store_close(store);
}

static int register_handlers(struct service_run *run)
{
	const struct rating_config *cfg = run->config;
	return rating_handlers_register(run->srv, run->store, (int32_t)cfg->min_value,
	                                (int32_t)cfg->max_value);
}

static int start(struct service_run *run)
{
	bool failed;
	run->state = start_ingestion(run->config, run->store, run->metrics, &failed);
	return failed ? MV_EIO : 0;
}

/* After the API drained: commits what was stored, leaves the group. */
static void stop(struct service_run *run)
{
	if (run->state)
		ingest_stop(run->state);
}

static void log_starting(const struct service_run *run)
{
	log_info("starting", MV_LOG_S("storage", run->storage_driver),
	         MV_LOG_B("kafka", run->state != NULL));
}

static const struct service_def rating_service = {
    .name = "rating",
    .grpc_service = "RatingService",
    .schema = &rating_config_schema,
    .server_offset = offsetof(struct rating_config, server),
    .storage_offset = offsetof(struct rating_config, storage),
    .store_open = store_open,
    .store_close = store_close,
    .register_handlers = register_handlers,
    .start = start,
    .stop = stop,
    .log_starting = log_starting,
};

int main(int argc, char **argv)
{
	return service_main(&rating_service, argc, argv);
}
