/* Unit tests of the release judge, its PromQL, its policy and its plan:
 * known inputs, known decisions, exact query strings. */
#include <math.h>
#include <string.h>

#include "../testing.h"
#include "release_plan.h"
#include "release_policy.h"
#include "release_promql.h"
#include "release_stats.h"

#include "movie/buf.h"
#include "movie/err.h"

static const struct release_error_test T99 = {
    .min_requests = 100, .confidence = 0.99, .floor = 0.01};

static enum release_decision judge(double ce, double cn, double be, double bn)
{
	struct release_error_result r;
	release_error_judge(&T99, ce, cn, be, bn, &r);
	return r.decision;
}

static void test_normal_quantile(void)
{
	CHECK(fabs(release_normal_quantile(0.95) - 1.644854) < 1e-5);
	CHECK(fabs(release_normal_quantile(0.99) - 2.326348) < 1e-5);
	CHECK(fabs(release_normal_quantile(0.5)) < 1e-9);
	CHECK(fabs(release_normal_quantile(0.1)) < 1e-9); /* clamped to 0.5 */
}

static void test_error_decisions(void)
{
	/* The issue's 20 % UNAVAILABLE canary: 40 of 200 vs 2 of 800. */
	CHECK_INT_EQ(judge(40, 200, 2, 800), RELEASE_FAIL);
	/* The same ratio on a handful of calls never decides anything. */
	CHECK_INT_EQ(judge(2, 10, 0, 40), RELEASE_INCONCLUSIVE);
	/* Equal ratios pass. */
	CHECK_INT_EQ(judge(1, 200, 4, 800), RELEASE_PASS);
	/* Both perfect: pass (se 0). */
	CHECK_INT_EQ(judge(0, 150, 0, 600), RELEASE_PASS);
	/* 3 % vs 0 % on 100 calls: z = 3.47 > 2.33 and 0.03 > floor: fail. */
	CHECK_INT_EQ(judge(3, 100, 0, 400), RELEASE_FAIL);
	/* 1 % vs 0 % on 100 calls: inside the floor: pass. */
	CHECK_INT_EQ(judge(1, 100, 0, 400), RELEASE_PASS);
	/* Above the floor but within chance: 5 % vs 3 % on 100 vs 100: z = 0.72. */
	CHECK_INT_EQ(judge(5, 100, 3, 100), RELEASE_PASS);
	/* The same ratios with lots of data: beyond chance. */
	CHECK_INT_EQ(judge(500, 10000, 300, 10000), RELEASE_FAIL);
	/* A canary better than production passes. */
	CHECK_INT_EQ(judge(0, 200, 80, 800), RELEASE_PASS);
	/* Baseline without data: inconclusive, never a pass. */
	CHECK_INT_EQ(judge(0, 500, 0, 0), RELEASE_INCONCLUSIVE);
	/* Garbage from Prometheus: inconclusive. */
	CHECK_INT_EQ(judge(NAN, 500, 0, 500), RELEASE_INCONCLUSIVE);
	CHECK_INT_EQ(judge(10, 5, 0, 500), RELEASE_INCONCLUSIVE);
	CHECK_INT_EQ(judge(-1, 500, 0, 500), RELEASE_INCONCLUSIVE);
	struct release_error_result r;
	release_error_judge(&T99, 40, 200, 2, 800, &r);
	CHECK(fabs(r.canary_ratio - 0.2) < 1e-12);
	CHECK(fabs(r.baseline_ratio - 0.0025) < 1e-12);
	CHECK(r.z > 10);
	CHECK(fabs(r.z_critical - 2.326348) < 1e-5);
	CHECK_STR_EQ(release_decision_name(r.decision), "fail");
}

static void test_latency_decisions(void)
{
	struct release_latency_test t = {.min_requests = 100, .tolerance = 0.5, .floor_s = 0.025};
	CHECK_INT_EQ(release_latency_judge(&t, 0.5, 0.05, 200), RELEASE_FAIL);
	CHECK_INT_EQ(release_latency_judge(&t, 0.07, 0.05, 200), RELEASE_PASS); /* +40 % */
	/* +100 % but only 5 ms: under the absolute floor. */
	CHECK_INT_EQ(release_latency_judge(&t, 0.010, 0.005, 200), RELEASE_PASS);
	CHECK_INT_EQ(release_latency_judge(&t, 0.5, 0.05, 20), RELEASE_INCONCLUSIVE);
	CHECK_INT_EQ(release_latency_judge(&t, NAN, 0.05, 200), RELEASE_INCONCLUSIVE);
	CHECK_INT_EQ(release_latency_judge(&t, 0.05, NAN, 200), RELEASE_INCONCLUSIVE);
}

