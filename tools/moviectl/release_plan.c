/*
 * release_plan.c - dependency order of a release (see release_plan.h).
 */
#include <stdio.h>
#include <string.h>

#include "release_plan.h"
#include "ytree.h"

#include "movie/err.h"
#include "movie/banned.h"

int release_plan_add_peers(struct release_plan_svc *svc, const char *yaml, size_t len, char *err,
                           size_t errlen)
{
	struct ydocs docs = {0};
	int rc = ytree_parse(yaml, len, &docs, err, errlen);
	for (size_t d = 0; !rc && d < docs.n; d++) {
		const struct ynode *peers = ytree_get(docs.docs[d], "peers");
		if (!peers || peers->type != YNODE_MAP)
			continue;
		for (size_t i = 0; !rc && i < peers->n; i++) {
			const char *k = peers->keys[i];
			if (peers->vals[i]->type != YNODE_MAP)
				continue;
			int seen = 0;
			for (size_t j = 0; j < svc->n_peers; j++)
				seen |= strcmp(svc->peers[j], k) == 0;
			if (seen)
				continue;
			if (svc->n_peers >= RELEASE_MAX_SERVICES || strlen(k) >= RELEASE_NAME_MAX) {
				snprintf(err, errlen, "too many peers or a peer name too long");
				rc = MV_ETOOBIG;
				break;
			}
			memcpy(svc->peers[svc->n_peers++], k, strlen(k) + 1);
		}
	}
	ytree_docs_release(&docs);
	return rc;
}

/* Index of a service by name, or n. */
static size_t find(const struct release_plan_svc *svcs, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(svcs[i].name, name) == 0)
			return i;
	return n;
}

int release_plan_order(const struct release_plan_svc *svcs, size_t n, size_t *order, char *err,
                       size_t errlen)
{
	int placed[RELEASE_MAX_SERVICES] = {0};
	if (n > RELEASE_MAX_SERVICES)
		return MV_EINVAL;
	for (size_t k = 0; k < n; k++) {
		size_t pick = n;
		for (size_t i = 0; i < n && pick == n; i++) {
			if (placed[i])
				continue;
			int ready = 1;
			for (size_t j = 0; j < svcs[i].n_peers; j++) {
				size_t p = find(svcs, n, svcs[i].peers[j]);
				if (p < n && p != i && !placed[p])
					ready = 0;
			}
			if (ready)
				pick = i;
		}
		if (pick == n) {
			for (size_t i = 0; i < n; i++)
				if (!placed[i]) {
					snprintf(
					    err, errlen,
					    "services call each other in a cycle (%s is on it)",
					    svcs[i].name);
					break;
				}
			return MV_EINVAL;
		}
		placed[pick] = 1;
		order[k] = pick;
	}
	return 0;
}
