/*
 * release_run.c - the engine of `moviectl release` (see release_run.h).
 *
 * Order of a release: lock every part-of=movie Deployment; revert what a
 * crashed run left; for each service in dependency order: preconditions
 * (both tracks rolled out), canary gets the new image, wait for its rollout,
 * analysis every interval (Prometheus; synthetic load when the canary sees
 * too few calls), then promote (production gets the image, wait) or abort
 * (canary back, then the services promoted earlier, newest first). The lock
 * is given back at the end, whatever the outcome.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include "cmd_kube.h"
#include "lock.h"
#include "prom.h"
#include "release_promql.h"
#include "release_run.h"
#include "release_stats.h"
#include "release_synth.h"
#include "rollout.h"
#include "rollout_ops.h"

#include "movie/err.h"
#include "movie/banned.h"

#define PART_OF_SELECTOR "app.kubernetes.io/part-of=movie"
#define MAX_DEPLOYMENTS  64
/* How long a precondition may take to hold (a rollout in progress is not healthy). */
#define PRECONDITION_WAIT_S 60.0

struct svc_run {
	char name[RELEASE_NAME_MAX];
	char canary[RELEASE_NAME_MAX + 16], production[RELEASE_NAME_MAX + 16];
	char from[256], to[256];
	/* Config change (--config): the template's config volume and the
	 * ConfigMap each track mounts before/after. vol < 0: no config change. */
	int vol;
	char cm_canary[2][254], cm_prod[2][254]; /* [0] from, [1] to */
	int changed;                             /* the canary got the new image */
	int promoted;                            /* production got it too */
	json_t *v; /* this service's verdict object (borrowed from ctx->services) */
};

struct ctx {
	struct kube_client *kc;
	const struct release_opts *o;
	const struct release_policy *p;
	struct prom_client *prom;
	char id[64];
	char owner[300];
	char lock_value[700];
	double lock_renewed; /* kube_now() of the last renewal */
	char locked[MAX_DEPLOYMENTS][RELEASE_NAME_MAX + 16];
	size_t n_locked;
	struct svc_run svcs[RELEASE_MAX_SERVICES];
	size_t n_svcs;
	json_t *verdict, *services, *recovered;
};

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
	char ts[32];
	time_t now = time(NULL);
	struct tm tm;
	gmtime_r(&now, &tm);
	strftime(ts, sizeof(ts), "%H:%M:%S", &tm);
	fprintf(stderr, "%s release: ", ts);
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	fflush(stderr);
}

static void rfc3339(time_t t, char *out, size_t len)
{
	struct tm tm;
	gmtime_r(&t, &tm);
	strftime(out, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static json_t *jtime(void)
{
	char ts[32];
	rfc3339(time(NULL), ts, sizeof(ts));
	return json_string(ts);
}

/* A number for the verdict: NaN and infinities are not JSON, they are null. */
static json_t *jnum(double d)
{
	return isfinite(d) ? json_real(d) : json_null();
}

static void dep_path(const struct ctx *c, const char *name, char *out, size_t len)
{
	snprintf(out, len, "/apis/apps/v1/namespaces/%s/deployments/%s", c->o->ns, name);
}

static int get_dep(struct ctx *c, const char *name, json_t **out, struct kube_error *err)
{
	char path[512];
	dep_path(c, name, path, sizeof(path));
	return kube_get(c->kc, path, out, err);
}

static const char *dep_image(const json_t *d)
{
	json_t *cs = json_object_get(
	    json_object_get(json_object_get(json_object_get(d, "spec"), "template"), "spec"),
	    "containers");
	return json_string_value(json_object_get(json_array_get(cs, 0), "image"));
}

static const char *dep_annotation(const json_t *d, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(json_object_get(d, "metadata"), "annotations"), key));
}

static int patch_json(struct ctx *c, const char *name, json_t *ops, struct kube_error *err)
{
	char path[512];
	dep_path(c, name, path, sizeof(path));
	char *body = json_dumps(ops, JSON_COMPACT);
	json_decref(ops);
	if (!body)
		return MV_ENOMEM;
	int rc = kube_patch(c->kc, path, KUBE_PATCH_JSON, body, NULL, err);
	free(body);
	return rc;
}

static json_t *op(const char *o, const char *path, json_t *value)
{
	json_t *j = json_pack("{s:s, s:s}", "op", o, "path", path);
	if (value)
		json_object_set_new(j, "value", value);
	return j;
}

/* Set (value) or remove (NULL) one annotation with a merge patch: state
 * annotations are ours alone while we hold the lock. */
static int set_annotation(struct ctx *c, const char *name, const char *key, const char *value,
                          struct kube_error *err)
{
	char path[512];
	dep_path(c, name, path, sizeof(path));
	json_t *body = json_pack("{s:{s:{s:o}}}", "metadata", "annotations", key,
	                         value ? json_string(value) : json_null());
	char *s = json_dumps(body, JSON_COMPACT);
	json_decref(body);
	if (!s)
		return MV_ENOMEM;
	int rc = kube_patch(c->kc, path, KUBE_PATCH_MERGE, s, NULL, err);
	free(s);
	return rc;
}

/* ---- the lock ---- */

static void lock_value_make(struct ctx *c)
{
	char *v = lock_value_new(c->owner, c->id, time(NULL) + (time_t)c->p->lease_s);
	snprintf(c->lock_value, sizeof(c->lock_value), "%s", v ? v : "");
	free(v);
}

static int owner_dead(const char *owner)
{
	char host[256] = "";
	gethostname(host, sizeof(host) - 1);
	return lock_owner_gone(owner, host);
}

static void lock_give_back(struct ctx *c)
{
	for (size_t i = c->n_locked; i-- > 0;) {
		struct kube_error err;
		json_t *ops = lock_give_back_patch(c->lock_value);
		if (!ops || patch_json(c, c->locked[i], ops, &err))
			progress("could not give back the lock on %s: %s", c->locked[i],
			         err.message);
	}
	c->n_locked = 0;
}

