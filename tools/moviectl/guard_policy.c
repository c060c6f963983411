/*
 * guard_policy.c - defaults and the YAML parser of the guard policy. Parsed
 * with ytree (the tree lint uses); every key is known, so a typo is an error
 * with its line rather than a silently ignored threshold.
 */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"
#include "guard_policy.h"
#include "ytree.h"

#include "movie/err.h"
#include "movie/grpc.h"
#include "movie/banned.h"

#define POLICY_MAX_BYTES ((size_t)1024 * 1024)

void guard_policy_defaults(struct guard_policy *p)
{
	memset(p, 0, sizeof(*p));
	p->window = 300;
	p->interval = 5;
	p->progress.enabled = 1;
	p->restarts.enabled = 1;
	p->restarts.max = 2;
	p->restarts.crash_loop = 1;
	p->readiness.enabled = 1;
	p->readiness.max_unready_share = 0.5;
	p->readiness.grace = 60;
	p->error_ratio.enabled = 1;
	p->error_ratio.max_increase = 0.05;
	p->error_ratio.min_requests = 100;
	static const int codes[] = {GRPC_STATUS_UNKNOWN, GRPC_STATUS_INTERNAL,
	                            GRPC_STATUS_UNAVAILABLE, GRPC_STATUS_DATA_LOSS,
	                            GRPC_STATUS_DEADLINE_EXCEEDED};
	p->error_ratio.ncodes = sizeof(codes) / sizeof(codes[0]);
	memcpy(p->error_ratio.codes, codes, sizeof(codes));
	p->latency.enabled = 1;
	p->latency.max_ratio = 3;
	p->latency.min_increase = 0.005;
	p->latency.min_requests = 100;
	p->baseline = 300;
}

enum vkind {
	V_DURATION,
	V_RATIO,
	V_FACTOR,
	V_COUNT,
	V_BOOL,
	V_CODES
};

struct key {
	const char *name;
	enum vkind kind;
	size_t off;
};

#define OFF(f) offsetof(struct guard_policy, f)

static const struct key top_keys[] = {
    {"window", V_DURATION, OFF(window)},
    {"interval", V_DURATION, OFF(interval)},
    {"baseline", V_DURATION, OFF(baseline)},
    {NULL, 0, 0},
};
static const struct key progress_keys[] = {
    {"enabled", V_BOOL, OFF(progress.enabled)},
    {"max", V_DURATION, OFF(progress.max)},
    {NULL, 0, 0},
};
static const struct key restarts_keys[] = {
    {"enabled", V_BOOL, OFF(restarts.enabled)},
    {"max", V_COUNT, OFF(restarts.max)},
    {"crash-loop", V_BOOL, OFF(restarts.crash_loop)},
    {NULL, 0, 0},
};
static const struct key readiness_keys[] = {
    {"enabled", V_BOOL, OFF(readiness.enabled)},
    {"max-unready-share", V_RATIO, OFF(readiness.max_unready_share)},
    {"grace", V_DURATION, OFF(readiness.grace)},
    {NULL, 0, 0},
};
static const struct key error_keys[] = {
    {"enabled", V_BOOL, OFF(error_ratio.enabled)},
    {"max-increase", V_RATIO, OFF(error_ratio.max_increase)},
    {"min-requests", V_COUNT, OFF(error_ratio.min_requests)},
    {"codes", V_CODES, OFF(error_ratio)},
    {NULL, 0, 0},
};
static const struct key latency_keys[] = {
    {"enabled", V_BOOL, OFF(latency.enabled)},
    {"max-ratio", V_FACTOR, OFF(latency.max_ratio)},
    {"min-increase", V_DURATION, OFF(latency.min_increase)},
    {"min-requests", V_COUNT, OFF(latency.min_requests)},
    {NULL, 0, 0},
};

static const struct {
	const char *name;
	const struct key *keys;
} sections[] = {
    {"progress-deadline", progress_keys}, {"restarts", restarts_keys},
    {"readiness", readiness_keys},        {"error-ratio", error_keys},
    {"latency-p99", latency_keys},
};
#define NSECTIONS (sizeof(sections) / sizeof(sections[0]))

