/*
 * test_metrics.c - the Prometheus registry: exact values after concurrent
 * updates, exact exposition text, escaping, and promtool's verdict on a
 * registry holding every metric type plus the process collectors.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/metrics.h"
#include "../testing.h"
#include "movie/banned.h"

#ifndef MOVIE_PROMTOOL
#define MOVIE_PROMTOOL "promtool"
#endif

static const char *const method_code[] = {"method", "code"};
static const char *const method[] = {"method"};

static char *render(struct metrics_registry *reg)
{
	struct buf b;
	buf_init(&b, 0);
	if (metrics_render(reg, &b) != 0) {
		buf_release(&b);
		return NULL;
	}
	return b.data ? b.data : strdup("");
}

/* ---- concurrent updates ---- */

#define THREADS    4
#define ITERATIONS 200000

struct shared {
	struct metrics_family *requests;
	struct metrics_counter *bytes;
	struct metrics_gauge *in_flight;
	struct metrics_gauge *level;
	struct metrics_histogram *latency;
	struct metrics_histogram *size;
	struct metrics_counter *resolved[THREADS];
};

struct worker {
	struct shared *s;
	int id;
};

static void *worker_main(void *p)
{
	struct worker *w = p;
	struct shared *s = w->s;
	/* Every thread resolves the same child concurrently: one child results. */
	const char *values[] = {"/M/Get", "OK"};
	struct metrics_counter *ok = metrics_counter_get(s->requests, values);
	s->resolved[w->id] = ok;
	for (int i = 0; i < ITERATIONS; i++) {
		metrics_counter_inc(ok);
		metrics_counter_add(s->bytes, 3);
		metrics_gauge_add(s->in_flight, 1.0);
		metrics_gauge_add(s->level, i % 2 ? 0.5 : -0.25);
		/* 0, 1, 2 or 3 ms: ns sums are exact integers. */
		metrics_histogram_observe(s->latency, (double)(i % 4) * 0.001);
		metrics_histogram_observe(s->size, i % 2 ? 1.5 : 0.5);
	}
	return NULL;
}

static void test_concurrent_updates(void)
{
	static const double ms_bounds[] = {0.0005, 0.0015, 0.0025};
	static const double size_bounds[] = {1};
	struct metrics_registry *reg = metrics_registry_new();
	struct shared s = {0};
	struct worker w[THREADS];
	pthread_t th[THREADS];
	int started = 0;
	CHECK(reg != NULL);
	if (!reg)
		return;
	s.requests = metrics_counter_family(reg, "rpc_requests_total", "Requests.", 2, method_code);
	s.bytes = metrics_counter_get(
	    metrics_counter_family(reg, "rx_bytes_total", "Bytes.", 0, NULL), NULL);
	s.in_flight =
	    metrics_gauge_get(metrics_gauge_family(reg, "in_flight", "In flight.", 0, NULL), NULL);
	s.level =
	    metrics_gauge_get(metrics_gauge_family(reg, "level_ratio", "Level.", 0, NULL), NULL);
	s.latency = metrics_histogram_get(
	    metrics_histogram_family(reg, "rpc_latency_seconds", "Latency.", ms_bounds, 3, 0, NULL),
	    NULL);
	s.size = metrics_histogram_get(
	    metrics_histogram_family(reg, "msg_size_units", "Size.", size_bounds, 1, 0, NULL),
	    NULL);
	CHECK(s.requests && s.bytes && s.in_flight && s.level && s.latency && s.size);
	for (int i = 0; i < THREADS; i++) {
		w[i].s = &s;
		w[i].id = i;
		if (pthread_create(&th[i], NULL, worker_main, &w[i]) != 0)
			break;
		started++;
	}
	CHECK_INT_EQ(started, THREADS);
	for (int i = 0; i < started; i++)
		pthread_join(th[i], NULL);

	const uint64_t n = (uint64_t)started * ITERATIONS;
	for (int i = 1; i < started; i++)
		CHECK(s.resolved[i] == s.resolved[0]);
	CHECK(metrics_counter_value(s.resolved[0]) == n);
	CHECK(metrics_counter_value(s.bytes) == 3 * n);
	CHECK(metrics_gauge_value(s.in_flight) == (double)n);
	CHECK(metrics_gauge_value(s.level) == (double)n / 2 * 0.25);
	CHECK(metrics_histogram_count(s.latency) == n);
	CHECK(metrics_histogram_bucket(s.latency, 0) == n / 4);
	CHECK(metrics_histogram_bucket(s.latency, 1) == n / 2);
	CHECK(metrics_histogram_bucket(s.latency, 2) == 3 * n / 4);
	CHECK(metrics_histogram_bucket(s.latency, 3) == n);
	CHECK(metrics_histogram_sum(s.latency) == (double)(n / 4 * 6000000) / 1e9);
	CHECK(metrics_histogram_count(s.size) == n);
	CHECK(metrics_histogram_bucket(s.size, 0) == n / 2);
	CHECK(metrics_histogram_sum(s.size) == (double)n);

	/* The exposition carries the same exact numbers (sum 1200 s = 800000 * 1.5 ms). */
	char *text = render(reg);
	CHECK(text != NULL);
	if (text) {
		CHECK(strstr(text, "rpc_requests_total{method=\"/M/Get\",code=\"OK\"} 800000\n"));
		CHECK(strstr(text, "rx_bytes_total 2400000\n"));
		CHECK(strstr(text, "in_flight 800000\n"));
		CHECK(strstr(text, "level_ratio 100000\n"));
		CHECK(strstr(text, "rpc_latency_seconds_bucket{le=\"0.0015\"} 400000\n"));
		CHECK(strstr(text, "rpc_latency_seconds_bucket{le=\"+Inf\"} 800000\n"));
		CHECK(strstr(text, "rpc_latency_seconds_sum 1200\n"));
		CHECK(strstr(text, "rpc_latency_seconds_count 800000\n"));
		CHECK(strstr(text, "msg_size_units_sum 800000\n"));
	}
	free(text);
	metrics_registry_free(reg);
}

