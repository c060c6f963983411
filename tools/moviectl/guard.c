/*
 * guard.c - guard's I/O: Kubernetes reads and the rollback write, Prometheus
 * queries, the Event and the verdict line (decisions: guard_checks.c).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard.h"
#include "lock.h"
#include "rollout.h"
#include "rollout_ops.h"

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/banned.h"

/* Health checks and reflection are the kubelet's and tools' calls, not users'. */
#define USER_CALLS "grpc_service!~\"grpc\\\\.health\\\\.v1\\\\.Health|grpc\\\\.reflection\\\\..*\""

static double wall_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void rfc3339(double t, char *out, size_t outlen)
{
	time_t s = (time_t)t;
	struct tm tm;
	gmtime_r(&s, &tm);
	strftime(out, outlen, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

/* The single value of a query ("sum(...)"), NaN for an empty vector. */
static int query_one(struct prom_client *prom, const char *q, double at, double *out,
                     struct guard_metrics *m)
{
	struct prom_result r;
	struct prom_error e;
	int rc = prom_query(prom, q, at, &r, &e);
	if (rc) {
		snprintf(m->problem, sizeof(m->problem), "%.80s: %.120s (%.40s)",
		         prom_client_url(prom), e.message, e.type);
		return rc;
	}
	*out = NAN;
	if (r.type == PROM_SCALAR)
		*out = r.scalar;
	else if (r.n > 0)
		*out = r.samples[0].value;
	prom_result_release(&r);
	return 0;
}

static double or_zero(double v)
{
	return isfinite(v) ? v : 0;
}

void guard_fetch_metrics(struct prom_client *prom, const struct guard_policy *p, const char *ns,
                         const char *hash_new, const char *hash_old, double start,
                         struct guard_metrics *m)
{
	memset(m, 0, sizeof(*m));
	m->new_p99 = m->base_p99 = NAN;
	char codes[512], sel_new[512], sel_old[512], q[2048];
	if (guard_policy_codes_regex(p, codes, sizeof(codes))) {
		snprintf(m->problem, sizeof(m->problem), "too many error codes");
		return;
	}
	snprintf(sel_new, sizeof(sel_new), "namespace=\"%s\",pod_template_hash=\"%s\"," USER_CALLS,
	         ns, hash_new);
	snprintf(sel_old, sizeof(sel_old), "namespace=\"%s\",pod_template_hash=\"%s\"," USER_CALLS,
	         ns, hash_old);
	/* New pods: their counters started with them, so the raw sums are exactly what they
	 * handled. The baseline: the previous pods over policy.baseline before the rollout. */
	double v;
	snprintf(q, sizeof(q), "sum(grpc_server_handled_total{%s})", sel_new);
	if (query_one(prom, q, 0, &v, m))
		return;
	m->new_requests = or_zero(v);
	snprintf(q, sizeof(q), "sum(grpc_server_handled_total{%s,grpc_code=~\"%s\"})", sel_new,
	         codes);
	if (query_one(prom, q, 0, &v, m))
		return;
	m->new_errors = or_zero(v);
	snprintf(q, sizeof(q),
	         "histogram_quantile(0.99, sum by (le) (grpc_server_handling_seconds_bucket{%s}))",
	         sel_new);
	if (query_one(prom, q, 0, &m->new_p99, m))
		return;
	if (hash_old && *hash_old && start > 0) {
		long b = (long)p->baseline;
		snprintf(q, sizeof(q), "sum(increase(grpc_server_handled_total{%s}[%lds]))",
		         sel_old, b);
		if (query_one(prom, q, start, &v, m))
			return;
		m->base_requests = or_zero(v);
		snprintf(q, sizeof(q),
		         "sum(increase(grpc_server_handled_total{%s,grpc_code=~\"%s\"}[%lds]))",
		         sel_old, codes, b);
		if (query_one(prom, q, start, &v, m))
			return;
		m->base_errors = or_zero(v);
		snprintf(q, sizeof(q),
		         "histogram_quantile(0.99, sum by (le) "
		         "(increase(grpc_server_handling_seconds_bucket{%s}[%lds])))",
		         sel_old, b);
		if (query_one(prom, q, start, &m->base_p99, m))
			return;
	}
	m->ok = 1;
}

struct snapshot {
	json_t *deploy, *rs, *pods;
};

static void snapshot_release(struct snapshot *s)
{
	json_decref(s->deploy);
	json_decref(s->rs);
	json_decref(s->pods);
	memset(s, 0, sizeof(*s));
}

static int read_snapshot(struct guard_ctx *g, const char *ns, const char *name, struct snapshot *s,
                         struct kube_error *err)
{
	memset(s, 0, sizeof(*s));
	struct buf path;
	buf_init(&path, 8192);
	int rc = buf_printf(&path, "/apis/apps/v1/namespaces/%s/deployments/%s", ns, name);
	if (!rc)
		rc = kube_get(g->kube, path.data, &s->deploy, err);
	if (rc)
		goto out;
	if ((rc = rollout_list_selected(g->kube, ns, s->deploy, "replicasets", &s->rs, err)))
		goto out;
	rc = rollout_list_selected(g->kube, ns, s->deploy, "pods", &s->pods, err);
out:
	buf_release(&path);
	return rc;
}

static const char *label_of(const json_t *o, const char *k)
{
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(o, "metadata"), "labels"), k));
}

