/* Unit tests of guard_policy.c and guard_checks.c: known inputs -> known
 * decisions. Objects are built here in the shape the API server returns. */
#include <jansson.h>
#include <math.h>
#include <string.h>

#include "../testing.h"
#include "guard_checks.h"
#include "guard_policy.h"
#include "lock.h"

#include "movie/err.h"

#define NOW    1796170000.0
#define T(off) stamp(NOW + (off))

static const char *stamp(double t)
{
	static char bufs[8][32];
	static int k;
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	char *b = bufs[k++ % 8];
	strftime(b, 32, "%Y-%m-%dT%H:%M:%SZ", &tm);
	return b;
}

static json_t *template_of(const char *image)
{
	return json_pack("{s:{s:{s:s}},s:{s:[{s:s,s:s}]}}", "metadata", "labels", "app", "web",
	                 "spec", "containers", "name", "web", "image", image);
}

static json_t *rs(const char *hash, const char *image, int rev, double created)
{
	json_t *t = template_of(image);
	json_object_set_new(json_object_get(json_object_get(t, "metadata"), "labels"),
	                    "pod-template-hash", json_string(hash));
	char revs[16];
	snprintf(revs, sizeof(revs), "%d", rev);
	char name[64];
	snprintf(name, sizeof(name), "web-%s", hash);
	return json_pack("{s:{s:s,s:s,s:{s:s},s:{s:s},s:[{s:s,s:b}]},s:{s:o}}", "metadata", "name",
	                 name, "creationTimestamp", stamp(created), "labels", "pod-template-hash",
	                 hash, "annotations", "deployment.kubernetes.io/revision", revs,
	                 "ownerReferences", "uid", "D1", "controller", 1, "spec", "template", t);
}

/* A Deployment on `image`; complete_ago < 0: not complete. */
static json_t *deployment(const char *image, const char *new_rs_name, double complete_ago)
{
	json_t *d =
	    json_pack("{s:{s:s,s:s,s:i,s:{}},s:{s:i,s:o,s:{s:{s:s}}},s:{s:i,s:[]}}", "metadata",
	              "name", "web", "uid", "D1", "generation", 2, "annotations", "spec",
	              "replicas", 2, "template", template_of(image), "selector", "matchLabels",
	              "app", "web", "status", "observedGeneration", 2, "conditions");
	json_t *conds = json_object_get(json_object_get(d, "status"), "conditions");
	char msg[128];
	if (complete_ago >= 0) {
		snprintf(msg, sizeof(msg), "ReplicaSet \"%s\" has successfully progressed.",
		         new_rs_name);
		json_array_append_new(conds, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type",
		                                       "Progressing", "status", "True", "reason",
		                                       "NewReplicaSetAvailable", "message", msg,
		                                       "lastUpdateTime", T(-complete_ago),
		                                       "lastTransitionTime", T(-complete_ago)));
	} else {
		snprintf(msg, sizeof(msg), "ReplicaSet \"%s\" is progressing.", new_rs_name);
		json_array_append_new(
		    conds, json_pack("{s:s,s:s,s:s,s:s,s:s,s:s}", "type", "Progressing", "status",
		                     "True", "reason", "ReplicaSetUpdated", "message", msg,
		                     "lastUpdateTime", T(-5), "lastTransitionTime", T(-30)));
	}
	return d;
}

static json_t *pod(const char *hash, int ready, int restarts, const char *waiting,
                   double started_ago)
{
	json_t *cs = json_pack("{s:s,s:i,s:b,s:{}}", "name", "web", "restartCount", restarts,
	                       "ready", ready, "state");
	if (waiting)
		json_object_set_new(json_object_get(cs, "state"), "waiting",
		                    json_pack("{s:s}", "reason", waiting));
	return json_pack("{s:{s:s,s:s,s:{s:s}},s:{s:s,s:[{s:s,s:s}],s:[o]}}", "metadata", "name",
	                 "web-pod", "creationTimestamp", T(-started_ago), "labels",
	                 "pod-template-hash", hash, "status", "startTime", T(-started_ago),
	                 "conditions", "type", "Ready", "status", ready ? "True" : "False",
	                 "containerStatuses", cs);
}

struct world {
	json_t *d, *rss, *pods;
	struct guard_policy p;
	struct guard_metrics m;
	struct guard_input in;
	struct guard_verdict v;
};