static int fail(char *err, size_t errlen, int line, int rc, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

static int fail(char *err, size_t errlen, int line, int rc, const char *fmt, ...)
{
	char msg[384];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	snprintf(err, errlen, "%d: %s", line, msg);
	return rc;
}

static void known_list(const struct key *keys, int with_sections, char *out, size_t outlen)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; keys[i].name; i++)
		used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%s%s",
		                         used ? ", " : "", keys[i].name);
	if (with_sections)
		used += (size_t)snprintf(out + used, used < outlen ? outlen - used : 0, "%schecks",
		                         used ? ", " : "");
	(void)used;
}

static int code_number(const char *name)
{
	for (int i = 0; i < GRPC_STATUS_COUNT; i++)
		if (strcmp(grpc_status_name(i), name) == 0)
			return i;
	return -1;
}

static int set_codes(struct guard_policy *p, const struct ynode *v, char *err, size_t errlen)
{
	if (v->type != YNODE_SEQ || v->n == 0 || v->n > GUARD_MAX_CODES)
		return fail(err, errlen, v->line, MV_EINVAL,
		            "error-ratio.codes: a list of 1 to 17 gRPC code names");
	size_t n = 0;
	for (size_t i = 0; i < v->n; i++) {
		const char *s = ytree_str(v->vals[i]);
		int c = s ? code_number(s) : -1;
		if (c < 0)
			return fail(
			    err, errlen, v->vals[i]->line, MV_EINVAL,
			    "error-ratio.codes: \"%s\" is not a gRPC code name (UNAVAILABLE, "
			    "INTERNAL, ...)",
			    s ? s : "(not a scalar)");
		if (c == GRPC_STATUS_OK)
			return fail(err, errlen, v->vals[i]->line, MV_EINVAL,
			            "error-ratio.codes: OK is not an error");
		p->error_ratio.codes[n++] = c;
	}
	p->error_ratio.ncodes = n;
	return 0;
}

static int set_value(struct guard_policy *p, const struct key *k, const char *path,
                     const struct ynode *v, char *err, size_t errlen)
{
	if (k->kind == V_CODES)
		return set_codes(p, v, err, errlen);
	const char *s = ytree_str(v);
	void *dst = (char *)p + k->off;
	if (!s)
		return fail(err, errlen, v->line, MV_EINVAL, "%s: expected a scalar value", path);
	switch (k->kind) {
	case V_DURATION: {
		double d;
		if (kube_cli_duration(s, &d))
			return fail(err, errlen, v->line, MV_EINVAL,
			            "%s: \"%s\" is not a duration (90s, 5m, 250ms)", path, s);
		*(double *)dst = d;
		return 0;
	}
	case V_RATIO:
	case V_FACTOR: {
		char *end;
		double d = strtod(s, &end);
		if (end == s || *end || !isfinite(d) || d < 0 || (k->kind == V_RATIO && d > 1) ||
		    (k->kind == V_FACTOR && d < 1))
			return fail(err, errlen, v->line, MV_EINVAL,
			            k->kind == V_RATIO ? "%s: \"%s\" is not a ratio in [0, 1]"
			                               : "%s: \"%s\" is not a factor >= 1",
			            path, s);
		*(double *)dst = d;
		return 0;
	}
	case V_COUNT: {
		long long n;
		if (ytree_int(v, &n) || n < 0 || n > 1000000000)
			return fail(err, errlen, v->line, MV_EINVAL,
			            "%s: \"%s\" is not a count (0 or more)", path, s);
		*(long long *)dst = n;
		return 0;
	}
	case V_BOOL: {
		int b;
		if (ytree_bool(v, &b))
			return fail(err, errlen, v->line, MV_EINVAL,
			            "%s: \"%s\" is not true or false", path, s);
		*(int *)dst = b;
		return 0;
	}
	case V_CODES: break;
	}
	return MV_EINVAL;
}