/* Take the lock on every Deployment of the namespace, in name order. */
static int lock_take_all(struct ctx *c, json_t *deps, char *why, size_t whylen)
{
	lock_value_make(c);
	size_t n = json_array_size(deps);
	for (size_t i = 0; i < n; i++) {
		json_t *d = json_array_get(deps, i);
		const char *name =
		    json_string_value(json_object_get(json_object_get(d, "metadata"), "name"));
		const char *rv = json_string_value(
		    json_object_get(json_object_get(d, "metadata"), "resourceVersion"));
		if (!name || !rv || c->n_locked >= MAX_DEPLOYMENTS) {
			snprintf(why, whylen, "a Deployment without name or resourceVersion");
			goto fail;
		}
		struct release_lock l;
		memset(&l, 0, sizeof(l));
		if (lock_held(d, time(NULL), &l) && !owner_dead(l.owner)) {
			snprintf(why, whylen, "deployment %s is locked by %s (release %s)", name,
			         l.owner, l.release);
			goto fail;
		}
		if (l.state == LOCK_INVALID)
			progress("deployment %s: unparseable lock ignored (%s)", name, l.problem);
		else if (l.state != LOCK_ABSENT)
			progress("deployment %s: taking over the lock of %s (%s)", name, l.owner,
			         l.state == LOCK_EXPIRED ? "expired" : "owner process gone");
		json_t *ops = lock_take_patch(d, c->lock_value);
		struct kube_error err;
		kube_error_clear(&err);
		int rc = ops ? patch_json(c, name, ops, &err) : MV_ENOMEM;
		if (rc) {
			snprintf(why, whylen,
			         "deployment %s changed while taking the lock (someone else is "
			         "releasing?): %s",
			         name, err.message);
			goto fail;
		}
		snprintf(c->locked[c->n_locked++], sizeof(c->locked[0]), "%s", name);
	}
	c->lock_renewed = kube_now();
	return 0;
fail:
	lock_give_back(c);
	return MV_EEXIST;
}

/* Renew when a third of the lease has passed. A lost lock is an error. */
static int lock_renew(struct ctx *c, char *why, size_t whylen)
{
	if (kube_now() - c->lock_renewed < c->p->lease_s / 3)
		return 0;
	char old[sizeof(c->lock_value)];
	memcpy(old, c->lock_value, sizeof(old));
	lock_value_make(c);
	for (size_t i = 0; i < c->n_locked; i++) {
		struct kube_error err;
		json_t *ops = lock_renew_patch(old, c->lock_value);
		if (!ops || patch_json(c, c->locked[i], ops, &err)) {
			snprintf(why, whylen, "lost the lock on %s: %s", c->locked[i], err.message);
			return MV_EEXIST;
		}
	}
	c->lock_renewed = kube_now();
	return 0;
}

/* ---- Deployment changes ---- */

/* Replace container 0's image (and, vol >= 0, the config volume's
 * ConfigMap), guarded by what we expect there, in one patch (one rollout).
 * Already at the target (a crashed run got that far) is success. */
static int set_version(struct ctx *c, const char *name, const char *from, const char *to, int vol,
                       const char *cm_from, const char *cm_to, struct kube_error *err)
{
	const char *p = "/spec/template/spec/containers/0/image";
	json_t *ops =
	    json_pack("[o,o]", op("test", p, json_string(from)), op("replace", p, json_string(to)));
	char vp[128];
	int cm = vol >= 0 && cm_from && cm_to && strcmp(cm_from, cm_to) != 0;
	if (cm) {
		snprintf(vp, sizeof(vp), "/spec/template/spec/volumes/%d/configMap/name", vol);
		json_array_append_new(ops, op("test", vp, json_string(cm_from)));
		json_array_append_new(ops, op("replace", vp, json_string(cm_to)));
	}
	int rc = patch_json(c, name, ops, err);
	if (rc == MV_EINVAL && err->http == 422) {
		json_t *d = NULL;
		struct kube_error e2;
		if (get_dep(c, name, &d, &e2) == 0 && dep_image(d) &&
		    strcmp(dep_image(d), to) == 0) {
			const char *now = json_string_value(json_object_get(
			    json_object_get(
			        json_array_get(
			            json_object_get(
			                json_object_get(
			                    json_object_get(json_object_get(d, "spec"), "template"),
			                    "spec"),
			                "volumes"),
			            (size_t)(vol < 0 ? 0 : vol)),
			        "configMap"),
			    "name"));
			if (!cm || (now && strcmp(now, cm_to) == 0))
				rc = 0;
		}
		json_decref(d);
	}
	return rc;
}

/* A new ConfigMap `to` = ConfigMap `from` with data[key] = data. Returns 0
 * (created, or already there from a crashed run), 1 (same bytes: no change),
 * or an error with why filled. */
static int make_configmap(struct ctx *c, const char *from, const char *to, const char *key,
                          const char *data, size_t len, char *why, size_t whylen)
{
	char path[512];
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s", c->o->ns, from);
	json_t *old = NULL;
	struct kube_error err;
	int rc = kube_get(c->kc, path, &old, &err);
	if (rc) {
		snprintf(why, whylen, "cannot read ConfigMap %s: %s", from, err.message);
		return rc;
	}
	json_t *d = json_object_get(old, "data");
	const char *cur = json_string_value(json_object_get(d, key));
	if (!cur) {
		snprintf(why, whylen, "ConfigMap %s has no key %s (the --config file's name)", from,
		         key);
		json_decref(old);
		return MV_ENOTFOUND;
	}
	if (strlen(cur) == len && memcmp(cur, data, len) == 0) {
		json_decref(old);
		return 1;
	}
	json_t *nd = json_deep_copy(d);
	json_object_set_new(nd, key, json_stringn(data, len));
	json_t *labels = json_object_get(json_object_get(old, "metadata"), "labels");
	json_t *obj = json_pack("{s:s, s:s, s:{s:s, s:O, s:{s:s, s:s}}, s:o}", "apiVersion", "v1",
	                        "kind", "ConfigMap", "metadata", "name", to, "labels",
	                        labels ? labels : json_object(), "annotations", "movie.dev/release",
	                        c->id, "movie.dev/config-from", from, "data", nd);
	json_decref(old);
	char *body = obj ? json_dumps(obj, JSON_COMPACT) : NULL;
	json_decref(obj);
	if (!body)
		return MV_ENOMEM;
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps", c->o->ns);
	rc = kube_create(c->kc, path, body, NULL, &err);
	free(body);
	if (rc == MV_EEXIST)
		rc = 0;
	if (rc)
		snprintf(why, whylen, "cannot create ConfigMap %s: %s", to, err.message);
	return rc;
}

static void print_line(void *user, const char *line)
{
	(void)user;
	fprintf(stderr, "  %s", line);
}

/* Wait for a rollout, renewing the lock in between. */
static int wait_rollout(struct ctx *c, const char *name, char *why, size_t whylen)
{
	double end = kube_now() + c->p->rollout_timeout_s;
	for (;;) {
		double step = kube_now() + c->p->lease_s / 3;
		struct kube_error err;
		int rc = rollout_status_wait(c->kc, c->o->ns, name, 0, step < end ? step : end,
		                             print_line, NULL, &err);
		if (rc == 0)
			return 0;
		if (rc != MV_ETIMEDOUT || kube_now() >= end) {
			snprintf(why, whylen, "deployment %s did not roll out: %s", name,
			         err.message);
			return rc;
		}
		if (lock_renew(c, why, whylen))
			return MV_EEXIST;
	}
}