/* web:2 (hash new2, revision 2, 60 s old) replaced web:1 (hash old1). */
static void world_init(struct world *w, double complete_ago)
{
	memset(w, 0, sizeof(*w));
	w->d = deployment("web:2", "web-new2", complete_ago);
	w->rss = json_pack("[o,o]", rs("old1", "web:1", 1, NOW - 3600),
	                   rs("new2", "web:2", 2, NOW - 60));
	w->pods = json_pack("[o,o]", pod("new2", 1, 0, NULL, 50), pod("new2", 1, 0, NULL, 40));
	guard_policy_defaults(&w->p);
	w->m.ok = 1;
	w->m.new_p99 = w->m.base_p99 = NAN;
	w->in = (struct guard_input){
	    .deploy = w->d, .rs_items = w->rss, .pod_items = w->pods, .metrics = &w->m, .now = NOW};
}

static void world_release(struct world *w)
{
	json_decref(w->d);
	json_decref(w->rss);
	json_decref(w->pods);
}

static void judge(struct world *w)
{
	guard_judge(&w->p, &w->in, &w->v);
}

static void test_policy_defaults_and_file(void)
{
	struct guard_policy p;
	guard_policy_defaults(&p);
	CHECK(p.window == 300);
	CHECK(p.error_ratio.ncodes == 5);
	char re[256], err[256];
	CHECK_INT_EQ(guard_policy_codes_regex(&p, re, sizeof(re)), 0);
	CHECK_STR_EQ(re, "Unknown|Internal|Unavailable|DataLoss|DeadlineExceeded");
	const char *y =
	    "window: 2m\ninterval: 2s\nchecks:\n  restarts: {max: 5, crash-loop: false}\n"
	    "  error-ratio:\n    codes: [INTERNAL]\n    max-increase: 0.1\n"
	    "  latency-p99: {enabled: false}\n";
	CHECK_INT_EQ(guard_policy_parse(&p, y, strlen(y), err, sizeof(err)), 0);
	CHECK(p.window == 120 && p.interval == 2);
	CHECK(p.restarts.max == 5 && !p.restarts.crash_loop);
	CHECK(p.error_ratio.ncodes == 1 && p.error_ratio.max_increase == 0.1);
	CHECK(!p.latency.enabled && p.readiness.enabled);
	CHECK_INT_EQ(guard_policy_codes_regex(&p, re, sizeof(re)), 0);
	CHECK_STR_EQ(re, "Internal");
}

static void test_policy_errors(void)
{
	static const struct {
		const char *yaml, *want;
	} bad[] = {
	    {"windw: 5m\n", "1: unknown key \"windw\""},
	    {"checks:\n  restarts:\n    mx: 1\n", "3: unknown key \"checks.restarts.mx\""},
	    {"checks:\n  foo: {}\n", "2: unknown check \"checks.foo\""},
	    {"window: soon\n", "1: window: \"soon\" is not a duration"},
	    {"checks:\n  readiness: {max-unready-share: 2}\n", "is not a ratio in [0, 1]"},
	    {"checks:\n  latency-p99: {max-ratio: 0.5}\n", "is not a factor >= 1"},
	    {"checks:\n  restarts: {max: -1}\n", "is not a count"},
	    {"checks:\n  error-ratio: {codes: [OK]}\n", "OK is not an error"},
	    {"checks:\n  error-ratio: {codes: [NOT_A_CODE]}\n", "is not a gRPC code name"},
	    {"checks: [1]\n", "checks: expected a mapping"},
	    {"- 1\n", "policy: expected a mapping"},
	    {"a: [\n", ""},
	    {"interval: 1ms\n", "interval: at least 100ms"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct guard_policy p;
		guard_policy_defaults(&p);
		char err[512] = "";
		int rc = guard_policy_parse(&p, bad[i].yaml, strlen(bad[i].yaml), err, sizeof(err));
		CHECK(rc == MV_EINVAL || rc == MV_ESYNTAX);
		if (!strstr(err, bad[i].want))
			fprintf(stderr, "case %zu: got \"%s\"\n", i, err);
		CHECK(strstr(err, bad[i].want) != NULL);
	}
	struct guard_policy p;
	guard_policy_defaults(&p);
	char err[64];
	CHECK_INT_EQ(guard_policy_parse(&p, "", 0, err, sizeof(err)), 0);
	CHECK(p.window == 300);
}

static void test_healthy_pending_and_window(void)
{
	struct world w;
	world_init(&w, -1);
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	CHECK_STR_EQ(w.v.bad_hash, "new2");
	CHECK_STR_EQ(w.v.good_hash, "old1");
	CHECK_STR_EQ(w.v.good_rs, "web-old1");
	CHECK(w.v.in_window);
	world_release(&w);
	world_init(&w, 100); /* completed 100 s ago, window 300 s */
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	world_release(&w);
	world_init(&w, 301);
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_HEALTHY);
	CHECK(!w.v.in_window);
	world_release(&w);
	/* Without Prometheus it says so. */
	world_init(&w, 400);
	w.in.metrics = NULL;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_HEALTHY);
	CHECK(!w.v.metrics_judged);
	CHECK(strstr(w.v.reason, "Kubernetes-side checks only") != NULL);
	world_release(&w);
}

