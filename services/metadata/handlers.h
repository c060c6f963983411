/*
 * handlers.h - the metadata service's API: gRPC MetadataService and the
 * HTTP/JSON endpoints /metadata (GET, PUT), over a metadata_store.
 */
#ifndef METADATA_HANDLERS_H
#define METADATA_HANDLERS_H

#include "movie/server.h"
#include "store.h"

/* Register every handler on `srv`; `store` must outlive the server.
 * Returns 0 or MV_ENOMEM. */
int metadata_handlers_register(struct server *srv, struct metadata_store *store);

#endif
