/*
 * service_main.c - the start-up ladder of every service (movie/service_main.h).
 */
#include "movie/service_main.h"

#include <stdio.h>
#include <stdlib.h>

#include "movie/err.h"
#include "movie/log.h"
#include "movie/service.h"
#include "movie/banned.h"

/* About 7,000 request lines: 30 ms of the fastest service at full load. */
#define SERVICE_LOG_QUEUE_BYTES ((size_t)1 << 20)
/* At exit, how long stdout may take to accept what is queued. */
#define SERVICE_LOG_STOP_MS 2000

static void log_starting_default(const struct service_run *run)
{
	if (run->storage_driver)
		log_info("starting", MV_LOG_S("storage", run->storage_driver));
	else
		log_info("starting");
}

int service_main(const struct service_def *def, int argc, char **argv)
{
	struct service_run run = {.def = def};
	bool done;
	int status = 1;

	run.config = calloc(1, def->schema->config_size);
	if (!run.config) {
		fprintf(stderr, "%s: out of memory\n", def->name);
		return 1;
	}
	int rc = service_load_config(argc, argv, def->schema, run.config, &done);
	if (rc != 0 || done) {
		free(run.config);
		return rc == 0 ? 0 : 1;
	}
	const struct server_config *server_cfg =
	    (const struct server_config *)((const char *)run.config + def->server_offset);

	enum log_level level = MV_LOG_INFO;
	log_level_parse(server_cfg->log_level, &level);
	log_init(def->name, level, 1);
	/* From here on no thread waits for stdout (issue 13): a writer thread
	 * does, and drops what does not fit its queue. */
	if (log_writer_start(SERVICE_LOG_QUEUE_BYTES) != 0)
		log_warn("cannot start the log writer: logging inline");

	/* Every failure from here on is said in the log before exit 1. */
	run.metrics = metrics_registry_new();
	if (!run.metrics) {
		log_error("cannot start", MV_LOG_S("step", "metrics registry"),
		          MV_LOG_S("error", mv_strerror(MV_ENOMEM)));
		goto fail_config;
	}
	if (def->store_open) {
		const struct storage_options *storage =
		    (const struct storage_options *)((const char *)run.config +
		                                     def->storage_offset);
		struct store_config store_cfg;
		storage_options_to_store_config(storage, &store_cfg);
		run.storage_driver = store_cfg.driver;
		char why[256] = "";
		run.store = def->store_open(&store_cfg, why, sizeof(why));
		if (!run.store) {
			log_error("cannot open the store", MV_LOG_S("driver", store_cfg.driver),
			          MV_LOG_S("error", why));
			goto fail_metrics;
		}
	}
	run.srv = server_new(server_cfg, def->name, def->grpc_service, run.metrics);
	if (!run.srv) {
		log_error("cannot start", MV_LOG_S("step", "server"),
		          MV_LOG_S("error", mv_strerror(MV_ENOMEM)));
		goto fail_store;
	}
	rc = def->register_handlers(&run);
	if (rc != 0) {
		log_error("cannot start", MV_LOG_S("step", "handlers"),
		          MV_LOG_S("error", mv_strerror(rc)));
		goto fail_server;
	}
	if (def->start && def->start(&run) != 0)
		goto fail_server;
	if (def->log_starting)
		def->log_starting(&run);
	else
		log_starting_default(&run);
	status = server_run(run.srv) == 0 ? 0 : 1;
	if (def->stop)
		def->stop(&run);
fail_server:
	server_free(run.srv);
fail_store:
	if (run.store)
		def->store_close(run.store);
fail_metrics:
	metrics_registry_free(run.metrics);
fail_config:
	cfg_release(def->schema, run.config);
	free(run.config);
	log_writer_stop(SERVICE_LOG_STOP_MS);
	return status;
}
