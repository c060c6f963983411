/*
 * store_driver.h - the metadata store's driver vtable (private to store_*.c).
 *
 * store.c owns the public functions and dispatches through one of these;
 * each driver file exports only its `ops` table. A driver's functions have
 * the contracts of the public ones in store.h.
 */
#ifndef METADATA_STORE_DRIVER_H
#define METADATA_STORE_DRIVER_H

#include <stddef.h>

#include "store.h"

struct metadata_store_ops {
	const char *name;
	bool blocking;
	void *(*open)(const struct store_config *cfg, char *errbuf, size_t errbuf_size);
	void (*close)(void *impl);
	int (*get)(void *impl, const char *id, struct metadata *out);
	int (*put)(void *impl, const struct metadata *m);
	int (*ping)(void *impl);
};

extern const struct metadata_store_ops metadata_store_memory_ops;
extern const struct metadata_store_ops metadata_store_sqlite_ops;
extern const struct metadata_store_ops metadata_store_mysql_ops;

/* strdup that maps NULL to "" (a missing field is an empty string). */
char *metadata_strdup(const char *s);

#endif
