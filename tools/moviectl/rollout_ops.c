/*
 * rollout_ops.c - rollout status and undo over the REST client. The rules are
 * in rollout.c; this file only sequences the requests kubectl sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout_ops.h"

#include "movie/err.h"
#include "movie/banned.h"

static int path_for(struct buf *b, const char *ns, const char *res, const char *name)
{
	buf_reset(b);
	const char *api = strcmp(res, "pods") == 0 ? "/api/v1" : "/apis/apps/v1";
	return name ? buf_printf(b, "%s/namespaces/%s/%s/%s", api, ns, res, name)
	            : buf_printf(b, "%s/namespaces/%s/%s", api, ns, res);
}

/* spec.selector of `deployment` as a label selector string into `sel`; an
 * invalid one is MV_EINVAL with kubectl's reason and message. */
static int deployment_selector(const json_t *deployment, struct buf *sel, struct kube_error *err)
{
	buf_reset(sel);
	if (kube_selector_string(json_object_get(json_object_get(deployment, "spec"), "selector"),
	                         sel) == 0)
		return 0;
	const char *name =
	    json_string_value(json_object_get(json_object_get(deployment, "metadata"), "name"));
	kube_error_set(err, "InvalidSelector", "deployment \"%s\" has an invalid selector",
	               name ? name : "");
	return MV_EINVAL;
}

int rollout_list_selected(struct kube_client *c, const char *ns, const json_t *deployment,
                          const char *resource, json_t **out, struct kube_error *err)
{
	struct buf path, sel;
	buf_init(&path, 8192);
	buf_init(&sel, 65536);
	int rc;
	if (!(rc = deployment_selector(deployment, &sel, err)) &&
	    !(rc = path_for(&path, ns, resource, NULL)))
		rc = kube_list(c, path.data, sel.data, NULL, out, NULL, err);
	buf_release(&path);
	buf_release(&sel);
	return rc;
}

struct judge_ctx {
	const char *name;
	long revision;
	enum rollout_state state;
	char msg[512];
	int deleted;
	rollout_progress_fn fn;
	void *user;
};

static int on_event(void *user, const struct kube_event *ev)
{
	struct judge_ctx *j = user;
	const char *n =
	    json_string_value(json_object_get(json_object_get(ev->object, "metadata"), "name"));
	if (!n || strcmp(n, j->name) != 0)
		return 0;
	if (ev->type == KUBE_EVENT_DELETED) {
		j->deleted = 1;
		return 1;
	}
	j->state = rollout_status_judge(ev->object, j->revision, j->msg, sizeof(j->msg));
	if (j->state == ROLLOUT_FAILED)
		return 1;
	if (j->fn)
		j->fn(j->user, j->msg);
	return j->state == ROLLOUT_DONE ? 1 : 0;
}

int rollout_status_wait(struct kube_client *c, const char *ns, const char *name, long revision,
                        double deadline, rollout_progress_fn fn, void *user, struct kube_error *err)
{
	struct buf path, fs;
	buf_init(&path, 8192);
	buf_init(&fs, 8192);
	json_t *d = NULL;
	int rc;
	kube_error_clear(err);
	if ((rc = path_for(&path, ns, "deployments", name)) ||
	    (rc = buf_printf(&fs, "metadata.name=%s", name)))
		goto out;
	if ((rc = kube_get(c, path.data, &d, err)))
		goto out;
	struct judge_ctx j = {.name = name, .revision = revision, .fn = fn, .user = user};
	if ((rc = path_for(&path, ns, "deployments", NULL)))
		goto out;
	rc = kube_watch_until(c, path.data, NULL, fs.data, deadline, on_event, &j, err);
	if (rc == MV_ETIMEDOUT) {
		kube_error_set(err, "Timeout", "timed out waiting for the condition");
	} else if (rc == 0 && j.deleted) {
		kube_error_set(err, "Deleted", "object has been deleted");
		rc = MV_ENOTFOUND;
	} else if (rc == 0 && j.state == ROLLOUT_FAILED) {
		kube_error_set(err, "RolloutFailed", "%s", j.msg);
		rc = MV_EINVAL;
	}
out:
	json_decref(d);
	buf_release(&path);
	buf_release(&fs);
	return rc;
}

/* What --wait-terminated watches: the Deployment's terminatingReplicas, or the
 * pods of its selector (kept by name) against its ReplicaSets of the start. */
