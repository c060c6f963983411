/*
 * store_memory.c - metadata in a process-local hash table (tests, dev).
 *
 * A chained table keyed by id behind one rwlock: gets share the lock, puts
 * take it exclusively only to swap a record built beforehand, so no
 * allocation ever happens under the write lock.
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "store_driver.h"

#include "movie/banned.h"

#define INITIAL_BUCKETS 64

struct node {
	struct node *next;
	uint64_t hash;
	struct metadata m;
};

struct memory_store {
	pthread_rwlock_t lock;
	struct node **buckets;
	size_t nbuckets; /* power of two */
	size_t count;
};

static uint64_t hash_str(const char *s)
{
	uint64_t h = 1469598103934665603ULL; /* FNV-1a */
	for (; *s; s++) {
		h ^= (unsigned char)*s;
		h *= 1099511628211ULL;
	}
	return h;
}

static void *memory_open(const struct store_config *cfg, char *errbuf, size_t errbuf_size)
{
	struct memory_store *ms = calloc(1, sizeof(*ms));

	if (!ms)
		goto fail_alloc;
	ms->buckets = calloc(INITIAL_BUCKETS, sizeof(ms->buckets[0]));
	if (!ms->buckets)
		goto fail_buckets;
	ms->nbuckets = INITIAL_BUCKETS;
	pthread_rwlock_init(&ms->lock, NULL);
	return ms;

fail_buckets:
	free(ms);
fail_alloc:
	if (errbuf && errbuf_size)
		snprintf(errbuf, errbuf_size, "memory store: out of memory");
	return NULL;
}

static void node_free(struct node *n)
{
	metadata_release(&n->m);
	free(n);
}

static void memory_close(void *impl)
{
	struct memory_store *ms = impl;

	for (size_t i = 0; i < ms->nbuckets; i++) {
		for (struct node *n = ms->buckets[i], *next; n; n = next) {
			next = n->next;
			node_free(n);
		}
	}
	pthread_rwlock_destroy(&ms->lock);
	free(ms->buckets);
	free(ms);
}

static struct node **find_slot(struct memory_store *ms, const char *id, uint64_t h)
{
	struct node **pp = &ms->buckets[h & (ms->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next) {
		if ((*pp)->hash == h && strcmp((*pp)->m.id, id) == 0)
			break;
	}
	return pp;
}

static int memory_get(void *impl, const char *id, struct metadata *out)
{
	struct memory_store *ms = impl;
	uint64_t h = hash_str(id);
	struct node *n;
	int rc = 0;

	pthread_rwlock_rdlock(&ms->lock);
	n = *find_slot(ms, id, h);
	if (!n) {
		rc = MV_ENOTFOUND;
		goto out_unlock;
	}
	out->id = metadata_strdup(n->m.id);
	out->title = metadata_strdup(n->m.title);
	out->description = metadata_strdup(n->m.description);
	out->director = metadata_strdup(n->m.director);
	if (!out->id || !out->title || !out->description || !out->director) {
		metadata_release(out);
		rc = MV_ENOMEM;
	}
out_unlock:
	pthread_rwlock_unlock(&ms->lock);
	return rc;
}

/* Double the table when it averages more than one node per bucket. Called
 * with the write lock held; on allocation failure the table stays as is. */
static void maybe_grow(struct memory_store *ms)
{
	size_t n = ms->nbuckets * 2;
	struct node **b;

	if (ms->count <= ms->nbuckets || n > ((size_t)1 << 28))
		return;
	b = calloc(n, sizeof(b[0]));
	if (!b)
		return;
	for (size_t i = 0; i < ms->nbuckets; i++) {
		for (struct node *x = ms->buckets[i], *next; x; x = next) {
			next = x->next;
			x->next = b[x->hash & (n - 1)];
			b[x->hash & (n - 1)] = x;
		}
	}
	free(ms->buckets);
	ms->buckets = b;
	ms->nbuckets = n;
}

static int memory_put(void *impl, const struct metadata *m)
{
	struct memory_store *ms = impl;
	struct node *n = calloc(1, sizeof(*n)), *old;
	struct node **pp;

	if (!n)
		return MV_ENOMEM;
	n->m.id = metadata_strdup(m->id);
	n->m.title = metadata_strdup(m->title);
	n->m.description = metadata_strdup(m->description);
	n->m.director = metadata_strdup(m->director);
	if (!n->m.id || !n->m.title || !n->m.description || !n->m.director) {
		node_free(n);
		return MV_ENOMEM;
	}
	n->hash = hash_str(n->m.id);

	pthread_rwlock_wrlock(&ms->lock);
	pp = find_slot(ms, n->m.id, n->hash);
	old = *pp;
	n->next = old ? old->next : NULL;
	*pp = n;
	if (!old) {
		ms->count++;
		maybe_grow(ms);
	}
	pthread_rwlock_unlock(&ms->lock);
	if (old)
		node_free(old);
	return 0;
}

static int memory_ping(void *impl)
{
	return 0;
}

const struct metadata_store_ops metadata_store_memory_ops = {
    .name = "memory",
    .blocking = false,
    .open = memory_open,
    .close = memory_close,
    .get = memory_get,
    .put = memory_put,
    .ping = memory_ping,
};