static double created(const json_t *o)
{
	time_t t;
	const char *s =
	    json_string_value(json_object_get(json_object_get(o, "metadata"), "creationTimestamp"));
	return s && kube_parse_time(s, &t) == 0 ? (double)t : 0;
}

static int rollback(struct guard_ctx *g, const char *ns, const char *name, const struct snapshot *s,
                    const struct guard_verdict *v, struct kube_error *err)
{
	struct rollout_undo_target t = {.to = v->good_rs, .guard = ROLLOUT_GUARD_TEMPLATE};
	struct rollout_undo_plan plan = {0};
	char msg[512], at[32], path[512];
	int rc = rollout_undo_plan(s->deploy, s->rs, &t, &plan, msg, sizeof(msg));
	if (rc) {
		kube_error_set(err, rc == MV_ENOTFOUND ? "NoHistory" : "Invalid", "%s", msg);
		goto out;
	}
	if (plan.action == ROLLOUT_UNDO_SKIP) {
		kube_error_set(err, "Invalid", "the template already is %s's", v->good_rs);
		rc = MV_EINVAL;
		goto out;
	}
	rfc3339(wall_now(), at, sizeof(at));
	if ((rc = guard_amend_undo_patch(s->deploy, v, at, plan.patch)))
		goto out;
	char *body = json_dumps(plan.patch, JSON_COMPACT);
	if (!body) {
		rc = MV_ENOMEM;
		goto out;
	}
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments/%s", ns, name);
	rc = kube_patch(g->kube, path, KUBE_PATCH_JSON, body, NULL, err);
	free(body);
out:
	rollout_undo_plan_release(&plan);
	return rc;
}

/* A core/v1 Event on the Deployment; failures are reported, never fatal. */
static void post_event(struct guard_ctx *g, const char *ns, const json_t *deploy,
                       const struct guard_verdict *v)
{
	char at[32], path[512], msg[1024], gen[300];
	rfc3339(wall_now(), at, sizeof(at));
	const json_t *md = json_object_get(deploy, "metadata");
	const char *name = json_string_value(json_object_get(md, "name"));
	/* "<object>." + random suffix, as the kubelet and controllers name their Events. */
	snprintf(gen, sizeof(gen), "%.250s.", name ? name : "deployment");
	snprintf(msg, sizeof(msg),
	         "rolled back template %.63s to %.63s (%.253s): check %.31s failed: %.383s",
	         v->bad_hash, v->good_hash, v->good_rs, v->check, v->reason);
	json_t *ev = json_pack(
	    "{s:s,s:s,s:{s:s,s:s},s:{s:s,s:s,s:s,s:s,s:O?,s:O?},s:s,s:s,s:s,s:{s:s},s:s,s:s,s:i,"
	    "s:s,s:s}",
	    "apiVersion", "v1", "kind", "Event", "metadata", "generateName", gen, "namespace", ns,
	    "involvedObject", "apiVersion", "apps/v1", "kind", "Deployment", "name",
	    name ? name : "", "namespace", ns, "uid", json_object_get(md, "uid"), "resourceVersion",
	    json_object_get(md, "resourceVersion"), "reason", "GuardRollback", "message", msg,
	    "type", "Warning", "source", "component", "moviectl-guard", "firstTimestamp", at,
	    "lastTimestamp", at, "count", 1, "reportingComponent", "movie.dev/guard",
	    "reportingInstance", g->instance ? g->instance : "moviectl-guard");
	char *body = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
	json_decref(ev);
	if (!body)
		return;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/events", ns);
	struct kube_error err;
	if (kube_create(g->kube, path, body, NULL, &err))
		kube_error_print(&err, "moviectl guard: event");
	free(body);
}