static void test_promql_strings(void)
{
	struct buf b;
	buf_init(&b, 0);
	struct release_series s = {"movie-production", "metadata", "canary", "5f8d9c"};
	const char *codes[] = {"UNAVAILABLE", "DEADLINE_EXCEEDED"};
	CHECK_INT_EQ(release_promql(RELEASE_Q_CALLS, &s, "1m", NULL, 0, &b), 0);
	CHECK_STR_EQ(b.data,
	             "sum(increase(grpc_server_handled_total{grpc_service!="
	             "\"grpc.health.v1.Health\",namespace=\"movie-production\","
	             "app=\"metadata\",track=\"canary\",pod_template_hash=\"5f8d9c\"}[1m]))");
	b.len = 0;
	CHECK_INT_EQ(release_promql(RELEASE_Q_ERRORS, &s, "90s", codes, 2, &b), 0);
	CHECK_STR_EQ(b.data, "sum(increase(grpc_server_handled_total{grpc_service!="
	                     "\"grpc.health.v1.Health\",namespace=\"movie-production\","
	                     "app=\"metadata\",track=\"canary\",pod_template_hash=\"5f8d9c\","
	                     "grpc_code=~\"Unavailable|DeadlineExceeded\"}[90s]))");
	b.len = 0;
	s.track = NULL;
	s.hash = NULL;
	CHECK_INT_EQ(release_promql(RELEASE_Q_P99, &s, "2m", NULL, 0, &b), 0);
	CHECK_STR_EQ(b.data, "histogram_quantile(0.99, sum by (le) "
	                     "(rate(grpc_server_handling_seconds_bucket{grpc_service!="
	                     "\"grpc.health.v1.Health\",namespace=\"movie-production\","
	                     "app=\"metadata\"}[2m])))");
	/* Label values are PromQL strings: quotes cannot break out. */
	b.len = 0;
	struct release_series evil = {"ns", "a\"}or vector(1)#", NULL, NULL};
	CHECK_INT_EQ(release_promql(RELEASE_Q_CALLS, &evil, "1m", NULL, 0, &b), 0);
	CHECK(strstr(b.data, "app=\"a\\\"}or vector(1)#\"") != NULL);
	b.len = 0;
	CHECK_INT_EQ(release_promql(RELEASE_Q_CALLS, &s, "1m)", NULL, 0, &b), MV_EINVAL);
	const char *bad[] = {"NOPE"};
	CHECK_INT_EQ(release_promql(RELEASE_Q_ERRORS, &s, "1m", bad, 1, &b), MV_EINVAL);
	CHECK_INT_EQ(release_promql(RELEASE_Q_ERRORS, &s, "1m", NULL, 0, &b), MV_EINVAL);
	CHECK_STR_EQ(release_grpc_code_label("CANCELLED"), "Canceled");
	CHECK(release_grpc_code_label("Unavailable") == NULL);
	buf_release(&b);
}

static int parse(struct release_policy *p, const char *y, char *err)
{
	release_policy_defaults(p);
	return release_policy_parse(p, y, strlen(y), err, 256);
}

