#include <stdlib.h>
#include <string.h>

#include "event.h"
#include "movie/err.h"
#include "../testing.h"

#include "movie/banned.h"

static int parse(const char *json, struct rating_event *ev, struct rating_event_error *err)
{
	return rating_event_parse(json, strlen(json), 1, 5, ev, err);
}

/* Expect rejection with `code` and `reason`. */
static void expect_reject(const char *json, int code, enum rating_event_reason reason, int line)
{
	struct rating_event ev;
	struct rating_event_error err;
	int rc = parse(json, &ev, &err);
	if (rc != code || err.reason != reason) {
		fprintf(stderr, "line %d: %s -> rc %d reason %s (%s)\n", line, json, rc,
		        rating_event_reason_name(err.reason), err.detail);
	}
	CHECK_INT_EQ(rc, code);
	CHECK_INT_EQ(err.reason, reason);
	CHECK(err.detail[0] != '\0');
}
#define REJECT(json, code, reason) expect_reject((json), (code), (reason), __LINE__)

static void test_valid_put(void)
{
	struct rating_event ev;
	struct rating_event_error err;
	const char *j =
	    "{\"userId\":\"105\",\"recordId\":\"1\",\"recordType\":\"movie\",\"value\":5,"
	    "\"providerId\":\"test-provider\",\"eventType\":\"put\"}";
	CHECK_INT_EQ(parse(j, &ev, &err), 0);
	CHECK_INT_EQ(ev.op, RATING_OP_PUT);
	CHECK_INT_EQ(ev.value, 5);
	CHECK_STR_EQ(ev.user_id, "105");
	CHECK_STR_EQ(ev.record_id, "1");
	CHECK_STR_EQ(ev.record_type, "movie");
	CHECK_STR_EQ(ev.provider_id, "test-provider");

	struct rating_change ch;
	rating_event_to_change(&ev, &ch);
	CHECK_INT_EQ(ch.op, RATING_OP_PUT);
	CHECK_INT_EQ(ch.value, 5);
	CHECK_STR_EQ(ch.user_id, "105");
	CHECK_STR_EQ(ch.record_id, "1");
	CHECK_STR_EQ(ch.record_type, "movie");
}

static void test_valid_delete_ignores_value(void)
{
	struct rating_event ev;
	struct rating_event_error err;
	CHECK_INT_EQ(parse("{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                   "\"eventType\":\"delete\"}",
	                   &ev, &err),
	             0);
	CHECK_INT_EQ(ev.op, RATING_OP_DELETE);
	CHECK_INT_EQ(ev.value, 0);
	CHECK_STR_EQ(ev.provider_id, "");
	CHECK_INT_EQ(parse("{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                   "\"eventType\":\"delete\",\"value\":\"x\"}",
	                   &ev, &err),
	             0);
	CHECK_INT_EQ(parse("{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                   "\"eventType\":\"delete\",\"value\":99}",
	                   &ev, &err),
	             0);
	CHECK_INT_EQ(ev.value, 0);
}

