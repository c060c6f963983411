/*
 * release_stats.c - the canary judge (see release_stats.h and ADR 0010).
 */
#include <math.h>

#include "release_stats.h"

const char *release_decision_name(enum release_decision d)
{
	switch (d) {
	case RELEASE_PASS: return "pass";
	case RELEASE_FAIL: return "fail";
	default: return "inconclusive";
	}
}

static double upper_tail(double z)
{
	return 0.5 * erfc(z / sqrt(2.0));
}

double release_normal_quantile(double confidence)
{
	if (!(confidence >= 0.5))
		confidence = 0.5;
	if (confidence > 0.999999)
		confidence = 0.999999;
	double want = 1.0 - confidence, lo = 0.0, hi = 10.0;
	/* upper_tail is decreasing: bisection to well below the precision anyone
	 * states a confidence with. */
	for (int i = 0; i < 100; i++) {
		double mid = 0.5 * (lo + hi);
		if (upper_tail(mid) > want)
			lo = mid;
		else
			hi = mid;
	}
	return 0.5 * (lo + hi);
}

static int counts_ok(double e, double n)
{
	return isfinite(e) && isfinite(n) && e >= 0 && n >= 0 && e <= n;
}

void release_error_judge(const struct release_error_test *t, double ce, double cn, double be,
                         double bn, struct release_error_result *out)
{
	out->decision = RELEASE_INCONCLUSIVE;
	out->canary_ratio = NAN;
	out->baseline_ratio = NAN;
	out->z = 0;
	out->z_critical = release_normal_quantile(t->confidence);
	if (!counts_ok(ce, cn) || !counts_ok(be, bn))
		return;
	if (cn > 0)
		out->canary_ratio = ce / cn;
	if (bn > 0)
		out->baseline_ratio = be / bn;
	double min = t->min_requests > 1 ? t->min_requests : 1;
	if (cn < min || bn < min)
		return;
	double pc = out->canary_ratio, pb = out->baseline_ratio;
	double p = (ce + be) / (cn + bn);
	double se = sqrt(p * (1.0 - p) * (1.0 / cn + 1.0 / bn));
	if (se > 0)
		out->z = (pc - pb) / se;
	/* se == 0: both ratios are 0 or both 1; the excess is 0 either way. */
	if (pc - pb > t->floor && se > 0 && out->z > out->z_critical)
		out->decision = RELEASE_FAIL;
	else
		out->decision = RELEASE_PASS;
}

enum release_decision release_latency_judge(const struct release_latency_test *t, double canary_p99,
                                            double baseline_p99, double cn)
{
	double min = t->min_requests > 1 ? t->min_requests : 1;
	if (!isfinite(cn) || cn < min || !isfinite(canary_p99) || !isfinite(baseline_p99) ||
	    canary_p99 < 0 || baseline_p99 < 0)
		return RELEASE_INCONCLUSIVE;
	if (canary_p99 > baseline_p99 * (1.0 + t->tolerance) &&
	    canary_p99 - baseline_p99 > t->floor_s)
		return RELEASE_FAIL;
	return RELEASE_PASS;
}
