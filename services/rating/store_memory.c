/*
 * store_memory.c - ratings and aggregates in process-local hash tables.
 *
 * One mutex guards both tables, so a batch is atomic to readers. Every node a
 * batch may need is allocated before the lock is taken: once the batch starts
 * mutating, nothing can fail, which is what makes it all-or-nothing.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

struct node {
	struct node *next;
	uint64_t hash;
	int64_t a; /* rating: value; aggregate: sum */
	int64_t b; /* aggregate: count */
	size_t key_len;
	char key[]; /* "type\0id\0user" or "type\0id", NUL-separated */
};

struct table {
	struct node **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

struct memory_store {
	pthread_mutex_t mu;
	struct table ratings;
	struct table aggregates;
};

static uint64_t hash_key(const char *key, size_t len)
{
	uint64_t h = 1469598103934665603ULL;
	for (size_t i = 0; i < len; i++) {
		h ^= (unsigned char)key[i];
		h *= 1099511628211ULL;
	}
	return h;
}

static int table_init(struct table *t)
{
	t->nbuckets = 1024;
	t->count = 0;
	t->buckets = calloc(t->nbuckets, sizeof(t->buckets[0]));
	return t->buckets ? 0 : MV_ENOMEM;
}

static void table_release(struct table *t)
{
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct node *n = t->buckets[i], *next; n; n = next) {
			next = n->next;
			free(n);
		}
	}
	free(t->buckets);
}

static struct node **table_slot(struct table *t, const char *key, size_t len, uint64_t h)
{
	struct node **pp = &t->buckets[h & (t->nbuckets - 1)];
	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->hash == h && (*pp)->key_len == len && memcmp((*pp)->key, key, len) == 0)
			break;
	}
	return pp;
}

/* Grow to fit `extra` more nodes at load <= 1. Failure is harmless (chains
 * just get longer), which keeps batches infallible once they start. */
static void table_reserve(struct table *t, size_t extra)
{
	size_t n = t->nbuckets;
	struct node **b;

	while (n < t->count + extra && n < ((size_t)1 << 30))
		n *= 2;
	if (n == t->nbuckets)
		return;
	b = calloc(n, sizeof(b[0]));
	if (!b)
		return;
	for (size_t i = 0; i < t->nbuckets; i++) {
		for (struct node *x = t->buckets[i], *next; x; x = next) {
			next = x->next;
			x->next = b[x->hash & (n - 1)];
			b[x->hash & (n - 1)] = x;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->nbuckets = n;
}

/* Node with key "a\0b[\0c]". */
static struct node *node_new(const char *a, const char *b, const char *c)
{
	size_t la = strlen(a), lb = strlen(b), lc = c ? strlen(c) : 0;
	size_t len = la + 1 + lb + (c ? 1 + lc : 0);
	struct node *n = malloc(sizeof(*n) + len + 1);

	if (!n)
		return NULL;
	memcpy(n->key, a, la + 1);
	memcpy(n->key + la + 1, b, lb + 1);
	if (c)
		memcpy(n->key + la + 1 + lb + 1, c, lc + 1);
	n->key_len = len;
	n->hash = hash_key(n->key, len);
	n->next = NULL;
	n->a = n->b = 0;
	return n;
}

static void *memory_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct memory_store *ms = calloc(1, sizeof(*ms));

	if (!ms)
		goto fail_alloc;
	if (table_init(&ms->ratings) != 0)
		goto fail_ratings;
	if (table_init(&ms->aggregates) != 0)
		goto fail_aggregates;
	pthread_mutex_init(&ms->mu, NULL);
	return ms;

fail_aggregates:
	table_release(&ms->ratings);
fail_ratings:
	free(ms);
fail_alloc:
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "memory store: out of memory");
	return NULL;
}

static void memory_close(void *impl)
{
	struct memory_store *ms = impl;

	table_release(&ms->ratings);
	table_release(&ms->aggregates);
	pthread_mutex_destroy(&ms->mu);
	free(ms);
}