static void test_edges(void)
{
	struct rating_event ev;
	struct rating_event_error err;
	/* Range bounds inclusive, unknown members ignored, escapes decoded. */
	CHECK_INT_EQ(parse("{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                   "\"eventType\":\"put\",\"value\":1,\"extra\":[1,{}]}",
	                   &ev, &err),
	             0);
	CHECK_INT_EQ(ev.value, 1);
	CHECK_INT_EQ(parse("{\"userId\":\"\\u00e9\\ud83c\\udfac\",\"recordId\":\"r\","
	                   "\"recordType\":\"t\",\"eventType\":\"put\",\"value\":5}",
	                   &ev, &err),
	             0);
	CHECK_STR_EQ(ev.user_id, "\xc3\xa9\xf0\x9f\x8e\xac");
	/* Whitespace around the object is fine. */
	CHECK_INT_EQ(parse(" \n{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                   "\"eventType\":\"put\",\"value\":3}\n ",
	                   &ev, &err),
	             0);
	/* Exactly RATING_ID_MAX bytes is accepted. */
	char id[RATING_ID_MAX + 1];
	memset(id, 'a', RATING_ID_MAX);
	id[RATING_ID_MAX] = '\0';
	char json[1024];
	snprintf(json, sizeof(json),
	         "{\"userId\":\"%s\",\"recordId\":\"r\",\"recordType\":\"t\",\"eventType\":\"put\","
	         "\"value\":2}",
	         id);
	CHECK_INT_EQ(parse(json, &ev, &err), 0);
	CHECK_INT_EQ(strlen(ev.user_id), RATING_ID_MAX);
	/* Configured range. */
	const char *ten = "{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                  "\"eventType\":\"put\",\"value\":10}";
	CHECK_INT_EQ(rating_event_parse(ten, strlen(ten), 0, 10, &ev, &err), 0);
	CHECK_INT_EQ(ev.value, 10);
	CHECK_INT_EQ(rating_event_parse(ten, strlen(ten), 0, 9, &ev, &err), MV_ERANGE);
	/* Not NUL-terminated input: parse only the first len bytes. */
	const char *j = "{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                "\"eventType\":\"put\",\"value\":4}GARBAGE";
	CHECK_INT_EQ(rating_event_parse(j, strlen(j) - 7, 1, 5, &ev, &err), 0);
	CHECK_INT_EQ(rating_event_parse(j, strlen(j), 1, 5, &ev, &err), MV_ESYNTAX);
	/* err may be NULL. */
	CHECK_INT_EQ(rating_event_parse("[]", 2, 1, 5, &ev, NULL), MV_ESYNTAX);
	CHECK_INT_EQ(rating_event_parse(NULL, 0, 1, 5, &ev, NULL), MV_ESYNTAX);
}

static void test_size_cap(void)
{
	struct rating_event ev;
	struct rating_event_error err;
	size_t n = RATING_EVENT_MAX_BYTES + 1;
	char *big = malloc(n);
	CHECK(big != NULL);
	if (!big)
		return;
	/* A valid event padded with whitespace to one byte over the cap. */
	const char *j = "{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\","
	                "\"eventType\":\"put\",\"value\":4}";
	memset(big, ' ', n);
	memcpy(big, j, strlen(j));
	CHECK_INT_EQ(rating_event_parse(big, n, 1, 5, &ev, &err), MV_ETOOBIG);
	CHECK_INT_EQ(err.reason, RATING_EVENT_TOO_LARGE);
	CHECK_INT_EQ(rating_event_parse(big, n - 1, 1, 5, &ev, &err), 0);
	free(big);
}

