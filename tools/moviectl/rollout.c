/*
 * rollout.c - kubectl's rollout status and rollout undo rules, without I/O.
 * Sources: kubectl pkg/polymorphichelpers/rollout_status.go and rollback.go,
 * summarised in K8S-API.md §1.1 and §2.1.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube.h"
#include "rollout.h"

#include "movie/err.h"
#include "movie/banned.h"

static long long int_field(const json_t *obj, const char *key, long long dflt)
{
	json_t *v = json_object_get(obj, key);
	return json_is_integer(v) ? (long long)json_integer_value(v) : dflt;
}

static const char *name_of(const json_t *obj)
{
	const char *n =
	    json_string_value(json_object_get(json_object_get(obj, "metadata"), "name"));
	return n ? n : "";
}

int rollout_revision(const json_t *obj, long long *out)
{
	const json_t *ann = json_object_get(json_object_get(obj, "metadata"), "annotations");
	const char *s = json_string_value(json_object_get(ann, ROLLOUT_REVISION_ANNOTATION));
	*out = 0;
	if (!s)
		return 0;
	/* strconv.ParseInt(v, 10, 64): optional sign, digits only. */
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (*s == '\0' || *end != '\0' || errno == ERANGE || *s == ' ')
		return -1;
	*out = v;
	return 0;
}

enum rollout_state rollout_status_judge(const json_t *deploy, long revision, char *msg,
                                        size_t msglen)
{
	const char *name = name_of(deploy);
	const json_t *meta = json_object_get(deploy, "metadata");
	const json_t *spec = json_object_get(deploy, "spec");
	const json_t *st = json_object_get(deploy, "status");
	if (revision > 0) {
		long long rev;
		if (rollout_revision(deploy, &rev)) {
			snprintf(msg, msglen, "cannot get the revision of deployment \"%s\"", name);
			return ROLLOUT_FAILED;
		}
		if (rev != revision) {
			snprintf(
			    msg, msglen,
			    "desired revision (%ld) is different from the running revision (%lld)",
			    revision, rev);
			return ROLLOUT_FAILED;
		}
	}
	if (int_field(meta, "generation", 0) <= int_field(st, "observedGeneration", 0)) {
		size_t i;
		json_t *c;
		json_array_foreach(json_object_get(st, "conditions"), i, c)
		{
			const char *type = json_string_value(json_object_get(c, "type"));
			const char *reason = json_string_value(json_object_get(c, "reason"));
			if (type && strcmp(type, "Progressing") == 0) {
				if (reason && strcmp(reason, "ProgressDeadlineExceeded") == 0) {
					snprintf(msg, msglen,
					         "deployment \"%s\" exceeded its progress deadline",
					         name);
					return ROLLOUT_FAILED;
				}
				break; /* GetDeploymentCondition: the first of the type */
			}
		}
		long long updated = int_field(st, "updatedReplicas", 0);
		long long replicas = int_field(st, "replicas", 0);
		long long available = int_field(st, "availableReplicas", 0);
		json_t *want = json_object_get(spec, "replicas");
		if (json_is_integer(want) && updated < json_integer_value(want)) {
			snprintf(
			    msg, msglen,
			    "Waiting for deployment \"%s\" rollout to finish: %lld out of %lld new "
			    "replicas have been updated...\n",
			    name, updated, (long long)json_integer_value(want));
			return ROLLOUT_WAITING;
		}
		if (replicas > updated) {
			snprintf(msg, msglen,
			         "Waiting for deployment \"%s\" rollout to finish: %lld old "
			         "replicas are "
			         "pending termination...\n",
			         name, replicas - updated);
			return ROLLOUT_WAITING;
		}
		if (available < updated) {
			snprintf(
			    msg, msglen,
			    "Waiting for deployment \"%s\" rollout to finish: %lld of %lld updated "
			    "replicas are available...\n",
			    name, available, updated);
			return ROLLOUT_WAITING;
		}
		snprintf(msg, msglen, "deployment \"%s\" successfully rolled out\n", name);
		return ROLLOUT_DONE;
	}
	snprintf(msg, msglen, "Waiting for deployment spec update to be observed...\n");
	return ROLLOUT_WAITING;
}