static int hash_of(struct ctx *c, const char *name, char *out, size_t len)
{
	json_t *d = NULL, *rs = NULL;
	struct kube_error err;
	int rc = get_dep(c, name, &d, &err);
	if (rc)
		return rc;
	rc = rollout_list_selected(c->kc, c->o->ns, d, "replicasets", &rs, &err);
	if (!rc) {
		const json_t *nrs = rollout_new_replicaset(d, rs);
		const char *h = json_string_value(
		    json_object_get(json_object_get(json_object_get(nrs, "metadata"), "labels"),
		                    ROLLOUT_HASH_LABEL));
		if (h)
			snprintf(out, len, "%s", h);
		else
			rc = MV_ENOTFOUND;
	}
	json_decref(rs);
	json_decref(d);
	return rc;
}

/* Ready pods of one ReplicaSet: their "ip:port" addresses and restarts. */
static int pods_of(struct ctx *c, const char *svc, const char *track, const char *hash,
                   char addrs[][64], size_t cap, size_t *n, long *restarts)
{
	char sel[512], path[256];
	snprintf(sel, sizeof(sel), "app.kubernetes.io/name=%s,track=%s,%s=%s", svc, track,
	         ROLLOUT_HASH_LABEL, hash);
	snprintf(path, sizeof(path), "/api/v1/namespaces/%s/pods", c->o->ns);
	json_t *items = NULL;
	struct kube_error err;
	int rc = kube_list(c->kc, path, sel, NULL, &items, NULL, &err);
	if (rc)
		return rc;
	*n = 0;
	*restarts = 0;
	size_t i;
	json_t *pod;
	json_array_foreach(items, i, pod)
	{
		json_t *st = json_object_get(pod, "status");
		size_t k;
		json_t *cs;
		json_array_foreach(json_object_get(st, "containerStatuses"), k, cs)
		{
			*restarts += (long)json_integer_value(json_object_get(cs, "restartCount"));
		}
		if (json_object_get(json_object_get(pod, "metadata"), "deletionTimestamp"))
			continue;
		int ready = 0;
		json_t *cond;
		json_array_foreach(json_object_get(st, "conditions"), k, cond)
		{
			if (json_string_value(json_object_get(cond, "type")) &&
			    strcmp(json_string_value(json_object_get(cond, "type")), "Ready") ==
			        0 &&
			    json_string_value(json_object_get(cond, "status")) &&
			    strcmp(json_string_value(json_object_get(cond, "status")), "True") == 0)
				ready = 1;
		}
		const char *ip = json_string_value(json_object_get(st, "podIP"));
		json_t *port = json_object_get(
		    json_array_get(
		        json_object_get(
		            json_array_get(
		                json_object_get(json_object_get(pod, "spec"), "containers"), 0),
		            "ports"),
		        0),
		    "containerPort");
		if (ready && ip && json_is_integer(port) && *n < cap)
			snprintf(addrs[(*n)++], 64, "%s:%lld", ip,
			         (long long)json_integer_value(port));
	}
	json_decref(items);
	return 0;
}

/* ---- analysis ---- */

/* One instant query; an empty vector is NaN (no data). */
static int query(struct ctx *c, const char *promql, double *out, char *why, size_t whylen)
{
	struct prom_result r;
	struct prom_error err;
	memset(&err, 0, sizeof(err));
	int rc = prom_query(c->prom, promql, 0, &r, &err);
	if (rc) {
		snprintf(why, whylen, "prometheus %s: %s (%s)", prom_client_url(c->prom),
		         err.message, err.type);
		prom_result_release(&r);
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

struct side {
	double calls, errors, p99;
	char q_calls[1024], q_errors[1024], q_p99[1024];
};

static int build(struct ctx *c, const struct release_series *s, struct side *out)
{
	const char *codes[RELEASE_MAX_CODES];
	for (size_t i = 0; i < c->p->n_codes; i++)
		codes[i] = c->p->codes[i];
	struct buf b;
	buf_init(&b, 4096);
	int rc = release_promql(RELEASE_Q_CALLS, s, c->p->window, NULL, 0, &b);
	if (!rc)
		snprintf(out->q_calls, sizeof(out->q_calls), "%s", b.data);
	b.len = 0;
	if (!rc)
		rc = release_promql(RELEASE_Q_ERRORS, s, c->p->window, codes, c->p->n_codes, &b);
	if (!rc)
		snprintf(out->q_errors, sizeof(out->q_errors), "%s", b.data);
	b.len = 0;
	if (!rc)
		rc = release_promql(RELEASE_Q_P99, s, c->p->window, NULL, 0, &b);
	if (!rc)
		snprintf(out->q_p99, sizeof(out->q_p99), "%s", b.data);
	buf_release(&b);
	return rc;
}

static int measure(struct ctx *c, struct side *s, char *why, size_t whylen)
{
	int rc = query(c, s->q_calls, &s->calls, why, whylen);
	if (!rc)
		rc = query(c, s->q_errors, &s->errors, why, whylen);
	if (!rc)
		rc = query(c, s->q_p99, &s->p99, why, whylen);
	/* No error series at all with calls present: zero errors. */
	if (!rc && isnan(s->errors) && isfinite(s->calls))
		s->errors = 0;
	return rc;
}

static json_t *check_json(const char *name, const char *qc, const char *qb, double cv, double bv,
                          double cn, double bn, json_t *threshold, enum release_decision d)
{
	json_t *j =
	    json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o, s:o, s:s, s:o}", "check", name,
	              "query_canary", qc, "query_baseline", qb, "canary", jnum(cv), "baseline",
	              jnum(bv), "canary_samples", jnum(cn), "baseline_samples", jnum(bn),
	              "threshold", threshold, "result", release_decision_name(d), "time", jtime());
	return j;
}

enum outcome {
	OUT_PASS = 0,
	OUT_FAIL = 1,
	OUT_ERROR = 2,
};

/* Judge one service's canary until it passes `passes` intervals in a row,
 * fails, or max_analysis passes inconclusive. */
