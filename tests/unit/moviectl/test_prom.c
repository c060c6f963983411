/* Unit tests of prom.c's response decoder against bodies recorded from a real
 * Prometheus 2.42 (tests/fixtures/prom; scalar.json, timeout.json and
 * bad_label.json are written by hand in the same format). */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../testing.h"
#include "prom.h"

#include "movie/err.h"

static char *body(const char *name, size_t *len)
{
	char path[1024];
	snprintf(path, sizeof(path), "%s/%s", PROM_FIXTURES, name);
	FILE *f = fopen(path, "rb");
	if (!f)
		abort();
	static char data[65536];
	*len = fread(data, 1, sizeof(data) - 1, f);
	data[*len] = '\0';
	fclose(f);
	return data;
}

static int parse(const char *name, long http, struct prom_result *r, struct prom_error *e)
{
	size_t len;
	char *b = body(name, &len);
	return prom_parse_response(b, len, http, r, e);
}

static void test_vector(void)
{
	struct prom_result r;
	struct prom_error e;
	CHECK_INT_EQ(parse("vector.json", 200, &r, &e), 0);
	CHECK_INT_EQ(r.type, PROM_VECTOR);
	CHECK_INT_EQ(r.n, 1);
	CHECK_STR_EQ(prom_label(&r.samples[0], "job"), "self");
	CHECK_STR_EQ(prom_label(&r.samples[0], "__name__"), "up");
	CHECK(prom_label(&r.samples[0], "nope") == NULL);
	CHECK(r.samples[0].value == 1.0);
	CHECK(r.samples[0].time > 1.7e9);
	prom_result_release(&r);
	CHECK_INT_EQ(parse("vector_multi.json", 200, &r, &e), 0);
	CHECK_STR_EQ(prom_label(&r.samples[0], "code"), "200");
	CHECK(r.samples[0].value == 2.0);
	prom_result_release(&r);
}

static void test_empty_nan_inf_scalar(void)
{
	struct prom_result r;
	struct prom_error e;
	CHECK_INT_EQ(parse("empty.json", 200, &r, &e), 0);
	CHECK_INT_EQ(r.type, PROM_VECTOR);
	CHECK_INT_EQ(r.n, 0);
	prom_result_release(&r);
	CHECK_INT_EQ(parse("nan.json", 200, &r, &e), 0);
	CHECK(isnan(r.samples[0].value));
	prom_result_release(&r);
	CHECK_INT_EQ(parse("inf.json", 200, &r, &e), 0);
	CHECK(isinf(r.samples[0].value) && r.samples[0].value > 0);
	prom_result_release(&r);
	CHECK_INT_EQ(parse("scalar.json", 200, &r, &e), 0);
	CHECK_INT_EQ(r.type, PROM_SCALAR);
	CHECK(r.scalar == 1.5);
	prom_result_release(&r);
}

static void test_errors(void)
{
	struct prom_result r;
	struct prom_error e;
	CHECK_INT_EQ(parse("bad_data.json", 400, &r, &e), MV_EINVAL);
	CHECK_STR_EQ(e.type, "bad_data");
	CHECK(strstr(e.message, "unclosed left parenthesis") != NULL);
	CHECK_INT_EQ(e.http, 400);
	CHECK_INT_EQ(parse("bad_type.json", 400, &r, &e), MV_EINVAL);
	CHECK_INT_EQ(parse("timeout.json", 503, &r, &e), MV_ETIMEDOUT);
	CHECK_INT_EQ(parse("matrix.json", 200, &r, &e), MV_EPROTO);
	CHECK(strstr(e.message, "matrix") != NULL);
	CHECK_INT_EQ(parse("bad_label.json", 200, &r, &e), MV_EPROTO);
	CHECK_INT_EQ(r.n, 0);
	/* A proxy's HTML error page, and a success body with a 5xx status. */
	const char *html = "<html>bad gateway</html>";
	CHECK_INT_EQ(prom_parse_response(html, strlen(html), 502, &r, &e), MV_EUNAVAIL);
	CHECK_INT_EQ(prom_parse_response(html, strlen(html), 200, &r, &e), MV_ESYNTAX);
	/* The body is not NUL-terminated (found by fuzz_moviectl_prom). */
	char unterminated[4] = {'<', 'h', 't', 'm'};
	CHECK_INT_EQ(prom_parse_response(unterminated, 4, 502, &r, &e), MV_EUNAVAIL);
	CHECK_STR_EQ(e.message, "HTTP 502: <htm");
	size_t len;
	char *b = body("vector.json", &len);
	CHECK_INT_EQ(prom_parse_response(b, len, 503, &r, &e), MV_EUNAVAIL);
	CHECK_INT_EQ(prom_parse_response(b, PROM_MAX_BODY_BYTES + 1, 200, &r, &e), MV_ETOOBIG);
}

static void test_malformed_samples(void)
{
	static const char *bad[] = {
	    "{\"status\":\"success\"}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":{}}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[1]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1]"
	    "}]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,"
	    "2]}]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,"
	    "\"2x\"]}]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":["
	    "\"1\",\"2\"]}]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[{\"value\":[1,"
	    "\"\"]}]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[]}}",
	    "{\"status\":\"success\",\"data\":{\"resultType\":\"string\",\"result\":[1,\"a\"]}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct prom_result r;
		struct prom_error e;
		CHECK_INT_EQ(prom_parse_response(bad[i], strlen(bad[i]), 200, &r, &e), MV_EPROTO);
		CHECK_INT_EQ(r.n, 0);
		CHECK(r.samples == NULL);
	}
}

static void test_client_url(void)
{
	struct prom_client *c;
	CHECK_INT_EQ(prom_client_new("ftp://x", 0, &c), MV_EINVAL);
	CHECK_INT_EQ(prom_client_new("http://127.0.0.1:9/prom/", 0, &c), 0);
	CHECK_STR_EQ(prom_client_url(c), "http://127.0.0.1:9/prom");
	/* Nothing listens on the discard port: a clear local error, no hang. */
	struct prom_result r;
	struct prom_error e;
	int rc = prom_query(c, "up", 0, &r, &e);
	CHECK(rc == MV_EUNAVAIL || rc == MV_ETIMEDOUT);
	CHECK_INT_EQ(e.http, 0);
	prom_client_free(c);
}

int main(void)
{
	RUN(test_vector);
	RUN(test_empty_nan_inf_scalar);
	RUN(test_errors);
	RUN(test_malformed_samples);
	RUN(test_client_url);
	return TEST_SUMMARY();
}
