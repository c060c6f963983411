/*
 * movie: the movie details service (MovieService, port 8083), composed from
 * the metadata and rating services. Its declaration: configuration and
 * handlers (which own the peer gateways), no store; movie/service_main.h
 * runs it.
 *
 * Readiness deliberately does not depend on the peers: when metadata is down,
 * every movie pod would turn unready at once and Kubernetes would have nowhere
 * to send traffic, turning a partial outage into a total one. Requests answer
 * UNAVAILABLE instead, and rating failures degrade to metadata-only answers.
 */
#include <stddef.h>

#include "config.h"
#include "handlers.h"
#include "movie/log.h"
#include "movie/service_main.h"
#include "movie/banned.h"

static int register_handlers(struct service_run *run)
{
	return movie_handlers_register(run->srv, run->config, run->metrics);
}

static void log_starting(const struct service_run *run)
{
	const struct movie_config *cfg = run->config;
	log_info("starting", MV_LOG_I("metadata_targets", (long long)cfg->metadata_addresses.count),
	         MV_LOG_I("rating_targets", (long long)cfg->rating_addresses.count));
}

static const struct service_def movie_service = {
    .name = "movie",
    .grpc_service = "MovieService",
    .schema = &movie_config_schema,
    .server_offset = offsetof(struct movie_config, server),
    .register_handlers = register_handlers,
    .log_starting = log_starting,
};

int main(int argc, char **argv)
{
	return service_main(&movie_service, argc, argv);
}
