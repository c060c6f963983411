/* Unit tests of kube_proto.c: watch framing, Status errors, selectors,
 * timestamps, ExecCredential. Inputs are recorded API responses
 * (tests/fixtures/kube) and hand-made broken variants. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "../testing.h"
#include "kube.h"
#include "kube_fixture.h"

#include "movie/err.h"

/* Feed `data` in chunks of `step` bytes; collect event types and RVs. */
static int decode_all(const char *data, size_t len, size_t step, char *types, size_t cap,
                      int *nevents)
{
	struct kube_watch_decoder d;
	kube_watch_decoder_init(&d, 0);
	int n = 0, rc = 0;
	for (size_t off = 0; off < len && rc >= 0; off += step) {
		size_t k = len - off < step ? len - off : step;
		rc = kube_watch_decoder_feed(&d, data + off, k);
		while (rc == 0) {
			struct kube_event ev;
			rc = kube_watch_decoder_next(&d, &ev);
			if (rc == 1) {
				if ((size_t)n + 1 < cap)
					types[n] = "AMDBE"[ev.type];
				n++;
				kube_event_release(&ev);
				rc = 0;
			} else {
				break;
			}
		}
		if (rc == 0 || rc == 1)
			rc = 0;
	}
	types[(size_t)n < cap ? (size_t)n : cap - 1] = '\0';
	*nevents = n;
	if (rc == 0 && kube_watch_decoder_partial(&d))
		rc = 1; /* leftover bytes */
	kube_watch_decoder_release(&d);
	return rc;
}

static void test_watch_recorded_stream_any_chunking(void)
{
	size_t len;
	char *data = fixture_bytes("watch_stream.json", &len);
	size_t steps[] = {1, 2, 3, 7, 64, 4096, 1 << 20};
	for (size_t i = 0; i < sizeof(steps) / sizeof(steps[0]); i++) {
		char types[16];
		int n;
		CHECK_INT_EQ(decode_all(data, len, steps[i], types, sizeof(types), &n), 0);
		CHECK_INT_EQ(n, 4);
		CHECK_STR_EQ(types, "AMBM");
	}
	free(data);
}

static void test_watch_objects_without_newlines_and_braces_in_strings(void)
{
	const char *s = "{\"type\":\"ADDED\",\"object\":{\"metadata\":{\"name\":\"a}\\\"{\"}}}"
	                "{\"type\":\"DELETED\",\"object\":{\"x\":[1,{\"y\":\"]\"}]}}  \r\n\t"
	                "{\"type\":\"ERROR\",\"object\":{\"kind\":\"Status\",\"code\":410}}";
	char types[16];
	int n;
	CHECK_INT_EQ(decode_all(s, strlen(s), 1, types, sizeof(types), &n), 0);
	CHECK_STR_EQ(types, "ADE");
	CHECK_INT_EQ(n, 3);
}

static void test_watch_truncated_and_bad_streams(void)
{
	char types[16];
	int n;
	const char *trunc = "{\"type\":\"ADDED\",\"object\":{}}\n{\"type\":\"MOD";
	CHECK_INT_EQ(decode_all(trunc, strlen(trunc), 5, types, sizeof(types), &n), 1);
	CHECK_INT_EQ(n, 1);
	const char *garbage[] = {
	    "[1,2]",                                       /* not an object */
	    "{\"type\":\"ADDED\",\"object\":{}} x",        /* junk between events */
	    "{\"type\":\"WHAT\",\"object\":{}}",           /* unknown type */
	    "{\"type\":\"ADDED\"}",                        /* no object */
	    "{\"type\":\"ADDED\",\"object\":3}",           /* object not an object */
	    "{\"type\":\"ADDED\",\"object\":{]}",          /* bad JSON */
	    "{\"type\":\"ADDED\",\"object\":{\"a\":tru}}", /* bad literal */
	};
	for (size_t i = 0; i < sizeof(garbage) / sizeof(garbage[0]); i++) {
		int rc = decode_all(garbage[i], strlen(garbage[i]), 3, types, sizeof(types), &n);
		CHECK(rc == MV_EPROTO || rc == MV_ESYNTAX);
		if (!(rc == MV_EPROTO || rc == MV_ESYNTAX))
			fprintf(stderr, "  input %zu gave %d\n", i, rc);
	}
}