static void test_policy(void)
{
	struct release_policy p;
	char err[256];
	CHECK_INT_EQ(parse(&p, "", err), 0);
	CHECK(p.interval_s == 10 && p.passes == 3 && p.min_requests == 100);
	CHECK(p.confidence == 0.99 && p.error_floor == 0.01 && p.n_codes == 5);
	CHECK_STR_EQ(p.window, "1m");
	CHECK(p.revert_earlier == 1 && p.synth_enabled == 1 && p.synth_rate == 20);
	CHECK_INT_EQ(parse(&p,
	                   "interval: 5s\nwindow: 30s\npasses: 2\nmax_analysis: 2m\n"
	                   "min_requests: 50\nconfidence: 0.95\nerror_floor: 0.02\n"
	                   "error_codes: [UNAVAILABLE]\nlatency_tolerance: 1\n"
	                   "latency_floor: 50ms\nmax_restarts: 1\nrollout_timeout: 1m\n"
	                   "lease: 5m\nrevert_earlier: false\n"
	                   "synthetic:\n  rate: 10\n  calls:\n"
	                   "    - service: metadata\n      method: /MetadataService/GetMetadata\n"
	                   "      args: [\"1\"]\n",
	                   err),
	             0);
	CHECK(p.interval_s == 5 && p.passes == 2 && p.max_analysis_s == 120);
	CHECK(p.min_requests == 50 && p.confidence == 0.95 && p.n_codes == 1);
	CHECK_STR_EQ(p.codes[0], "UNAVAILABLE");
	CHECK(fabs(p.latency_floor_s - 0.05) < 1e-12 && p.max_restarts == 1);
	CHECK(p.rollout_timeout_s == 60 && p.lease_s == 300 && p.revert_earlier == 0);
	CHECK(p.synth_rate == 10 && p.n_synth == 1);
	CHECK_STR_EQ(p.synth[0].path, "/MetadataService/GetMetadata");
	CHECK_STR_EQ(p.synth[0].args[0], "1");
	CHECK_INT_EQ(parse(&p, "intervall: 5s\n", err), MV_EINVAL);
	CHECK(strstr(err, "unknown key") != NULL);
	CHECK_INT_EQ(parse(&p, "confidence: 1.5\n", err), MV_EINVAL);
	CHECK_INT_EQ(parse(&p, "window: 1m)\n", err), MV_EINVAL);
	CHECK_INT_EQ(parse(&p, "error_codes: [OK]\n", err), MV_EINVAL);
	CHECK_INT_EQ(parse(&p, "synthetic:\n  rate: 1000\n", err), MV_EINVAL);
	CHECK_INT_EQ(parse(&p, "synthetic:\n  calls:\n    - service: x\n      method: nope\n", err),
	             MV_EINVAL);
	CHECK_INT_EQ(parse(&p, "interval: [\n", err), MV_ESYNTAX);
	double d;
	CHECK_INT_EQ(release_parse_duration("1h30m", &d), 0);
	CHECK(d == 5400);
	CHECK_INT_EQ(release_parse_duration("250ms", &d), 0);
	CHECK(fabs(d - 0.25) < 1e-12);
	CHECK_INT_EQ(release_parse_duration("5x", &d), MV_EINVAL);
	CHECK_INT_EQ(release_parse_duration("-5s", &d), MV_EINVAL);
}

static void test_plan(void)
{
	struct release_plan_svc s[3];
	memset(s, 0, sizeof(s));
	char err[256];
	/* Input order movie, rating, metadata: movie must still go last. */
	snprintf(s[0].name, sizeof(s[0].name), "movie");
	snprintf(s[1].name, sizeof(s[1].name), "rating");
	snprintf(s[2].name, sizeof(s[2].name), "metadata");
	const char *movie_cfg = "peers:\n  metadata:\n    addresses: [\"m:8081\"]\n"
	                        "  rating:\n    addresses: [\"r:8082\"]\n  timeout: 1s\n";
	CHECK_INT_EQ(release_plan_add_peers(&s[0], movie_cfg, strlen(movie_cfg), err, 256), 0);
	CHECK_INT_EQ(s[0].n_peers, 2);
	/* The same file twice (base + k8s layers) adds nothing. */
	CHECK_INT_EQ(release_plan_add_peers(&s[0], movie_cfg, strlen(movie_cfg), err, 256), 0);
	CHECK_INT_EQ(s[0].n_peers, 2);
	size_t order[3];
	CHECK_INT_EQ(release_plan_order(s, 3, order, err, 256), 0);
	CHECK_INT_EQ(order[0], 1);
	CHECK_INT_EQ(order[1], 2);
	CHECK_INT_EQ(order[2], 0);
	/* A cycle is refused. */
	const char *rating_cfg = "peers:\n  movie:\n    addresses: [\"x:1\"]\n";
	CHECK_INT_EQ(release_plan_add_peers(&s[1], rating_cfg, strlen(rating_cfg), err, 256), 0);
	CHECK_INT_EQ(release_plan_order(s, 3, order, err, 256), MV_EINVAL);
	CHECK(strstr(err, "cycle") != NULL);
	/* A peer outside the release does not hold anything up. */
	struct release_plan_svc one;
	memset(&one, 0, sizeof(one));
	snprintf(one.name, sizeof(one.name), "movie");
	CHECK_INT_EQ(release_plan_add_peers(&one, movie_cfg, strlen(movie_cfg), err, 256), 0);
	CHECK_INT_EQ(release_plan_order(&one, 1, order, err, 256), 0);
	CHECK_INT_EQ(order[0], 0);
}

int main(void)
{
	RUN(test_normal_quantile);
	RUN(test_error_decisions);
	RUN(test_latency_decisions);
	RUN(test_promql_strings);
	RUN(test_policy);
	RUN(test_plan);
	return TEST_SUMMARY();
}
