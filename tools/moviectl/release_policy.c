/*
 * release_policy.c - parse the release policy (see release_policy.h).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "release_policy.h"
#include "release_promql.h"
#include "ytree.h"

#include "movie/err.h"
#include "movie/banned.h"

static const char *const default_codes[] = {"UNKNOWN", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                                            "DEADLINE_EXCEEDED"};

void release_policy_defaults(struct release_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->interval_s = 10;
	snprintf(p->window, sizeof(p->window), "1m");
	p->passes = 3;
	p->failures = 2;
	p->max_analysis_s = 300;
	p->min_requests = 100;
	p->confidence = 0.99;
	p->error_floor = 0.01;
	for (size_t i = 0; i < sizeof(default_codes) / sizeof(default_codes[0]); i++)
		snprintf(p->codes[i], sizeof(p->codes[i]), "%s", default_codes[i]);
	p->n_codes = sizeof(default_codes) / sizeof(default_codes[0]);
	p->latency_tolerance = 0.5;
	p->latency_floor_s = 0.025;
	p->latency_min_requests = 200;
	p->max_restarts = 0;
	p->rollout_timeout_s = 300;
	p->lease_s = 600;
	p->revert_earlier = 1;
	p->synth_enabled = 1;
	p->synth_rate = 20;
	/* Read-only calls of every service. Unknown ids answer NOT_FOUND, a client
	 * error: the call still runs the server's code path and counts as a call,
	 * never as a server error. */
	static const struct {
		const char *svc, *path, *a0, *a1;
	} calls[] = {
	    {"metadata", "/MetadataService/GetMetadata", "1", NULL},
	    {"rating", "/RatingService/GetAggregatedRating", "1", "movie"},
	    {"movie", "/MovieService/GetMovieDetails", "1", NULL},
	};
	for (size_t i = 0; i < sizeof(calls) / sizeof(calls[0]); i++) {
		struct release_synth_call *c = &p->synth[i];
		snprintf(c->service, sizeof(c->service), "%s", calls[i].svc);
		snprintf(c->path, sizeof(c->path), "%s", calls[i].path);
		snprintf(c->args[0], sizeof(c->args[0]), "%s", calls[i].a0);
		c->n_args = 1;
		if (calls[i].a1) {
			snprintf(c->args[1], sizeof(c->args[1]), "%s", calls[i].a1);
			c->n_args = 2;
		}
	}
	p->n_synth = sizeof(calls) / sizeof(calls[0]);
}

int release_parse_duration(const char *s, double *seconds)
{
	if (!s || !*s)
		return MV_EINVAL;
	char *end;
	double v = strtod(s, &end);
	if (end != s && *end == '\0' && isfinite(v) && v >= 0) {
		*seconds = v; /* a bare number is seconds */
		return 0;
	}
	double total = 0;
	const char *p = s;
	while (*p) {
		if (*p < '0' || *p > '9')
			return MV_EINVAL;
		v = strtod(p, &end);
		if (end == p || !isfinite(v))
			return MV_EINVAL;
		p = end;
		if (strncmp(p, "ms", 2) == 0) {
			total += v / 1000;
			p += 2;
		} else if (*p == 's') {
			total += v;
			p++;
		} else if (*p == 'm') {
			total += v * 60;
			p++;
		} else if (*p == 'h') {
			total += v * 3600;
			p++;
		} else {
			return MV_EINVAL;
		}
	}
	*seconds = total;
	return 0;
}

static int fail(char *err, size_t errlen, const struct ynode *n, int rc, const char *what,
                const char *key)
{
	snprintf(err, errlen, "line %d: %s: %s", n ? n->line : 0, key, what);
	return rc;
}

static int get_num(const struct ynode *v, double lo, double hi, double *out)
{
	const char *s = ytree_str(v);
	char *end;
	if (!s || !*s)
		return MV_EINVAL;
	double d = strtod(s, &end);
	if (*end || !isfinite(d) || d < lo || d > hi)
		return MV_EINVAL;
	*out = d;
	return 0;
}

static int get_dur(const struct ynode *v, double lo, double hi, double *out)
{
	double d;
	if (release_parse_duration(ytree_str(v), &d) || d < lo || d > hi)
		return MV_EINVAL;
	*out = d;
	return 0;
}

static int copy_str(char *dst, size_t cap, const struct ynode *v)
{
	const char *s = ytree_str(v);
	if (!s || !*s || strlen(s) >= cap)
		return MV_EINVAL;
	memcpy(dst, s, strlen(s) + 1);
	return 0;
}

