/*
 * guard_checks.h - the decisions of `moviectl guard` as pure functions: given a
 * Deployment, its ReplicaSets and pods as the API server returns them, the
 * Prometheus figures guard.c fetched, the policy and the clock, which check
 * fails and what to do about it. No I/O (unit-tested with known inputs in
 * tests/unit/moviectl/test_guard_checks.c).
 *
 * State lives in the Deployment's annotations, never in memory, so a restarted
 * guard decides the same (docs/adr/0009-moviectl-annotations.md):
 *   movie.dev/guard-rollback  {"from":H,"to":G,"check":C,"at":RFC3339}: the last rollback
 *   movie.dev/guard-bad-templates  ["H1","H2",...]: hashes rolled back once, never again
 */
#ifndef MOVIECTL_GUARD_CHECKS_H
#define MOVIECTL_GUARD_CHECKS_H

#include <jansson.h>
#include <stddef.h>

#include "guard_policy.h"

#define GUARD_ANN_ROLLBACK      "movie.dev/guard-rollback"
#define GUARD_ANN_BAD_TEMPLATES "movie.dev/guard-bad-templates"
#define GUARD_MAX_BAD_TEMPLATES 20 /* hashes remembered (oldest dropped) */

/* What guard.c read from Prometheus for the new and the previous ReplicaSet. */
struct guard_metrics {
	int ok; /* the queries answered; 0: problem says why */
	char problem[256];
	double new_requests; /* calls the new pods handled (health checks excluded) */
	double new_errors;   /* of which answered with a policy error code */
	double new_p99;      /* seconds; NaN when unknown */
	double base_requests,
	    base_errors; /* previous RS, over policy.baseline before the rollout */
	double base_p99; /* NaN when unknown */
};

enum guard_outcome {
	GUARD_PENDING = 0, /* rollout recent, no check failed (yet) */
	GUARD_HEALTHY,     /* window over (or nothing to compare): no check failed */
	GUARD_FAILED,      /* a check failed: see action */
	GUARD_UNKNOWN,     /* cannot judge: reason says why */
	GUARD_RECOVERED,   /* the Deployment runs the template guard rolled back to */
};

enum guard_action {
	GUARD_ACTION_NONE = 0,
	GUARD_ACTION_ROLLBACK, /* undo to good_rs */
	GUARD_ACTION_REPORTED, /* failed outside the window: reported only */
	GUARD_ACTION_SKIPPED,  /* failed but not ours to roll back (paused, locked, seen before) */
};

struct guard_verdict {
	enum guard_outcome outcome;
	enum guard_action action;
	char check[32]; /* the failed check ("progress-deadline", "restarts", ...) */
	double value, threshold, baseline;
	double samples;       /* requests (metric checks) or pods (pod checks) judged */
	char reason[384];     /* human words: why this outcome / action */
	char bad_hash[64];    /* the new ReplicaSet's pod-template-hash */
	char good_hash[64];   /* the previous ReplicaSet's */
	char good_rs[254];    /* the previous ReplicaSet's name (the undo target) */
	double rollout_start; /* unix seconds: the new RS's creation */
	double complete_at;   /* unix seconds of completion, 0: not complete */
	int in_window;
	int metrics_judged; /* Prometheus checks ran (else: Kubernetes-side only) */
};

/* Inputs of one decision; all borrowed. */
struct guard_input {
	const json_t *deploy;
	const json_t *rs_items;
	const json_t *pod_items;
	const struct guard_metrics *metrics; /* NULL: no Prometheus configured */
	double now;                          /* unix seconds */
	int locked;                          /* lock_held() said so */
	const char *lock_owner;              /* for the reason */
};

/* Decide. Never fails: a missing piece gives GUARD_UNKNOWN with a reason. */
void guard_judge(const struct guard_policy *p, const struct guard_input *in,
                 struct guard_verdict *v);

/* The new and previous ReplicaSets (borrowed from rs_items, either may be NULL). */
void guard_replicasets(const json_t *deploy, const json_t *rs_items, const json_t **new_rs,
                       const json_t **prev_rs);

/* 1 when `hash` is in the Deployment's movie.dev/guard-bad-templates list. */
int guard_template_rolled_back(const json_t *deploy, const char *hash);

/*
 * Amend the undo plan's JSON patch (rollout_undo_plan) so that the rollback
 * and its record are one atomic write: in the annotations it sets, every
 * movie.dev/ key is the Deployment's as read (the target ReplicaSet's copies
 * are stale: a lock or a record from when it was created), plus
 * movie.dev/guard-rollback for v (at: RFC 3339) and the bad-templates list
 * with v's bad hash added (at most GUARD_MAX_BAD_TEMPLATES, oldest dropped).
 * Returns 0 or MV_ENOMEM.
 */
int guard_amend_undo_patch(const json_t *deploy, const struct guard_verdict *v, const char *at,
                           json_t *patch);

/* Names for JSON output. */
const char *guard_outcome_name(enum guard_outcome o);
const char *guard_action_name(enum guard_action a);

#endif