struct terminated_ctx {
	const char *name;
	const json_t *deploy, *rs; /* pods mode: the Deployment and ReplicaSets read first */
	json_t *pods;              /* pods mode: "ns/name" -> pod, from the list and events */
	long long last;            /* the count last printed */
	long long left;
	int deleted;  /* terminatingReplicas mode: the Deployment is gone */
	int no_field; /* terminatingReplicas mode: the field went away */
	struct buf line;
	rollout_progress_fn fn;
	void *user;
};

static void terminated_report(struct terminated_ctx *t)
{
	if (t->left == t->last || !t->fn)
		return;
	t->last = t->left;
	buf_reset(&t->line);
	if (!buf_printf(&t->line,
	                "Waiting for deployment \"%s\" old pods to terminate: %lld left...\n",
	                t->name, t->left))
		t->fn(t->user, t->line.data);
}

static int on_deployment_terminating(void *user, const struct kube_event *ev)
{
	struct terminated_ctx *t = user;
	const char *n =
	    json_string_value(json_object_get(json_object_get(ev->object, "metadata"), "name"));
	if (!n || strcmp(n, t->name) != 0)
		return 0;
	if (ev->type == KUBE_EVENT_DELETED) {
		t->deleted = 1;
		return 1;
	}
	json_t *term =
	    json_object_get(json_object_get(ev->object, "status"), "terminatingReplicas");
	if (!json_is_integer(term)) {
		t->no_field = 1; /* a server that stopped reporting it: count pods instead */
		return 1;
	}
	t->left = (long long)json_integer_value(term);
	if (t->left == 0)
		return 1;
	terminated_report(t);
	return 0;
}

static long long count_old_pods(struct terminated_ctx *t)
{
	json_t *arr = json_array();
	if (!arr)
		return -1;
	const char *k;
	json_t *v;
	json_object_foreach(t->pods, k, v)
	{
		if (json_array_append(arr, v)) {
			json_decref(arr);
			return -1;
		}
	}
	long long n = (long long)rollout_old_pods(t->deploy, t->rs, arr);
	json_decref(arr);
	return n;
}

static int pod_key(const json_t *pod, char *key, size_t size)
{
	const json_t *m = json_object_get(pod, "metadata");
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	const char *n = json_string_value(json_object_get(m, "name"));
	if (!n)
		return MV_EINVAL;
	int len = snprintf(key, size, "%s/%s", ns ? ns : "", n);
	return len < 0 || (size_t)len >= size ? MV_ETOOBIG : 0;
}

static int on_pod_event(void *user, const struct kube_event *ev)
{
	struct terminated_ctx *t = user;
	char key[512];
	if (pod_key(ev->object, key, sizeof(key)))
		return 0;
	if (ev->type == KUBE_EVENT_DELETED)
		json_object_del(t->pods, key);
	else if (json_object_set(t->pods, key, ev->object))
		return MV_ENOMEM;
	/* A re-list (after 410) delivers every pod as ADDED, then the vanished
	 * ones as DELETED: counting on ADDED could see the set half-built. A
	 * count only falls through a DELETED (or a pod changing labels). */
	if (ev->type == KUBE_EVENT_ADDED)
		return 0;
	t->left = count_old_pods(t);
	if (t->left < 0)
		return MV_ENOMEM;
	if (t->left == 0)
		return 1;
	terminated_report(t);
	return 0;
}