static void test_first_revision(void)
{
	struct world w;
	world_init(&w, -1);
	json_array_remove(w.rss, 0);
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_HEALTHY);
	CHECK(strstr(w.v.reason, "first revision") != NULL);
	world_release(&w);
}

static void test_error_ratio(void)
{
	struct world w;
	world_init(&w, 10);
	w.m.new_requests = 1000;
	w.m.new_errors = 300;
	w.m.base_requests = 5000;
	w.m.base_errors = 50; /* 1 % before */
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_FAILED);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_ROLLBACK);
	CHECK_STR_EQ(w.v.check, "error-ratio");
	CHECK(fabs(w.v.value - 0.3) < 1e-9);
	CHECK(fabs(w.v.threshold - 0.06) < 1e-9);
	CHECK(fabs(w.v.baseline - 0.01) < 1e-9);
	CHECK(w.v.samples == 1000);
	/* Within the allowed increase: fine. */
	w.m.new_errors = 55;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	/* Too few requests: no verdict, whatever the ratio. */
	w.m.new_requests = 99;
	w.m.new_errors = 99;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	/* A failed query: the metric checks do not run. */
	w.m.new_requests = 1000;
	w.m.ok = 0;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	CHECK(strstr(w.v.reason, "query failed") != NULL);
	world_release(&w);
}

static void test_latency(void)
{
	struct world w;
	world_init(&w, 10);
	w.m.new_requests = w.m.base_requests = 1000;
	w.m.base_p99 = 0.002;
	w.m.new_p99 = 0.006; /* 3x, but only +4 ms: under min-increase 5 ms */
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	w.m.new_p99 = 0.020; /* 10x */
	judge(&w);
	CHECK_STR_EQ(w.v.check, "latency-p99");
	CHECK(fabs(w.v.threshold - 0.007) < 1e-9);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_ROLLBACK);
	/* No baseline: no latency verdict. */
	w.m.base_p99 = NAN;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	world_release(&w);
}

static void test_pods(void)
{
	struct world w;
	world_init(&w, -1);
	json_array_append_new(w.pods, pod("new2", 0, 1, "CrashLoopBackOff", 20));
	judge(&w);
	CHECK_STR_EQ(w.v.check, "restarts");
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_ROLLBACK);
	world_release(&w);
	/* Restarts over the limit without back-off; old pods' restarts do not count. */
	world_init(&w, -1);
	json_array_append_new(w.pods, pod("old1", 1, 9, NULL, 900));
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	json_array_append_new(w.pods, pod("new2", 1, 3, NULL, 20));
	judge(&w);
	CHECK_STR_EQ(w.v.check, "restarts");
	CHECK(w.v.value == 3 && w.v.threshold == 2);
	world_release(&w);
	/* Readiness: 2 of 3 new pods unready past the 60 s grace (one within it). */
	world_init(&w, -1);
	json_array_clear(w.pods);
	json_array_append_new(w.pods, pod("new2", 0, 0, NULL, 90));
	json_array_append_new(w.pods, pod("new2", 0, 0, NULL, 30));
	json_array_append_new(w.pods, pod("new2", 1, 0, NULL, 90));
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING); /* 1/3 < 0.5 */
	json_array_append_new(w.pods, pod("new2", 0, 0, NULL, 61));
	judge(&w);
	CHECK_STR_EQ(w.v.check, "readiness");
	CHECK(w.v.value == 0.5);
	world_release(&w);
}

static void test_progress(void)
{
	struct world w;
	world_init(&w, -1);
	json_t *c =
	    json_array_get(json_object_get(json_object_get(w.d, "status"), "conditions"), 0);
	json_object_set_new(c, "reason", json_string("ProgressDeadlineExceeded"));
	judge(&w);
	CHECK_STR_EQ(w.v.check, "progress-deadline");
	world_release(&w);
	world_init(&w, -1);
	w.p.progress.max = 4; /* last progress 5 s ago */
	judge(&w);
	CHECK_STR_EQ(w.v.check, "progress-deadline");
	w.p.progress.max = 6;
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_PENDING);
	world_release(&w);
}

static void failing(struct world *w)
{
	json_array_append_new(w->pods, pod("new2", 0, 1, "CrashLoopBackOff", 20));
}