static void test_watch_event_cap(void)
{
	struct kube_watch_decoder d;
	kube_watch_decoder_init(&d, 64);
	char big[256];
	memset(big, ' ', sizeof(big));
	const char *head = "{\"type\":\"ADDED\",\"object\":{\"a\":\"";
	memcpy(big, head, strlen(head));
	int rc = kube_watch_decoder_feed(&d, big, 60);
	struct kube_event ev;
	CHECK_INT_EQ(kube_watch_decoder_next(&d, &ev), 0);
	rc = kube_watch_decoder_feed(&d, big + 60, 60);
	if (rc == 0)
		rc = kube_watch_decoder_next(&d, &ev);
	CHECK_INT_EQ(rc, MV_ETOOBIG);
	kube_watch_decoder_release(&d);
	/* Deep nesting is capped too. */
	kube_watch_decoder_init(&d, 0);
	char deep[2000];
	memset(deep, '[', sizeof(deep));
	deep[0] = '{';
	CHECK_INT_EQ(kube_watch_decoder_feed(&d, deep, sizeof(deep)), 0);
	CHECK_INT_EQ(kube_watch_decoder_next(&d, &ev), MV_ETOOBIG);
	kube_watch_decoder_release(&d);
}

static void test_status_errors(void)
{
	struct kube_error e;
	size_t len;
	char *b = fixture_bytes("status_404.json", &len);
	kube_error_from_body(&e, 404, b, len);
	CHECK_INT_EQ(e.http, 404);
	CHECK_STR_EQ(e.reason, "NotFound");
	CHECK_STR_EQ(e.message, "deployments.apps \"web\" not found");
	free(b);
	b = fixture_bytes("status_409.json", &len);
	kube_error_from_body(&e, 409, b, len);
	CHECK_STR_EQ(e.reason, "Conflict");
	CHECK(strstr(e.message, "the object has been modified") != NULL);
	free(b);
	/* Not a Status: reason from the code, first line of the body, printable only. */
	kube_error_from_body(&e, 502, "<html>bad\x01gateway\nmore", 24);
	CHECK_STR_EQ(e.reason, "InternalError");
	CHECK_STR_EQ(e.message, "<html>bad?gateway");
	kube_error_from_body(&e, 429, NULL, 0);
	CHECK_STR_EQ(e.reason, "TooManyRequests");
	CHECK(strstr(e.message, "429") != NULL);
	/* A watch ERROR event's object. */
	size_t wl;
	char *w = fixture_bytes("watch_expired.json", &wl);
	struct kube_watch_decoder d;
	kube_watch_decoder_init(&d, 0);
	CHECK_INT_EQ(kube_watch_decoder_feed(&d, w, wl), 0);
	struct kube_event ev;
	CHECK_INT_EQ(kube_watch_decoder_next(&d, &ev), 1);
	CHECK_INT_EQ(ev.type, KUBE_EVENT_ERROR);
	kube_error_from_status(&e, ev.object);
	CHECK_INT_EQ(e.http, 410);
	CHECK_STR_EQ(e.reason, "Expired");
	CHECK_STR_EQ(e.message, "too old resource version: 1000 (1200)");
	kube_event_release(&ev);
	kube_watch_decoder_release(&d);
	free(w);
}

static void test_selector_string(void)
{
	json_t *sel = json_loads("{\"matchLabels\":{\"tier\":\"be\",\"app\":\"web\"},"
	                         "\"matchExpressions\":[{\"key\":\"env\",\"operator\":\"In\","
	                         "\"values\":[\"prod\",\"canary\"]},{\"key\":\"x\",\"operator\":"
	                         "\"DoesNotExist\"},{\"key\":\"y\",\"operator\":\"Exists\"},"
	                         "{\"key\":\"z\",\"operator\":\"NotIn\",\"values\":[\"a\"]}]}",
	                         0, NULL);
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(kube_selector_string(sel, &b), 0);
	CHECK_STR_EQ(b.data, "app=web,tier=be,env in (canary,prod),!x,y,z notin (a)");
	json_decref(sel);
	sel = json_loads("{\"matchExpressions\":[{\"key\":\"a\",\"operator\":\"Gt\"}]}", 0, NULL);
	buf_reset(&b);
	CHECK_INT_EQ(kube_selector_string(sel, &b), MV_EINVAL);
	json_decref(sel);
	buf_release(&b);
	struct buf q;
	buf_init(&q, 0);
	CHECK_INT_EQ(kube_query_escape(&q, "app=web,x in (a b)"), 0);
	CHECK_STR_EQ(q.data, "app%3Dweb%2Cx%20in%20%28a%20b%29");
	buf_release(&q);
}