static enum outcome analyse(struct ctx *c, struct svc_run *s, char *why, size_t whylen)
{
	const struct release_policy *p = c->p;
	char ch[64] = "", ph[64] = "";
	if (hash_of(c, s->canary, ch, sizeof(ch)) || hash_of(c, s->production, ph, sizeof(ph))) {
		snprintf(why, whylen, "cannot find the ReplicaSets of %s / %s", s->canary,
		         s->production);
		return OUT_ERROR;
	}
	struct release_series cs = {c->o->ns, s->name, "canary", ch};
	struct release_series bs = {c->o->ns, s->name, "production", ph};
	struct release_series all = {c->o->ns, s->name, NULL, NULL};
	struct release_series canary_any = {c->o->ns, s->name, "canary", NULL};
	struct side cv, bv, av, cav;
	memset(&cv, 0, sizeof(cv));
	memset(&bv, 0, sizeof(bv));
	memset(&av, 0, sizeof(av));
	memset(&cav, 0, sizeof(cav));
	if (build(c, &cs, &cv) || build(c, &bs, &bv) || build(c, &all, &av) ||
	    build(c, &canary_any, &cav)) {
		snprintf(why, whylen, "cannot build the PromQL queries");
		return OUT_ERROR;
	}
	json_t *checks = json_array();
	json_object_set_new(s->v, "checks", checks);
	json_object_set_new(s->v, "canary_hash", json_string(ch));
	json_object_set_new(s->v, "baseline_hash", json_string(ph));
	json_object_set_new(s->v, "analysis_started", jtime());
	struct release_error_test et = {p->min_requests, p->confidence, p->error_floor};
	struct release_latency_test lt = {p->latency_min_requests, p->latency_tolerance,
	                                  p->latency_floor_s};
	struct release_synth *synth = NULL;
	double start = kube_now(), share = NAN, share_calls = 0;
	int streak = 0, fails = 0, interval = 0;
	enum outcome out = OUT_ERROR;
	for (;;) {
		double next = kube_now() + p->interval_s;
		interval++;
		if (lock_renew(c, why, whylen))
			break;
		if (measure(c, &cv, why, whylen) || measure(c, &bv, why, whylen) ||
		    query(c, av.q_calls, &av.calls, why, whylen) ||
		    query(c, cav.q_calls, &cav.calls, why, whylen))
			break; /* Prometheus unreachable or refusing: never promote blind */
		char addrs[RELEASE_SYNTH_MAX_TARGETS][64], paddrs[RELEASE_SYNTH_MAX_TARGETS][64];
		size_t na = 0, np = 0;
		long restarts = 0, prest = 0;
		if (pods_of(c, s->name, "canary", ch, addrs, RELEASE_SYNTH_MAX_TARGETS, &na,
		            &restarts) ||
		    pods_of(c, s->name, "production", ph, paddrs, RELEASE_SYNTH_MAX_TARGETS, &np,
		            &prest)) {
			snprintf(why, whylen, "cannot list the pods of %s", s->name);
			break;
		}
		if (!synth)
			share = (isfinite(av.calls) && av.calls > 0 && isfinite(cav.calls))
			            ? cav.calls / av.calls
			            : NAN,
			share_calls = av.calls;
		struct release_error_result er;
		release_error_judge(&et, cv.errors, cv.calls, bv.errors, bv.calls, &er);
		enum release_decision ld = release_latency_judge(&lt, cv.p99, bv.p99, cv.calls);
		enum release_decision rd = restarts > p->max_restarts ? RELEASE_FAIL : RELEASE_PASS;
		json_array_append_new(
		    checks,
		    check_json("error_ratio", cv.q_errors, bv.q_errors, er.canary_ratio,
		               er.baseline_ratio, cv.calls, bv.calls,
		               json_pack("{s:f, s:f, s:f, s:f, s:f}", "min_requests",
		                         p->min_requests, "confidence", p->confidence, "floor",
		                         p->error_floor, "z", er.z, "z_critical", er.z_critical),
		               er.decision));
		json_object_set_new(json_array_get(checks, json_array_size(checks) - 1), "interval",
		                    json_integer(interval));
		json_array_append_new(
		    checks, check_json("latency_p99", cv.q_p99, bv.q_p99, cv.p99, bv.p99, cv.calls,
		                       bv.calls,
		                       json_pack("{s:f, s:f}", "tolerance", p->latency_tolerance,
		                                 "floor_seconds", p->latency_floor_s),
		                       ld));
		json_object_set_new(json_array_get(checks, json_array_size(checks) - 1), "interval",
		                    json_integer(interval));
		json_t *rj = check_json("restarts", "kubernetes: containerStatuses[].restartCount",
		                        "", (double)restarts, (double)prest, (double)na, (double)np,
		                        json_pack("{s:I}", "max", (json_int_t)p->max_restarts), rd);
		json_object_set_new(rj, "interval", json_integer(interval));
		json_array_append_new(checks, rj);
		progress("%s interval %d: canary %.0f calls, error ratio %.4f (baseline %.4f of "
		         "%.0f, z %.2f > %.2f?) -> %s; p99 %.4fs (baseline %.4fs) -> %s; "
		         "restarts %ld -> %s%s",
		         s->name, interval, isfinite(cv.calls) ? cv.calls : 0, er.canary_ratio,
		         er.baseline_ratio, isfinite(bv.calls) ? bv.calls : 0, er.z, er.z_critical,
		         release_decision_name(er.decision), cv.p99, bv.p99,
		         release_decision_name(ld), restarts, release_decision_name(rd),
		         synth ? " [synthetic load on]" : "");
		if (er.decision == RELEASE_FAIL || ld == RELEASE_FAIL || rd == RELEASE_FAIL)
			fails++;
		else
			fails = 0;
		/* One failing interval can be a warming pod or one unlucky window: abort
		 * on `failures` in a row (a restart counts at once: it already happened). */
		if (fails >= p->failures || rd == RELEASE_FAIL) {
			snprintf(why, whylen, "%s canary failed %s", s->name,
			         er.decision == RELEASE_FAIL ? "the error-ratio check"
			         : ld == RELEASE_FAIL        ? "the p99 latency check"
			                                     : "the restarts check");
			out = OUT_FAIL;
			break;
		}
		if (fails > 0) {
			streak = 0;
		} else if (er.decision == RELEASE_PASS && ld == RELEASE_PASS) {
			if (++streak >= p->passes) {
				out = OUT_PASS;
				break;
			}
		} else {
			streak = 0;
			/* Low traffic is judged after half a window: clients find a new
			 * pod only when they re-resolve (movie: every 5 s). */
			double win = 60;
			release_parse_duration(p->window, &win);
			double after = win / 2 > p->interval_s ? win / 2 : p->interval_s;
			if (!synth && p->synth_enabled && na > 0 && np > 0 &&
			    kube_now() - start >= after) {
				const char *ca[RELEASE_SYNTH_MAX_TARGETS],
				    *pa[RELEASE_SYNTH_MAX_TARGETS];
				for (size_t k = 0; k < na; k++)
					ca[k] = addrs[k];
				for (size_t k = 0; k < np; k++)
					pa[k] = paddrs[k];
				if (release_synth_start(s->name, p->synth, p->n_synth, ca, na, pa,
				                        np, p->synth_rate, &synth) == 0)
					progress(
					    "%s: too few calls (%.0f < %.0f): synthetic load at "
					    "%.0f/s to %zu canary and %zu production pods",
					    s->name, isfinite(cv.calls) ? cv.calls : 0,
					    p->min_requests, p->synth_rate, na, np);
				else
					progress("%s: too few calls and no synthetic call for this "
					         "service in the policy",
					         s->name);
			}
		}
		if (kube_now() - start >= p->max_analysis_s) {
			snprintf(why, whylen,
			         "%s: inconclusive after %.0f s (canary %.0f calls, %.0f needed): "
			         "no data is never success",
			         s->name, p->max_analysis_s, isfinite(cv.calls) ? cv.calls : 0,
			         p->min_requests);
			out = OUT_FAIL;
			break;
		}
		double wait = next - kube_now();
		if (wait > 0) {
			/* The analysis cadence (not a test synchronisation). */
			struct timespec ts = {(time_t)wait, (long)((wait - floor(wait)) * 1e9)};
			nanosleep(&ts, NULL);
		}
	}
	json_object_set_new(s->v, "analysis_seconds", json_real(kube_now() - start));
	json_object_set_new(s->v, "canary_share", jnum(share));
	json_object_set_new(s->v, "canary_share_calls", jnum(share_calls));
	if (synth) {
		struct release_synth_counts k;
		release_synth_counts(synth, &k);
		release_synth_stop(synth);
		json_object_set_new(
		    s->v, "synthetic",
		    json_pack("{s:I, s:I, s:I, s:I, s:I, s:I}", "canary_sent",
		              (json_int_t)k.sent[0], "canary_failed", (json_int_t)k.failed[0],
		              "production_sent", (json_int_t)k.sent[1], "production_failed",
		              (json_int_t)k.failed[1], "canary_ok", (json_int_t)k.ok[0],
		              "production_ok", (json_int_t)k.ok[1]));
	} else {
		json_object_set_new(s->v, "synthetic", json_null());
	}
	return out;
}

