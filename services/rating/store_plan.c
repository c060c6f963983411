/*
 * store_plan.c - the batch plan every rating store driver applies (see
 * store_driver.h). Its own file because the MariaDB module compiles it in:
 * the module resolves nothing against the executable (movie/db_module.h).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

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