int guard_evaluate(struct guard_ctx *g, const char *ns, const char *name, struct guard_verdict *v,
                   struct kube_error *err)
{
	memset(v, 0, sizeof(*v));
	kube_error_clear(err);
	for (int round = 0; round <= GUARD_MAX_RETRIES; round++) {
		struct snapshot s;
		int rc = read_snapshot(g, ns, name, &s, err);
		if (rc) {
			snapshot_release(&s);
			return rc;
		}
		struct release_lock lock;
		struct guard_input in = {.deploy = s.deploy, .rs_items = s.rs, .pod_items = s.pods};
		in.now = wall_now();
		in.locked = lock_held(s.deploy, (time_t)in.now, &lock);
		in.lock_owner = lock.owner;
		if (lock.state == LOCK_INVALID)
			fprintf(stderr,
			        "moviectl guard: %s/%s: unparseable %s (%s): treated as free\n", ns,
			        name, LOCK_ANNOTATION, lock.problem);
		struct guard_metrics m;
		if (g->prom) {
			const json_t *nrs, *prs;
			guard_replicasets(s.deploy, s.rs, &nrs, &prs);
			if (nrs && prs)
				guard_fetch_metrics(
				    g->prom, g->policy, ns, label_of(nrs, ROLLOUT_HASH_LABEL),
				    label_of(prs, ROLLOUT_HASH_LABEL), created(nrs), &m);
			else
				memset(&m, 0, sizeof(m));
			in.metrics = &m;
		}
		guard_judge(g->policy, &in, v);
		if (v->action != GUARD_ACTION_ROLLBACK) {
			snapshot_release(&s);
			return 0;
		}
		rc = rollback(g, ns, name, &s, v, err);
		if (rc == 0)
			post_event(g, ns, s.deploy, v);
		snapshot_release(&s);
		if (rc == MV_EINVAL && (err->http == 422 || err->http == 409))
			continue; /* a concurrent change won: read again and decide again */
		return rc;
	}
	kube_error_set(err, "Conflict", "deployment \"%s\" kept changing under guard (%d rounds)",
	               name, GUARD_MAX_RETRIES + 1);
	return MV_EAGAIN;
}

static void num(json_t *o, const char *k, double v)
{
	json_object_set_new(o, k, isfinite(v) ? json_real(v) : json_null());
}

void guard_verdict_print(FILE *out, const char *ns, const char *name, const struct guard_verdict *v,
                         const char *extra_key, const char *extra_value)
{
	char at[32];
	rfc3339(wall_now(), at, sizeof(at));
	json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "time", at, "namespace", ns, "deployment",
	                      name, "outcome", guard_outcome_name(v->outcome), "action",
	                      guard_action_name(v->action));
	if (!o)
		return;
	if (v->check[0]) {
		json_object_set_new(o, "check", json_string(v->check));
		num(o, "value", v->value);
		num(o, "threshold", v->threshold);
		num(o, "baseline", v->baseline);
		num(o, "samples", v->samples);
	}
	json_object_set_new(o, "new_hash", json_string(v->bad_hash));
	json_object_set_new(o, "previous_hash", json_string(v->good_hash));
	json_object_set_new(o, "in_window", json_boolean(v->in_window));
	json_object_set_new(o, "prometheus", json_boolean(v->metrics_judged));
	json_object_set_new(o, "reason", json_string(v->reason));
	if (extra_key)
		json_object_set_new(o, extra_key, json_string(extra_value));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (s) {
		fprintf(out, "%s\n", s);
		fflush(out);
	}
	free(s);
}