static int memory_apply(void *impl, struct rating_plan *plan)
{
	struct memory_store *ms = impl;
	struct node **knodes = calloc(plan->nkeys, sizeof(knodes[0]));
	struct node **rnodes = calloc(plan->nrecords, sizeof(rnodes[0]));
	int rc = 0;

	if (!knodes || !rnodes) {
		rc = MV_ENOMEM;
		goto out_free;
	}
	for (size_t k = 0; k < plan->nkeys; k++) {
		const struct rating_plan_key *key = &plan->keys[k];
		knodes[k] = node_new(key->record_type, key->record_id, key->user_id);
		if (!knodes[k]) {
			rc = MV_ENOMEM;
			goto out_free;
		}
	}
	for (size_t r = 0; r < plan->nrecords; r++) {
		rnodes[r] =
		    node_new(plan->records[r].record_type, plan->records[r].record_id, NULL);
		if (!rnodes[r]) {
			rc = MV_ENOMEM;
			goto out_free;
		}
	}

	pthread_mutex_lock(&ms->mu);
	table_reserve(&ms->ratings, plan->nkeys);
	table_reserve(&ms->aggregates, plan->nrecords);
	for (size_t k = 0; k < plan->nkeys; k++) {
		struct rating_plan_key *key = &plan->keys[k];
		struct node *n = knodes[k];
		struct node **pp = table_slot(&ms->ratings, n->key, n->key_len, n->hash);
		struct node *old = *pp;

		key->had_old = old != NULL;
		key->old = old ? (int32_t)old->a : 0;
		if (key->present && old) {
			old->a = key->value;
		} else if (key->present) {
			n->a = key->value;
			*pp = n;
			knodes[k] = NULL; /* now owned by the table */
			ms->ratings.count++;
		} else if (old) {
			*pp = old->next;
			ms->ratings.count--;
			free(n);
			knodes[k] = old; /* freed below */
		}
	}
	rating_plan_deltas(plan);
	for (size_t r = 0; r < plan->nrecords; r++) {
		const struct rating_plan_record *rec = &plan->records[r];
		struct node *n = rnodes[r];
		struct node **pp;

		if (rec->dsum == 0 && rec->dcount == 0)
			continue;
		pp = table_slot(&ms->aggregates, n->key, n->key_len, n->hash);
		if (!*pp) {
			*pp = n;
			rnodes[r] = NULL;
			ms->aggregates.count++;
		}
		(*pp)->a += rec->dsum;
		(*pp)->b += rec->dcount;
		if ((*pp)->b <= 0) {
			struct node *gone = *pp;
			*pp = gone->next;
			ms->aggregates.count--;
			if (rnodes[r])
				free(rnodes[r]);
			rnodes[r] = gone;
		}
	}
	pthread_mutex_unlock(&ms->mu);

out_free:
	for (size_t k = 0; knodes && k < plan->nkeys; k++)
		free(knodes[k]);
	for (size_t r = 0; rnodes && r < plan->nrecords; r++)
		free(rnodes[r]);
	free(knodes);
	free(rnodes);
	return rc;
}

static int memory_aggregate(void *impl, const char *record_id, const char *record_type,
                            int64_t *sum, uint64_t *count)
{
	struct memory_store *ms = impl;
	size_t lt = strlen(record_type), li = strlen(record_id);
	char stack_key[2 * (RATING_ID_MAX + 1)];
	struct node *n;
	uint64_t h;

	if (lt + 1 + li + 1 > sizeof(stack_key))
		return MV_EINVAL;
	memcpy(stack_key, record_type, lt + 1);
	memcpy(stack_key + lt + 1, record_id, li + 1);
	h = hash_key(stack_key, lt + 1 + li);

	pthread_mutex_lock(&ms->mu);
	n = *table_slot(&ms->aggregates, stack_key, lt + 1 + li, h);
	*sum = n ? n->a : 0;
	*count = n ? (uint64_t)n->b : 0;
	pthread_mutex_unlock(&ms->mu);
	return n ? 0 : MV_ENOTFOUND;
}

static int memory_ping(void *impl)
{
	return 0;
}

const struct rating_store_ops rating_store_memory_ops = {
    .name = "memory",
    .blocking = false,
    .open = memory_open,
    .close = memory_close,
    .apply = memory_apply,
    .aggregate = memory_aggregate,
    .ping = memory_ping,
};
