/*
 * test_trace.c - W3C Trace Context codec (traceparent, tracestate), spans and
 * the OTLP/JSON span encoder (parsed back with jansson), and the exporter's
 * bounds: a full queue drops and counts, a dead collector costs the stop at
 * most its bound.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <jansson.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/metrics.h"
#include "movie/trace.h"
#include "../testing.h"
#include "movie/banned.h"

static int parse(const char *s, struct trace_parent *p)
{
	return trace_parent_parse(s, strlen(s), p);
}

static void test_traceparent_valid(void)
{
	struct trace_parent p;
	CHECK_INT_EQ(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &p), 0);
	CHECK(p.trace_id[0] == 0x0a && p.trace_id[15] == 0x9c);
	CHECK(p.parent_id[0] == 0xb7 && p.parent_id[7] == 0x31);
	CHECK_INT_EQ(p.flags, 1);
	CHECK_INT_EQ(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", &p), 0);
	CHECK_INT_EQ(p.flags, 0);
	/* Unknown flag bits are accepted (and not propagated, see format). */
	CHECK_INT_EQ(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-ff", &p), 0);
	CHECK_INT_EQ(p.flags, 0xff);
	/* A future version: the 00 layout, longer only after a '-'. */
	CHECK_INT_EQ(parse("01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &p), 0);
	CHECK_INT_EQ(parse("cc-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-what-ever", &p),
	             0);
	CHECK_INT_EQ(p.flags, 1);
}

static void test_traceparent_invalid(void)
{
	static const char *const bad[] = {
	    "",
	    "00",
	    /* version ff is forbidden; uppercase hex anywhere */
	    "ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "0A-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-B7AD6B7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-0A",
	    /* all-zero ids */
	    "00-00000000000000000000000000000000-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-0000000000000000-01",
	    /* version 00 is exactly 55 bytes */
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-010",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-1",
	    /* a future version longer without '-' */
	    "01-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01x",
	    /* lengths and separators */
	    "00-0af7651916cd43dd8448eb211c80319-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319cc-b7ad6b716920333-01",
	    "00_0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c_b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331_01",
	    "00-0af7651916cd43dd8448eb211c80319g-b7ad6b7169203331-01",
	    " 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	    "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01 ",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct trace_parent p = {.flags = 7};
		int rc = parse(bad[i], &p);
		if (rc != MV_EINVAL)
			fprintf(stderr, "accepted: \"%s\"\n", bad[i]);
		CHECK_INT_EQ(rc, MV_EINVAL);
		CHECK_INT_EQ(p.flags, 7); /* untouched */
	}
	/* A NUL inside is a bad character, whatever follows. */
	char nul[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	nul[10] = '\0';
	struct trace_parent p;
	CHECK_INT_EQ(trace_parent_parse(nul, sizeof(nul) - 1, &p), MV_EINVAL);
	CHECK_INT_EQ(trace_parent_parse(NULL, 0, &p), MV_EINVAL);
}

static void test_traceparent_format(void)
{
	struct trace_parent p;
	const char *in = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
	CHECK_INT_EQ(parse(in, &p), 0);
	char out[TRACE_PARENT_LEN + 1];
	trace_parent_format(p.trace_id, p.parent_id, p.flags, out);
	CHECK_STR_EQ(out, in);
	/* Only the sampled bit goes out. */
	trace_parent_format(p.trace_id, p.parent_id, 0xfe, out);
	CHECK_STR_EQ(out, "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00");
	struct trace_parent back;
	CHECK_INT_EQ(parse(out, &back), 0);
	CHECK(memcmp(back.trace_id, p.trace_id, TRACE_ID_SIZE) == 0);
}

static int filter(const char *in, char *out)
{
	return trace_state_filter(in, strlen(in), out);
}

static void test_tracestate(void)
{
	char out[TRACE_STATE_MAX_BYTES + 1];
	CHECK_INT_EQ(filter("rojo=00f067aa0ba902b7", out), 21);
	CHECK_STR_EQ(out, "rojo=00f067aa0ba902b7");
	/* OWS and empty members go; order stays. */
	filter(" congo=t61rcWkgMzE ,, rojo=00f067aa0ba902b7\t,", out);
	CHECK_STR_EQ(out, "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7");
	CHECK_INT_EQ(filter("", out), 0);
	CHECK_STR_EQ(out, "");
	/* Multi-tenant keys, value characters. */
	CHECK(filter("fw529a3039@dt=a b~!", out) > 0);
	CHECK(filter("0tenant@sys=x", out) > 0);
	/* Malformed: the whole list goes. */
	static const char *const bad[] = {
	    "Rojo=1", "rojo",  "rojo=",  "=1",      "rojo=1,rojo=2",       "1abc=x", "a@=x", "@b=x",
	    "a@1b=x", "a=b=c", "a=x ,b", "a=x\x01", "a@bcdefghijklmnop=x",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int rc = filter(bad[i], out);
		if (rc != MV_EINVAL)
			fprintf(stderr, "accepted tracestate: \"%s\"\n", bad[i]);
		CHECK_INT_EQ(rc, MV_EINVAL);
		CHECK_STR_EQ(out, "");
	}
	/* 33 members: the right-most goes. */
	struct buf b;
	buf_init(&b, 0);
	for (int i = 0; i < 33; i++)
		buf_printf(&b, "%sk%d=v", i ? "," : "", i);
	CHECK(trace_state_filter(b.data, b.len, out) > 0);
	CHECK(strstr(out, "k31=v") != NULL);
	CHECK(strstr(out, "k32=v") == NULL);
	/* Over 512 bytes: members over 128 bytes go first, then the right-most. */
	buf_reset(&b);
	char longv[201];
	memset(longv, 'x', 200);
	longv[200] = '\0';
	buf_printf(&b, "a=1,big=%s,b=2", longv);
	for (int i = 0; i < 20; i++)
		buf_printf(&b, ",key%02d=%.10s", i, longv);
	CHECK(b.len > TRACE_STATE_MAX_BYTES);
	int n = trace_state_filter(b.data, b.len, out);
	CHECK(n > 0 && n <= TRACE_STATE_MAX_BYTES);
	CHECK(strstr(out, "big=") == NULL);
	CHECK(strncmp(out, "a=1,b=2,key00=", 14) == 0);
	CHECK_INT_EQ((int)strlen(out), n);
	buf_reset(&b);
	for (int i = 0; i < 3; i++)
		buf_printf(&b, "%sm%d=%s", i ? "," : "", i, longv);
	n = trace_state_filter(b.data, b.len, out);
	/* All long: the first goes, the other two fit (2 * 203 + 1). */
	CHECK_INT_EQ(n, 407);
	CHECK(strncmp(out, "m1=", 3) == 0);
	/* Raw input over the transport cap is discarded. */
	char *huge = malloc(TRACE_STATE_RAW_MAX + 2);
	memset(huge, ',', TRACE_STATE_RAW_MAX + 1);
	CHECK_INT_EQ(trace_state_filter(huge, TRACE_STATE_RAW_MAX + 1, out), MV_EINVAL);
	CHECK_INT_EQ(trace_state_filter(huge, TRACE_STATE_RAW_MAX, out), 0);
	free(huge);
	buf_release(&b);
}

static bool zero(const uint8_t *b, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (b[i])
			return false;
	return true;
}

static void test_spans(void)
{
	struct trace_parent p;
	CHECK_INT_EQ(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &p), 0);
	struct trace_span server, child, fresh, other;
	const char *ts = "rojo=00f067aa0ba902b7,BAD";
	trace_span_start_server(&server, &p, ts, strlen(ts));
	CHECK(server.valid);
	CHECK(memcmp(server.trace_id, p.trace_id, TRACE_ID_SIZE) == 0);
	CHECK(memcmp(server.parent_id, p.parent_id, TRACE_SPAN_ID_SIZE) == 0);
	CHECK(memcmp(server.span_id, p.parent_id, TRACE_SPAN_ID_SIZE) != 0);
	CHECK(!zero(server.span_id, TRACE_SPAN_ID_SIZE));
	CHECK(trace_span_sampled(&server)); /* the caller's flag */
	CHECK(server.tracestate == NULL);   /* malformed: dropped */
	trace_span_release(&server);
	ts = "rojo=00f067aa0ba902b7";
	trace_span_start_server(&server, &p, ts, strlen(ts));
	CHECK(server.tracestate && strcmp(server.tracestate, ts) == 0);
	trace_span_start_child(&child, &server);
	CHECK(memcmp(child.trace_id, p.trace_id, TRACE_ID_SIZE) == 0);
	CHECK(memcmp(child.parent_id, server.span_id, TRACE_SPAN_ID_SIZE) == 0);
	CHECK(memcmp(child.span_id, server.span_id, TRACE_SPAN_ID_SIZE) != 0);
	CHECK(child.tracestate && strcmp(child.tracestate, ts) == 0);
	CHECK(trace_span_sampled(&child));
	/* No parent: a new trace, not sampled without an exporter. */
	trace_span_start_server(&fresh, NULL, ts, strlen(ts));
	trace_span_start_server(&other, NULL, NULL, 0);
	CHECK(fresh.valid && !trace_span_sampled(&fresh));
	CHECK(fresh.tracestate == NULL); /* no parent: no tracestate */
	CHECK(zero(fresh.parent_id, TRACE_SPAN_ID_SIZE));
	CHECK(!zero(fresh.trace_id, TRACE_ID_SIZE));
	CHECK(memcmp(fresh.trace_id, other.trace_id, TRACE_ID_SIZE) != 0);
	CHECK(memcmp(fresh.trace_id, p.trace_id, TRACE_ID_SIZE) != 0);
	trace_span_release(&server);
	trace_span_release(&child);
	trace_span_release(&fresh);
	trace_span_release(&other);
}

static json_t *attr(json_t *attrs, const char *key)
{
	size_t i;
	json_t *a;
	json_array_foreach(attrs, i, a)
	{
		if (strcmp(json_string_value(json_object_get(a, "key")), key) == 0)
			return json_object_get(a, "value");
	}
	return NULL;
}

static void test_otlp_encode(void)
{
	struct trace_parent p;
	CHECK_INT_EQ(parse("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", &p), 0);
	struct trace_span sp;
	trace_span_start_server(&sp, &p, NULL, 0);
	struct trace_record r[2];
	trace_record_init(&r[0], &sp, TRACE_KIND_SERVER, 1700000000123456789LL,
	                  1700000000223456789LL);
	snprintf(r[0].name, sizeof(r[0].name), "MovieService/GetMovieDetails");
	snprintf(r[0].rpc_service, sizeof(r[0].rpc_service), "MovieService");
	snprintf(r[0].rpc_method, sizeof(r[0].rpc_method), "Get\"Movie\x01\xff");
	r[0].grpc_status = 5;
	r[0].error = true;
	struct trace_span root;
	trace_span_start_server(&root, NULL, NULL, 0);
	trace_record_init(&r[1], &root, TRACE_KIND_CLIENT, 10, 5);
	snprintf(r[1].name, sizeof(r[1].name), "GET /movie");
	snprintf(r[1].http_method, sizeof(r[1].http_method), "GET");
	snprintf(r[1].http_route, sizeof(r[1].http_route), "/movie");
	r[1].http_status = 200;
	snprintf(r[1].peer, sizeof(r[1].peer), "metadata");
	struct buf b;
	buf_init(&b, 0);
	CHECK_INT_EQ(trace_otlp_encode(r, 2, "movie", "1.2", &b), 0);
	json_error_t err;
	json_t *doc = json_loadb(b.data, b.len, 0, &err);
	CHECK(doc != NULL);
	if (!doc) {
		fprintf(stderr, "%s\n%.*s\n", err.text, (int)b.len, b.data);
		return;
	}
	json_t *rs = json_array_get(json_object_get(doc, "resourceSpans"), 0);
	json_t *res_attrs = json_object_get(json_object_get(rs, "resource"), "attributes");
	CHECK_STR_EQ(
	    json_string_value(json_object_get(attr(res_attrs, "service.name"), "stringValue")),
	    "movie");
	CHECK_STR_EQ(
	    json_string_value(json_object_get(attr(res_attrs, "service.version"), "stringValue")),
	    "1.2");
	json_t *spans =
	    json_object_get(json_array_get(json_object_get(rs, "scopeSpans"), 0), "spans");
	CHECK_INT_EQ((int)json_array_size(spans), 2);
	json_t *s0 = json_array_get(spans, 0), *s1 = json_array_get(spans, 1);
	char hex[33];
	trace_hex(sp.trace_id, TRACE_ID_SIZE, hex);
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "traceId")),
	             "0af7651916cd43dd8448eb211c80319c");
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "parentSpanId")), "b7ad6b7169203331");
	trace_hex(sp.span_id, TRACE_SPAN_ID_SIZE, hex);
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "spanId")), hex);
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "name")),
	             "MovieService/GetMovieDetails");
	CHECK_INT_EQ((int)json_integer_value(json_object_get(s0, "kind")), 2);
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "startTimeUnixNano")),
	             "1700000000123456789");
	CHECK_STR_EQ(json_string_value(json_object_get(s0, "endTimeUnixNano")),
	             "1700000000223456789");
	json_t *a0 = json_object_get(s0, "attributes");
	CHECK_STR_EQ(json_string_value(json_object_get(attr(a0, "rpc.system"), "stringValue")),
	             "grpc");
	CHECK_STR_EQ(json_string_value(json_object_get(attr(a0, "rpc.method"), "stringValue")),
	             "Get\"Movie??");
	CHECK_STR_EQ(
	    json_string_value(json_object_get(attr(a0, "rpc.grpc.status_code"), "intValue")), "5");
	CHECK(attr(a0, "http.response.status_code") == NULL);
	CHECK_INT_EQ(
	    (int)json_integer_value(json_object_get(json_object_get(s0, "status"), "code")), 2);
	/* A root span has no parentSpanId; end never before start. */
	CHECK(json_object_get(s1, "parentSpanId") == NULL);
	CHECK_INT_EQ((int)json_integer_value(json_object_get(s1, "kind")), 3);
	CHECK_STR_EQ(json_string_value(json_object_get(s1, "endTimeUnixNano")), "10");
	json_t *a1 = json_object_get(s1, "attributes");
	CHECK_STR_EQ(
	    json_string_value(json_object_get(attr(a1, "http.response.status_code"), "intValue")),
	    "200");
	CHECK_STR_EQ(json_string_value(json_object_get(attr(a1, "server.address"), "stringValue")),
	             "metadata");
	CHECK(attr(a1, "rpc.system") == NULL);
	json_decref(doc);
	/* A buffer limit is an error, never a truncated body. */
	struct buf small;
	buf_init(&small, 64);
	CHECK_INT_EQ(trace_otlp_encode(r, 2, "movie", NULL, &small), MV_ETOOBIG);
	buf_release(&small);
	buf_release(&b);
	trace_span_release(&sp);
	trace_span_release(&root);
}