static void test_parse_time(void)
{
	time_t t;
	CHECK_INT_EQ(kube_parse_time("1970-01-01T00:00:00Z", &t), 0);
	CHECK_INT_EQ(t, 0);
	CHECK_INT_EQ(kube_parse_time("2030-01-01T00:00:00Z", &t), 0);
	CHECK_INT_EQ(t, 1893456000);
	CHECK_INT_EQ(kube_parse_time("2030-01-01T02:00:00.123+02:00", &t), 0);
	CHECK_INT_EQ(t, 1893456000);
	CHECK_INT_EQ(kube_parse_time("2030-01-01 00:00:00Z", &t), MV_EINVAL);
	CHECK_INT_EQ(kube_parse_time("2030-13-01T00:00:00Z", &t), MV_EINVAL);
	CHECK_INT_EQ(kube_parse_time("2030-01-01T00:00:00", &t), MV_EINVAL);
	CHECK_INT_EQ(kube_parse_time("2030-01-01T00:00:00Zjunk", &t), MV_EINVAL);
}

static void test_exec_credential(void)
{
	size_t len;
	char *b = fixture_bytes("exec_credential.json", &len);
	struct kube_exec_cred c;
	char err[256];
	CHECK_INT_EQ(
	    kube_exec_cred_parse(b, len, "client.authentication.k8s.io/v1", &c, err, sizeof(err)),
	    0);
	CHECK_STR_EQ(c.token, "plugin-token-1");
	CHECK_INT_EQ(c.expires, 1893456000);
	kube_exec_cred_release(&c);
	/* The wrong apiVersion is refused. */
	CHECK_INT_EQ(kube_exec_cred_parse(b, len, "client.authentication.k8s.io/v1beta1", &c, err,
	                                  sizeof(err)),
	             MV_EPROTO);
	free(b);
	const char *certs = "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
	                    "\"ExecCredential\",\"status\":{\"clientCertificateData\":\"-----BEGIN "
	                    "CERTIFICATE-----\\n\",\"clientKeyData\":\"-----BEGIN KEY-----\\n\"}}";
	CHECK_INT_EQ(kube_exec_cred_parse(certs, strlen(certs), NULL, &c, err, sizeof(err)), 0);
	CHECK(c.token == NULL);
	CHECK(c.cert_pem && strncmp(c.cert_pem, "-----BEGIN CERTIFICATE", 22) == 0);
	CHECK_INT_EQ(c.expires, 0);
	kube_exec_cred_release(&c);
	const char *bad[] = {
	    "not json",
	    "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\"}",
	    "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
	    "\"status\":{}}",
	    "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
	    "\"status\":{\"clientCertificateData\":\"x\"}}",
	    "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"ExecCredential\","
	    "\"status\":{\"token\":\"t\",\"expirationTimestamp\":\"tomorrow\"}}",
	    "{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":\"Pod\","
	    "\"status\":{\"token\":\"t\"}}",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = kube_exec_cred_parse(bad[i], strlen(bad[i]), NULL, &c, err, sizeof(err));
		CHECK(rc == MV_EPROTO || rc == MV_ESYNTAX);
		CHECK(c.token == NULL);
	}
}

int main(void)
{
	RUN(test_watch_recorded_stream_any_chunking);
	RUN(test_watch_objects_without_newlines_and_braces_in_strings);
	RUN(test_watch_truncated_and_bad_streams);
	RUN(test_watch_event_cap);
	RUN(test_status_errors);
	RUN(test_selector_string);
	RUN(test_parse_time);
	RUN(test_exec_credential);
	return TEST_SUMMARY();
}