/* ---- state, revert ---- */

static int write_state(struct ctx *c, const struct svc_run *s, size_t index, const char *phase,
                       struct kube_error *err)
{
	json_t *v = json_pack("{s:s, s:I, s:s, s:s, s:s, s:i, s:[s,s], s:[s,s]}", "release", c->id,
	                      "index", (json_int_t)index, "from", s->from, "to", s->to, "phase",
	                      phase, "config_volume", s->vol, "canary_config", s->cm_canary[0],
	                      s->cm_canary[1], "production_config", s->cm_prod[0], s->cm_prod[1]);
	char *str = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	if (!str)
		return MV_ENOMEM;
	int rc = set_annotation(c, s->canary, RELEASE_STATE_ANNOTATION, str, err);
	free(str);
	return rc;
}

/* Put one service back: production first when it was promoted, then the
 * canary, each waited for; then its state annotation goes. */
static int revert_one(struct ctx *c, struct svc_run *s, char *why, size_t whylen)
{
	struct kube_error err;
	if (s->promoted) {
		progress("%s: reverting production %s to %s", s->name, s->production, s->from);
		if (set_version(c, s->production, s->to, s->from, s->vol, s->cm_prod[1],
		                s->cm_prod[0], &err)) {
			snprintf(why, whylen, "cannot revert %s: %s", s->production, err.message);
			return MV_EIO;
		}
		if (wait_rollout(c, s->production, why, whylen))
			return MV_EIO;
		s->promoted = 0;
	}
	if (s->changed) {
		progress("%s: reverting canary %s to %s", s->name, s->canary, s->from);
		if (set_version(c, s->canary, s->to, s->from, s->vol, s->cm_canary[1],
		                s->cm_canary[0], &err)) {
			snprintf(why, whylen, "cannot revert %s: %s", s->canary, err.message);
			return MV_EIO;
		}
		if (wait_rollout(c, s->canary, why, whylen))
			return MV_EIO;
		s->changed = 0;
	}
	if (set_annotation(c, s->canary, RELEASE_STATE_ANNOTATION, NULL, &err)) {
		snprintf(why, whylen, "cannot clear the state of %s: %s", s->canary, err.message);
		return MV_EIO;
	}
	return 0;
}

/* Revert what a crashed run left (state annotations of another release). */
static int recover(struct ctx *c, json_t *deps, char *why, size_t whylen)
{
	struct svc_run left[MAX_DEPLOYMENTS];
	long index[MAX_DEPLOYMENTS];
	size_t n = 0, i;
	json_t *d;
	json_array_foreach(deps, i, d)
	{
		const char *st = dep_annotation(d, RELEASE_STATE_ANNOTATION);
		const char *name =
		    json_string_value(json_object_get(json_object_get(d, "metadata"), "name"));
		if (!st || !name || n >= MAX_DEPLOYMENTS)
			continue;
		json_t *j = json_loads(st, 0, NULL);
		const char *from = json_string_value(json_object_get(j, "from"));
		const char *to = json_string_value(json_object_get(j, "to"));
		const char *phase = json_string_value(json_object_get(j, "phase"));
		size_t nl = strlen(name);
		if (!from || !to || !phase || nl < 8 || strcmp(name + nl - 7, "-canary") != 0) {
			progress("deployment %s: unreadable %s ignored", name,
			         RELEASE_STATE_ANNOTATION);
			json_decref(j);
			continue;
		}
		struct svc_run *s = &left[n];
		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%.*s", (int)(nl - 7), name);
		snprintf(s->canary, sizeof(s->canary), "%s", name);
		snprintf(s->production, sizeof(s->production), "%.*s-production", (int)(nl - 7),
		         name);
		snprintf(s->from, sizeof(s->from), "%s", from);
		snprintf(s->to, sizeof(s->to), "%s", to);
		s->changed = 1;
		s->promoted = strcmp(phase, "promoted") == 0;
		s->vol = json_is_integer(json_object_get(j, "config_volume"))
		             ? (int)json_integer_value(json_object_get(j, "config_volume"))
		             : -1;
		for (int t = 0; t < 2; t++) {
			const char *a = json_string_value(
			    json_array_get(json_object_get(j, "canary_config"), (size_t)t));
			const char *b = json_string_value(
			    json_array_get(json_object_get(j, "production_config"), (size_t)t));
			snprintf(s->cm_canary[t], sizeof(s->cm_canary[t]), "%s", a ? a : "");
			snprintf(s->cm_prod[t], sizeof(s->cm_prod[t]), "%s", b ? b : "");
		}
		index[n] = (long)json_integer_value(json_object_get(j, "index"));
		progress("found %s of release %s left by a run that did not finish: reverting",
		         s->name, json_string_value(json_object_get(j, "release")));
		json_array_append_new(
		    c->recovered, json_pack("{s:s, s:o, s:s, s:s, s:s}", "service", s->name,
		                            "release", json_incref(json_object_get(j, "release")),
		                            "from", from, "to", to, "phase", phase));
		json_decref(j);
		n++;
	}
	/* Newest first: the highest index was changed last. */
	for (size_t k = 0; k < n; k++)
		for (size_t m = k + 1; m < n; m++)
			if (index[m] > index[k]) {
				struct svc_run t = left[k];
				left[k] = left[m];
				left[m] = t;
				long ti = index[k];
				index[k] = index[m];
				index[m] = ti;
			}
	for (size_t k = 0; k < n; k++)
		if (revert_one(c, &left[k], why, whylen))
			return MV_EIO;
	return 0;
}

