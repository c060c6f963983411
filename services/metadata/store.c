/*
 * store.c - the metadata store's public functions: argument checks shared by
 * every driver, then dispatch through the driver's vtable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/store_driver.h"
#include "movie/err.h"
#include "store.h"
#include "store_driver.h"

#include "movie/banned.h"

struct metadata_store {
	const struct metadata_store_ops *ops;
	void *impl;
};

/* Built-in drivers; each table starts with its name (movie/store_driver.h). */
static const void *const drivers[] = {
    &metadata_store_memory_ops,
    &metadata_store_sqlite_ops,
};

struct metadata_store *metadata_store_open(const struct store_config *cfg, char *errbuf,
                                           size_t errbuf_size)
{
	const struct metadata_store_ops *ops;
	struct metadata_store *s;

	ops = store_driver_select(cfg ? cfg->driver : NULL, drivers,
	                          sizeof(drivers) / sizeof(drivers[0]), "metadata", sizeof(*ops),
	                          errbuf, errbuf_size);
	if (!ops)
		return NULL;
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
