/*
 * lock.c - parse and judge the release lock annotation (see lock.h).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "kube.h"
#include "lock.h"

#include "movie/err.h"
#include "movie/banned.h"

static int invalid(struct release_lock *out, int rc, const char *what)
{
	out->state = LOCK_INVALID;
	snprintf(out->problem, sizeof(out->problem), "%s", what);
	return rc;
}

static int copy_field(const json_t *obj, const char *key, char *dst, size_t cap)
{
	const char *v = json_string_value(json_object_get(obj, key));
	if (!v || !*v || strlen(v) >= cap)
		return MV_EINVAL;
	memcpy(dst, v, strlen(v) + 1);
	return 0;
}

int lock_parse(const char *value, struct release_lock *out)
{
	memset(out, 0, sizeof(*out));
	if (!value)
		return invalid(out, MV_EINVAL, "no value");
	if (strlen(value) > LOCK_MAX_VALUE)
		return invalid(out, MV_ETOOBIG, "value longer than 4096 bytes");
	json_error_t jerr;
	json_t *obj = json_loads(value, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(obj)) {
		json_decref(obj);
		return invalid(out, MV_ESYNTAX, "value is not a JSON object");
	}
	int rc = 0;
	char expires[64];
	if (copy_field(obj, "owner", out->owner, sizeof(out->owner)))
		rc = invalid(out, MV_EINVAL, "missing or bad \"owner\"");
	else if (copy_field(obj, "release", out->release, sizeof(out->release)))
		rc = invalid(out, MV_EINVAL, "missing or bad \"release\"");
	else if (copy_field(obj, "expires", expires, sizeof(expires)) ||
	         kube_parse_time(expires, &out->expires))
		rc = invalid(out, MV_EINVAL, "missing or bad \"expires\" (RFC 3339)");
	else
		out->state = LOCK_HELD;
	json_decref(obj);
	return rc;
}

int lock_held(const json_t *deployment, time_t now, struct release_lock *out)
{
	struct release_lock tmp;
	struct release_lock *l = out ? out : &tmp;
	const json_t *ann = json_object_get(json_object_get(deployment, "metadata"), "annotations");
	const json_t *v = json_object_get(ann, LOCK_ANNOTATION);
	if (!v) {
		memset(l, 0, sizeof(*l));
		l->state = LOCK_ABSENT;
		return 0;
	}
	if (!json_is_string(v)) {
		memset(l, 0, sizeof(*l));
		invalid(l, MV_EINVAL, "value is not a string");
		return 0;
	}
	if (lock_parse(json_string_value(v), l))
		return 0;
	if (l->expires <= now) {
		l->state = LOCK_EXPIRED;
		return 0;
	}
	return 1;
}

/* ---- take / renew / give back ---- */

/* "movie.dev/release-lock" in a JSON-patch path: '/' is "~1" (RFC 6901). */
#define LOCK_PATCH_PATH "/metadata/annotations/movie.dev~1release-lock"

char *lock_value_new(const char *owner, const char *release, time_t expires)
{
	char exp[32];
	struct tm tm;
	gmtime_r(&expires, &tm);
	strftime(exp, sizeof(exp), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_t *v =
	    json_pack("{s:s, s:s, s:s}", "owner", owner, "release", release, "expires", exp);
	char *s = v ? json_dumps(v, JSON_COMPACT) : NULL;
	json_decref(v);
	return s;
}

static json_t *patch_op(const char *op, const char *path, json_t *value)
{
	json_t *j = json_pack("{s:s, s:s}", "op", op, "path", path);
	if (j && value)
		json_object_set_new(j, "value", value);
	else
		json_decref(value);
	return j;
}

json_t *lock_take_patch(const json_t *deployment, const char *value)
{
	const json_t *md = json_object_get(deployment, "metadata");
	const char *rv = json_string_value(json_object_get(md, "resourceVersion"));
	if (!rv || !value)
		return NULL;
	json_t *ops = json_array();
	json_array_append_new(ops, patch_op("test", "/metadata/resourceVersion", json_string(rv)));
	if (json_is_object(json_object_get(md, "annotations")))
		json_array_append_new(ops, patch_op("add", LOCK_PATCH_PATH, json_string(value)));
	else
		json_array_append_new(ops, patch_op("add", "/metadata/annotations",
		                                    json_pack("{s:s}", LOCK_ANNOTATION, value)));
	return ops;
}

json_t *lock_renew_patch(const char *old, const char *value)
{
	return json_pack("[o,o]", patch_op("test", LOCK_PATCH_PATH, json_string(old)),
	                 patch_op("replace", LOCK_PATCH_PATH, json_string(value)));
}

json_t *lock_give_back_patch(const char *value)
{
	return json_pack("[o,o]", patch_op("test", LOCK_PATCH_PATH, json_string(value)),
	                 patch_op("remove", LOCK_PATCH_PATH, NULL));
}

int lock_owner_gone(const char *owner, const char *host)
{
	size_t hl = host ? strlen(host) : 0;
	if (!owner || hl == 0 || strncmp(owner, host, hl) != 0 || owner[hl] != '/')
		return 0;
	const char *p = owner + hl + 1;
	char *end;
	long pid = strtol(p, &end, 10);
	if (end == p || *end != '/' || pid <= 0 || pid > 4194304)
		return 0;
	return kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}
