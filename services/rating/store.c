/*
 * store.c - the rating store's public functions: validation, then dispatch
 * through the driver's vtable (the batch plan is in store_plan.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/store_driver.h"
#include "movie/err.h"
#include "store.h"
#include "store_driver.h"

#include "movie/banned.h"

struct rating_store {
	const struct rating_store_ops *ops;
	void *impl;
};

/* Built-in drivers; each table starts with its name (movie/store_driver.h). */
static const void *const drivers[] = {
    &rating_store_memory_ops,
    &rating_store_sqlite_ops,
};

struct rating_store *rating_store_open(const struct store_config *cfg, char *errbuf,
                                       size_t errbuf_size)
{
	const struct rating_store_ops *ops;
	struct rating_store *s;

	ops = store_driver_select(cfg ? cfg->driver : NULL, drivers,
	                          sizeof(drivers) / sizeof(drivers[0]), "rating", sizeof(*ops),
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

void rating_store_close(struct rating_store *s)
{
	if (!s)
		return;
	s->ops->close(s->impl);
	free(s);
}

bool rating_store_blocking(const struct rating_store *s)
{
	return s->ops->blocking;
}

static bool valid_id(const char *id)
{
	return id && *id && strlen(id) <= RATING_ID_MAX;
}

int rating_store_apply(struct rating_store *s, const struct rating_change *changes, size_t count)
{
	struct rating_plan plan;
	int rc;

	if (count == 0)
		return 0;
	if (!changes || count > RATING_BATCH_MAX)
		return MV_EINVAL;
	for (size_t i = 0; i < count; i++) {
		const struct rating_change *c = &changes[i];
		if ((c->op != RATING_OP_PUT && c->op != RATING_OP_DELETE) ||
		    !valid_id(c->record_id) || !valid_id(c->record_type) || !valid_id(c->user_id))
			return MV_EINVAL;
	}
	rc = rating_plan_build(&plan, changes, count);
	if (rc != 0)
		return rc;
	rc = s->ops->apply(s->impl, &plan);
	rating_plan_release(&plan);
	return rc;
}

int rating_store_aggregate(struct rating_store *s, const char *record_id, const char *record_type,
                           double *mean, uint64_t *count)
{
	int64_t sum = 0;
	uint64_t n = 0;
	int rc;

	if (!valid_id(record_id) || !valid_id(record_type))
		return MV_EINVAL;
	rc = s->ops->aggregate(s->impl, record_id, record_type, &sum, &n);
	if (rc != 0)
		return rc;
	if (n == 0)
		return MV_ENOTFOUND;
	if (mean)
		*mean = (double)sum / (double)n;
	if (count)
		*count = n;
	return 0;
}

int rating_store_ping(struct rating_store *s)
{
	return s->ops->ping(s->impl);
}