/* ---- the plan ---- */

/* Index of the pod template's volume "config" (a ConfigMap); its name into cm. */
static int config_volume(const json_t *d, char *cm, size_t len)
{
	json_t *vols = json_object_get(
	    json_object_get(json_object_get(json_object_get(d, "spec"), "template"), "spec"),
	    "volumes");
	size_t i;
	json_t *v;
	json_array_foreach(vols, i, v)
	{
		const char *n = json_string_value(json_object_get(v, "name"));
		const char *m =
		    json_string_value(json_object_get(json_object_get(v, "configMap"), "name"));
		if (n && m && strcmp(n, "config") == 0) {
			snprintf(cm, len, "%s", m);
			return (int)i;
		}
	}
	return -1;
}

static int plan(struct ctx *c, json_t *deps, char *why, size_t whylen)
{
	struct release_plan_svc ps[RELEASE_MAX_SERVICES];
	memset(ps, 0, sizeof(ps));
	for (size_t i = 0; i < c->o->n_targets; i++) {
		const struct release_target *t = &c->o->targets[i];
		snprintf(ps[i].name, sizeof(ps[i].name), "%s", t->service);
		struct svc_run *s = &c->svcs[i];
		memset(s, 0, sizeof(*s));
		snprintf(s->name, sizeof(s->name), "%s", t->service);
		snprintf(s->canary, sizeof(s->canary), "%s-canary", t->service);
		snprintf(s->production, sizeof(s->production), "%s-production", t->service);
		snprintf(s->to, sizeof(s->to), "%s", t->image);
		const json_t *prod = NULL, *can = NULL;
		size_t k;
		json_t *d;
		json_array_foreach(deps, k, d)
		{
			const char *n = json_string_value(
			    json_object_get(json_object_get(d, "metadata"), "name"));
			if (n && strcmp(n, s->production) == 0)
				prod = d;
			if (n && strcmp(n, s->canary) == 0)
				can = d;
		}
		if (!prod || !can) {
			snprintf(
			    why, whylen,
			    "service %s needs Deployments %s and %s labelled %s in namespace %s",
			    t->service, s->production, s->canary, PART_OF_SELECTOR, c->o->ns);
			return MV_ENOTFOUND;
		}
		snprintf(s->from, sizeof(s->from), "%s", dep_image(prod) ? dep_image(prod) : "");
		if (!t->image[0])
			snprintf(s->to, sizeof(s->to), "%s", s->from);
		s->vol = -1;
		if (t->config_data) {
			s->vol = config_volume(prod, s->cm_prod[0], sizeof(s->cm_prod[0]));
			int cv = config_volume(can, s->cm_canary[0], sizeof(s->cm_canary[0]));
			if (s->vol < 0 || cv != s->vol) {
				snprintf(why, whylen,
				         "--config %s: %s and %s need the same volume \"config\" "
				         "from a ConfigMap",
				         t->service, s->production, s->canary);
				return MV_EINVAL;
			}
			snprintf(s->cm_canary[1], sizeof(s->cm_canary[1]), "%s-config-canary-%s",
			         t->service, c->id);
			snprintf(s->cm_prod[1], sizeof(s->cm_prod[1]), "%s-config-%s", t->service,
			         c->id);
		}
		/* Peers from the production track's ConfigMap (every file of it). */
		json_t *vols = json_object_get(
		    json_object_get(json_object_get(json_object_get(prod, "spec"), "template"),
		                    "spec"),
		    "volumes");
		json_t *vol;
		json_array_foreach(vols, k, vol)
		{
			const char *cm = json_string_value(
			    json_object_get(json_object_get(vol, "configMap"), "name"));
			if (!cm || !kube_cli_valid_name(cm))
				continue;
			char path[512];
			snprintf(path, sizeof(path), "/api/v1/namespaces/%s/configmaps/%s",
			         c->o->ns, cm);
			json_t *obj = NULL;
			struct kube_error err;
			if (kube_get(c->kc, path, &obj, &err)) {
				snprintf(why, whylen, "cannot read ConfigMap %s: %s", cm,
				         err.message);
				return MV_ENOTFOUND;
			}
			const char *key;
			json_t *val;
			json_object_foreach(json_object_get(obj, "data"), key, val)
			{
				char e[256];
				const char *y = json_string_value(val);
				if (y && release_plan_add_peers(&ps[i], y, strlen(y), e, sizeof(e)))
					progress("ConfigMap %s %s: %s (peers not read)", cm, key,
					         e);
			}
			json_decref(obj);
		}
	}
	size_t order[RELEASE_MAX_SERVICES];
	if (release_plan_order(ps, c->o->n_targets, order, why, whylen))
		return MV_EINVAL;
	struct svc_run sorted[RELEASE_MAX_SERVICES];
	for (size_t i = 0; i < c->o->n_targets; i++)
		sorted[i] = c->svcs[order[i]];
	memcpy(c->svcs, sorted, sizeof(sorted[0]) * c->o->n_targets);
	c->n_svcs = c->o->n_targets;
	for (size_t i = 0; i < c->n_svcs; i++) {
		struct svc_run *s = &c->svcs[i];
		size_t oi = order[i];
		json_t *peers = json_array();
		for (size_t j = 0; j < ps[oi].n_peers; j++)
			json_array_append_new(peers, json_string(ps[oi].peers[j]));
		s->v =
		    json_pack("{s:s, s:s, s:s, s:{s:s}, s:{s:s}, s:o, s:s}", "service", s->name,
		              "canary", s->canary, "production", s->production, "from", "image",
		              s->from, "to", "image", s->to, "peers", peers, "result", "pending");
		if (s->vol >= 0) {
			json_object_set_new(json_object_get(s->v, "from"), "config",
			                    json_pack("{s:s, s:s}", "canary", s->cm_canary[0],
			                              "production", s->cm_prod[0]));
			json_object_set_new(json_object_get(s->v, "to"), "config",
			                    json_pack("{s:s, s:s}", "canary", s->cm_canary[1],
			                              "production", s->cm_prod[1]));
		}
		json_array_append_new(c->services, s->v);
	}
	return 0;
}

