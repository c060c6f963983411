/*
 * store.c - the metadata store's public functions: argument checks shared by
 * every driver, then dispatch through the driver's vtable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/db_module.h"
#include "movie/err.h"
#include "store.h"
#include "store_driver.h"

#include "movie/banned.h"

struct metadata_store {
	const struct metadata_store_ops *ops;
	void *impl;
};

static const struct metadata_store_ops *const drivers[] = {
    &metadata_store_memory_ops,
    &metadata_store_sqlite_ops,
};

struct metadata_store *metadata_store_open(const struct store_config *cfg, char *errbuf,
                                           size_t errbuf_size)
{
	const struct metadata_store_ops *ops = NULL;
	struct metadata_store *s;

	if (errbuf && errbuf_size)
		errbuf[0] = '\0';
	for (size_t i = 0; cfg && cfg->driver && i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		if (strcmp(cfg->driver, drivers[i]->name) == 0)
			ops = drivers[i];
	}
	if (!ops && cfg && cfg->driver && strcmp(cfg->driver, "mysql") == 0) {
		/* Loaded on demand: see movie/db_module.h. */
		ops = db_module_ops("movie-mysql-metadata.so", "metadata", sizeof(*ops), errbuf,
		                    errbuf_size);
		if (!ops)
			return NULL;
	}
	if (!ops) {
		if (errbuf && errbuf_size)
			snprintf(errbuf, errbuf_size,
			         "unknown storage driver '%s' (memory, sqlite, mysql)",
			         cfg && cfg->driver ? cfg->driver : "(none)");
		return NULL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		goto fail_alloc;
	s->ops = ops;
	s->impl = ops->open(cfg, errbuf, errbuf_size);
	if (!s->impl)
		goto fail_open;
	return s;

fail_open:
	free(s);
	return NULL;
fail_alloc:
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "out of memory");
	return NULL;
}

void metadata_store_close(struct metadata_store *s)
{
	if (!s)
		return;
	s->ops->close(s->impl);
	free(s);
}

bool metadata_store_blocking(const struct metadata_store *s)
{
	return s->ops->blocking;
}

static bool valid_id(const char *id)
{
	return id && *id && strlen(id) <= METADATA_ID_MAX;
}

static bool valid_text(const char *t)
{
	return !t || strlen(t) <= METADATA_TEXT_MAX;
}

int metadata_store_get(struct metadata_store *s, const char *id, struct metadata *out)
{
	memset(out, 0, sizeof(*out));
	if (!valid_id(id))
		return id && *id ? MV_ENOTFOUND : MV_EINVAL;
	return s->ops->get(s->impl, id, out);
}

int metadata_store_put(struct metadata_store *s, const struct metadata *m)
{
	if (!m || !valid_id(m->id) || !valid_text(m->title) || !valid_text(m->description) ||
	    !valid_text(m->director))
		return MV_EINVAL;
	return s->ops->put(s->impl, m);
}

int metadata_store_ping(struct metadata_store *s)
{
	return s->ops->ping(s->impl);
}