int rollout_controlled_by(const json_t *obj, const char *uid)
{
	if (!uid || !*uid)
		return 0;
	size_t i;
	json_t *ref;
	json_array_foreach(json_object_get(json_object_get(obj, "metadata"), "ownerReferences"), i,
	                   ref)
	{
		const char *u = json_string_value(json_object_get(ref, "uid"));
		if (json_is_true(json_object_get(ref, "controller")) && u && strcmp(u, uid) == 0)
			return 1;
	}
	return 0;
}

/* Go's zero values: what an absent field decodes to. */
static int is_zero(const json_t *v)
{
	if (!v || json_is_null(v) || json_is_false(v))
		return 1;
	if (json_is_object(v))
		return json_object_size(v) == 0;
	if (json_is_array(v))
		return json_array_size(v) == 0;
	if (json_is_string(v))
		return json_string_length(v) == 0;
	if (json_is_integer(v))
		return json_integer_value(v) == 0;
	if (json_is_real(v))
		return json_real_value(v) == 0.0;
	return 0;
}

/*
 * apiequality.Semantic.DeepEqual over decoded structs: an absent field equals
 * its zero value, and nil equals empty for maps and slices. Without the schema
 * a JSON object may be a struct or a map; treating both like structs is wrong
 * only for a map key present with "" (rare in templates; documented).
 */
static int semantic_equal(const json_t *a, const json_t *b)
{
	if (is_zero(a) && is_zero(b))
		return 1;
	if (!a || !b)
		return 0;
	if (json_is_object(a) && json_is_object(b)) {
		const char *k;
		json_t *v;
		json_object_foreach(JMUT(a), k, v)
		{
			if (!semantic_equal(v, json_object_get(b, k)))
				return 0;
		}
		json_object_foreach(JMUT(b), k, v)
		{
			if (!json_object_get(a, k) && !is_zero(v))
				return 0;
		}
		return 1;
	}
	if (json_is_array(a) && json_is_array(b)) {
		if (json_array_size(a) != json_array_size(b))
			return 0;
		for (size_t i = 0; i < json_array_size(a); i++)
			if (!semantic_equal(json_array_get(a, i), json_array_get(b, i)))
				return 0;
		return 1;
	}
	if (json_is_number(a) && json_is_number(b))
		return json_number_value(a) == json_number_value(b);
	return json_equal(JMUT(a), JMUT(b));
}

/* A deep copy of a template without the pod-template-hash label. */
static json_t *template_without_hash(const json_t *tmpl)
{
	json_t *copy = json_deep_copy(tmpl);
	if (!copy)
		return NULL;
	json_t *labels = json_object_get(json_object_get(copy, "metadata"), "labels");
	if (json_is_object(labels))
		json_object_del(labels, ROLLOUT_HASH_LABEL);
	return copy;
}

int rollout_templates_equal(const json_t *a, const json_t *b)
{
	json_t *ca = template_without_hash(a), *cb = template_without_hash(b);
	int eq = ca && cb && semantic_equal(ca, cb);
	json_decref(ca);
	json_decref(cb);
	return eq;
}

static const char *uid_of(const json_t *obj)
{
	return json_string_value(json_object_get(json_object_get(obj, "metadata"), "uid"));
}

static const json_t *template_of(const json_t *obj)
{
	return json_object_get(json_object_get(obj, "spec"), "template");
}

/* creationTimestamp then name, as controller.ReplicaSetsByCreationTimestamp. */
static int older(const json_t *a, const json_t *b)
{
	const char *ta =
	    json_string_value(json_object_get(json_object_get(a, "metadata"), "creationTimestamp"));
	const char *tb =
	    json_string_value(json_object_get(json_object_get(b, "metadata"), "creationTimestamp"));
	int c = strcmp(ta ? ta : "", tb ? tb : "");
	if (c != 0)
		return c < 0;
	return strcmp(name_of(a), name_of(b)) < 0;
}

const json_t *rollout_new_replicaset(const json_t *deploy, const json_t *rs_items)
{
	const char *uid = uid_of(deploy);
	const json_t *best = NULL;
	size_t i;
	json_t *rs;
	json_array_foreach(rs_items, i, rs)
	{
		if (!rollout_controlled_by(rs, uid) ||
		    !rollout_templates_equal(template_of(rs), template_of(deploy)))
			continue;
		if (!best || older(rs, best))
			best = rs;
	}
	return best;
}

