/*
 * release_policy.h - the YAML policy of `moviectl release` (--policy FILE):
 * how long and how hard a canary is judged. Every key is optional; the
 * defaults below are documented in docs/release.md ("Policy reference").
 * Unknown keys are errors (a typo must not silently keep a default). No I/O.
 */
#ifndef MOVIECTL_RELEASE_POLICY_H
#define MOVIECTL_RELEASE_POLICY_H

#include <stddef.h>

#define RELEASE_MAX_CODES       17
#define RELEASE_MAX_SYNTH_CALLS 16
#define RELEASE_MAX_SYNTH_ARGS  4
#define RELEASE_MAX_SYNTH_RATE  200.0 /* calls per second per track, hard cap */

/* One read-only call synthetic load may send. */
struct release_synth_call {
	char service[64]; /* the app it goes to: metadata, rating, movie */
	char path[128];   /* "/MetadataService/GetMetadata" */
	/* Request: string fields 1..n_args of the request message. */
	char args[RELEASE_MAX_SYNTH_ARGS][64];
	size_t n_args;
};

struct release_policy {
	double interval_s;                 /* analysis cadence; default 10 s */
	char window[16];                   /* PromQL range of each query; default "1m" */
	int passes;                        /* consecutive passing intervals to promote; default 3 */
	int failures;                      /* consecutive failing intervals to abort; default 2 */
	double max_analysis_s;             /* inconclusive for this long -> abort; default 300 s */
	double min_requests;               /* canary calls before any verdict; default 100 */
	double confidence;                 /* one-sided; default 0.99 */
	double error_floor;                /* absolute error-ratio excess tolerated; default 0.01 */
	char codes[RELEASE_MAX_CODES][24]; /* server-error codes; default the guard's classes */
	size_t n_codes;
	double latency_tolerance; /* relative p99 excess tolerated; default 0.5 */
	double latency_floor_s;   /* absolute p99 excess tolerated; default 0.025 s */
	/* canary calls before p99 is judged (a p99 of few calls is their maximum);
	 * default 200 */
	double latency_min_requests;
	long max_restarts;        /* container restarts of canary pods tolerated; default 0 */
	double rollout_timeout_s; /* each Deployment's rollout; default 300 s */
	double lease_s;           /* release lock lease; default 600 s */
	int revert_earlier;       /* revert services promoted earlier on abort; default 1 */
	int synth_enabled;        /* default 1 */
	double synth_rate;        /* calls/s to each track when traffic is low; default 20 */
	struct release_synth_call synth[RELEASE_MAX_SYNTH_CALLS];
	size_t n_synth;
};

/* The defaults (synthetic calls: GetMetadata, GetAggregatedRating and
 * GetMovieDetails of id "1"). */
void release_policy_defaults(struct release_policy *p);

/*
 * Parse a policy document (YAML bytes) over the defaults in *p (call
 * release_policy_defaults first). On error writes "line N: problem" into err.
 * Returns 0, MV_ESYNTAX (YAML), MV_EINVAL (unknown key, bad value or range),
 * MV_ETOOBIG (too many codes or calls), MV_ENOMEM.
 */
int release_policy_parse(struct release_policy *p, const char *data, size_t len, char *err,
                         size_t errlen);

/* A Go-style duration ("90s", "5m", "1h30m", "250ms") in seconds. 0 or MV_EINVAL. */
int release_parse_duration(const char *s, double *seconds);

#endif
