/*
 * guard.h - `moviectl guard` on the wire: read a Deployment, its ReplicaSets
 * and pods (and Prometheus), judge with guard_checks.h, and act: one guarded
 * JSON patch that rolls back to the previous ReplicaSet and records why in the
 * Deployment's annotations, then a core/v1 Event. A concurrent template change
 * makes the patch fail (422): guard re-reads and decides again.
 * Same thread rules as kube.h: a guard_ctx belongs to one thread.
 */
#ifndef MOVIECTL_GUARD_H
#define MOVIECTL_GUARD_H

#include <stdio.h>

#include "guard_checks.h"
#include "guard_policy.h"
#include "kube.h"
#include "prom.h"

#define GUARD_MAX_RETRIES 5 /* re-read/re-decide rounds after lost races */

struct guard_ctx {
	struct kube_client *kube;
	struct prom_client *prom; /* NULL: Kubernetes-side checks only */
	const struct guard_policy *policy;
	const char *instance; /* reportingInstance of the Events (host/pid) */
};

/*
 * Read, query, judge and (when the verdict says so) roll back ns/name once.
 * v is filled in every case where the Deployment could be read. After a
 * rollback v->action is GUARD_ACTION_ROLLBACK and the Deployment's template
 * is the previous ReplicaSet's (the caller waits for the rollout with
 * rollout_status_wait). A lost race is retried up to GUARD_MAX_RETRIES times.
 * Returns 0, MV_EAGAIN (lost every race), MV_ENOTFOUND (no such Deployment),
 * or the codes of kube_get/kube_list/kube_patch (err says more).
 */
int guard_evaluate(struct guard_ctx *g, const char *ns, const char *name, struct guard_verdict *v,
                   struct kube_error *err);

/*
 * Fetch the Prometheus figures for the new (hash_new) and previous (hash_old)
 * ReplicaSets of namespace ns; the baseline ends at `start` (unix seconds).
 * Never fails: m->ok 0 and m->problem say what went wrong.
 */
void guard_fetch_metrics(struct prom_client *prom, const struct guard_policy *p, const char *ns,
                         const char *hash_new, const char *hash_old, double start,
                         struct guard_metrics *m);

/* One JSON verdict line (no newline) for ns/name into out. */
void guard_verdict_print(FILE *out, const char *ns, const char *name, const struct guard_verdict *v,
                         const char *extra_key, const char *extra_value);

#endif
