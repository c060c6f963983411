/*
 * store.c - the rating store's public functions: validation, the batch plan
 * shared by every driver, and dispatch through the driver's vtable.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/db_module.h"
#include "movie/err.h"
#include "store.h"
#include "store_driver.h"

#include "movie/banned.h"

struct rating_store {
	const struct rating_store_ops *ops;
	void *impl;
};

static const struct rating_store_ops *const drivers[] = {
    &rating_store_memory_ops,
    &rating_store_sqlite_ops,
};

/* ---------------------------------------------------------------- plan */

static uint64_t hash_bytes(uint64_t h, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)s[i];
		h *= 1099511628211ULL; /* FNV-1a */
	}
	/* Separator, so ("ab","c") and ("a","bc") differ. */
	h ^= 0xff;
	h *= 1099511628211ULL;
	return h;
}

static uint64_t key_hash(const char *type, size_t type_len, const char *id, size_t id_len,
                         const char *user, size_t user_len)
{
	uint64_t h = 1469598103934665603ULL;
	h = hash_bytes(h, type, type_len);
	h = hash_bytes(h, id, id_len);
	return hash_bytes(h, user, user_len);
}

static bool str_eq(const char *a, const char *b, size_t b_len)
{
	return strncmp(a, b, b_len) == 0 && a[b_len] == '\0';
}

long rating_plan_find(const struct rating_plan *plan, const char *type, size_t type_len,
                      const char *id, size_t id_len, const char *user, size_t user_len)
{
	size_t i = key_hash(type, type_len, id, id_len, user, user_len) & plan->index_mask;

	for (; plan->index[i]; i = (i + 1) & plan->index_mask) {
		const struct rating_plan_key *k = &plan->keys[plan->index[i] - 1];
		if (str_eq(k->record_type, type, type_len) && str_eq(k->record_id, id, id_len) &&
		    str_eq(k->user_id, user, user_len))
			return (long)(plan->index[i] - 1);
	}
	return -1;
}

static int key_cmp(const void *a, const void *b)
{
	const struct rating_plan_key *x = a, *y = b;
	int c = strcmp(x->record_type, y->record_type);

	if (c == 0)
		c = strcmp(x->record_id, y->record_id);
	if (c == 0)
		c = strcmp(x->user_id, y->user_id);
	return c;
}

static void rebuild_index(struct rating_plan *plan)
{
	memset(plan->index, 0, (plan->index_mask + 1) * sizeof(plan->index[0]));
	for (size_t k = 0; k < plan->nkeys; k++) {
		const struct rating_plan_key *key = &plan->keys[k];
		size_t i = key_hash(key->record_type, strlen(key->record_type), key->record_id,
		                    strlen(key->record_id), key->user_id, strlen(key->user_id)) &
		           plan->index_mask;
		while (plan->index[i])
			i = (i + 1) & plan->index_mask;
		plan->index[i] = k + 1;
	}
}

int rating_plan_build(struct rating_plan *plan, const struct rating_change *changes, size_t count)
{
	size_t slots = 16;

	memset(plan, 0, sizeof(*plan));
	while (slots < 2 * count)
		slots *= 2;
	plan->keys = calloc(count ? count : 1, sizeof(plan->keys[0]));
	plan->records = calloc(count ? count : 1, sizeof(plan->records[0]));
	plan->index = calloc(slots, sizeof(plan->index[0]));
	if (!plan->keys || !plan->records || !plan->index)
		goto fail_alloc;
	plan->index_mask = slots - 1;

	/* Later changes of a key overwrite earlier ones: the final state. */
	for (size_t c = 0; c < count; c++) {
		const struct rating_change *ch = &changes[c];
		long k =
		    rating_plan_find(plan, ch->record_type, strlen(ch->record_type), ch->record_id,
		                     strlen(ch->record_id), ch->user_id, strlen(ch->user_id));
		struct rating_plan_key *key;

		if (k < 0) {
			size_t i =
			    key_hash(ch->record_type, strlen(ch->record_type), ch->record_id,
			             strlen(ch->record_id), ch->user_id, strlen(ch->user_id)) &
			    plan->index_mask;
			while (plan->index[i])
				i = (i + 1) & plan->index_mask;
			key = &plan->keys[plan->nkeys++];
			plan->index[i] = plan->nkeys;
			key->record_type = ch->record_type;
			key->record_id = ch->record_id;
			key->user_id = ch->user_id;
		} else {
			key = &plan->keys[k];
		}
		key->present = ch->op == RATING_OP_PUT;
		key->value = key->present ? ch->value : 0;
	}

	qsort(plan->keys, plan->nkeys, sizeof(plan->keys[0]), key_cmp);
	rebuild_index(plan);
	/* Sorted keys group each record's keys together. */
	for (size_t k = 0; k < plan->nkeys; k++) {
		struct rating_plan_key *key = &plan->keys[k];
		struct rating_plan_record *last =
		    plan->nrecords ? &plan->records[plan->nrecords - 1] : NULL;
		if (!last || strcmp(last->record_type, key->record_type) != 0 ||
		    strcmp(last->record_id, key->record_id) != 0) {
			last = &plan->records[plan->nrecords++];
			last->record_type = key->record_type;
			last->record_id = key->record_id;
		}
		key->record = plan->nrecords - 1;
	}
	return 0;

fail_alloc:
	rating_plan_release(plan);
	return MV_ENOMEM;
}

void rating_plan_release(struct rating_plan *plan)
{
	free(plan->keys);
	free(plan->records);
	free(plan->index);
	memset(plan, 0, sizeof(*plan));
}

void rating_plan_reset_old(struct rating_plan *plan)
{
	for (size_t k = 0; k < plan->nkeys; k++) {
		plan->keys[k].had_old = false;
		plan->keys[k].old = 0;
	}
}

void rating_plan_deltas(struct rating_plan *plan)
{
	for (size_t r = 0; r < plan->nrecords; r++) {
		plan->records[r].dsum = 0;
		plan->records[r].dcount = 0;
	}
	for (size_t k = 0; k < plan->nkeys; k++) {
		const struct rating_plan_key *key = &plan->keys[k];
		struct rating_plan_record *rec = &plan->records[key->record];
		if (key->had_old) {
			rec->dsum -= key->old;
			rec->dcount--;
		}
		if (key->present) {
			rec->dsum += key->value;
			rec->dcount++;
		}
	}
}

/* ---------------------------------------------------------------- public */

struct rating_store *rating_store_open(const struct store_config *cfg, char *errbuf,
                                       size_t errbuf_size)
{
	const struct rating_store_ops *ops = NULL;
	struct rating_store *s;

	if (errbuf && errbuf_size)
		errbuf[0] = '\0';
	for (size_t i = 0; cfg && cfg->driver && i < sizeof(drivers) / sizeof(drivers[0]); i++) {
		if (strcmp(cfg->driver, drivers[i]->name) == 0)
			ops = drivers[i];
	}
	if (!ops && cfg && cfg->driver && strcmp(cfg->driver, "mysql") == 0) {
		/* Loaded on demand: see movie/db_module.h. */
		ops = db_module_symbol("movie-mysql-rating.so", "rating_store_mysql_ops", errbuf,
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