static int parse_synth(struct release_policy *p, const struct ynode *m, char *err, size_t errlen)
{
	if (m->type != YNODE_MAP)
		return fail(err, errlen, m, MV_EINVAL, "must be a mapping", "synthetic");
	for (size_t i = 0; i < m->n; i++) {
		const char *k = m->keys[i];
		const struct ynode *v = m->vals[i];
		int b;
		if (strcmp(k, "enabled") == 0) {
			if (ytree_bool(v, &b))
				return fail(err, errlen, v, MV_EINVAL, "true or false", k);
			p->synth_enabled = b;
		} else if (strcmp(k, "rate") == 0) {
			if (get_num(v, 0.1, RELEASE_MAX_SYNTH_RATE, &p->synth_rate))
				return fail(err, errlen, v, MV_EINVAL,
				            "calls per second in [0.1, 200]", k);
		} else if (strcmp(k, "calls") == 0) {
			if (v->type != YNODE_SEQ)
				return fail(err, errlen, v, MV_EINVAL, "must be a list", k);
			if (v->n > RELEASE_MAX_SYNTH_CALLS)
				return fail(err, errlen, v, MV_ETOOBIG, "at most 16 calls", k);
			p->n_synth = 0;
			for (size_t j = 0; j < v->n; j++) {
				const struct ynode *c = v->vals[j];
				struct release_synth_call *sc = &p->synth[p->n_synth];
				memset(sc, 0, sizeof(*sc));
				if (c->type != YNODE_MAP)
					return fail(err, errlen, c, MV_EINVAL, "must be a mapping",
					            "calls[]");
				for (size_t q = 0; q < c->n; q++) {
					const char *ck = c->keys[q];
					const struct ynode *cv = c->vals[q];
					if (strcmp(ck, "service") == 0) {
						if (copy_str(sc->service, sizeof(sc->service), cv))
							return fail(err, errlen, cv, MV_EINVAL,
							            "a service name", ck);
					} else if (strcmp(ck, "method") == 0) {
						if (copy_str(sc->path, sizeof(sc->path), cv) ||
						    sc->path[0] != '/' ||
						    !strchr(sc->path + 1, '/'))
							return fail(err, errlen, cv, MV_EINVAL,
							            "a gRPC path /Service/Method",
							            ck);
					} else if (strcmp(ck, "args") == 0) {
						if (cv->type != YNODE_SEQ ||
						    cv->n > RELEASE_MAX_SYNTH_ARGS)
							return fail(err, errlen, cv, MV_EINVAL,
							            "a list of at most 4 strings",
							            ck);
						for (size_t a = 0; a < cv->n; a++)
							if (copy_str(sc->args[a],
							             sizeof(sc->args[a]),
							             cv->vals[a]))
								return fail(
								    err, errlen, cv->vals[a],
								    MV_EINVAL,
								    "a string under 64 bytes", ck);
						sc->n_args = cv->n;
					} else {
						return fail(err, errlen, cv, MV_EINVAL,
						            "unknown key", ck);
					}
				}
				if (!sc->service[0] || !sc->path[0])
					return fail(err, errlen, c, MV_EINVAL,
					            "needs service and method", "calls[]");
				p->n_synth++;
			}
		} else {
			return fail(err, errlen, v, MV_EINVAL, "unknown key", k);
		}
	}
	return 0;
}

