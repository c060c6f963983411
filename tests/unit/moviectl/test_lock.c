/* Unit tests of lock.c: the release lock annotation (CONTRACTS.md). */
#include <jansson.h>
#include <string.h>

#include "../testing.h"
#include "kube.h"
#include "lock.h"

#include "movie/err.h"

#define T0 1796170000 /* 2026-12-01T... a fixed "now" */

static json_t *deploy_with(const char *value)
{
	json_t *d = json_pack("{s:{s:s,s:{}}}", "metadata", "name", "web", "annotations");
	if (value)
		json_object_set_new(json_object_get(json_object_get(d, "metadata"), "annotations"),
		                    LOCK_ANNOTATION, json_string(value));
	return d;
}

static void test_parse(void)
{
	struct release_lock l;
	CHECK_INT_EQ(lock_parse("{\"owner\":\"host/42/0a1b2c3d\",\"release\":\"r-7\","
	                        "\"expires\":\"2026-12-02T03:04:05Z\",\"future\":1}",
	                        &l),
	             0);
	CHECK_INT_EQ(l.state, LOCK_HELD);
	CHECK_STR_EQ(l.owner, "host/42/0a1b2c3d");
	CHECK_STR_EQ(l.release, "r-7");
	time_t want;
	CHECK_INT_EQ(kube_parse_time("2026-12-02T03:04:05Z", &want), 0);
	CHECK(l.expires == want);
	CHECK_INT_EQ(lock_parse("not json", &l), MV_ESYNTAX);
	CHECK_INT_EQ(l.state, LOCK_INVALID);
	CHECK_INT_EQ(lock_parse("[]", &l), MV_ESYNTAX);
	CHECK_INT_EQ(lock_parse("{\"release\":\"r\",\"expires\":\"2026-12-02T03:04:05Z\"}", &l),
	             MV_EINVAL);
	CHECK(strstr(l.problem, "owner") != NULL);
	CHECK_INT_EQ(lock_parse("{\"owner\":\"o\",\"release\":\"r\",\"expires\":\"tomorrow\"}", &l),
	             MV_EINVAL);
	CHECK(strstr(l.problem, "expires") != NULL);
	CHECK_INT_EQ(
	    lock_parse("{\"owner\":1,\"release\":\"r\",\"expires\":\"2026-12-02T03:04:05Z\"}", &l),
	    MV_EINVAL);
	char big[LOCK_MAX_VALUE + 10];
	memset(big, ' ', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	CHECK_INT_EQ(lock_parse(big, &l), MV_ETOOBIG);
}

static void test_held(void)
{
	struct release_lock l;
	json_t *d = deploy_with(NULL);
	CHECK_INT_EQ(lock_held(d, T0, &l), 0);
	CHECK_INT_EQ(l.state, LOCK_ABSENT);
	json_decref(d);

	d = deploy_with("{\"owner\":\"h/1/deadbeef\",\"release\":\"r\","
	                "\"expires\":\"2026-12-02T03:04:05Z\"}");
	time_t exp;
	kube_parse_time("2026-12-02T03:04:05Z", &exp);
	CHECK_INT_EQ(lock_held(d, exp - 1, &l), 1);
	CHECK_INT_EQ(l.state, LOCK_HELD);
	CHECK_STR_EQ(l.owner, "h/1/deadbeef");
	/* Expiry is exclusive: at `expires` the lock is free. */
	CHECK_INT_EQ(lock_held(d, exp, &l), 0);
	CHECK_INT_EQ(l.state, LOCK_EXPIRED);
	CHECK_INT_EQ(lock_held(d, exp - 1, NULL), 1);
	json_decref(d);

	/* Garbage is free but reported, never held forever. */
	d = deploy_with("locked!");
	CHECK_INT_EQ(lock_held(d, T0, &l), 0);
	CHECK_INT_EQ(l.state, LOCK_INVALID);
	CHECK(l.problem[0] != '\0');
	json_decref(d);
	d = json_pack("{s:{s:{s:i}}}", "metadata", "annotations", LOCK_ANNOTATION, 5);
	CHECK_INT_EQ(lock_held(d, T0, &l), 0);
	CHECK_INT_EQ(l.state, LOCK_INVALID);
	json_decref(d);
	/* Not even an object. */
	CHECK_INT_EQ(lock_held(NULL, T0, &l), 0);
	CHECK_INT_EQ(l.state, LOCK_ABSENT);
}

static void test_patches(void)
{
	char *v = lock_value_new("h/1/0a0b0c0d", "r1", T0);
	CHECK_STR_EQ(v, "{\"owner\":\"h/1/0a0b0c0d\",\"release\":\"r1\","
	                "\"expires\":\"2026-12-02T00:06:40Z\"}");
	struct release_lock l;
	CHECK_INT_EQ(lock_parse(v, &l), 0);
	CHECK(l.expires == T0);
	json_t *d = deploy_with(NULL);
	CHECK(lock_take_patch(d, v) == NULL); /* no resourceVersion: no guard, no patch */
	json_object_set_new(json_object_get(d, "metadata"), "resourceVersion", json_string("42"));
	json_t *p = lock_take_patch(d, v);
	char *s = json_dumps(p, JSON_COMPACT);
	CHECK(strstr(s, "{\"op\":\"test\",\"path\":\"/metadata/resourceVersion\","
	                "\"value\":\"42\"}") != NULL);
	CHECK(strstr(s, "\"path\":\"/metadata/annotations/movie.dev~1release-lock\"") != NULL);
	free(s);
	json_decref(p);
	/* Without an annotations map the whole map is added. */
	json_object_del(json_object_get(d, "metadata"), "annotations");
	p = lock_take_patch(d, v);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(p, 1), "path")),
	             "/metadata/annotations");
	json_decref(p);
	p = lock_renew_patch("old", v);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(p, 0), "value")), "old");
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(p, 1), "op")), "replace");
	json_decref(p);
	p = lock_give_back_patch(v);
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(p, 1), "op")), "remove");
	CHECK(json_object_get(json_array_get(p, 1), "value") == NULL);
	json_decref(p);
	json_decref(d);
	free(v);
}

static void test_owner_gone(void)
{
	char own[64];
	snprintf(own, sizeof(own), "h/%ld/00000000", (long)getpid());
	CHECK_INT_EQ(lock_owner_gone(own, "h"), 0); /* we run */
	CHECK_INT_EQ(lock_owner_gone(own, "other"), 0);
	pid_t child = fork();
	if (child == 0)
		_exit(0);
	waitpid(child, NULL, 0);
	snprintf(own, sizeof(own), "h/%ld/00000000", (long)child);
	CHECK_INT_EQ(lock_owner_gone(own, "h"), 1); /* reaped: gone */
	CHECK_INT_EQ(lock_owner_gone("h/x/0", "h"), 0);
	CHECK_INT_EQ(lock_owner_gone("h", "h"), 0);
	CHECK_INT_EQ(lock_owner_gone(NULL, "h"), 0);
}

int main(void)
{
	RUN(test_parse);
	RUN(test_held);
	RUN(test_patches);
	RUN(test_owner_gone);
	return TEST_SUMMARY();
}