static int apply_map(struct guard_policy *p, const struct ynode *map, const struct key *keys,
                     const char *prefix, int top, char *err, size_t errlen)
{
	if (map->type != YNODE_MAP)
		return fail(err, errlen, map->line, MV_EINVAL, "%s: expected a mapping",
		            top ? "policy" : prefix);
	for (size_t i = 0; i < map->n; i++) {
		const char *name = map->keys[i];
		char path[160];
		snprintf(path, sizeof(path), "%s%s", prefix, name);
		if (top && strcmp(name, "checks") == 0)
			continue;
		size_t k = 0;
		while (keys[k].name && strcmp(keys[k].name, name) != 0)
			k++;
		if (!keys[k].name) {
			char known[384];
			known_list(keys, top, known, sizeof(known));
			return fail(err, errlen, map->vals[i]->line, MV_EINVAL,
			            "unknown key \"%s\" (known here: %s)", path, known);
		}
		int rc = set_value(p, &keys[k], path, map->vals[i], err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

static int apply_checks(struct guard_policy *p, const struct ynode *checks, char *err,
                        size_t errlen)
{
	if (checks->type != YNODE_MAP)
		return fail(err, errlen, checks->line, MV_EINVAL, "checks: expected a mapping%s%s",
		            "", "");
	for (size_t i = 0; i < checks->n; i++) {
		size_t s = 0;
		while (s < NSECTIONS && strcmp(sections[s].name, checks->keys[i]) != 0)
			s++;
		if (s == NSECTIONS)
			return fail(
			    err, errlen, checks->vals[i]->line, MV_EINVAL,
			    "unknown check \"checks.%s\" (known: progress-deadline, restarts, "
			    "readiness, error-ratio, latency-p99)",
			    checks->keys[i]);
		char prefix[64];
		snprintf(prefix, sizeof(prefix), "checks.%s.", sections[s].name);
		int rc = apply_map(p, checks->vals[i], sections[s].keys, prefix, 0, err, errlen);
		if (rc)
			return rc;
	}
	return 0;
}

int guard_policy_parse(struct guard_policy *p, const char *data, size_t len, char *err,
                       size_t errlen)
{
	if (len > POLICY_MAX_BYTES) {
		snprintf(err, errlen, "1: policy larger than %zu bytes", POLICY_MAX_BYTES);
		return MV_ETOOBIG;
	}
	struct ydocs docs = {0}; /* ytree_parse appends to it */
	int rc = ytree_parse(data, len, &docs, err, errlen);
	if (rc)
		goto out;
	if (docs.n > 1) {
		rc = fail(err, errlen, docs.docs[1]->line, MV_EINVAL, "one YAML document expected");
		goto out;
	}
	if (docs.n == 0)
		goto out; /* an empty file: the defaults */
	const struct ynode *root = docs.docs[0];
	if ((rc = apply_map(p, root, top_keys, "", 1, err, errlen)))
		goto out;
	const struct ynode *checks = ytree_get(root, "checks");
	if (checks && (rc = apply_checks(p, checks, err, errlen)))
		goto out;
	if (p->interval < 0.1) {
		rc = fail(err, errlen,
		          ytree_get(root, "interval") ? ytree_get(root, "interval")->line : 1,
		          MV_EINVAL, "interval: at least 100ms");
	}
out:
	ytree_docs_release(&docs);
	return rc;
}

int guard_policy_codes_regex(const struct guard_policy *p, char *out, size_t outlen)
{
	size_t used = 0;
	out[0] = '\0';
	for (size_t i = 0; i < p->error_ratio.ncodes; i++) {
		int n = snprintf(out + used, outlen - used, "%s%s", i ? "|" : "",
		                 grpc_status_label(p->error_ratio.codes[i]));
		if (n < 0 || (size_t)n >= outlen - used)
			return MV_ETOOBIG;
		used += (size_t)n;
	}
	return 0;
}
