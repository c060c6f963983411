/* The OTLP/HTTP JSON span exporter (see trace.h): a bounded queue filled by
 * any thread, drained by one exporter thread that POSTs batches with libcurl.
 * The event loops only copy a record under a mutex held for that copy; the
 * network (a dead, slow or refusing collector) is only ever waited for by the
 * exporter thread, with a timeout per request. */
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "movie/trace.h"
#include "trace_internal.h"

#include "movie/banned.h"

/* A collector that fails is reported at most this often. */
#define FAIL_LOG_INTERVAL_NS (30LL * 1000000000)
/* One request body at most (batch_size records are far smaller). */
#define BODY_LIMIT ((size_t)16 * 1024 * 1024)

/* libcurl, loaded when the exporter starts (dlopen), not linked: linking it
 * maps libcurl and its ~15 libraries (TLS, LDAP, SSH, Kerberos, ...) into
 * every service, +5.7 MB idle RSS (3.3 -> 9.0 MB for metadata), whether
 * tracing is on or not. The container images carry it (rootfs.sh). */
#define CURL_SONAME "libcurl.so.4"

struct curl_api {
	CURLcode (*global_init)(long flags);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	CURLcode (*easy_setopt)(CURL *curl, CURLoption option, ...);
	CURLcode (*easy_perform)(CURL *curl);
	CURLcode (*easy_getinfo)(CURL *curl, CURLINFO info, ...);
	void (*easy_cleanup)(CURL *curl);
	const char *(*easy_strerror)(CURLcode code);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
};

static struct curl_api cu;

/* Resolve libcurl once; the library stays loaded (libcurl keeps global state
 * that unloading would leave dangling). Returns 0 or MV_EINTERNAL. */
static int load_curl(void)
{
	if (cu.easy_init)
		return 0;
	void *h = dlopen(CURL_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		log_error("cannot load libcurl for span export", MV_LOG_S("library", CURL_SONAME),
		          MV_LOG_S("error", dlerror()));
		return MV_EINTERNAL;
	}
	struct curl_api a;
	/* POSIX: a dlsym result converts to a function pointer (via memcpy to
	 * keep -Wpedantic quiet). */
#define SYM(field, name)                               \
	do {                                           \
		void *p = dlsym(h, name);              \
		if (!p)                                \
			goto fail_symbol;              \
		memcpy(&a.field, &p, sizeof(a.field)); \
	} while (0)
	SYM(global_init, "curl_global_init");
	SYM(global_cleanup, "curl_global_cleanup");
	SYM(easy_init, "curl_easy_init");
	SYM(easy_setopt, "curl_easy_setopt");
	SYM(easy_perform, "curl_easy_perform");
	SYM(easy_getinfo, "curl_easy_getinfo");
	SYM(easy_cleanup, "curl_easy_cleanup");
	SYM(easy_strerror, "curl_easy_strerror");
	SYM(slist_append, "curl_slist_append");
	SYM(slist_free_all, "curl_slist_free_all");
#undef SYM
	cu = a;
	return 0;
fail_symbol:
	log_error("libcurl lacks a function span export needs", MV_LOG_S("library", CURL_SONAME));
	dlclose(h);
	return MV_EINTERNAL;
}

struct exporter {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct trace_record *ring;
	size_t cap, head, count;
	bool stopping;
	int64_t stop_deadline_ns; /* CLOCK_MONOTONIC */
	pthread_t thread;
	char *url, *service, *version;
	size_t batch_size;
	int64_t interval_ms, timeout_ms;
	struct metrics_counter *exported, *dropped_full, *dropped_failed, *dropped_shutdown;
	struct metrics_counter *requests_failed;
};

static struct exporter ex = {.mu = PTHREAD_MUTEX_INITIALIZER};
static atomic_bool ex_running;
static _Atomic double ex_ratio;

double trace_internal_sample_ratio(void)
{
	return atomic_load_explicit(&ex_ratio, memory_order_relaxed);
}

bool trace_export_enabled(void)
{
	return atomic_load_explicit(&ex_running, memory_order_relaxed);
}

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct timespec mono_abs(int64_t ns)
{
	return (struct timespec){.tv_sec = ns / 1000000000, .tv_nsec = ns % 1000000000};
}

