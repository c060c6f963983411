/*
 * event.h - the rating event of the Kafka topic `ratings`: parse and validate.
 *
 *   {"userId":"105","recordId":"1","recordType":"movie","value":5,
 *    "providerId":"test-provider","eventType":"put"}
 *
 * Pure: takes bytes, returns a value or a rejection; no I/O, no globals, no
 * allocation that outlives the call. Safe from any thread. Used by the rating
 * service's consumer (ingest.c) and by the ratingingester tool, so producer and
 * consumer agree on what is valid.
 *
 * Rules:
 *   - the message is at most RATING_EVENT_MAX_BYTES bytes of JSON (RFC 8259,
 *     valid UTF-8, no duplicate keys) whose top level is an object;
 *   - eventType is the string "put" or "delete";
 *   - userId, recordId, recordType are strings, non-empty, at most
 *     RATING_ID_MAX bytes, valid UTF-8 without control characters
 *     (U+0000..U+001F, U+007F..U+009F);
 *   - providerId is optional; when present it obeys the same string rules
 *     (it is informational and not stored);
 *   - for "put", value is a JSON integer in [min_value, max_value]; for
 *     "delete", value is ignored (it may be absent or of any type);
 *   - other members are ignored (forward compatibility).
 */
#ifndef RATING_EVENT_H
#define RATING_EVENT_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

#define RATING_EVENT_MAX_BYTES ((size_t)64 * 1024)

/* Why an event was rejected. The names (rating_event_reason_name) are stable:
 * they are the `reason` label of rating_ingest_events_rejected_total and the
 * value of the dead-letter header, so their number is bounded on purpose. */
enum rating_event_reason {
	RATING_EVENT_OK = 0,
	RATING_EVENT_TOO_LARGE,       /* "too_large": over RATING_EVENT_MAX_BYTES */
	RATING_EVENT_BAD_JSON,        /* "bad_json": not JSON, invalid UTF-8, duplicate key */
	RATING_EVENT_NOT_OBJECT,      /* "not_object": top level is not an object */
	RATING_EVENT_BAD_EVENT_TYPE,  /* "bad_event_type": missing, not a string, unknown */
	RATING_EVENT_BAD_USER_ID,     /* "bad_user_id" */
	RATING_EVENT_BAD_RECORD_ID,   /* "bad_record_id" */
	RATING_EVENT_BAD_RECORD_TYPE, /* "bad_record_type" */
	RATING_EVENT_BAD_PROVIDER_ID, /* "bad_provider_id" */
	RATING_EVENT_BAD_VALUE,       /* "bad_value": missing or not an integer */
	RATING_EVENT_VALUE_RANGE,     /* "value_out_of_range" */
	RATING_EVENT_REASON_COUNT
};

/* A valid event. Strings are NUL-terminated copies (the JSON escapes decoded). */
struct rating_event {
	enum rating_op op;
	int32_t value; /* 0 for RATING_OP_DELETE */
	char user_id[RATING_ID_MAX + 1];
	char record_id[RATING_ID_MAX + 1];
	char record_type[RATING_ID_MAX + 1];
	char provider_id[RATING_ID_MAX + 1]; /* "" when absent */
};

/* Why parsing failed: a stable reason and a short human-readable detail
 * ("userId: longer than 256 bytes", "bad_json: '[' or '{' expected near 'x'"). */
struct rating_event_error {
	enum rating_event_reason reason;
	char detail[200];
};

/* Parse and validate one event of `len` bytes (need not be NUL-terminated;
 * NULL is allowed when len is 0). `min_value` <= `max_value` bound "put"
 * values. On success fills *out and returns 0; on failure fills *err (when not
 * NULL) and returns:
 *   MV_ETOOBIG  len > RATING_EVENT_MAX_BYTES
 *   MV_ESYNTAX  not JSON / not an object
 *   MV_EINVAL   a field is missing, of the wrong type, empty, too long, has
 *               control characters, or eventType is unknown
 *   MV_ERANGE   value outside [min_value, max_value]
 * *out is unspecified after a failure. */
int rating_event_parse(const void *data, size_t len, int32_t min_value, int32_t max_value,
                       struct rating_event *out, struct rating_event_error *err);

/* Stable snake_case name of a reason ("bad_user_id"); "unknown" out of range. */
const char *rating_event_reason_name(enum rating_event_reason reason);

/* The rating_change to store for a parsed event; it borrows ev's strings. */
void rating_event_to_change(const struct rating_event *ev, struct rating_change *out);

#endif
