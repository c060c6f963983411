/*
 * event.c - rating event parser and validator (see event.h for the rules).
 */
#include "event.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "movie/err.h"
#include "movie/text.h"

#include "movie/banned.h"

static const char *const reason_names[RATING_EVENT_REASON_COUNT] = {
    [RATING_EVENT_OK] = "ok",
    [RATING_EVENT_TOO_LARGE] = "too_large",
    [RATING_EVENT_BAD_JSON] = "bad_json",
    [RATING_EVENT_NOT_OBJECT] = "not_object",
    [RATING_EVENT_BAD_EVENT_TYPE] = "bad_event_type",
    [RATING_EVENT_BAD_USER_ID] = "bad_user_id",
    [RATING_EVENT_BAD_RECORD_ID] = "bad_record_id",
    [RATING_EVENT_BAD_RECORD_TYPE] = "bad_record_type",
    [RATING_EVENT_BAD_PROVIDER_ID] = "bad_provider_id",
    [RATING_EVENT_BAD_VALUE] = "bad_value",
    [RATING_EVENT_VALUE_RANGE] = "value_out_of_range",
};

const char *rating_event_reason_name(enum rating_event_reason reason)
{
	if ((int)reason < 0 || reason >= RATING_EVENT_REASON_COUNT)
		return "unknown";
	return reason_names[reason];
}

static int fail(struct rating_event_error *err, enum rating_event_reason reason, int code,
                const char *field, const char *what)
{
	if (err) {
		err->reason = reason;
		snprintf(err->detail, sizeof(err->detail), "%s: %s", field, what);
	}
	return code;
}

/* Copy the string member `key` of `obj` into dst (RATING_ID_MAX + 1 bytes).
 * Absent members are an error unless `optional`, which leaves dst empty. */
static int copy_id(json_t *obj, const char *key, bool optional, char *dst,
                   enum rating_event_reason reason, struct rating_event_error *err)
{
	json_t *v = json_object_get(obj, key);
	dst[0] = '\0';
	if (!v) {
		if (optional)
			return 0;
		return fail(err, reason, MV_EINVAL, key, "missing");
	}
	if (!json_is_string(v))
		return fail(err, reason, MV_EINVAL, key, "not a string");
	const unsigned char *s = (const unsigned char *)json_string_value(v);
	size_t n = json_string_length(v);
	if (n == 0)
		return fail(err, reason, MV_EINVAL, key, "empty");
	if (n > RATING_ID_MAX)
		return fail(err, reason, MV_EINVAL, key, "longer than 256 bytes");
	/* The id rule every handler applies too (movie/text.h): a Kafka message is
	 * as untrusted as a request. */
	const char *bad = text_check_id(s, n);
	if (bad)
		return fail(err, reason, MV_EINVAL, key, bad);
	memcpy(dst, s, n);
	dst[n] = '\0';
	return 0;
}

int rating_event_parse(const void *data, size_t len, int32_t min_value, int32_t max_value,
                       struct rating_event *out, struct rating_event_error *err)
{
	json_error_t jerr;
	json_t *root = NULL;
	int rc;

	if (err) {
		err->reason = RATING_EVENT_OK;
		err->detail[0] = '\0';
	}
	if (len > RATING_EVENT_MAX_BYTES)
		return fail(err, RATING_EVENT_TOO_LARGE, MV_ETOOBIG, "message",
		            "larger than 65536 bytes");
	if (len == 0)
		return fail(err, RATING_EVENT_BAD_JSON, MV_ESYNTAX, "json", "empty message");

	/* No JSON_ALLOW_NUL: an embedded \u0000 is a parse error, as it should be. */
	root = json_loadb(data, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
	if (!root)
		return fail(err, RATING_EVENT_BAD_JSON, MV_ESYNTAX, "json", jerr.text);
	if (!json_is_object(root)) {
		rc = fail(err, RATING_EVENT_NOT_OBJECT, MV_ESYNTAX, "message", "not a JSON object");
		goto out_root;
	}

	json_t *type = json_object_get(root, "eventType");
	if (!type) {
		rc = fail(err, RATING_EVENT_BAD_EVENT_TYPE, MV_EINVAL, "eventType", "missing");
		goto out_root;
	}
	if (!json_is_string(type)) {
		rc = fail(err, RATING_EVENT_BAD_EVENT_TYPE, MV_EINVAL, "eventType", "not a string");
		goto out_root;
	}
	if (strcmp(json_string_value(type), "put") == 0 && json_string_length(type) == 3) {
		out->op = RATING_OP_PUT;
	} else if (strcmp(json_string_value(type), "delete") == 0 &&
	           json_string_length(type) == 6) {
		out->op = RATING_OP_DELETE;
	} else {
		rc = fail(err, RATING_EVENT_BAD_EVENT_TYPE, MV_EINVAL, "eventType",
		          "not \"put\" or \"delete\"");
		goto out_root;
	}

	rc = copy_id(root, "userId", false, out->user_id, RATING_EVENT_BAD_USER_ID, err);
	if (rc == 0)
		rc = copy_id(root, "recordId", false, out->record_id, RATING_EVENT_BAD_RECORD_ID,
		             err);
	if (rc == 0)
		rc = copy_id(root, "recordType", false, out->record_type,
		             RATING_EVENT_BAD_RECORD_TYPE, err);
	if (rc == 0)
		rc = copy_id(root, "providerId", true, out->provider_id,
		             RATING_EVENT_BAD_PROVIDER_ID, err);
	if (rc != 0)
		goto out_root;

	out->value = 0;
	if (out->op == RATING_OP_PUT) {
		json_t *v = json_object_get(root, "value");
		if (!v) {
			rc = fail(err, RATING_EVENT_BAD_VALUE, MV_EINVAL, "value", "missing");
			goto out_root;
		}
		/* 5.0 is a JSON real, not an integer: rejected rather than truncated. */
		if (!json_is_integer(v)) {
			rc =
			    fail(err, RATING_EVENT_BAD_VALUE, MV_EINVAL, "value", "not an integer");
			goto out_root;
		}
		json_int_t iv = json_integer_value(v);
		if (iv < min_value || iv > max_value) {
			rc = MV_ERANGE;
			if (err) {
				err->reason = RATING_EVENT_VALUE_RANGE;
				snprintf(err->detail, sizeof(err->detail),
				         "value: %lld outside [%d, %d]", (long long)iv,
				         (int)min_value, (int)max_value);
			}
			goto out_root;
		}
		out->value = (int32_t)iv;
	}
	rc = 0;

out_root:
	json_decref(root);
	return rc;
}

void rating_event_to_change(const struct rating_event *ev, struct rating_change *out)
{
	out->op = ev->op;
	out->record_id = ev->record_id;
	out->record_type = ev->record_type;
	out->user_id = ev->user_id;
	out->value = ev->op == RATING_OP_PUT ? ev->value : 0;
}
