/*
 * store.h - the metadata service's storage interface.
 *
 * One interface, three drivers (memory, sqlite, mysql) chosen by
 * storage.driver; handlers never know which. All functions are thread-safe:
 * the service calls them concurrently from worker threads. When
 * metadata_store_blocking() is true (sqlite, mysql) calls may block on I/O and
 * must never run on an event loop thread; the memory driver never blocks.
 */
#ifndef METADATA_STORE_H
#define METADATA_STORE_H

#include <stdbool.h>

#include "movie/store_config.h"

/* Field caps enforced by handlers before they reach a store. The handlers also
 * apply movie/text.h: every string is valid UTF-8 without NUL (ids without any
 * control character), so drivers bind strings by strlen without cutting any. */
#define METADATA_ID_MAX   256
#define METADATA_TEXT_MAX 16384

struct metadata {
	char *id;          /* owned, NUL-terminated; never NULL after a successful get */
	char *title;       /* owned; "" when empty */
	char *description; /* owned */
	char *director;    /* owned */
};

/* Free the strings of a metadata filled by metadata_store_get. */
void metadata_release(struct metadata *m);

struct metadata_store;

/* Open the driver named in cfg->driver: creates or migrates the schema
 * (sqlite, mysql; versioned and idempotent). On failure writes a one-line
 * reason to errbuf. Returns NULL on failure. A mysql store opens even while the
 * server is down (it reconnects later); its calls then fail with MV_EUNAVAIL. */
struct metadata_store *metadata_store_open(const struct store_config *cfg, char *errbuf,
                                           size_t errbuf_size);
void metadata_store_close(struct metadata_store *s);

/* True when calls may block (run them on worker threads). */
bool metadata_store_blocking(const struct metadata_store *s);

/* Fetch metadata by id into *out (strings owned by the caller afterwards;
 * on failure *out is zeroed and needs no release). An id longer than
 * METADATA_ID_MAX is MV_ENOTFOUND (it cannot have been stored).
 * Returns 0, MV_ENOTFOUND, MV_EUNAVAIL (database unreachable), MV_ENOMEM,
 * MV_EINVAL (empty or NULL id). */
int metadata_store_get(struct metadata_store *s, const char *id, struct metadata *out);

/* Create or replace the record m->id; NULL text fields are stored as "".
 * MV_EINVAL: empty id, id over METADATA_ID_MAX or text over METADATA_TEXT_MAX
 * bytes, or (mysql) text that is not valid UTF-8.
 * Returns 0, MV_EUNAVAIL, MV_ENOMEM, MV_EINVAL. */
int metadata_store_put(struct metadata_store *s, const struct metadata *m);

/* Cheap readiness probe of the backing database. Returns 0 or MV_EUNAVAIL. */
int metadata_store_ping(struct metadata_store *s);

#endif