static void test_actions_refused(void)
{
	struct world w;
	world_init(&w, 400); /* outside the window */
	failing(&w);
	judge(&w);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_REPORTED);
	CHECK(strstr(w.v.reason, "outside") != NULL);
	world_release(&w);
	world_init(&w, -1);
	failing(&w);
	json_object_set_new(json_object_get(w.d, "spec"), "paused", json_true());
	judge(&w);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_SKIPPED);
	CHECK(strstr(w.v.reason, "paused") != NULL);
	world_release(&w);
	world_init(&w, -1);
	failing(&w);
	w.in.locked = 1;
	w.in.lock_owner = "ci/7/0a0b0c0d";
	judge(&w);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_SKIPPED);
	CHECK(strstr(w.v.reason, "locked by ci/7/0a0b0c0d") != NULL);
	world_release(&w);
	/* The same template twice: never. */
	world_init(&w, -1);
	failing(&w);
	json_object_set_new(json_object_get(json_object_get(w.d, "metadata"), "annotations"),
	                    GUARD_ANN_BAD_TEMPLATES, json_string("[\"x\",\"new2\"]"));
	judge(&w);
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_SKIPPED);
	CHECK(strstr(w.v.reason, "once already") != NULL);
	world_release(&w);
}

static void test_restart_sees_own_rollback(void)
{
	/* After guard rolled web:2 (new2) back to web:1, web:1's RS is the new one. */
	struct world w;
	world_init(&w, -1);
	json_decref(w.d);
	w.d = deployment("web:1", "web-old1", -1);
	w.in.deploy = w.d;
	json_object_set_new(json_object_get(json_object_get(w.rss, 0), "metadata"), "annotations",
	                    json_pack("{s:s}", "deployment.kubernetes.io/revision", "3"));
	json_object_set_new(json_object_get(json_object_get(w.d, "metadata"), "annotations"),
	                    GUARD_ANN_ROLLBACK,
	                    json_string("{\"at\":\"x\",\"check\":\"restarts\",\"from\":\"new2\","
	                                "\"to\":\"old1\"}"));
	json_array_clear(w.pods);
	json_array_append_new(w.pods, pod("new2", 0, 4, "CrashLoopBackOff", 20));
	judge(&w);
	CHECK_INT_EQ(w.v.outcome, GUARD_RECOVERED);
	CHECK_STR_EQ(w.v.bad_hash, "old1");
	CHECK_INT_EQ(w.v.action, GUARD_ACTION_NONE);
	world_release(&w);
}

static void test_amend_patch(void)
{
	struct world w;
	world_init(&w, -1);
	json_t *ann = json_object_get(json_object_get(w.d, "metadata"), "annotations");
	json_object_set_new(ann, "movie.dev/release-owner", json_string("keep me"));
	json_t *patch = json_pack("[{s:s,s:s,s:O},{s:s,s:s,s:{s:s,s:s}}]", "op", "test", "path",
	                          "/spec/template", "value",
	                          json_object_get(json_object_get(w.d, "spec"), "template"), "op",
	                          "replace", "path", "/metadata/annotations", "value",
	                          "movie.dev/release-lock", "stale copy", "other", "x");
	struct guard_verdict v = {0};
	snprintf(v.bad_hash, sizeof(v.bad_hash), "new2");
	snprintf(v.good_hash, sizeof(v.good_hash), "old1");
	snprintf(v.check, sizeof(v.check), "restarts");
	CHECK_INT_EQ(guard_amend_undo_patch(w.d, &v, "2026-12-02T01:00:00Z", patch), 0);
	json_t *out = json_object_get(json_array_get(patch, 1), "value");
	CHECK(json_object_get(out, "movie.dev/release-lock") == NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(out, "movie.dev/release-owner")), "keep me");
	CHECK_STR_EQ(json_string_value(json_object_get(out, "other")), "x");
	CHECK_STR_EQ(json_string_value(json_object_get(out, GUARD_ANN_ROLLBACK)),
	             "{\"at\":\"2026-12-02T01:00:00Z\",\"check\":\"restarts\",\"from\":\"new2\","
	             "\"to\":\"old1\"}");
	CHECK_STR_EQ(json_string_value(json_object_get(out, GUARD_ANN_BAD_TEMPLATES)),
	             "[\"new2\"]");
	CHECK_INT_EQ(json_array_size(patch), 2);
	json_decref(patch);
	world_release(&w);
}

int main(void)
{
	RUN(test_policy_defaults_and_file);
	RUN(test_policy_errors);
	RUN(test_healthy_pending_and_window);
	RUN(test_first_revision);
	RUN(test_error_ratio);
	RUN(test_latency);
	RUN(test_pods);
	RUN(test_progress);
	RUN(test_actions_refused);
	RUN(test_restart_sees_own_rollback);
	RUN(test_amend_patch);
	return TEST_SUMMARY();
}