static int64_t mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* The counter's value in a rendering ("name{labels} value"), -1 if absent. */
static double counter(struct metrics_registry *reg, const char *series)
{
	struct buf b;
	buf_init(&b, 0);
	metrics_render(reg, &b);
	double v = -1;
	size_t n = strlen(series);
	for (const char *p = b.data; p && (p = strstr(p, series)) != NULL; p += n) {
		if ((p == b.data || p[-1] == '\n') && p[n] == ' ') {
			v = strtod(p + n + 1, NULL);
			break;
		}
	}
	buf_release(&b);
	return v;
}

/* A collector that accepts connections (the kernel's backlog) and never
 * answers: each export POST hangs until its timeout. */
static int black_hole(int *port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		return -1;
	*port = ntohs(a.sin_port);
	return fd;
}

/* Spans submitted while the exporter hangs on a black-hole collector: the
 * queue (8) holds what it can, the rest is dropped and counted, never
 * waited for; every span ends in exactly one counter; stop ends within its
 * bound plus one request timeout. No timing assertion but a generous bound
 * on stop (it must not hang). */
static void test_exporter_bounds(void)
{
	int port = 0;
	int hole = black_hole(&port);
	CHECK(hole >= 0);
	char endpoint[64];
	snprintf(endpoint, sizeof(endpoint), "http://127.0.0.1:%d/", port);
	struct metrics_registry *reg = metrics_registry_new();
	struct trace_export_config cfg = {
	    .endpoint = endpoint,
	    .service = "test",
	    .sample_ratio = 1.0,
	    .batch_size = 4,
	    .interval_ms = 10,
	    .queue_size = 8,
	    .timeout_ms = 1000,
	    .metrics = reg,
	};
	CHECK_INT_EQ(trace_export_start(&cfg), 0);
	CHECK_INT_EQ(trace_export_start(&cfg), MV_EEXIST);
	CHECK(trace_export_enabled());
	struct trace_span sp;
	trace_span_start_server(&sp, NULL, NULL, 0);
	CHECK(trace_span_sampled(&sp)); /* ratio 1 with an exporter */
	struct trace_record r;
	trace_record_init(&r, &sp, TRACE_KIND_SERVER, 1, 2);
	enum {
		N = 20000
	};
	for (int i = 0; i < N; i++)
		trace_export_submit(&r);
	CHECK(counter(reg, "trace_spans_dropped_total{reason=\"queue_full\"}") > 0);
	int64_t t0 = mono_ms();
	trace_export_stop(500);
	CHECK(mono_ms() - t0 < 10000);
	CHECK(!trace_export_enabled());
	double exported = counter(reg, "trace_spans_exported_total");
	double full = counter(reg, "trace_spans_dropped_total{reason=\"queue_full\"}");
	double failed = counter(reg, "trace_spans_dropped_total{reason=\"export_failed\"}");
	double shutdown = counter(reg, "trace_spans_dropped_total{reason=\"shutdown\"}");
	CHECK(exported == 0);
	CHECK(failed >= 4); /* at least the first batch timed out */
	CHECK(counter(reg, "trace_export_failures_total") >= 1);
	CHECK(exported + full + failed + shutdown == N);
	/* Without an exporter: new traces unsampled, submit a no-op. */
	struct trace_span after;
	trace_span_start_server(&after, NULL, NULL, 0);
	CHECK(!trace_span_sampled(&after));
	trace_export_submit(&r);
	CHECK(counter(reg, "trace_spans_dropped_total{reason=\"queue_full\"}") == full);
	cfg.endpoint = "";
	CHECK_INT_EQ(trace_export_start(&cfg), MV_EINVAL);
	metrics_registry_free(reg);
	trace_span_release(&sp);
	trace_span_release(&after);
	close(hole);
}

int main(void)
{
	RUN(test_traceparent_valid);
	RUN(test_traceparent_invalid);
	RUN(test_traceparent_format);
	RUN(test_tracestate);
	RUN(test_spans);
	RUN(test_otlp_encode);
	RUN(test_exporter_bounds);
	return TEST_SUMMARY();
}