/* Preconditions: not paused, rolled out. Our own lock and state writes bump
 * the generation (annotations do), so "rolled out" is waited for briefly
 * (until the controller observed them), never judged on one read. */
static int deployment_ok(struct ctx *c, const char *name, char *why, size_t whylen)
{
	json_t *d = NULL;
	struct kube_error err;
	if (get_dep(c, name, &d, &err)) {
		snprintf(why, whylen, "deployment %s: %s", name, err.message);
		return MV_ENOTFOUND;
	}
	int paused = json_is_true(json_object_get(json_object_get(d, "spec"), "paused"));
	json_decref(d);
	if (paused) {
		snprintf(why, whylen, "precondition: deployment %s is paused", name);
		return MV_EINVAL;
	}
	int rc = rollout_status_wait(c->kc, c->o->ns, name, 0, kube_now() + PRECONDITION_WAIT_S,
	                             NULL, NULL, &err);
	if (rc) {
		snprintf(why, whylen, "precondition: deployment %s is not rolled out: %s", name,
		         err.message);
		return MV_EINVAL;
	}
	return 0;
}

/* Abort: the failing service's canary, then the earlier ones, newest first. */
static int revert_from(struct ctx *c, size_t upto, char *why, size_t whylen)
{
	for (size_t k = upto + 1; k-- > 0;) {
		struct svc_run *s = &c->svcs[k];
		if (k < upto && !c->p->revert_earlier && s->promoted) {
			json_object_set_new(s->v, "result", json_string("promoted"));
			continue;
		}
		int was = s->changed || s->promoted;
		if (revert_one(c, s, why, whylen))
			return MV_EIO;
		if (was)
			json_object_set_new(s->v, "result",
			                    json_string(k == upto ? "aborted" : "reverted"));
		json_object_set_new(s->v, "finished", jtime());
	}
	return 0;
}

