/*
 * guard_policy.h - the policy of `moviectl guard`: which checks judge a
 * rollout, their thresholds, and the window in which a bad rollout is rolled
 * back. A YAML file (--policy FILE) overrides the documented defaults key by
 * key (docs/release.md, "moviectl guard"). No I/O: the parser takes bytes.
 */
#ifndef MOVIECTL_GUARD_POLICY_H
#define MOVIECTL_GUARD_POLICY_H

#include <stddef.h>

#define GUARD_MAX_CODES 17 /* gRPC status codes */

struct guard_policy {
	double window;   /* seconds after the rollout completes in which it is "recent" (300) */
	double interval; /* seconds between two evaluations (5) */
	struct {
		int enabled;
		double max; /* seconds without completion since the rollout started; 0: only the
		             * Deployment's own ProgressDeadlineExceeded condition */
	} progress;
	struct {
		int enabled;
		long long max;  /* restarts allowed per new pod (2) */
		int crash_loop; /* a new pod in CrashLoopBackOff fails at once (true) */
	} restarts;
	struct {
		int enabled;
		double max_unready_share; /* share of new pods unready past the grace (0.5) */
		double grace;             /* seconds a new pod may take to become ready (60) */
	} readiness;
	struct {
		int enabled;
		double max_increase;    /* new ratio - baseline ratio allowed (0.05) */
		long long min_requests; /* on the new pods before any verdict (100) */
		size_t ncodes;
		int codes[GUARD_MAX_CODES]; /* gRPC status numbers counted as server errors */
	} error_ratio;
	struct {
		int enabled;
		double max_ratio;    /* new p99 / baseline p99 allowed (3) */
		double min_increase; /* seconds: a smaller absolute increase never fails (0.005) */
		long long min_requests; /* (100) */
	} latency;
	double baseline; /* seconds of history before the rollout the baseline uses (300) */
};

/* The documented defaults. */
void guard_policy_defaults(struct guard_policy *p);

/*
 * Apply the YAML policy in data (len bytes) over *p (call guard_policy_defaults
 * first). Unknown keys, wrong types and out-of-range values are errors; err
 * gets "LINE: message" (lint style, with the known keys for an unknown one).
 * Returns 0, MV_ESYNTAX (YAML), MV_EINVAL (a key or value), MV_ETOOBIG, MV_ENOMEM.
 */
int guard_policy_parse(struct guard_policy *p, const char *data, size_t len, char *err,
                       size_t errlen);

/* The PromQL regex of the error codes' grpc_code labels ("Unknown|Internal|...")
 * into out. Returns 0 or MV_ETOOBIG. */
int guard_policy_codes_regex(const struct guard_policy *p, char *out, size_t outlen);

#endif
