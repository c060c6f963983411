/*
 * rollout_ops.c - rollout status and undo over the REST client. The rules are
 * in rollout.c; this file only sequences the requests kubectl sends.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

int rollout_wait_terminated(struct kube_client *c, const char *ns, const char *name,
                            double deadline, long poll_ms, rollout_progress_fn fn, void *user,
                            struct kube_error *err)
{
	struct buf path, sel, line;
	buf_init(&path, 8192);
	buf_init(&sel, 65536);
	buf_init(&line, 8192);
	long long last = -1;
	int rc;
	if (poll_ms <= 0)
		poll_ms = 1000;
	kube_error_clear(err);
	for (;;) {
		json_t *d = NULL, *rs = NULL, *pods = NULL;
		long long left;
		if ((rc = path_for(&path, ns, "deployments", name)) ||
		    (rc = kube_get(c, path.data, &d, err)))
			goto out;
		json_t *term = json_object_get(json_object_get(d, "status"), "terminatingReplicas");
		if (json_is_integer(term)) {
			left = (long long)json_integer_value(term);
		} else {
			buf_reset(&sel);
			if (kube_selector_string(
			        json_object_get(json_object_get(d, "spec"), "selector"), &sel)) {
				kube_error_set(err, "InvalidSelector",
				               "deployment \"%s\" has an invalid selector", name);
				json_decref(d);
				rc = MV_EINVAL;
				goto out;
			}
			if ((rc = path_for(&path, ns, "replicasets", NULL)) ||
			    (rc = kube_list(c, path.data, sel.data, NULL, &rs, NULL, err)) ||
			    (rc = path_for(&path, ns, "pods", NULL)) ||
			    (rc = kube_list(c, path.data, sel.data, NULL, &pods, NULL, err))) {
				json_decref(d);
				json_decref(rs);
				goto out;
			}
			left = (long long)rollout_old_pods(d, rs, pods);
		}
		json_decref(d);
		json_decref(rs);
		json_decref(pods);
		if (left == 0) {
			rc = 0;
			goto out;
		}
		if (left != last && fn) {
			buf_reset(&line);
			if (!buf_printf(&line,
			                "Waiting for deployment \"%s\" old pods to terminate: %lld "
			                "left...\n",
			                name, left))
				fn(user, line.data);
		}
		last = left;
		if (deadline > 0 && kube_now() + (double)poll_ms / 1000.0 >= deadline) {
			kube_error_set(err, "Timeout", "timed out waiting for the condition");
			rc = MV_ETIMEDOUT;
			goto out;
		}
		/* A product poll (pods have no cheap aggregate to watch), bounded by deadline. */
		struct timespec ts = {poll_ms / 1000, (poll_ms % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
out:
	buf_release(&path);
	buf_release(&sel);
	buf_release(&line);
	return rc;
}

int rollout_undo_run(struct kube_client *c, const char *ns, const char *name,
                     const struct rollout_undo_target *target, int dry_run,
                     struct rollout_undo_result *res, struct kube_error *err)
{
	memset(res, 0, sizeof(*res));
	kube_error_clear(err);
	struct buf path, sel;
	buf_init(&path, 8192);
	buf_init(&sel, 65536);
	json_t *d = NULL, *rs = NULL;
	char *body = NULL;
	struct rollout_undo_plan plan = {0};
	int rc;
	if ((rc = path_for(&path, ns, "deployments", name)) ||
	    (rc = kube_get(c, path.data, &d, err)))
		goto out;
	if (kube_selector_string(json_object_get(json_object_get(d, "spec"), "selector"), &sel)) {
		kube_error_set(err, "InvalidSelector", "deployment \"%s\" has an invalid selector",
		               name);
		rc = MV_EINVAL;
		goto out;
	}
	if ((rc = path_for(&path, ns, "replicasets", NULL)) ||
	    (rc = kube_list(c, path.data, sel.data, NULL, &rs, NULL, err)))
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
	buf_release(&sel);
	return rc;
}