int release_run(struct kube_client *kc, const struct release_opts *o, json_t **verdict)
{
	struct ctx *c = calloc(1, sizeof(*c));
	char why[1024] = "";
	int result = RELEASE_EXIT_ERROR;
	const char *result_word = "error";
	json_t *deps = NULL;
	if (!c) {
		*verdict = json_pack("{s:s, s:s}", "result", "error", "reason", "out of memory");
		return RELEASE_EXIT_ERROR;
	}
	c->kc = kc;
	c->o = o;
	c->p = &o->policy;
	unsigned char rnd[4] = {0};
	FILE *ur = fopen("/dev/urandom", "rb");
	if (ur) {
		if (fread(rnd, 1, sizeof(rnd), ur) != sizeof(rnd))
			memset(rnd, 0, sizeof(rnd));
		fclose(ur);
	}
	char host[200] = "";
	gethostname(host, sizeof(host) - 1);
	snprintf(c->owner, sizeof(c->owner), "%s/%ld/%02x%02x%02x%02x", host, (long)getpid(),
	         rnd[0], rnd[1], rnd[2], rnd[3]);
	{
		char ts[16];
		struct tm tm;
		time_t now = time(NULL);
		gmtime_r(&now, &tm);
		strftime(ts, sizeof(ts), "%Y%m%d%H%M%S", &tm);
		snprintf(c->id, sizeof(c->id), "r%s-%02x%02x", ts, rnd[0], rnd[1]);
	}
	c->services = json_array();
	c->recovered = json_array();
	c->verdict = json_pack("{s:s, s:s, s:s, s:o, s:O, s:O, s:s}", "release", c->id, "namespace",
	                       o->ns, "owner", c->owner, "started", jtime(), "services",
	                       c->services, "recovered", c->recovered, "result", "error");
	json_decref(c->services);
	json_decref(c->recovered);
	json_object_set_new(
	    c->verdict, "policy",
	    json_pack("{s:f, s:s, s:i, s:i, s:f, s:f, s:f, s:f, s:f, s:f, s:f, s:I, s:b, s:b, s:f}",
	              "interval_seconds", c->p->interval_s, "window", c->p->window, "passes",
	              c->p->passes, "failures", c->p->failures, "latency_min_requests",
	              c->p->latency_min_requests, "max_analysis_seconds", c->p->max_analysis_s,
	              "min_requests", c->p->min_requests, "confidence", c->p->confidence,
	              "error_floor", c->p->error_floor, "latency_tolerance",
	              c->p->latency_tolerance, "latency_floor_seconds", c->p->latency_floor_s,
	              "max_restarts", (json_int_t)c->p->max_restarts, "revert_earlier",
	              c->p->revert_earlier, "synthetic", c->p->synth_enabled, "synthetic_rate",
	              c->p->synth_rate));

	char path[256];
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments", o->ns);
	struct kube_error err;
	if (kube_list(kc, path, PART_OF_SELECTOR, NULL, &deps, NULL, &err)) {
		snprintf(why, sizeof(why), "cannot list Deployments: %s", err.message);
		goto done;
	}
	/* Name order for the lock (CONTRACTS.md): every taker goes the same way. */
	size_t nd = json_array_size(deps);
	for (size_t i = 0; i < nd; i++)
		for (size_t j = i + 1; j < nd; j++) {
			const char *a = json_string_value(json_object_get(
			    json_object_get(json_array_get(deps, i), "metadata"), "name"));
			const char *b = json_string_value(json_object_get(
			    json_object_get(json_array_get(deps, j), "metadata"), "name"));
			if (a && b && strcmp(a, b) > 0) {
				json_t *t = json_incref(json_array_get(deps, i));
				json_array_set(deps, i, json_array_get(deps, j));
				json_array_set_new(deps, j, t);
			}
		}
	if (plan(c, deps, why, sizeof(why)))
		goto done;
	for (size_t i = 0; i < c->n_svcs; i++)
		progress("plan %zu: %s %s -> %s (canary %s, then %s)", i + 1, c->svcs[i].name,
		         c->svcs[i].from, c->svcs[i].to, c->svcs[i].canary, c->svcs[i].production);
	if (o->dry_run) {
		result = RELEASE_EXIT_PROMOTED;
		result_word = "dry-run";
		snprintf(why, sizeof(why), "dry run: nothing changed");
		goto done;
	}
	if (!o->prometheus) {
		snprintf(why, sizeof(why),
		         "--prometheus URL is needed: a canary is never promoted "
		         "without its metrics");
		goto done;
	}
	if (prom_client_new(o->prometheus, 10000, &c->prom)) {
		snprintf(why, sizeof(why), "bad --prometheus URL %s", o->prometheus);
		goto done;
	}
	if (lock_take_all(c, deps, why, sizeof(why))) {
		json_object_set_new(c->verdict, "state", json_string("unchanged: not locked"));
		goto done;
	}
	progress("lock taken on %zu Deployments as %s (release %s)", c->n_locked, c->owner, c->id);
	if (recover(c, deps, why, sizeof(why)))
		goto unlock;

	size_t k;
	for (k = 0; k < c->n_svcs; k++) {
		struct svc_run *s = &c->svcs[k];
		json_object_set_new(s->v, "started", jtime());
		if (deployment_ok(c, s->production, why, sizeof(why)) ||
		    deployment_ok(c, s->canary, why, sizeof(why)))
			break;
		json_t *cd = NULL;
		if (get_dep(c, s->canary, &cd, &err) == 0 && dep_image(cd) &&
		    strcmp(dep_image(cd), s->from) != 0)
			progress(
			    "%s: canary runs %s, not production's %s: it is reset with the rest",
			    s->name, dep_image(cd), s->from);
		char canary_from[256];
		snprintf(canary_from, sizeof(canary_from), "%s",
		         cd && dep_image(cd) ? dep_image(cd) : "");
		json_decref(cd);
		const struct release_target *tg = NULL;
		for (size_t q = 0; q < o->n_targets; q++)
			if (strcmp(o->targets[q].service, s->name) == 0)
				tg = &o->targets[q];
		if (s->vol >= 0 && tg && tg->config_data) {
			int r = make_configmap(c, s->cm_canary[0], s->cm_canary[1], tg->config_key,
			                       tg->config_data, tg->config_len, why, sizeof(why));
			if (r < 0)
				break;
			if (r == 1) {
				progress("%s: --config is what production runs: no config change",
				         s->name);
				snprintf(s->cm_canary[1], sizeof(s->cm_canary[1]), "%s",
				         s->cm_canary[0]);
				snprintf(s->cm_prod[1], sizeof(s->cm_prod[1]), "%s", s->cm_prod[0]);
				s->vol = -1;
			} else {
				progress("%s: canary config %s -> %s (%s from the --config file)",
				         s->name, s->cm_canary[0], s->cm_canary[1], tg->config_key);
			}
		}
		if (strcmp(s->from, s->to) == 0 && s->vol < 0) {
			progress("%s: production already runs %s: nothing to release", s->name,
			         s->to);
			json_object_set_new(s->v, "result", json_string("unchanged"));
			continue;
		}
		if (write_state(c, s, k, "canary", &err)) {
			snprintf(why, sizeof(why), "cannot record state on %s: %s", s->canary,
			         err.message);
			break;
		}
		progress("%s: canary %s -> %s", s->name, s->canary, s->to);
		s->changed = 1;
		if (set_version(c, s->canary, canary_from, s->to, s->vol, s->cm_canary[0],
		                s->cm_canary[1], &err)) {
			snprintf(why, sizeof(why), "cannot update %s: %s", s->canary, err.message);
			break;
		}
		if (wait_rollout(c, s->canary, why, sizeof(why)))
			break;
		progress("%s: canary rolled out; analysis every %.0fs over %s, %d passes needed",
		         s->name, c->p->interval_s, c->p->window, c->p->passes);
		enum outcome out = analyse(c, s, why, sizeof(why));
		json_object_set_new(s->v, "decided", jtime());
		if (out != OUT_PASS) {
			if (out == OUT_FAIL) {
				result = RELEASE_EXIT_ABORTED;
				result_word = "aborted";
			}
			break;
		}
		progress("%s: canary passed: promoting %s to %s", s->name, s->production, s->to);
		s->promoted = 1;
		if (s->vol >= 0 && tg &&
		    make_configmap(c, s->cm_prod[0], s->cm_prod[1], tg->config_key, tg->config_data,
		                   tg->config_len, why, sizeof(why)) < 0)
			break;
		if (write_state(c, s, k, "promoted", &err) ||
		    set_version(c, s->production, s->from, s->to, s->vol, s->cm_prod[0],
		                s->cm_prod[1], &err)) {
			snprintf(why, sizeof(why), "cannot promote %s: %s", s->production,
			         err.message);
			break;
		}
		if (wait_rollout(c, s->production, why, sizeof(why)))
			break;
		json_object_set_new(s->v, "result", json_string("promoted"));
		json_object_set_new(s->v, "finished", jtime());
	}
	if (k == c->n_svcs) {
		/* One release, one outcome: states go only once all passed. */
		for (size_t i = 0; i < c->n_svcs; i++)
			if (set_annotation(c, c->svcs[i].canary, RELEASE_STATE_ANNOTATION, NULL,
			                   &err))
				progress("cannot clear the state of %s: %s", c->svcs[i].canary,
				         err.message);
		result = RELEASE_EXIT_PROMOTED;
		result_word = "promoted";
		snprintf(why, sizeof(why), "every canary passed and was promoted");
	} else {
		progress("%s", why);
		progress("reverting %s and the services released before it", c->svcs[k].name);
		char why2[1024] = "";
		if (revert_from(c, k, why2, sizeof(why2))) {
			result = RELEASE_EXIT_ERROR;
			result_word = "error";
			json_object_set_new(c->verdict, "state",
			                    json_string("partially reverted: see services"));
			size_t l = strlen(why);
			snprintf(why + l, sizeof(why) - l, "; revert failed: %s", why2);
		} else {
			json_object_set_new(
			    c->verdict, "state",
			    json_string("reverted: production runs what it ran before"));
		}
	}
unlock:
	lock_give_back(c);
done:
	if (result == RELEASE_EXIT_PROMOTED && !o->dry_run)
		json_object_set_new(c->verdict, "state", json_string("promoted"));
	json_object_set_new(c->verdict, "result", json_string(result_word));
	json_object_set_new(c->verdict, "reason", json_string(why));
	json_object_set_new(c->verdict, "finished", jtime());
	progress("%s: %s", result_word, why);
	json_decref(deps);
	prom_client_free(c->prom);
	*verdict = c->verdict;
	free(c);
	return result;
}