int rollout_wait_terminated(struct kube_client *c, const char *ns, const char *name,
                            double deadline, rollout_progress_fn fn, void *user,
                            struct kube_error *err)
{
	struct buf path, sel, fs;
	buf_init(&path, 8192);
	buf_init(&sel, 65536);
	buf_init(&fs, 8192);
	struct terminated_ctx t = {.name = name, .last = -1, .fn = fn, .user = user};
	buf_init(&t.line, 8192);
	json_t *d = NULL, *rs = NULL, *pods = NULL;
	char *rv = NULL;
	int rc;
	kube_error_clear(err);
	if ((rc = path_for(&path, ns, "deployments", name)) ||
	    (rc = kube_get(c, path.data, &d, err)))
		goto out;
	json_t *term = json_object_get(json_object_get(d, "status"), "terminatingReplicas");
	if (json_is_integer(term)) {
		/* The server counts them: watch the Deployment until it says 0. */
		t.left = (long long)json_integer_value(term);
		if (t.left == 0)
			goto out;
		terminated_report(&t);
		if ((rc = path_for(&path, ns, "deployments", NULL)) ||
		    (rc = buf_printf(&fs, "metadata.name=%s", name)))
			goto out;
		rc = kube_watch_until(c, path.data, NULL, fs.data, deadline,
		                      on_deployment_terminating, &t, err);
		if (rc == 0 && t.deleted) {
			kube_error_set(err, "Deleted", "object has been deleted");
			rc = MV_ENOTFOUND;
		}
		if (rc || !t.no_field)
			goto out;
		/* The field went away: count pods as below. */
	}
	if ((rc = deployment_selector(d, &sel, err)))
		goto out;
	/* Pods: LIST, count, then WATCH from the list's resourceVersion (a re-list
	 * on 410 inside kube_watch_from), counting at every deletion. The
	 * ReplicaSets are those of the start: the old pods are the ones of this
	 * rollout's old ReplicaSets. */
	if ((rc = path_for(&path, ns, "replicasets", NULL)) ||
	    (rc = kube_list(c, path.data, sel.data, NULL, &rs, NULL, err)) ||
	    (rc = path_for(&path, ns, "pods", NULL)) ||
	    (rc = kube_list(c, path.data, sel.data, NULL, &pods, &rv, err)))
		goto out;
	t.deploy = d;
	t.rs = rs;
	t.pods = json_object();
	if (!t.pods) {
		rc = MV_ENOMEM;
		goto out;
	}
	size_t i;
	json_t *it;
	json_array_foreach(pods, i, it)
	{
		char key[512];
		if (!pod_key(it, key, sizeof(key)) && json_object_set(t.pods, key, it)) {
			rc = MV_ENOMEM;
			goto out;
		}
	}
	t.left = count_old_pods(&t);
	if (t.left < 0) {
		rc = MV_ENOMEM;
		goto out;
	}
	if (t.left == 0)
		goto out;
	terminated_report(&t);
	rc = kube_watch_from(c, path.data, sel.data, NULL, rv ? rv : "", pods, deadline,
	                     on_pod_event, &t, err);
out:
	if (rc == MV_ETIMEDOUT)
		kube_error_set(err, "Timeout", "timed out waiting for the condition");
	json_decref(d);
	json_decref(rs);
	json_decref(pods);
	json_decref(t.pods);
	free(rv);
	buf_release(&path);
	buf_release(&sel);
	buf_release(&fs);
	buf_release(&t.line);
	return rc;
}

int rollout_undo_run(struct kube_client *c, const char *ns, const char *name,
                     const struct rollout_undo_target *target, int dry_run,
                     struct rollout_undo_result *res, struct kube_error *err)
{
	memset(res, 0, sizeof(*res));
	kube_error_clear(err);
	struct buf path;
	buf_init(&path, 8192);
	json_t *d = NULL, *rs = NULL;
	char *body = NULL;
	struct rollout_undo_plan plan = {0};
	int rc;
	if ((rc = path_for(&path, ns, "deployments", name)) ||
	    (rc = kube_get(c, path.data, &d, err)))
		goto out;
	if ((rc = rollout_list_selected(c, ns, d, "replicasets", &rs, err)))
		goto out;
	char msg[512];
	rc = rollout_undo_plan(d, rs, target, &plan, msg, sizeof(msg));
	if (rc) {
		kube_error_set(err,
		               rc == MV_ENOTFOUND              ? "NoHistory"
		               : strstr(msg, "paused") != NULL ? "Paused"
		                                               : "Invalid",
		               "%s", msg);
		goto out;
	}
	res->action = plan.action;
	res->revision = plan.revision;
	res->last_applied = plan.last_applied;
	snprintf(res->rs_name, sizeof(res->rs_name), "%s", plan.rs_name ? plan.rs_name : "");
	if (plan.action == ROLLOUT_UNDO_SKIP)
		goto out;
	body = json_dumps(plan.patch, JSON_COMPACT);
	if (!body) {
		rc = MV_ENOMEM;
		goto out;
	}
	if ((rc = path_for(&path, ns, "deployments", name)) ||
	    (dry_run && (rc = buf_append_str(&path, "?dryRun=All"))))
		goto out;
	rc = kube_patch(c, path.data, KUBE_PATCH_JSON, body, NULL, err);
out:
	free(body);
	rollout_undo_plan_release(&plan);
	json_decref(d);
	json_decref(rs);
	buf_release(&path);
	return rc;
}