/* ---- exact exposition ---- */

static double seven(void *arg)
{
	return *(const double *)arg;
}

static void test_render_exact(void)
{
	static const double bounds[] = {0.1, 1};
	static const double size_bounds[] = {100, 1000};
	static double seven_value = 7;
	struct metrics_registry *reg = metrics_registry_new();
	CHECK(reg != NULL);
	if (!reg)
		return;
	struct metrics_family *req =
	    metrics_counter_family(reg, "http_requests_total", "Requests served.", 2, method_code);
	const char *get_ok[] = {"GET", "200"};
	const char *post_err[] = {"POST", "500"};
	metrics_counter_add(metrics_counter_get(req, get_ok), 41);
	metrics_counter_inc(metrics_counter_get(req, get_ok));
	metrics_counter_inc(metrics_counter_get(req, post_err));
	struct metrics_family *temp =
	    metrics_gauge_family(reg, "temperature_celsius", "Temperature.", 0, NULL);
	metrics_gauge_set(metrics_gauge_get(temp, NULL), -1.5);
	struct metrics_family *nums =
	    metrics_gauge_family(reg, "format_check", "Doubles.", 1, (const char *const[]){"v"});
	const struct {
		const char *label;
		double v;
	} cases[] = {
	    {"tenth", 0.1},    {"third", 1.0 / 3.0}, {"big", 1e20},        {"int", 123456789},
	    {"negzero", -0.0}, {"tiny", 5e-324},     {"sum17", 0.1 + 0.2}, {"nan", NAN},
	    {"inf", INFINITY}, {"ninf", -INFINITY},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		metrics_gauge_set(metrics_gauge_get(nums, &cases[i].label), cases[i].v);
	struct metrics_family *lat = metrics_histogram_family(reg, "rpc_duration_seconds",
	                                                      "RPC latency.", bounds, 2, 1, method);
	struct metrics_histogram *h = metrics_histogram_get(lat, (const char *const[]){"Get"});
	metrics_histogram_observe(h, 0.05);
	metrics_histogram_observe(h, 0.1);
	metrics_histogram_observe(h, 0.5);
	metrics_histogram_observe(h, 3.000000001);
	metrics_histogram_observe(h, NAN); /* dropped */
	struct metrics_family *sz =
	    metrics_histogram_family(reg, "response_size_bytes", "Sizes.", size_bounds, 2, 0, NULL);
	metrics_histogram_observe(metrics_histogram_get(sz, NULL), 50);
	metrics_histogram_observe(metrics_histogram_get(sz, NULL), 2000.5);
	CHECK_INT_EQ(
	    metrics_gauge_callback(reg, "queue_depth", "Queue depth.", seven, &seven_value), 0);
	metrics_counter_family(reg, "idle_total", "Never used.", 1, method);

	const char *want = "# HELP http_requests_total Requests served.\n"
	                   "# TYPE http_requests_total counter\n"
	                   "http_requests_total{method=\"GET\",code=\"200\"} 42\n"
	                   "http_requests_total{method=\"POST\",code=\"500\"} 1\n"
	                   "# HELP temperature_celsius Temperature.\n"
	                   "# TYPE temperature_celsius gauge\n"
	                   "temperature_celsius -1.5\n"
	                   "# HELP format_check Doubles.\n"
	                   "# TYPE format_check gauge\n"
	                   "format_check{v=\"tenth\"} 0.1\n"
	                   "format_check{v=\"third\"} 0.3333333333333333\n"
	                   "format_check{v=\"big\"} 1e+20\n"
	                   "format_check{v=\"int\"} 123456789\n"
	                   "format_check{v=\"negzero\"} -0\n"
	                   "format_check{v=\"tiny\"} 4.94065645841247e-324\n"
	                   "format_check{v=\"sum17\"} 0.30000000000000004\n"
	                   "format_check{v=\"nan\"} NaN\n"
	                   "format_check{v=\"inf\"} +Inf\n"
	                   "format_check{v=\"ninf\"} -Inf\n"
	                   "# HELP rpc_duration_seconds RPC latency.\n"
	                   "# TYPE rpc_duration_seconds histogram\n"
	                   "rpc_duration_seconds_bucket{method=\"Get\",le=\"0.1\"} 2\n"
	                   "rpc_duration_seconds_bucket{method=\"Get\",le=\"1\"} 3\n"
	                   "rpc_duration_seconds_bucket{method=\"Get\",le=\"+Inf\"} 4\n"
	                   "rpc_duration_seconds_sum{method=\"Get\"} 3.650000001\n"
	                   "rpc_duration_seconds_count{method=\"Get\"} 4\n"
	                   "# HELP response_size_bytes Sizes.\n"
	                   "# TYPE response_size_bytes histogram\n"
	                   "response_size_bytes_bucket{le=\"100\"} 1\n"
	                   "response_size_bytes_bucket{le=\"1000\"} 1\n"
	                   "response_size_bytes_bucket{le=\"+Inf\"} 2\n"
	                   "response_size_bytes_sum 2050.5\n"
	                   "response_size_bytes_count 2\n"
	                   "# HELP queue_depth Queue depth.\n"
	                   "# TYPE queue_depth gauge\n"
	                   "queue_depth 7\n"
	                   "# HELP idle_total Never used.\n"
	                   "# TYPE idle_total counter\n";
	char *text = render(reg);
	CHECK_STR_EQ(text, want);
	free(text);

	/* A failed render leaves the buffer as it was. */
	struct buf small;
	buf_init(&small, 64);
	CHECK_INT_EQ(buf_append_str(&small, "keep"), 0);
	CHECK_INT_EQ(metrics_render(reg, &small), MV_ETOOBIG);
	CHECK_STR_EQ(small.data, "keep");
	buf_release(&small);
	metrics_registry_free(reg);
}

static void test_escaping(void)
{
	struct metrics_registry *reg = metrics_registry_new();
	CHECK(reg != NULL);
	if (!reg)
		return;
	struct metrics_family *f = metrics_counter_family(
	    reg, "escaped_total", "Help with \\ backslash\nand \"quotes\".", 1, method);
	const char *v[] = {"a\\b\"c\nd"};
	metrics_counter_inc(metrics_counter_get(f, v));
	const char *empty[] = {NULL};
	metrics_counter_inc(metrics_counter_get(f, empty));
	char *text = render(reg);
	CHECK_STR_EQ(text, "# HELP escaped_total Help with \\\\ backslash\\nand \"quotes\".\n"
	                   "# TYPE escaped_total counter\n"
	                   "escaped_total{method=\"a\\\\b\\\"c\\nd\"} 1\n"
	                   "escaped_total{method=\"\"} 1\n");
	free(text);
	metrics_registry_free(reg);
}

static double zero(void *arg)
{
	return 0;
}

static void test_registration_rules(void)
{
	static const double bounds[] = {1, 2};
	static const double bad_bounds[] = {2, 1};
	struct metrics_registry *reg = metrics_registry_new();
	CHECK(reg != NULL);
	if (!reg)
		return;
	struct metrics_family *a = metrics_counter_family(reg, "a_total", "A.", 1, method);
	CHECK(a != NULL);
	CHECK(metrics_counter_family(reg, "a_total", "A again.", 1, method) == a);
	CHECK(metrics_counter_family(reg, "a_total", "A.", 2, method_code) == NULL);
	CHECK(metrics_counter_family(reg, "a_total", "A.", 1, (const char *const[]){"code"}) ==
	      NULL);
	CHECK(metrics_gauge_family(reg, "a_total", "A.", 1, method) == NULL);
	CHECK(metrics_counter_family(reg, "1bad", "x", 0, NULL) == NULL);
	CHECK(metrics_counter_family(reg, "bad-name", "x", 0, NULL) == NULL);
	CHECK(metrics_counter_family(reg, "", "x", 0, NULL) == NULL);
	CHECK(metrics_counter_family(reg, NULL, "x", 0, NULL) == NULL);
	CHECK(metrics_counter_family(reg, "l_total", "x", 1, (const char *const[]){"__x"}) == NULL);
	CHECK(metrics_counter_family(reg, "l_total", "x", 1, (const char *const[]){"a-b"}) == NULL);
	CHECK(metrics_counter_family(reg, "l_total", "x", 2, (const char *const[]){"a", "a"}) ==
	      NULL);
	CHECK(metrics_counter_family(reg, "l_total", "x", METRICS_MAX_LABELS + 1,
	                             (const char *const[]){"a", "b", "c", "d", "e"}) == NULL);
	CHECK(metrics_histogram_family(reg, "h_seconds", "x", bounds, 2, 1,
	                               (const char *const[]){"le"}) == NULL);
	CHECK(metrics_histogram_family(reg, "h_seconds", "x", bad_bounds, 2, 0, NULL) == NULL);
	CHECK(metrics_histogram_family(reg, "h_seconds", "x", bounds, 0, 0, NULL) == NULL);
	struct metrics_family *h =
	    metrics_histogram_family(reg, "h_seconds", "x", bounds, 2, 0, NULL);
	CHECK(h != NULL);
	CHECK(metrics_histogram_family(reg, "h_seconds", "x", bounds, 2, 0, NULL) == h);
	CHECK(metrics_histogram_family(reg, "h_seconds", "x", bad_bounds + 1, 1, 0, NULL) == NULL);

	/* Children: type checked, capped in size and number. */
	CHECK(metrics_gauge_get(a, (const char *const[]){"x"}) == NULL);
	CHECK(metrics_histogram_get(a, (const char *const[]){"x"}) == NULL);
	CHECK(metrics_counter_get(h, NULL) == NULL);
	CHECK(metrics_counter_get(NULL, NULL) == NULL);
	char long_value[METRICS_MAX_LABEL_VALUE + 2];
	memset(long_value, 'v', sizeof(long_value) - 1);
	long_value[sizeof(long_value) - 1] = '\0';
	CHECK(metrics_counter_get(a, (const char *const[]){long_value}) == NULL);
	long_value[METRICS_MAX_LABEL_VALUE] = '\0';
	CHECK(metrics_counter_get(a, (const char *const[]){long_value}) != NULL);
	int created = 1;
	for (int i = 0; i < METRICS_MAX_CHILDREN + 10; i++) {
		char v[16];
		snprintf(v, sizeof(v), "c%d", i);
		if (metrics_counter_get(a, (const char *const[]){v}))
			created++;
	}
	CHECK_INT_EQ(created, METRICS_MAX_CHILDREN);
	CHECK(metrics_counter_get(a, (const char *const[]){"c0"}) != NULL);

	/* Callbacks collide with every existing name. */
	CHECK_INT_EQ(metrics_gauge_callback(reg, "a_total", "x", zero, NULL), MV_EEXIST);
	CHECK_INT_EQ(metrics_gauge_callback(reg, "cb", "x", zero, NULL), 0);
	CHECK_INT_EQ(metrics_gauge_callback(reg, "cb", "x", zero, NULL), MV_EEXIST);
	CHECK_INT_EQ(metrics_counter_callback(reg, "cb2_total", "x", NULL, NULL), MV_EINVAL);
	CHECK_INT_EQ(metrics_gauge_callback(reg, "bad name", "x", zero, NULL), MV_EINVAL);
	CHECK(metrics_gauge_family(reg, "cb", "x", 0, NULL) == NULL);
	CHECK_INT_EQ(metrics_register_process(reg), 0);
	CHECK_INT_EQ(metrics_register_process(reg), MV_EEXIST);
	CHECK_INT_EQ(metrics_register_process(NULL), MV_EINVAL);
	CHECK_INT_EQ(metrics_render(NULL, NULL), MV_EINVAL);

	/* NULL children are ignored and read as 0. */
	metrics_counter_add(NULL, 1);
	metrics_gauge_set(NULL, 1);
	metrics_gauge_add(NULL, 1);
	metrics_histogram_observe(NULL, 1);
	CHECK(metrics_counter_value(NULL) == 0);
	CHECK(metrics_gauge_value(NULL) == 0);
	CHECK(metrics_histogram_count(NULL) == 0);
	metrics_registry_free(reg);
	metrics_registry_free(NULL);
}

/* ---- promtool ---- */

/* Run `promtool check metrics < path`; returns its exit status or -1. */
static int promtool_check(const char *path)
{
	char cmd[512];
	int n = snprintf(cmd, sizeof(cmd), "'%s' check metrics < '%s'", MOVIE_PROMTOOL, path);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	int status = system(cmd);
	if (status == -1 || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

static int write_temp(const char *text, char *path, size_t path_size)
{
	snprintf(path, path_size, "/tmp/movie-test-metrics-XXXXXX");
	int fd = mkstemp(path);
	if (fd < 0)
		return -1;
	size_t len = strlen(text), off = 0;
	while (off < len) {
		ssize_t w = write(fd, text + off, len - off);
		if (w <= 0)
			break;
		off += (size_t)w;
	}
	close(fd);
	return off == len ? 0 : -1;
}

/* The value of the sample line starting with `name ` (labels-free), or NaN. */
static double sample_value(const char *text, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
		if (strncmp(p, name, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
	}
	return NAN;
}

static void test_promtool_accepts_everything(void)
{
	char path[64];
	struct metrics_registry *reg = metrics_registry_new();
	CHECK(reg != NULL);
	if (!reg)
		return;
	CHECK(access(MOVIE_PROMTOOL, X_OK) == 0);
	struct metrics_family *req = metrics_counter_family(
	    reg, "grpc_server_handled_total", "RPCs completed on the server.", 2, method_code);
	metrics_counter_add(metrics_counter_get(req, (const char *const[]){"/M/Get", "OK"}), 5);
	metrics_counter_inc(
	    metrics_counter_get(req, (const char *const[]){"we\\ird\"\nvalue", "NOT_FOUND"}));
	struct metrics_family *inflight = metrics_gauge_family(
	    reg, "grpc_server_in_flight_requests", "RPCs in progress.", 0, NULL);
	metrics_gauge_set(metrics_gauge_get(inflight, NULL), 3);
	struct metrics_family *lat = metrics_histogram_family(
	    reg, "grpc_server_handling_seconds", "RPC latency in seconds.", metrics_latency_buckets,
	    metrics_latency_bucket_count, 1, method);
	struct metrics_histogram *h = metrics_histogram_get(lat, (const char *const[]){"/M/Get"});
	for (int i = 0; i < 100; i++)
		metrics_histogram_observe(h, 0.0001 * i);
	struct metrics_family *sz =
	    metrics_histogram_family(reg, "grpc_server_msg_size_bytes", "Message sizes in bytes.",
	                             (const double[]){64, 1024, 65536}, 3, 0, NULL);
	metrics_histogram_observe(metrics_histogram_get(sz, NULL), 100.25);
	CHECK_INT_EQ(
	    metrics_gauge_callback(reg, "kafka_consumer_lag_messages", "Consumer lag.", zero, NULL),
	    0);
	CHECK_INT_EQ(metrics_register_process(reg), 0);
	char *text = render(reg);
	CHECK(text != NULL);
	if (!text) {
		metrics_registry_free(reg);
		return;
	}
	CHECK_INT_EQ(write_temp(text, path, sizeof(path)), 0);
	int status = promtool_check(path);
	if (status != 0)
		fprintf(stderr, "promtool status %d on:\n%s", status, text);
	CHECK_INT_EQ(status, 0);
	unlink(path);

	/* The process collectors read real values. */
	struct rlimit rl;
	CHECK(getrlimit(RLIMIT_NOFILE, &rl) == 0);
	double now = (double)time(NULL);
	CHECK(sample_value(text, "process_cpu_seconds_total") >= 0);
	CHECK(sample_value(text, "process_resident_memory_bytes") > 1024 * 1024);
	CHECK(sample_value(text, "process_virtual_memory_bytes") >=
	      sample_value(text, "process_resident_memory_bytes"));
	CHECK(sample_value(text, "process_open_fds") >= 3);
	CHECK(sample_value(text, "process_max_fds") == (double)rl.rlim_cur);
	double start = sample_value(text, "process_start_time_seconds");
	CHECK(start <= now + 1 && start >= now - 120);
	free(text);

	/* The check has teeth: a counter without _total is a lint warning (3). */
	CHECK_INT_EQ(write_temp("# HELP bad_counter x\n# TYPE bad_counter counter\nbad_counter 1\n",
	                        path, sizeof(path)),
	             0);
	CHECK_INT_EQ(promtool_check(path), 3);
	unlink(path);
	metrics_registry_free(reg);
}

int main(void)
{
	RUN(test_concurrent_updates);
	RUN(test_render_exact);
	RUN(test_escaping);
	RUN(test_registration_rules);
	RUN(test_promtool_accepts_everything);
	return TEST_SUMMARY();
}
