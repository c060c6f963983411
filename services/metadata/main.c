/*
 * metadata: the movie metadata service (MetadataService, port 8081).
 * Its declaration: configuration, store, handlers; movie/service_main.h runs it.
 */
#include <stddef.h>

#include "config.h"
#include "handlers.h"
#include "movie/service_main.h"
#include "store.h"
#include "movie/banned.h"

static void *store_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	return metadata_store_open(cfg, errbuf, errbuf_size);
}

static void store_close(void *store)
{
	metadata_store_close(store);
}

static int register_handlers(struct service_run *run)
{
	return metadata_handlers_register(run->srv, run->store);
}

static const struct service_def metadata_service = {
    .name = "metadata",
    .grpc_service = "MetadataService",
    .schema = &metadata_config_schema,
    .server_offset = offsetof(struct metadata_config, server),
    .storage_offset = offsetof(struct metadata_config, storage),
    .store_open = store_open,
    .store_close = store_close,
    .register_handlers = register_handlers,
};

int main(int argc, char **argv)
{
	return service_main(&metadata_service, argc, argv);
}