void trace_export_submit(const struct trace_record *r)
{
	if (!trace_export_enabled())
		return;
	bool dropped = false, wake = false;
	pthread_mutex_lock(&ex.mu);
	if (ex.stopping || ex.count == ex.cap) {
		dropped = true;
	} else {
		ex.ring[(ex.head + ex.count) % ex.cap] = *r;
		ex.count++;
		wake = ex.count == ex.batch_size;
	}
	pthread_mutex_unlock(&ex.mu);
	if (dropped)
		metrics_counter_inc(ex.dropped_full);
	if (wake)
		pthread_cond_signal(&ex.cond);
}

static size_t discard_body(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	return size * nmemb;
}

/* POST one body; true on a 2xx answer. */
static bool post(CURL *curl, struct curl_slist *headers, const struct buf *body, int64_t timeout_ms)
{
	cu.easy_setopt(curl, CURLOPT_URL, ex.url);
	cu.easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	cu.easy_setopt(curl, CURLOPT_POSTFIELDS, body->data);
	cu.easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body->len);
	cu.easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(timeout_ms > 0 ? timeout_ms : 1));
	cu.easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	cu.easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard_body);
	/* Only the configured collector: no redirects elsewhere. */
	cu.easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	CURLcode rc = cu.easy_perform(curl);
	long code = 0;
	if (rc == CURLE_OK)
		cu.easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &code);
	if (rc == CURLE_OK && code >= 200 && code < 300)
		return true;
	static int64_t last_log_ns;
	int64_t now = mono_ns();
	if (!last_log_ns || now - last_log_ns >= FAIL_LOG_INTERVAL_NS) {
		last_log_ns = now;
		log_warn("span export failed", MV_LOG_S("endpoint", ex.url),
		         MV_LOG_S("error", rc == CURLE_OK ? "HTTP status" : cu.easy_strerror(rc)),
		         MV_LOG_I("status", code));
	}
	return false;
}

static void *export_main(void *arg)
{
	CURL *curl = cu.easy_init();
	struct curl_slist *headers = cu.slist_append(NULL, "Content-Type: application/json");
	struct trace_record *batch = malloc(ex.batch_size * sizeof(*batch));
	struct buf body;
	buf_init(&body, BODY_LIMIT);
	pthread_mutex_lock(&ex.mu);
	int64_t next_flush = mono_ns() + ex.interval_ms * 1000000;
	for (;;) {
		while (!ex.stopping && ex.count < ex.batch_size) {
			struct timespec until = mono_abs(next_flush);
			if (pthread_cond_timedwait(&ex.cond, &ex.mu, &until) != 0 &&
			    mono_ns() >= next_flush)
				break;
		}
		if (ex.stopping && (ex.count == 0 || mono_ns() >= ex.stop_deadline_ns))
			break;
		size_t n = ex.count < ex.batch_size ? ex.count : ex.batch_size;
		for (size_t i = 0; i < n; i++)
			batch[i] = ex.ring[(ex.head + i) % ex.cap];
		ex.head = (ex.head + n) % ex.cap;
		ex.count -= n;
		bool stopping = ex.stopping;
		int64_t deadline = ex.stop_deadline_ns;
		pthread_mutex_unlock(&ex.mu);
		if (n && curl && headers && batch) {
			int64_t timeout = ex.timeout_ms;
			if (stopping) {
				int64_t left = (deadline - mono_ns()) / 1000000;
				timeout = left < timeout ? left : timeout;
			}
			buf_reset(&body);
			bool ok = trace_otlp_encode(batch, n, ex.service, ex.version, &body) == 0 &&
			          post(curl, headers, &body, timeout);
			if (ok) {
				metrics_counter_add(ex.exported, n);
			} else {
				metrics_counter_add(ex.dropped_failed, n);
				metrics_counter_inc(ex.requests_failed);
			}
		} else if (n) {
			metrics_counter_add(ex.dropped_failed, n);
		}
		pthread_mutex_lock(&ex.mu);
		next_flush = mono_ns() + ex.interval_ms * 1000000;
	}
	metrics_counter_add(ex.dropped_shutdown, ex.count);
	ex.count = 0;
	pthread_mutex_unlock(&ex.mu);
	buf_release(&body);
	free(batch);
	cu.slist_free_all(headers);
	cu.easy_cleanup(curl);
	return NULL;
}

static struct metrics_counter *dropped_counter(struct metrics_family *fam, const char *reason)
{
	const char *v[1] = {reason};
	return fam ? metrics_counter_get(fam, v) : NULL;
}

