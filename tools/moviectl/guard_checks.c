/*
 * guard_checks.c - guard's pure decisions (see guard_checks.h).
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard_checks.h"
#include "kube.h"
#include "rollout.h"

#include "movie/err.h"
#include "movie/banned.h"

const char *guard_outcome_name(enum guard_outcome o)
{
	switch (o) {
	case GUARD_PENDING: return "pending";
	case GUARD_HEALTHY: return "healthy";
	case GUARD_FAILED: return "failed";
	case GUARD_RECOVERED: return "rolled-back";
	case GUARD_UNKNOWN:
	default: return "unknown";
	}
}

const char *guard_action_name(enum guard_action a)
{
	switch (a) {
	case GUARD_ACTION_ROLLBACK: return "rollback";
	case GUARD_ACTION_REPORTED: return "reported";
	case GUARD_ACTION_SKIPPED: return "skipped";
	case GUARD_ACTION_NONE:
	default: return "none";
	}
}

static const json_t *meta(const json_t *o, const char *key)
{
	return json_object_get(json_object_get(o, "metadata"), key);
}

static const char *label(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(meta(o, "labels"), key));
}

static const char *annotation(const json_t *o, const char *key)
{
	return json_string_value(json_object_get(meta(o, "annotations"), key));
}

static double time_of(const json_t *s)
{
	time_t t;
	const char *str = json_string_value(s);
	return str && kube_parse_time(str, &t) == 0 ? (double)t : 0;
}

static const json_t *condition(const json_t *obj, const char *type)
{
	const json_t *conds = json_object_get(json_object_get(obj, "status"), "conditions");
	size_t i;
	json_t *c;
	json_array_foreach(JMUT(conds), i, c)
	{
		const char *t = json_string_value(json_object_get(c, "type"));
		if (t && strcmp(t, type) == 0)
			return c;
	}
	return NULL;
}

static int str_is(const json_t *o, const char *key, const char *want)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s && strcmp(s, want) == 0;
}

void guard_replicasets(const json_t *deploy, const json_t *rs_items, const json_t **new_rs,
                       const json_t **prev_rs)
{
	*new_rs = rollout_new_replicaset(deploy, rs_items);
	*prev_rs = NULL;
	const char *uid = json_string_value(meta(deploy, "uid"));
	long long best = -1;
	size_t i;
	json_t *rs;
	json_array_foreach(JMUT(rs_items), i, rs)
	{
		long long rev;
		if (rs == *new_rs || !uid || !rollout_controlled_by(rs, uid) ||
		    rollout_revision(rs, &rev) || rev <= best)
			continue;
		best = rev;
		*prev_rs = rs;
	}
}

int guard_template_rolled_back(const json_t *deploy, const char *hash)
{
	const char *v = annotation(deploy, GUARD_ANN_BAD_TEMPLATES);
	if (!v || !hash)
		return 0;
	json_t *arr = json_loads(v, 0, NULL);
	int found = 0;
	size_t i;
	json_t *h;
	json_array_foreach(arr, i, h)
	{
		if (json_is_string(h) && strcmp(json_string_value(h), hash) == 0)
			found = 1;
	}
	json_decref(arr);
	return found;
}

/* movie.dev/guard-rollback's "to", when it names `hash`. */
static int rolled_back_to(const json_t *deploy, const char *hash)
{
	const char *v = annotation(deploy, GUARD_ANN_ROLLBACK);
	if (!v || !hash)
		return 0;
	json_t *o = json_loads(v, 0, NULL);
	int yes = str_is(o, "to", hash);
	json_decref(o);
	return yes;
}