int release_policy_parse(struct release_policy *p, const char *data, size_t len, char *err,
                         size_t errlen)
{
	struct ydocs docs = {0};
	int rc = ytree_parse(data, len, &docs, err, errlen);
	if (rc)
		goto out;
	if (docs.n == 0)
		goto out; /* an empty file: the defaults */
	const struct ynode *m = docs.docs[0];
	if (docs.n > 1 || m->type != YNODE_MAP) {
		rc = fail(err, errlen, m, MV_EINVAL, "one mapping expected", "policy");
		goto out;
	}
	for (size_t i = 0; i < m->n && !rc; i++) {
		const char *k = m->keys[i];
		const struct ynode *v = m->vals[i];
		double d;
		int b;
		if (strcmp(k, "interval") == 0) {
			if (get_dur(v, 1, 3600, &p->interval_s))
				rc = fail(err, errlen, v, MV_EINVAL, "a duration in [1s, 1h]", k);
		} else if (strcmp(k, "window") == 0) {
			if (!release_promql_duration_ok(ytree_str(v)) ||
			    copy_str(p->window, sizeof(p->window), v))
				rc = fail(err, errlen, v, MV_EINVAL,
				          "a PromQL duration such as 1m or 90s", k);
		} else if (strcmp(k, "passes") == 0) {
			if (get_num(v, 1, 1000, &d) || d != floor(d))
				rc = fail(err, errlen, v, MV_EINVAL, "an integer in [1, 1000]", k);
			else
				p->passes = (int)d;
		} else if (strcmp(k, "failures") == 0) {
			if (get_num(v, 1, 1000, &d) || d != floor(d))
				rc = fail(err, errlen, v, MV_EINVAL, "an integer in [1, 1000]", k);
			else
				p->failures = (int)d;
		} else if (strcmp(k, "latency_min_requests") == 0) {
			if (get_num(v, 1, 1e9, &p->latency_min_requests))
				rc = fail(err, errlen, v, MV_EINVAL, "a number >= 1", k);
		} else if (strcmp(k, "max_analysis") == 0) {
			if (get_dur(v, 1, 86400, &p->max_analysis_s))
				rc = fail(err, errlen, v, MV_EINVAL, "a duration in [1s, 24h]", k);
		} else if (strcmp(k, "min_requests") == 0) {
			if (get_num(v, 1, 1e9, &p->min_requests))
				rc = fail(err, errlen, v, MV_EINVAL, "a number >= 1", k);
		} else if (strcmp(k, "confidence") == 0) {
			if (get_num(v, 0.5, 0.999999, &p->confidence))
				rc = fail(err, errlen, v, MV_EINVAL, "a number in [0.5, 0.999999]",
				          k);
		} else if (strcmp(k, "error_floor") == 0) {
			if (get_num(v, 0, 1, &p->error_floor))
				rc = fail(err, errlen, v, MV_EINVAL, "a ratio in [0, 1]", k);
		} else if (strcmp(k, "error_codes") == 0) {
			if (v->type != YNODE_SEQ || v->n == 0 || v->n > RELEASE_MAX_CODES) {
				rc = fail(err, errlen, v, MV_EINVAL, "a list of 1..17 gRPC codes",
				          k);
				break;
			}
			for (size_t j = 0; j < v->n && !rc; j++) {
				const char *s = ytree_str(v->vals[j]);
				if (!release_grpc_code_label(s) || strcmp(s, "OK") == 0)
					rc = fail(err, errlen, v->vals[j], MV_EINVAL,
					          "not a gRPC error code name (UNAVAILABLE, ...)",
					          k);
				else
					snprintf(p->codes[j], sizeof(p->codes[j]), "%s", s);
			}
			p->n_codes = v->n;
		} else if (strcmp(k, "latency_tolerance") == 0) {
			if (get_num(v, 0, 100, &p->latency_tolerance))
				rc = fail(err, errlen, v, MV_EINVAL, "a ratio in [0, 100]", k);
		} else if (strcmp(k, "latency_floor") == 0) {
			if (get_dur(v, 0, 60, &p->latency_floor_s))
				rc = fail(err, errlen, v, MV_EINVAL, "a duration in [0, 60s]", k);
		} else if (strcmp(k, "max_restarts") == 0) {
			if (get_num(v, 0, 1e6, &d) || d != floor(d))
				rc = fail(err, errlen, v, MV_EINVAL, "an integer >= 0", k);
			else
				p->max_restarts = (long)d;
		} else if (strcmp(k, "rollout_timeout") == 0) {
			if (get_dur(v, 1, 86400, &p->rollout_timeout_s))
				rc = fail(err, errlen, v, MV_EINVAL, "a duration in [1s, 24h]", k);
		} else if (strcmp(k, "lease") == 0) {
			if (get_dur(v, 30, 86400, &p->lease_s))
				rc = fail(err, errlen, v, MV_EINVAL, "a duration in [30s, 24h]", k);
		} else if (strcmp(k, "revert_earlier") == 0) {
			if (ytree_bool(v, &b))
				rc = fail(err, errlen, v, MV_EINVAL, "true or false", k);
			else
				p->revert_earlier = b;
		} else if (strcmp(k, "synthetic") == 0) {
			rc = parse_synth(p, v, err, errlen);
		} else {
			rc = fail(err, errlen, v, MV_EINVAL, "unknown key", k);
		}
	}
out:
	ytree_docs_release(&docs);
	return rc;
}
