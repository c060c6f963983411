/*
 * release_run.h - the engine of `moviectl release`: lock, preconditions,
 * canary update, rollout waits, analysis on Prometheus, promote or abort,
 * revert of the services promoted earlier, and the verdict document.
 * The command line lives in cmd_release.c; the decisions in release_stats.c.
 *
 * State a crash can leave behind is on the Deployments (ADR 0010):
 *   movie.dev/release-lock   on every part-of=movie Deployment (CONTRACTS.md)
 *   movie.dev/release-state  on <svc>-canary while its release runs:
 *     {"release":ID,"index":N,"from":IMAGE,"to":IMAGE,"phase":"canary"|"promoted",
 *      "config_volume":I,"canary_config":[FROM,TO],"production_config":[FROM,TO]}
 * A later run takes a lock whose owner is gone (expired, or a dead process on
 * this host) and reverts every service such a state names, in reverse order,
 * before its own release starts.
 * One thread; uses the kube client it is given.
 */
#ifndef MOVIECTL_RELEASE_RUN_H
#define MOVIECTL_RELEASE_RUN_H

#include <jansson.h>

#include "kube.h"
#include "release_plan.h"
#include "release_policy.h"

#define RELEASE_STATE_ANNOTATION "movie.dev/release-state"

enum {
	RELEASE_EXIT_PROMOTED = 0,
	RELEASE_EXIT_ABORTED = 1,
	RELEASE_EXIT_ERROR = 2,
};

struct release_target {
	char service[RELEASE_NAME_MAX]; /* app.kubernetes.io/name: metadata, rating, movie */
	char image[256];                /* "" : keep production's image (a config-only release) */
	/* --config SVC=FILE: FILE's bytes replace the key named like FILE's basename
	 * (production.yaml: the environment layer) in each track's ConfigMap, as a
	 * new ConfigMap per track (the canary's first). NULL: no config change. */
	char config_key[128];
	char *config_data; /* owned by the caller */
	size_t config_len;
};

struct release_opts {
	const char *ns;
	struct release_target targets[RELEASE_MAX_SERVICES];
	size_t n_targets;
	const char *prometheus; /* base URL; NULL: refuse to judge (error) */
	struct release_policy policy;
	int dry_run;
};

/*
 * Run the release. *verdict gets the verdict document (caller decrefs), also
 * on error. Progress lines go to stderr. Returns RELEASE_EXIT_*.
 */
int release_run(struct kube_client *kc, const struct release_opts *o, json_t **verdict);

#endif
