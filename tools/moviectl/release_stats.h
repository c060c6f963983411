/*
 * release_stats.h - the canary judge of `moviectl release`: pure decisions
 * over counts and quantiles (no I/O, no Prometheus).
 *
 * Error ratio: a one-sided two-proportion z-test with pooled variance
 * (docs/adr/0010-release-statistics-and-lock.md says why): the canary fails
 * only when its server-error ratio exceeds the baseline's by more than
 * `floor` AND the excess is beyond chance at `confidence`. Fewer than
 * `min_requests` canary calls (or baseline calls) is INCONCLUSIVE, never a
 * pass: no data is never success.
 * Latency: the canary's p99 fails when it is over baseline * (1 + tolerance)
 * AND more than `floor_s` seconds above it; a NaN quantile (no observation)
 * is INCONCLUSIVE.
 */
#ifndef MOVIECTL_RELEASE_STATS_H
#define MOVIECTL_RELEASE_STATS_H

enum release_decision {
	RELEASE_INCONCLUSIVE = 0, /* not enough data to say either way */
	RELEASE_PASS = 1,
	RELEASE_FAIL = 2,
};

/* "inconclusive", "pass", "fail". */
const char *release_decision_name(enum release_decision d);

struct release_error_test {
	double min_requests; /* canary (and baseline) calls needed, e.g. 100 */
	double confidence;   /* one-sided, in (0.5, 1), e.g. 0.99 */
	double floor;        /* absolute ratio excess tolerated, e.g. 0.01 */
};

struct release_error_result {
	enum release_decision decision;
	double canary_ratio, baseline_ratio; /* NaN when the calls are 0 */
	double z;                            /* the statistic (0 when undefined) */
	double z_critical;                   /* the one-sided quantile of confidence */
};

/*
 * Judge canary (ce errors of cn calls) against baseline (be of bn). Counts
 * from Prometheus' increase() are real numbers; negatives, NaN or errors >
 * calls are treated as no data (INCONCLUSIVE). Always fills *out.
 */
void release_error_judge(const struct release_error_test *t, double ce, double cn, double be,
                         double bn, struct release_error_result *out);

struct release_latency_test {
	double min_requests; /* canary calls needed */
	double tolerance;    /* relative, e.g. 0.5 = 50 % slower tolerated */
	double floor_s;      /* absolute seconds tolerated, e.g. 0.025 */
};

/* Judge canary p99 (seconds) against baseline p99 with `cn` canary calls. */
enum release_decision release_latency_judge(const struct release_latency_test *t, double canary_p99,
                                            double baseline_p99, double cn);

/* The upper quantile z with P(Z > z) = 1 - confidence for a standard normal;
 * confidence is clamped to [0.5, 0.999999]. */
double release_normal_quantile(double confidence);

#endif
