/* Unit tests of rollout.c (kubectl rollout status / undo rules) against the
 * recorded objects of tests/fixtures/kube. Messages are kubectl's, verbatim. */
#include <jansson.h>
#include <string.h>

#include "../testing.h"
#include "kube.h"
#include "kube_fixture.h"
#include "rollout.h"

#include "movie/err.h"

static void set_int(json_t *obj, const char *section, const char *key, long long v)
{
	json_object_set_new(json_object_get(obj, section), key, json_integer(v));
}

static void test_judge_recorded_states(void)
{
	char msg[512];
	json_t *d = fixture("deployment_rolling.json");
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_WAITING);
	CHECK_STR_EQ(msg,
	             "Waiting for deployment \"web\" rollout to finish: 3 out of 10 new replicas "
	             "have been updated...\n");
	json_decref(d);
	d = fixture("deployment_complete.json");
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_DONE);
	CHECK_STR_EQ(msg, "deployment \"web\" successfully rolled out\n");
	/* --revision: 5 matches, 6 does not. */
	CHECK_INT_EQ(rollout_status_judge(d, 5, msg, sizeof(msg)), ROLLOUT_DONE);
	CHECK_INT_EQ(rollout_status_judge(d, 6, msg, sizeof(msg)), ROLLOUT_FAILED);
	CHECK_STR_EQ(msg, "desired revision (6) is different from the running revision (5)");
	json_decref(d);
	d = fixture("deployment_deadline.json");
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_FAILED);
	CHECK_STR_EQ(msg, "deployment \"web\" exceeded its progress deadline");
	json_decref(d);
}

static void test_judge_order(void)
{
	char msg[512];
	json_t *d = fixture("deployment_complete.json");
	/* Generation not observed yet: nothing else is looked at, not even the deadline. */
	set_int(d, "metadata", "generation", 8);
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_WAITING);
	CHECK_STR_EQ(msg, "Waiting for deployment spec update to be observed...\n");
	set_int(d, "metadata", "generation", 7);
	/* Old replicas still counted in status.replicas. */
	set_int(d, "status", "replicas", 12);
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_WAITING);
	CHECK_STR_EQ(msg, "Waiting for deployment \"web\" rollout to finish: 2 old replicas are "
	                  "pending termination...\n");
	set_int(d, "status", "replicas", 10);
	set_int(d, "status", "availableReplicas", 7);
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_WAITING);
	CHECK_STR_EQ(msg, "Waiting for deployment \"web\" rollout to finish: 7 of 10 updated "
	                  "replicas are available...\n");
	/* readyReplicas, the Available condition and terminatingReplicas are ignored. */
	set_int(d, "status", "availableReplicas", 10);
	set_int(d, "status", "readyReplicas", 0);
	set_int(d, "status", "terminatingReplicas", 4);
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_DONE);
	/* spec.replicas absent: the first check is skipped. */
	json_object_del(json_object_get(d, "spec"), "replicas");
	set_int(d, "status", "updatedReplicas", 0);
	set_int(d, "status", "replicas", 0);
	set_int(d, "status", "availableReplicas", 0);
	CHECK_INT_EQ(rollout_status_judge(d, 0, msg, sizeof(msg)), ROLLOUT_DONE);
	json_decref(d);
	/* An empty object does not crash and waits for the spec to be observed? No:
	 * generation 0 <= observedGeneration 0, so it is done (kubectl's arithmetic). */
	json_t *empty = json_object();
	CHECK_INT_EQ(rollout_status_judge(empty, 0, msg, sizeof(msg)), ROLLOUT_DONE);
	CHECK_STR_EQ(msg, "deployment \"\" successfully rolled out\n");
	json_decref(empty);
}

static json_t *items_of(json_t *list)
{
	return json_object_get(list, "items");
}

static const json_t *patch_op(const struct rollout_undo_plan *p, size_t i, const char *op,
                              const char *path)
{
	const json_t *o = json_array_get(p->patch, i);
	const char *got_op = json_string_value(json_object_get(o, "op"));
	const char *got_path = json_string_value(json_object_get(o, "path"));
	if (!got_op || !got_path || strcmp(got_op, op) || strcmp(got_path, path))
		return NULL;
	return json_object_get(o, "value");
}