static void set_failed(struct guard_verdict *v, const char *check, double value, double threshold,
                       double samples, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void set_failed(struct guard_verdict *v, const char *check, double value, double threshold,
                       double samples, const char *fmt, ...)
{
	v->outcome = GUARD_FAILED;
	snprintf(v->check, sizeof(v->check), "%s", check);
	v->value = value;
	v->threshold = threshold;
	v->samples = samples;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(v->reason, sizeof(v->reason), fmt, ap);
	va_end(ap);
}

/* When the new ReplicaSet's rollout completed: the Progressing condition says
 * NewReplicaSetAvailable about it (K8S-API.md §3.6); 0 when not (yet). */
static double completed_at(const json_t *deploy, const json_t *new_rs)
{
	/* Sticky: pods crashing after completion do not reopen the rollout. */
	const json_t *c = condition(deploy, "Progressing");
	if (!c || !str_is(c, "reason", "NewReplicaSetAvailable"))
		return 0;
	const char *m = json_string_value(json_object_get(c, "message"));
	const char *name = json_string_value(meta(new_rs, "name"));
	if (m && name && !strstr(m, name))
		return 0; /* the condition still speaks of an older ReplicaSet */
	double t = time_of(json_object_get(c, "lastUpdateTime"));
	return t > 0 ? t : time_of(json_object_get(c, "lastTransitionTime"));
}

static int check_progress(const struct guard_policy *p, const struct guard_input *in,
                          struct guard_verdict *v)
{
	if (!p->progress.enabled || v->complete_at > 0)
		return 0;
	const json_t *c = condition(in->deploy, "Progressing");
	if (c && str_is(c, "reason", "ProgressDeadlineExceeded")) {
		double d = (double)json_integer_value(json_object_get(
		    json_object_get(in->deploy, "spec"), "progressDeadlineSeconds"));
		set_failed(
		    v, "progress-deadline", d, d, 0,
		    "the Deployment reports ProgressDeadlineExceeded (%.0fs without progress)", d);
		return 1;
	}
	if (p->progress.max <= 0)
		return 0;
	double last = c ? time_of(json_object_get(c, "lastUpdateTime")) : 0;
	if (last < v->rollout_start)
		last = v->rollout_start;
	if (last > 0 && in->now - last > p->progress.max) {
		set_failed(v, "progress-deadline", in->now - last, p->progress.max, 0,
		           "no rollout progress for %.0fs (policy: %.0fs)", in->now - last,
		           p->progress.max);
		return 1;
	}
	return 0;
}

static int pod_ready(const json_t *pod)
{
	const json_t *c = condition(pod, "Ready");
	return c && str_is(c, "status", "True");
}

/* Counts over the new ReplicaSet's pods (terminating ones excluded). */
struct pod_stats {
	size_t pods, unready_late;
	long long max_restarts;
	int crash_loop;
	char worst[254]; /* the pod with the most restarts / in back-off */
};

static void container_stats(const json_t *pod, struct pod_stats *s)
{
	const json_t *css = json_object_get(json_object_get(pod, "status"), "containerStatuses");
	size_t j;
	json_t *cs;
	json_array_foreach(JMUT(css), j, cs)
	{
		long long r = json_integer_value(json_object_get(cs, "restartCount"));
		const json_t *w = json_object_get(json_object_get(cs, "state"), "waiting");
		int backoff = str_is(w, "reason", "CrashLoopBackOff");
		if (r > s->max_restarts || (backoff && !s->crash_loop)) {
			const char *n = json_string_value(meta(pod, "name"));
			snprintf(s->worst, sizeof(s->worst), "%s", n ? n : "");
		}
		if (r > s->max_restarts)
			s->max_restarts = r;
		if (backoff)
			s->crash_loop = 1;
	}
}

static void pod_stats(const struct guard_policy *p, const struct guard_input *in, const char *hash,
                      struct pod_stats *s)
{
	memset(s, 0, sizeof(*s));
	size_t i;
	json_t *pod;
	json_array_foreach(JMUT(in->pod_items), i, pod)
	{
		const char *h = label(pod, ROLLOUT_HASH_LABEL);
		if (!h || strcmp(h, hash) != 0 || meta(pod, "deletionTimestamp"))
			continue;
		s->pods++;
		container_stats(pod, s);
		const json_t *st = json_object_get(pod, "status");
		double started = time_of(json_object_get(st, "startTime"));
		if (started <= 0)
			started = time_of(meta(pod, "creationTimestamp"));
		if (!pod_ready(pod) && started > 0 && in->now - started > p->readiness.grace)
			s->unready_late++;
	}
}

static int check_pods(const struct guard_policy *p, const struct guard_input *in,
                      struct guard_verdict *v)
{
	struct pod_stats s;
	pod_stats(p, in, v->bad_hash, &s);
	if (p->restarts.enabled && p->restarts.crash_loop && s.crash_loop) {
		set_failed(v, "restarts", (double)s.max_restarts, (double)p->restarts.max,
		           (double)s.pods, "new pod %s is in CrashLoopBackOff (%lld restarts)",
		           s.worst, s.max_restarts);
		return 1;
	}
	if (p->restarts.enabled && s.max_restarts > p->restarts.max) {
		set_failed(v, "restarts", (double)s.max_restarts, (double)p->restarts.max,
		           (double)s.pods, "new pod %s restarted %lld times (policy: at most %lld)",
		           s.worst, s.max_restarts, p->restarts.max);
		return 1;
	}
	if (p->readiness.enabled && s.pods > 0) {
		double share = (double)s.unready_late / (double)s.pods;
		if (s.unready_late > 0 && share >= p->readiness.max_unready_share) {
			set_failed(v, "readiness", share, p->readiness.max_unready_share,
			           (double)s.pods,
			           "%.0f%% of the new pods are not ready %.0fs after starting",
			           share * 100, p->readiness.grace);
			return 1;
		}
	}
	return 0;
}

static int check_metrics(const struct guard_policy *p, const struct guard_metrics *m,
                         struct guard_verdict *v)
{
	if (p->error_ratio.enabled && m->new_requests >= (double)p->error_ratio.min_requests) {
		double ratio = m->new_errors / m->new_requests;
		double base = m->base_requests >= (double)p->error_ratio.min_requests
		                  ? m->base_errors / m->base_requests
		                  : 0;
		double threshold = base + p->error_ratio.max_increase;
		if (ratio > threshold) {
			set_failed(v, "error-ratio", ratio, threshold, m->new_requests,
			           "server-error ratio %.4f of the new pods, previous %.4f", ratio,
			           base);
			v->baseline = base;
			return 1;
		}
	}
	if (p->latency.enabled && m->new_requests >= (double)p->latency.min_requests &&
	    isfinite(m->new_p99) && isfinite(m->base_p99) &&
	    m->base_requests >= (double)p->latency.min_requests) {
		double threshold = m->base_p99 * p->latency.max_ratio;
		if (threshold < m->base_p99 + p->latency.min_increase)
			threshold = m->base_p99 + p->latency.min_increase;
		if (m->new_p99 > threshold) {
			set_failed(v, "latency-p99", m->new_p99, threshold, m->new_requests,
			           "p99 %.4fs of the new pods, previous %.4fs", m->new_p99,
			           m->base_p99);
			v->baseline = m->base_p99;
			return 1;
		}
	}
	return 0;
}

static int identify(const struct guard_input *in, struct guard_verdict *v)
{
	const json_t *new_rs, *prev_rs;
	guard_replicasets(in->deploy, in->rs_items, &new_rs, &prev_rs);
	if (!new_rs) {
		v->outcome = GUARD_PENDING;
		snprintf(v->reason, sizeof(v->reason),
		         "no ReplicaSet for the current template yet");
		return 0;
	}
	const char *h = label(new_rs, ROLLOUT_HASH_LABEL);
	snprintf(v->bad_hash, sizeof(v->bad_hash), "%s", h ? h : "");
	v->rollout_start = time_of(meta(new_rs, "creationTimestamp"));
	v->complete_at = completed_at(in->deploy, new_rs);
	if (!prev_rs) {
		v->outcome = GUARD_HEALTHY;
		snprintf(v->reason, sizeof(v->reason),
		         "first revision: no previous ReplicaSet to compare with or roll back to");
		return 0;
	}
	h = label(prev_rs, ROLLOUT_HASH_LABEL);
	snprintf(v->good_hash, sizeof(v->good_hash), "%s", h ? h : "");
	const char *n = json_string_value(meta(prev_rs, "name"));
	snprintf(v->good_rs, sizeof(v->good_rs), "%s", n ? n : "");
	return 1;
}

static void decide_action(const struct guard_policy *p, const struct guard_input *in,
                          struct guard_verdict *v)
{
	char why[200];
	snprintf(why, sizeof(why), "%.199s", v->reason);
	const json_t *spec = json_object_get(in->deploy, "spec");
	if (!v->in_window) {
		v->action = GUARD_ACTION_REPORTED;
		snprintf(
		    v->reason, sizeof(v->reason),
		    "%s; the rollout completed %.0fs ago, outside the %.0fs window: reported only",
		    why, in->now - v->complete_at, p->window);
	} else if (json_is_true(json_object_get(spec, "paused"))) {
		v->action = GUARD_ACTION_SKIPPED;
		snprintf(v->reason, sizeof(v->reason), "%s; paused Deployment: not rolled back",
		         why);
	} else if (in->locked) {
		v->action = GUARD_ACTION_SKIPPED;
		snprintf(v->reason, sizeof(v->reason), "%s; locked by %s", why,
		         in->lock_owner ? in->lock_owner : "a release");
	} else if (guard_template_rolled_back(in->deploy, v->bad_hash)) {
		v->action = GUARD_ACTION_SKIPPED;
		snprintf(v->reason, sizeof(v->reason),
		         "%s; template %s was rolled back once already: not again", why,
		         v->bad_hash);
	} else if (guard_template_rolled_back(in->deploy, v->good_hash)) {
		v->action = GUARD_ACTION_SKIPPED;
		snprintf(v->reason, sizeof(v->reason),
		         "%s; the previous template %s was rolled back by guard before: not going "
		         "back to it",
		         why, v->good_hash);
	} else {
		v->action = GUARD_ACTION_ROLLBACK;
	}
}

void guard_judge(const struct guard_policy *p, const struct guard_input *in,
                 struct guard_verdict *v)
{
	memset(v, 0, sizeof(*v));
	v->baseline = NAN;
	if (!identify(in, v))
		return;
	v->in_window = v->complete_at <= 0 || in->now - v->complete_at <= p->window;
	if (v->in_window && rolled_back_to(in->deploy, v->bad_hash)) {
		v->outcome = GUARD_RECOVERED;
		snprintf(v->reason, sizeof(v->reason),
		         "runs template %s, which guard rolled back to from %s", v->bad_hash,
		         v->good_hash);
		return;
	}
	const struct guard_metrics *m = in->metrics;
	v->metrics_judged = m && m->ok;
	if (check_progress(p, in, v) || check_pods(p, in, v) ||
	    (v->metrics_judged && check_metrics(p, m, v))) {
		decide_action(p, in, v);
		return;
	}
	v->outcome = v->in_window ? GUARD_PENDING : GUARD_HEALTHY;
	snprintf(v->reason, sizeof(v->reason), "%s%s",
	         v->in_window ? "no check failed; the rollout is recent, still watching"
	                      : "no check failed in the window",
	         !m       ? " (Kubernetes-side checks only: no --prometheus)"
	         : !m->ok ? " (Prometheus checks not run: query failed)"
	                  : "");
}

static json_t *bad_list(const json_t *deploy, const char *hash)
{
	const char *v = annotation(deploy, GUARD_ANN_BAD_TEMPLATES);
	json_t *old = v ? json_loads(v, 0, NULL) : NULL;
	json_t *arr = json_array();
	size_t i;
	json_t *h;
	json_array_foreach(old, i, h)
	{
		if (json_is_string(h) && strcmp(json_string_value(h), hash) != 0)
			json_array_append(arr, h);
	}
	json_decref(old);
	while (json_array_size(arr) >= GUARD_MAX_BAD_TEMPLATES)
		json_array_remove(arr, 0);
	json_array_append_new(arr, json_string(hash));
	return arr;
}

static json_t *annotations_op(json_t *patch)
{
	size_t i;
	json_t *op;
	json_array_foreach(patch, i, op)
	{
		if (str_is(op, "path", "/metadata/annotations") && !str_is(op, "op", "test"))
			return op;
	}
	return NULL;
}

static int set_string(json_t *obj, const char *key, json_t *value)
{
	char *s = value ? json_dumps(value, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
	json_decref(value);
	int rc = s && json_object_set_new(obj, key, json_string(s)) == 0 ? 0 : MV_ENOMEM;
	free(s);
	return rc;
}

int guard_amend_undo_patch(const json_t *deploy, const struct guard_verdict *v, const char *at,
                           json_t *patch)
{
	json_t *op = annotations_op(patch);
	json_t *ann = json_object_get(op, "value");
	if (!json_is_object(ann)) {
		ann = json_object();
		op = json_pack("{s:s,s:s,s:o}", "op", "add", "path", "/metadata/annotations",
		               "value", ann);
		if (!op || json_array_append_new(patch, op))
			return MV_ENOMEM;
	}
	/* movie.dev/ keys are the Deployment's, never the target ReplicaSet's stale copies. */
	const char *k;
	json_t *val;
	void *tmp;
	json_object_foreach_safe(ann, tmp, k, val)
	{
		if (strncmp(k, "movie.dev/", 10) == 0)
			json_object_del(ann, k);
	}
	json_object_foreach(JMUT(meta(deploy, "annotations")), k, val)
	{
		if (strncmp(k, "movie.dev/", 10) == 0 && json_object_set(ann, k, val))
			return MV_ENOMEM;
	}
	int rc = set_string(ann, GUARD_ANN_ROLLBACK,
	                    json_pack("{s:s,s:s,s:s,s:s}", "from", v->bad_hash, "to", v->good_hash,
	                              "check", v->check, "at", at));
	return rc ? rc : set_string(ann, GUARD_ANN_BAD_TEMPLATES, bad_list(deploy, v->bad_hash));
}
