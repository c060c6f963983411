/*
 * release_plan.h - the order `moviectl release` goes through services: every
 * service after the services it calls. Who calls whom is read from each
 * service's own config (its `peers:` mapping, e.g. movie's peers metadata and
 * rating), never hard-coded. No I/O.
 */
#ifndef MOVIECTL_RELEASE_PLAN_H
#define MOVIECTL_RELEASE_PLAN_H

#include <stddef.h>

#define RELEASE_MAX_SERVICES 16
#define RELEASE_NAME_MAX     64

struct release_plan_svc {
	char name[RELEASE_NAME_MAX];
	/* Peers named in its config (only those that are also in the plan count
	 * for the order). */
	char peers[RELEASE_MAX_SERVICES][RELEASE_NAME_MAX];
	size_t n_peers;
};

/*
 * Add the peer names of one config document (YAML bytes: a service config
 * file, or one file of its ConfigMap) to svc->peers: the keys of top-level
 * `peers` whose value is a mapping (`timeout: 1s` is a setting, not a peer).
 * Duplicates are kept once. Returns 0, MV_ESYNTAX, MV_ETOOBIG, MV_ENOMEM.
 */
int release_plan_add_peers(struct release_plan_svc *svc, const char *yaml, size_t len, char *err,
                           size_t errlen);

/*
 * Order svcs[0..n) so that every service comes after the peers it calls
 * (a stable topological sort: among ready services the input order wins).
 * order[k] is the index of the k-th service. Returns 0, MV_EINVAL (a cycle;
 * err names a service on it).
 */
int release_plan_order(const struct release_plan_svc *svcs, size_t n, size_t *order, char *err,
                       size_t errlen);

#endif