static const char *hash_of(const json_t *obj)
{
	return json_string_value(json_object_get(
	    json_object_get(json_object_get(obj, "metadata"), "labels"), ROLLOUT_HASH_LABEL));
}

size_t rollout_old_pods(const json_t *deploy, const json_t *rs_items, const json_t *pod_items)
{
	const char *uid = uid_of(deploy);
	const json_t *new_rs = rollout_new_replicaset(deploy, rs_items);
	size_t count = 0, i, j;
	json_t *pod, *rs;
	json_array_foreach(pod_items, i, pod)
	{
		json_array_foreach(rs_items, j, rs)
		{
			if (rs == new_rs || !rollout_controlled_by(rs, uid))
				continue;
			const char *rh = hash_of(rs), *ph = hash_of(pod);
			if (rollout_controlled_by(pod, uid_of(rs)) ||
			    (rh && ph && strcmp(rh, ph) == 0)) {
				count++;
				break;
			}
		}
	}
	return count;
}

/* kubectl pkg/polymorphichelpers/rollback.go annotationsToSkip. */
static const char *const skip_annotations[] = {
    "kubectl.kubernetes.io/last-applied-configuration",
    "deployment.kubernetes.io/revision",
    "deployment.kubernetes.io/revision-history",
    "deployment.kubernetes.io/desired-replicas",
    "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
};

static int skipped(const char *key)
{
	for (size_t i = 0; i < sizeof(skip_annotations) / sizeof(skip_annotations[0]); i++)
		if (strcmp(key, skip_annotations[i]) == 0)
			return 1;
	return 0;
}

void rollout_undo_plan_release(struct rollout_undo_plan *plan)
{
	if (!plan)
		return;
	json_decref(plan->patch);
	memset(plan, 0, sizeof(*plan));
}

/* The target RS per kubectl's deploymentRevision, or by name/hash. */
static const json_t *pick_target(const json_t *deploy, const json_t *owned,
                                 const struct rollout_undo_target *t, long long *rev_out, char *msg,
                                 size_t msglen)
{
	size_t i;
	json_t *rs;
	if (t->to && *t->to) {
		json_array_foreach(owned, i, rs)
		{
			const char *h = hash_of(rs);
			if (strcmp(name_of(rs), t->to) == 0 || (h && strcmp(h, t->to) == 0)) {
				if (rollout_revision(rs, rev_out))
					*rev_out = 0;
				return rs;
			}
		}
		snprintf(msg, msglen,
		         "no replica set \"%s\" (name or pod-template-hash) in the history "
		         "of deployment \"%s\"",
		         t->to, name_of(deploy));
		return NULL;
	}
	if (t->to_revision < 0) {
		snprintf(msg, msglen, "unable to find specified revision %lld in history",
		         t->to_revision);
		return NULL;
	}
	const json_t *latest = NULL, *previous = NULL;
	long long latest_rev = -1, previous_rev = -1;
	json_array_foreach(owned, i, rs)
	{
		long long v;
		if (rollout_revision(rs, &v))
			continue;
		if (t->to_revision == 0) {
			if (latest_rev < v) {
				previous_rev = latest_rev;
				previous = latest;
				latest_rev = v;
				latest = rs;
			} else if (previous_rev < v) {
				previous_rev = v;
				previous = rs;
			}
		} else if (t->to_revision == v) {
			*rev_out = v;
			return rs;
		}
	}
	if (t->to_revision > 0) {
		snprintf(msg, msglen, "unable to find specified revision %lld in history",
		         t->to_revision);
		return NULL;
	}
	if (!previous) {
		snprintf(msg, msglen, "no rollout history found for deployment \"%s\"",
		         name_of(deploy));
		return NULL;
	}
	*rev_out = previous_rev;
	return previous;
}

static json_t *build_annotations(const json_t *deploy, const json_t *rs)
{
	json_t *out = json_object();
	if (!out)
		return NULL;
	const json_t *dann = json_object_get(json_object_get(deploy, "metadata"), "annotations");
	const json_t *rann = json_object_get(json_object_get(rs, "metadata"), "annotations");
	for (size_t i = 0; i < sizeof(skip_annotations) / sizeof(skip_annotations[0]); i++) {
		json_t *v = json_object_get(dann, skip_annotations[i]);
		if (v && json_object_set(out, skip_annotations[i], v))
			goto fail;
	}
	const char *k;
	json_t *v;
	json_object_foreach(JMUT(rann), k, v)
	{
		if (!skipped(k) && json_object_set(out, k, v))
			goto fail;
	}
	return out;
fail:
	json_decref(out);
	return NULL;
}