static void test_undo_previous_revision(void)
{
	json_t *d = fixture("deployment_rolling.json");
	json_t *rs = fixture("replicasets.json");
	struct rollout_undo_target t = {0};
	struct rollout_undo_plan p;
	char msg[512];
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), 0);
	CHECK_INT_EQ(p.action, ROLLOUT_UNDO_PATCH);
	CHECK_INT_EQ(p.revision, 4);
	CHECK_STR_EQ(p.rs_name, "web-6f9c8b7d45");
	CHECK(p.last_applied);
	CHECK_INT_EQ(json_array_size(p.patch), 2);
	const json_t *tmpl = patch_op(&p, 0, "replace", "/spec/template");
	CHECK(tmpl != NULL);
	/* The RS template minus pod-template-hash, everything else kept. */
	CHECK(json_object_get(json_object_get(json_object_get(tmpl, "metadata"), "labels"),
	                      "pod-template-hash") == NULL);
	CHECK_STR_EQ(
	    json_string_value(json_object_get(
	        json_array_get(json_object_get(json_object_get(tmpl, "spec"), "containers"), 0),
	        "image")),
	    "reg/web:1.2.3");
	CHECK(json_object_get(json_object_get(json_object_get(tmpl, "metadata"), "annotations"),
	                      "kubectl.kubernetes.io/restartedAt") != NULL);
	const json_t *ann = patch_op(&p, 1, "replace", "/metadata/annotations");
	CHECK(ann != NULL);
	/* Skip-list keys keep the Deployment's values; other RS keys are copied;
	 * Deployment-only keys ("team") are dropped. */
	json_t *want =
	    json_loads("{\"kubectl.kubernetes.io/last-applied-configuration\":\"{\\\"kind\\\":"
	               "\\\"Deployment\\\"}\",\"deployment.kubernetes.io/revision\":\"5\","
	               "\"kubernetes.io/change-cause\":\"image 1.2.3\",\"note\":\"from rs\"}",
	               0, NULL);
	CHECK(json_equal(JMUT(ann), want));
	json_decref(want);
	rollout_undo_plan_release(&p);
	json_decref(d);
	json_decref(rs);
}

static void test_undo_targets_and_errors(void)
{
	json_t *d = fixture("deployment_rolling.json");
	json_t *rs = fixture("replicasets.json");
	struct rollout_undo_plan p;
	char msg[512];
	struct rollout_undo_target t = {.to_revision = 3};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), 0);
	CHECK_STR_EQ(p.rs_name, "web-5d8f7c9b46");
	rollout_undo_plan_release(&p);
	/* Revisions of RSs not controlled by this Deployment's uid are invisible. */
	t.to_revision = 9;
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), MV_ENOTFOUND);
	CHECK_STR_EQ(msg, "unable to find specified revision 9 in history");
	t.to_revision = 8; /* controller: false */
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), MV_ENOTFOUND);
	/* By name and by pod-template-hash. */
	struct rollout_undo_target byname = {.to = "web-5d8f7c9b46"};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &byname, &p, msg, sizeof(msg)), 0);
	CHECK_INT_EQ(p.revision, 3);
	rollout_undo_plan_release(&p);
	struct rollout_undo_target byhash = {.to = "6f9c8b7d45"};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &byhash, &p, msg, sizeof(msg)), 0);
	CHECK_STR_EQ(p.rs_name, "web-6f9c8b7d45");
	rollout_undo_plan_release(&p);
	struct rollout_undo_target foreign = {.to = "web-other-4b5c6d"};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &foreign, &p, msg, sizeof(msg)),
	             MV_ENOTFOUND);
	/* The current revision's template matches: skip, no patch. */
	struct rollout_undo_target cur = {.to_revision = 5};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &cur, &p, msg, sizeof(msg)), 0);
	CHECK_INT_EQ(p.action, ROLLOUT_UNDO_SKIP);
	CHECK(p.patch == NULL);
	rollout_undo_plan_release(&p);
	/* Paused is refused after the target is found (kubectl's order). */
	json_object_set_new(json_object_get(d, "spec"), "paused", json_true());
	struct rollout_undo_target prev = {0};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &prev, &p, msg, sizeof(msg)), MV_EINVAL);
	CHECK_STR_EQ(msg, "you cannot rollback a paused deployment; resume it first with 'kubectl "
	                  "rollout resume' and try again");
	t.to_revision = 42;
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), MV_ENOTFOUND);
	json_object_del(json_object_get(d, "spec"), "paused");
	/* Only one owned RS: no history. */
	json_t *one = json_array();
	json_array_append(one, json_array_get(items_of(rs), 2));
	CHECK_INT_EQ(rollout_undo_plan(d, one, &prev, &p, msg, sizeof(msg)), MV_ENOTFOUND);
	CHECK_STR_EQ(msg, "no rollout history found for deployment \"web\"");
	json_decref(one);
	json_decref(d);
	json_decref(rs);
}