static void test_rejections(void)
{
	REJECT("", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("{", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("not json", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("{\"userId\":\"u\",\"userId\":\"v\"}", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("{\"userId\":\"\xff\"}", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("{\"userId\":\"a\\u0000b\"}", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("{} {}", MV_ESYNTAX, RATING_EVENT_BAD_JSON);
	REJECT("[1,2]", MV_ESYNTAX, RATING_EVENT_NOT_OBJECT);
	REJECT("\"put\"", MV_ESYNTAX, RATING_EVENT_NOT_OBJECT);
	REJECT("5", MV_ESYNTAX, RATING_EVENT_NOT_OBJECT);
	REJECT("null", MV_ESYNTAX, RATING_EVENT_NOT_OBJECT);

#define BASE_IDS "\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"t\""
	REJECT("{" BASE_IDS ",\"value\":3}", MV_EINVAL, RATING_EVENT_BAD_EVENT_TYPE);
	REJECT("{" BASE_IDS ",\"value\":3,\"eventType\":1}", MV_EINVAL,
	       RATING_EVENT_BAD_EVENT_TYPE);
	REJECT("{" BASE_IDS ",\"value\":3,\"eventType\":\"PUT\"}", MV_EINVAL,
	       RATING_EVENT_BAD_EVENT_TYPE);
	REJECT("{" BASE_IDS ",\"value\":3,\"eventType\":\"update\"}", MV_EINVAL,
	       RATING_EVENT_BAD_EVENT_TYPE);
	REJECT("{" BASE_IDS ",\"value\":3,\"eventType\":\"put\\u0000\"}", MV_ESYNTAX,
	       RATING_EVENT_BAD_JSON);

#define EV_PUT "\"eventType\":\"put\",\"value\":3"
	REJECT("{\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":\"\",\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":105,\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":null,\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":\"a\\nb\",\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}",
	       MV_EINVAL, RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":\"a\\u007fb\",\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}",
	       MV_EINVAL, RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":\"a\\u0085b\",\"recordId\":\"r\",\"recordType\":\"t\"," EV_PUT "}",
	       MV_EINVAL, RATING_EVENT_BAD_USER_ID);
	REJECT("{\"userId\":\"u\",\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_RECORD_ID);
	REJECT("{\"userId\":\"u\",\"recordId\":[],\"recordType\":\"t\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_RECORD_ID);
	REJECT("{\"userId\":\"u\",\"recordId\":\"r\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_RECORD_TYPE);
	REJECT("{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_RECORD_TYPE);
	REJECT("{" BASE_IDS ",\"providerId\":\"\"," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_PROVIDER_ID);
	REJECT("{" BASE_IDS ",\"providerId\":7," EV_PUT "}", MV_EINVAL,
	       RATING_EVENT_BAD_PROVIDER_ID);
	/* Ids over RATING_ID_MAX bytes, counted in bytes not characters. */
	char id[RATING_ID_MAX + 2];
	memset(id, 'x', sizeof(id) - 1);
	id[sizeof(id) - 1] = '\0';
	char json[1024];
	snprintf(json, sizeof(json),
	         "{\"userId\":\"u\",\"recordId\":\"%s\",\"recordType\":\"t\"," EV_PUT "}", id);
	REJECT(json, MV_EINVAL, RATING_EVENT_BAD_RECORD_ID);
	char multi[RATING_ID_MAX + 3]; /* 129 two-byte characters = 258 bytes */
	for (size_t i = 0; i + 1 < sizeof(multi); i += 2)
		memcpy(multi + i, "\xc3\xa9", 2);
	multi[sizeof(multi) - 1] = '\0';
	snprintf(json, sizeof(json),
	         "{\"userId\":\"u\",\"recordId\":\"r\",\"recordType\":\"%s\"," EV_PUT "}", multi);
	REJECT(json, MV_EINVAL, RATING_EVENT_BAD_RECORD_TYPE);

	REJECT("{" BASE_IDS ",\"eventType\":\"put\"}", MV_EINVAL, RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":\"5\"}", MV_EINVAL,
	       RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":4.0}", MV_EINVAL,
	       RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":4.5}", MV_EINVAL,
	       RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":null}", MV_EINVAL,
	       RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":true}", MV_EINVAL,
	       RATING_EVENT_BAD_VALUE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":0}", MV_ERANGE,
	       RATING_EVENT_VALUE_RANGE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":6}", MV_ERANGE,
	       RATING_EVENT_VALUE_RANGE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":-1}", MV_ERANGE,
	       RATING_EVENT_VALUE_RANGE);
	/* Beyond int32 and beyond int64 (jansson overflows to an error). */
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":4294967301}", MV_ERANGE,
	       RATING_EVENT_VALUE_RANGE);
	REJECT("{" BASE_IDS ",\"eventType\":\"put\",\"value\":99999999999999999999}", MV_ESYNTAX,
	       RATING_EVENT_BAD_JSON);
}

static void test_reason_names(void)
{
	CHECK_STR_EQ(rating_event_reason_name(RATING_EVENT_BAD_USER_ID), "bad_user_id");
	CHECK_STR_EQ(rating_event_reason_name(RATING_EVENT_VALUE_RANGE), "value_out_of_range");
	CHECK_STR_EQ(rating_event_reason_name(RATING_EVENT_REASON_COUNT), "unknown");
	CHECK_STR_EQ(rating_event_reason_name((enum rating_event_reason) - 1), "unknown");
	/* Every reason has a distinct, non-empty name (they are metric labels). */
	for (int i = 0; i < RATING_EVENT_REASON_COUNT; i++) {
		const char *a = rating_event_reason_name((enum rating_event_reason)i);
		CHECK(a && a[0] && strcmp(a, "unknown") != 0);
		for (int k = i + 1; k < RATING_EVENT_REASON_COUNT; k++)
			CHECK(strcmp(a, rating_event_reason_name((enum rating_event_reason)k)) !=
			      0);
	}
}

int main(void)
{
	RUN(test_valid_put);
	RUN(test_valid_delete_ignores_value);
	RUN(test_edges);
	RUN(test_size_cap);
	RUN(test_rejections);
	RUN(test_reason_names);
	return TEST_SUMMARY();
}