int rollout_undo_plan(const json_t *deploy, const json_t *rs_items,
                      const struct rollout_undo_target *target, struct rollout_undo_plan *plan,
                      char *msg, size_t msglen)
{
	memset(plan, 0, sizeof(*plan));
	const char *uid = uid_of(deploy);
	const json_t *dtmpl = template_of(deploy);
	if (!uid || !json_is_object(dtmpl)) {
		snprintf(msg, msglen, "deployment \"%s\" has no uid or pod template",
		         name_of(deploy));
		return MV_EINVAL;
	}
	const json_t *dann = json_object_get(json_object_get(deploy, "metadata"), "annotations");
	plan->last_applied =
	    json_object_get(dann, "kubectl.kubernetes.io/last-applied-configuration") != NULL;

	json_t *owned = json_array();
	if (!owned)
		return MV_ENOMEM;
	size_t i;
	json_t *rs;
	json_array_foreach(rs_items, i, rs)
	{
		if (rollout_controlled_by(rs, uid) && json_array_append(owned, rs)) {
			json_decref(owned);
			return MV_ENOMEM;
		}
	}
	int rc = 0;
	long long rev = 0;
	const json_t *target_rs = pick_target(deploy, owned, target, &rev, msg, msglen);
	json_t *tmpl = NULL, *ann = NULL, *patch = NULL;
	if (!target_rs) {
		rc = MV_ENOTFOUND;
		goto out;
	}
	plan->revision = rev;
	plan->rs_name = name_of(target_rs);
	if (json_is_true(json_object_get(json_object_get(deploy, "spec"), "paused"))) {
		snprintf(msg, msglen,
		         "you cannot rollback a paused deployment; resume it first with "
		         "'kubectl rollout resume' and try again");
		rc = MV_EINVAL;
		goto out;
	}
	if (rollout_templates_equal(template_of(target_rs), dtmpl)) {
		plan->action = ROLLOUT_UNDO_SKIP;
		goto out;
	}
	tmpl = template_without_hash(template_of(target_rs));
	ann = build_annotations(deploy, target_rs);
	patch = json_array();
	if (!tmpl || !ann || !patch) {
		rc = MV_ENOMEM;
		goto out;
	}
	json_t *guard = NULL;
	if (target->guard == ROLLOUT_GUARD_RESOURCE_VERSION) {
		const char *rv = json_string_value(
		    json_object_get(json_object_get(deploy, "metadata"), "resourceVersion"));
		if (!rv) {
			snprintf(msg, msglen, "deployment \"%s\" has no resourceVersion",
			         name_of(deploy));
			rc = MV_EINVAL;
			goto out;
		}
		guard = json_pack("{s:s, s:s, s:s}", "op", "test", "path",
		                  "/metadata/resourceVersion", "value", rv);
	} else if (target->guard == ROLLOUT_GUARD_TEMPLATE) {
		guard = json_pack("{s:s, s:s, s:O}", "op", "test", "path", "/spec/template",
		                  "value", dtmpl);
	}
	if ((target->guard != ROLLOUT_GUARD_NONE &&
	     (!guard || json_array_append_new(patch, guard))) ||
	    json_array_append_new(patch, json_pack("{s:s, s:s, s:O}", "op", "replace", "path",
	                                           "/spec/template", "value", tmpl)) ||
	    json_array_append_new(patch, json_pack("{s:s, s:s, s:O}", "op", "replace", "path",
	                                           "/metadata/annotations", "value", ann))) {
		rc = MV_ENOMEM;
		goto out;
	}
	plan->action = ROLLOUT_UNDO_PATCH;
	plan->patch = patch;
	patch = NULL;
out:
	json_decref(patch);
	json_decref(ann);
	json_decref(tmpl);
	json_decref(owned);
	if (rc) {
		plan->rs_name = NULL;
		rollout_undo_plan_release(plan);
	}
	return rc;
}