static void release_strings(void)
{
	free(ex.url);
	free(ex.service);
	free(ex.version);
	free(ex.ring);
	ex.url = ex.service = ex.version = NULL;
	ex.ring = NULL;
}

int trace_export_start(const struct trace_export_config *cfg)
{
	if (trace_export_enabled())
		return MV_EEXIST;
	if (!cfg->endpoint || !*cfg->endpoint || cfg->batch_size == 0 || cfg->queue_size == 0 ||
	    cfg->interval_ms <= 0 || cfg->timeout_ms <= 0)
		return MV_EINVAL;
	size_t elen = strlen(cfg->endpoint);
	while (elen && cfg->endpoint[elen - 1] == '/')
		elen--;
	static const char suffix[] = "/v1/traces";
	ex.url = malloc(elen + sizeof(suffix));
	ex.service = strdup(cfg->service ? cfg->service : "unknown");
	ex.version = cfg->version ? strdup(cfg->version) : NULL;
	ex.ring = calloc(cfg->queue_size, sizeof(*ex.ring));
	if (!ex.url || !ex.service || (cfg->version && !ex.version) || !ex.ring) {
		release_strings();
		return MV_ENOMEM;
	}
	memcpy(ex.url, cfg->endpoint, elen);
	memcpy(ex.url + elen, suffix, sizeof(suffix));
	ex.cap = cfg->queue_size;
	ex.head = ex.count = 0;
	ex.batch_size = cfg->batch_size < cfg->queue_size ? cfg->batch_size : cfg->queue_size;
	ex.interval_ms = cfg->interval_ms;
	ex.timeout_ms = cfg->timeout_ms;
	ex.stopping = false;
	if (cfg->metrics) {
		struct metrics_family *exported = metrics_counter_family(
		    cfg->metrics, "trace_spans_exported_total",
		    "Spans accepted by the OTLP collector (tracing.otlp_endpoint).", 0, NULL);
		static const char *const reason[] = {"reason"};
		struct metrics_family *dropped = metrics_counter_family(
		    cfg->metrics, "trace_spans_dropped_total",
		    "Sampled spans not exported: queue_full (tracing.queue_size), export_failed "
		    "(collector error or timeout), shutdown (still queued at the end of the "
		    "drain).",
		    1, reason);
		struct metrics_family *failed = metrics_counter_family(
		    cfg->metrics, "trace_export_failures_total",
		    "OTLP export requests that failed (connection, timeout, non-2xx).", 0, NULL);
		ex.exported = exported ? metrics_counter_get(exported, NULL) : NULL;
		ex.dropped_full = dropped_counter(dropped, "queue_full");
		ex.dropped_failed = dropped_counter(dropped, "export_failed");
		ex.dropped_shutdown = dropped_counter(dropped, "shutdown");
		ex.requests_failed = failed ? metrics_counter_get(failed, NULL) : NULL;
		if (!ex.exported || !ex.dropped_full || !ex.dropped_failed ||
		    !ex.dropped_shutdown || !ex.requests_failed) {
			release_strings();
			return MV_ENOMEM;
		}
	}
	/* Before any other thread: curl_global_init is not thread-safe on
	 * every libcurl build. */
	if (load_curl() != 0 || cu.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		release_strings();
		return MV_EINTERNAL;
	}
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&ex.cond, &ca);
	pthread_condattr_destroy(&ca);
	atomic_store(&ex_ratio, cfg->sample_ratio);
	atomic_store(&ex_running, true);
	if (pthread_create(&ex.thread, NULL, export_main, NULL) != 0) {
		atomic_store(&ex_running, false);
		atomic_store(&ex_ratio, 0.0);
		pthread_cond_destroy(&ex.cond);
		cu.global_cleanup();
		release_strings();
		return MV_EINTERNAL;
	}
	return 0;
}

void trace_export_stop(int64_t timeout_ms)
{
	if (!trace_export_enabled())
		return;
	pthread_mutex_lock(&ex.mu);
	ex.stopping = true;
	ex.stop_deadline_ns = mono_ns() + (timeout_ms > 0 ? timeout_ms : 0) * 1000000;
	pthread_cond_signal(&ex.cond);
	pthread_mutex_unlock(&ex.mu);
	/* Bounded: every POST after this has at most the time left. */
	pthread_join(ex.thread, NULL);
	atomic_store(&ex_running, false);
	atomic_store(&ex_ratio, 0.0);
	pthread_cond_destroy(&ex.cond);
	cu.global_cleanup();
	release_strings();
}