static void test_undo_guards(void)
{
	json_t *d = fixture("deployment_rolling.json");
	json_t *rs = fixture("replicasets.json");
	struct rollout_undo_plan p;
	char msg[512];
	struct rollout_undo_target t = {.guard = ROLLOUT_GUARD_RESOURCE_VERSION};
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), 0);
	CHECK_INT_EQ(json_array_size(p.patch), 3);
	const json_t *v = patch_op(&p, 0, "test", "/metadata/resourceVersion");
	CHECK_STR_EQ(json_string_value(v), "4711");
	CHECK(patch_op(&p, 1, "replace", "/spec/template") != NULL);
	rollout_undo_plan_release(&p);
	t.guard = ROLLOUT_GUARD_TEMPLATE;
	CHECK_INT_EQ(rollout_undo_plan(d, items_of(rs), &t, &p, msg, sizeof(msg)), 0);
	v = patch_op(&p, 0, "test", "/spec/template");
	CHECK(v && json_equal(JMUT(v), json_object_get(json_object_get(d, "spec"), "template")));
	rollout_undo_plan_release(&p);
	json_decref(d);
	json_decref(rs);
}

static void test_templates_semantic_equality(void)
{
	json_t *a = json_loads("{\"metadata\":{\"labels\":{\"app\":\"web\",\"pod-template-hash\":"
	                       "\"1\"}},\"spec\":{\"containers\":[{\"name\":\"w\",\"args\":[]}]}}",
	                       0, NULL);
	json_t *b = json_loads("{\"metadata\":{\"labels\":{\"app\":\"web\"},\"annotations\":{}},"
	                       "\"spec\":{\"containers\":[{\"name\":\"w\",\"ports\":null}]}}",
	                       0, NULL);
	CHECK(rollout_templates_equal(a, b));
	json_object_set_new(json_object_get(json_object_get(b, "metadata"), "labels"), "v",
	                    json_string("2"));
	CHECK(!rollout_templates_equal(a, b));
	json_decref(a);
	json_decref(b);
}

static void test_new_rs_and_old_pods(void)
{
	json_t *d = fixture("deployment_complete.json");
	json_t *rs = fixture("replicasets.json");
	json_t *pods = fixture("pods.json");
	const json_t *n = rollout_new_replicaset(d, items_of(rs));
	CHECK(n != NULL);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(n, "metadata"), "name")),
	             "web-775855699b");
	/* One terminating pod of the old RS web-6f9c8b7d45. */
	CHECK_INT_EQ(rollout_old_pods(d, items_of(rs), items_of(pods)), 1);
	json_array_remove(items_of(pods), 2);
	CHECK_INT_EQ(rollout_old_pods(d, items_of(rs), items_of(pods)), 0);
	json_decref(d);
	json_decref(rs);
	json_decref(pods);
}

int main(void)
{
	RUN(test_judge_recorded_states);
	RUN(test_judge_order);
	RUN(test_undo_previous_revision);
	RUN(test_undo_targets_and_errors);
	RUN(test_undo_guards);
	RUN(test_templates_semantic_equality);
	RUN(test_new_rs_and_old_pods);
	return TEST_SUMMARY();
}
