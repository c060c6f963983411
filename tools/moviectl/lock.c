/*
 * lock.c - parse and judge the release lock annotation (see lock.h).
 */
#include <stdio.h>
#include <string.h>

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
