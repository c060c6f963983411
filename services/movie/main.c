/*
 * movie: the movie details service (MovieService, port 8083), composed from
 * the metadata and rating services. Wiring only: configuration, logging,
 * handlers (which own the peer gateways), server.
 *
 * Readiness deliberately does not depend on the peers: when metadata is down,
 * every movie pod would turn unready at once and Kubernetes would have nowhere
 * to send traffic, turning a partial outage into a total one. Requests answer
 * UNAVAILABLE instead, and rating failures degrade to metadata-only answers.
 */
#include <string.h>

#include "config.h"
#include "handlers.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "movie/server.h"
#include "movie/service.h"
#include "movie/banned.h"

int main(int argc, char **argv)
{
	struct movie_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	bool done;
	int status = service_load_config(argc, argv, &movie_config_schema, &cfg, &done);
	if (status != 0 || done)
		return status == 0 ? 0 : 1;

	enum log_level level = LOG_INFO;
	log_level_parse(cfg.server.log_level, &level);
	log_init("movie", level, 1);

	status = 1;
	struct metrics_registry *metrics = metrics_registry_new();
	if (!metrics)
		goto fail_config;
	struct server *srv = server_new(&cfg.server, "movie", "MovieService", metrics);
	if (!srv)
		goto fail_metrics;
	if (movie_handlers_register(srv, &cfg, metrics) != 0)
		goto fail_server;
	log_info("starting", LOG_I("metadata_targets", (long long)cfg.metadata_addresses.count),
	         LOG_I("rating_targets", (long long)cfg.rating_addresses.count));
	status = server_run(srv) == 0 ? 0 : 1;
fail_server:
	server_free(srv);
fail_metrics:
	metrics_registry_free(metrics);
fail_config:
	cfg_release(&movie_config_schema, &cfg);
	return status;
}
