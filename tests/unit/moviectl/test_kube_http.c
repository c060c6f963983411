/*
 * Tests of kube.c (the real libcurl code) against fake_apiserver.py, a scripted
 * TEST DOUBLE of the Kubernetes API server on 127.0.0.1 that replays recorded
 * responses (no real API server can run here). Covers GET/LIST/PATCH, Status
 * errors, retries (429 then 200, 5xx), timeouts, chunked watch streams,
 * BOOKMARK, 410 (HTTP and 200-then-ERROR), lost connections, and TLS with a
 * CA and client certificate made by openssl for the run.
 */
#include <curl/curl.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../testing.h"
#include "kube.h"
#include "kube_fixture.h"

#include "movie/err.h"

extern char **environ;

static char dir[256];
static pid_t server_pid = -1;
static char base[128]; /* http(s)://127.0.0.1:PORT */
static int tls_mode;

static size_t sink(char *d, size_t s, size_t n, void *u)
{
	buf_append(u, d, s * n);
	return s * n;
}

/* A control call to the double (plain libcurl, not the code under test). */
static json_t *control(const char *method, const char *path, const char *body)
{
	CURL *e = curl_easy_init();
	struct buf out;
	buf_init(&out, 0);
	char url[256];
	snprintf(url, sizeof(url), "%s%s", base, path);
	curl_easy_setopt(e, CURLOPT_URL, url);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, sink);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &out);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
	curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	curl_easy_setopt(e, CURLOPT_TIMEOUT, 10L);
	if (body)
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
	CURLcode cc = curl_easy_perform(e);
	curl_easy_cleanup(e);
	json_t *j = cc == CURLE_OK ? json_loadb(out.data ? out.data : "", out.len, 0, NULL) : NULL;
	buf_release(&out);
	if (!j) {
		fprintf(stderr, "control %s %s failed: %s\n", method, path, curl_easy_strerror(cc));
		abort();
	}
	return j;
}

static void script(const char *json)
{
	json_decref(control("POST", "/__script", json));
}

static json_t *requests(void)
{
	return control("GET", "/__log", NULL);
}

static const char *req_query(json_t *log, size_t i, const char *key)
{
	return json_string_value(
	    json_object_get(json_object_get(json_array_get(log, i), "query"), key));
}

static int start_server(const char *cert, const char *key, const char *ca)
{
	char port_file[512];
	snprintf(port_file, sizeof(port_file), "%s/port", dir);
	unlink(port_file);
	char py[] = "/usr/bin/python3";
	char script_path[] = MOVIECTL_TESTS "/fake_apiserver.py";
	char *argv[] = {py,
	                script_path,
	                port_file,
	                (char *)(uintptr_t)cert,
	                (char *)(uintptr_t)key,
	                (char *)(uintptr_t)ca,
	                NULL};
	if (!cert)
		argv[3] = NULL;
	if (posix_spawn(&server_pid, py, NULL, NULL, argv, environ))
		return -1;
	/* Wait for the port file, bounded. */
	for (int i = 0; i < 1000; i++) {
		FILE *f = fopen(port_file, "r");
		if (f) {
			int port = 0;
			int ok = fscanf(f, "%d", &port) == 1;
			fclose(f);
			if (ok) {
				snprintf(base, sizeof(base), "%s://127.0.0.1:%d",
				         cert ? "https" : "http", port);
				return 0;
			}
		}
		struct timespec ts = {0, 10 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	return -1;
}

static void stop_server(void)
{
	if (server_pid > 0) {
		kill(server_pid, SIGTERM);
		waitpid(server_pid, NULL, 0);
		server_pid = -1;
	}
}

static struct kube_client *client(long timeout_ms, int retries)
{
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	char server[128], token[] = "t0k", ns[] = "prod";
	snprintf(server, sizeof(server), "%s", base);
	cfg.server = server;
	cfg.token = token;
	cfg.namespace = ns;
	struct kube_client_opts o = {.timeout_ms = timeout_ms,
	                             .max_retries = retries,
	                             .backoff_base_ms = 10,
	                             .backoff_max_ms = 50};
	struct kube_client *c = NULL;
	if (kube_client_new(&cfg, &o, &c))
		abort();
	return c;
}

#define DEPLOY "/apis/apps/v1/namespaces/prod/deployments"

static void test_get_and_status_errors(void)
{
	script(
	    "{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"body\":{\"kind\":"
	    "\"Deployment\",\"metadata\":{\"name\":\"web\"}}}]},"
	    "{\"path\":\"" DEPLOY "/gone\",\"responses\":[{\"status\":404,\"body\":{\"kind\":"
	    "\"Status\",\"apiVersion\":\"v1\",\"metadata\":{},\"status\":\"Failure\",\"message\":"
	    "\"deployments.apps \\\"gone\\\" not found\",\"reason\":\"NotFound\",\"code\":404}}]},"
	    "{\"path\":\"" DEPLOY
	    "/html\",\"responses\":[{\"status\":200,\"body\":\"<html>\"}]}]}");
	struct kube_client *c = client(5000, 2);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	CHECK_STR_EQ(json_string_value(json_object_get(json_object_get(obj, "metadata"), "name")),
	             "web");
	json_decref(obj);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/gone", &obj, &err), MV_ENOTFOUND);
	CHECK(obj == NULL);
	CHECK_INT_EQ(err.http, 404);
	CHECK_STR_EQ(err.reason, "NotFound");
	CHECK_STR_EQ(err.message, "deployments.apps \"gone\" not found");
	CHECK_INT_EQ(kube_get(c, DEPLOY "/html", &obj, &err), MV_EPROTO);
	json_t *log = requests();
	json_t *h = json_object_get(json_array_get(log, 0), "headers");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "authorization")), "Bearer t0k");
	CHECK_STR_EQ(json_string_value(json_object_get(h, "accept")), "application/json");
	CHECK_INT_EQ(json_array_size(log), 3); /* a 404 is not retried */
	json_decref(log);
	kube_client_free(c);
}

static void test_retries(void)
{
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":["
	       "{\"status\":429,\"headers\":{\"Retry-After\":\"1\"},\"body\":{\"kind\":\"Status\","
	       "\"reason\":\"TooManyRequests\",\"message\":\"slow down\",\"code\":429}},"
	       "{\"status\":200,\"body\":{\"kind\":\"Deployment\"}}]},"
	       "{\"path\":\"" DEPLOY "/down\",\"responses\":[{\"status\":503,\"body\":\"\"}]},"
	       "{\"method\":\"PATCH\",\"path\":\"" DEPLOY "/down\",\"responses\":[{\"status\":503,"
	       "\"body\":\"\"}]}]}");
	struct kube_client *c = client(5000, 3);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/down", &obj, &err), MV_EUNAVAIL);
	CHECK_INT_EQ(err.http, 503);
	/* A PATCH is not retried on 5xx: it may have been applied. */
	CHECK_INT_EQ(kube_patch(c, DEPLOY "/down", KUBE_PATCH_MERGE, "{}", NULL, &err),
	             MV_EUNAVAIL);
	json_t *log = requests();
	CHECK_INT_EQ(json_array_size(log), 2 + 4 + 1);
	json_decref(log);
	kube_client_free(c);
	/* Connection refused (nothing listens on loopback port 1): retried, then unavailable. */
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	char refused[] = "http://127.0.0.1:1";
	cfg.server = refused;
	struct kube_client_opts o = {
	    .timeout_ms = 2000, .max_retries = 2, .backoff_base_ms = 10, .backoff_max_ms = 20};
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), MV_EUNAVAIL);
	CHECK_STR_EQ(err.reason, "ConnectionFailed");
	CHECK_INT_EQ(err.http, 0);
	kube_client_free(c);
}

static void test_patch_types_and_test_failure(void)
{
	script("{\"routes\":[{\"method\":\"PATCH\",\"path\":\"" DEPLOY "/web\",\"responses\":["
	       "{\"status\":429,\"body\":\"\"},{\"body\":{\"kind\":\"Deployment\"}},"
	       "{\"body\":{\"kind\":\"Deployment\"}},{\"body\":{\"kind\":\"Deployment\"}},"
	       "{\"status\":422,\"body\":{\"kind\":\"Status\",\"apiVersion\":\"v1\",\"status\":"
	       "\"Failure\",\"message\":\"the server rejected our request due to an error in our "
	       "request\",\"reason\":\"Invalid\",\"code\":422}}]}]}");
	struct kube_client *c = client(5000, 3);
	struct kube_error err;
	const char *jp = "[{\"op\":\"replace\",\"path\":\"/spec/replicas\",\"value\":3}]";
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_patch(c, DEPLOY "/web", KUBE_PATCH_JSON, jp, &obj, &err), 0);
	CHECK(obj != NULL);
	json_decref(obj);
	CHECK_INT_EQ(kube_patch(c, DEPLOY "/web", KUBE_PATCH_MERGE, "{\"a\":1}", NULL, &err), 0);
	CHECK_INT_EQ(kube_patch(c, DEPLOY "/web", KUBE_PATCH_STRATEGIC, "{\"b\":2}", NULL, &err),
	             0);
	CHECK_INT_EQ(kube_patch(c, DEPLOY "/web", KUBE_PATCH_JSON, jp, NULL, &err), MV_EINVAL);
	CHECK_INT_EQ(err.http, 422);
	CHECK_STR_EQ(err.reason, "Invalid");
	json_t *log = requests();
	CHECK_INT_EQ(json_array_size(log), 5);
	const char *types[] = {"application/json-patch+json", "application/json-patch+json",
	                       "application/merge-patch+json",
	                       "application/strategic-merge-patch+json",
	                       "application/json-patch+json"};
	for (size_t i = 0; i < 5; i++) {
		json_t *r = json_array_get(log, i);
		CHECK_STR_EQ(json_string_value(
		                 json_object_get(json_object_get(r, "headers"), "content-type")),
		             types[i]);
		CHECK_STR_EQ(json_string_value(json_object_get(r, "method")), "PATCH");
	}
	CHECK_STR_EQ(json_string_value(json_object_get(json_array_get(log, 1), "body")), jp);
	json_decref(log);
	kube_client_free(c);
}

static void test_timeout(void)
{
	script("{\"routes\":[{\"path\":\"" DEPLOY "/slow\",\"responses\":[{\"delay_ms\":3000,"
	       "\"body\":{}}]}]}");
	struct kube_client *c = client(300, 3);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/slow", &obj, &err), MV_ETIMEDOUT);
	CHECK_STR_EQ(err.reason, "Timeout");
	kube_client_free(c);
}

static void test_list_continue(void)
{
	script(
	    "{\"routes\":["
	    "{\"path\":\"/apis/apps/v1/namespaces/prod/replicasets\",\"query\":{\"continue\":"
	    "\"c1\"},\"responses\":[{\"body\":{\"kind\":\"ReplicaSetList\",\"metadata\":{"
	    "\"resourceVersion\":\"12\"},\"items\":[{\"metadata\":{\"name\":\"b\"}}]}}]},"
	    "{\"path\":\"/apis/apps/v1/namespaces/prod/replicasets\",\"responses\":[{\"body\":"
	    "{\"kind\":\"ReplicaSetList\",\"metadata\":{\"resourceVersion\":\"11\",\"continue\":"
	    "\"c1\"},\"items\":[{\"metadata\":{\"name\":\"a\"}}]}}]},"
	    "{\"path\":\"/api/v1/namespaces/prod/pods\",\"query\":{\"continue\":\"old\"},"
	    "\"responses\":[{\"status\":410,\"body\":{\"kind\":\"Status\",\"reason\":\"Expired\","
	    "\"message\":\"continue expired\",\"code\":410}}]},"
	    "{\"path\":\"/api/v1/namespaces/prod/pods\",\"responses\":[{\"body\":{\"metadata\":{"
	    "\"continue\":\"old\"},\"items\":[{\"metadata\":{\"name\":\"p1\"}}]}},{\"body\":{"
	    "\"metadata\":{\"resourceVersion\":\"20\"},\"items\":[{\"metadata\":{\"name\":\"p1\"}},"
	    "{\"metadata\":{\"name\":\"p2\"}}]}}]}]}");
	struct kube_client *c = client(5000, 2);
	struct kube_error err;
	json_t *items = NULL;
	char *rv = NULL;
	CHECK_INT_EQ(kube_list(c, "/apis/apps/v1/namespaces/prod/replicasets", "app=web,x in (a)",
	                       "metadata.name=web", &items, &rv, &err),
	             0);
	CHECK_INT_EQ(json_array_size(items), 2);
	CHECK_STR_EQ(rv, "12");
	json_decref(items);
	free(rv);
	json_t *log = requests();
	CHECK_STR_EQ(req_query(log, 0, "labelSelector"), "app=web,x in (a)");
	CHECK_STR_EQ(req_query(log, 0, "fieldSelector"), "metadata.name=web");
	CHECK(req_query(log, 0, "continue") == NULL);
	CHECK(req_query(log, 0, "limit") == NULL); /* kubectl sets no limit */
	CHECK_STR_EQ(req_query(log, 1, "continue"), "c1");
	CHECK_STR_EQ(req_query(log, 1, "labelSelector"), "app=web,x in (a)");
	json_decref(log);
	/* An expired continue token restarts the list once. */
	CHECK_INT_EQ(kube_list(c, "/api/v1/namespaces/prod/pods", NULL, NULL, &items, &rv, &err),
	             0);
	CHECK_INT_EQ(json_array_size(items), 2);
	CHECK_STR_EQ(rv, "20");
	json_decref(items);
	free(rv);
	kube_client_free(c);
}

struct seen {
	char log[512];
};

static int on_ev(void *user, const struct kube_event *ev)
{
	struct seen *s = user;
	const char *rv = json_string_value(
	    json_object_get(json_object_get(ev->object, "metadata"), "resourceVersion"));
	size_t n = strlen(s->log);
	snprintf(s->log + n, sizeof(s->log) - n, "%c%s ", "AMDBE"[ev->type], rv ? rv : "-");
	return rv && strcmp(rv, "300") == 0 ? 1 : 0;
}

static void test_watch_resume_bookmark_and_expired(void)
{
	/* List (rv 100) -> watch: an event split across chunks, a BOOKMARK (150), end of
	 * stream -> watch from 150: 200 then ERROR 410 -> re-list (rv 200) -> watch from
	 * 200: HTTP 410 -> re-list (rv 250) -> watch from 250: stream lost mid-event ->
	 * watch from 250 again: MODIFIED rv 300, the callback stops. */
	script(
	    "{\"routes\":["
	    "{\"path\":\"" DEPLOY "\",\"query\":{\"watch\":\"1\",\"resourceVersion\":\"100\"},"
	    "\"responses\":[{\"chunks\":[\"{\\\"type\\\":\\\"MODIFIED\\\",\\\"object\\\":{\\\"me\","
	    "\"tadata\\\":{\\\"name\\\":\\\"web\\\",\\\"resourceVersion\\\":\\\"120\\\"}}}\\n{"
	    "\\\"ty\","
	    "\"pe\\\":\\\"BOOKMARK\\\",\\\"object\\\":{\\\"metadata\\\":{\\\"resourceVersion\\\":"
	    "\\\"150\\\"}}}\\n\"]}]},"
	    "{\"path\":\"" DEPLOY "\",\"query\":{\"watch\":\"1\",\"resourceVersion\":\"150\"},"
	    "\"responses\":[{\"chunks\":[\"{\\\"type\\\":\\\"ERROR\\\",\\\"object\\\":{"
	    "\\\"kind\\\":"
	    "\\\"Status\\\",\\\"apiVersion\\\":\\\"v1\\\",\\\"metadata\\\":{},\\\"status\\\":"
	    "\\\"Failure\\\",\\\"message\\\":\\\"too old resource version: 150 (180)\\\","
	    "\\\"reason\\\":\\\"Expired\\\",\\\"code\\\":410}}\\n\"]}]},"
	    "{\"path\":\"" DEPLOY "\",\"query\":{\"watch\":\"1\",\"resourceVersion\":\"200\"},"
	    "\"responses\":[{\"status\":410,\"body\":{\"kind\":\"Status\",\"reason\":\"Expired\","
	    "\"code\":410,\"message\":\"gone\"}}]},"
	    "{\"path\":\"" DEPLOY "\",\"query\":{\"watch\":\"1\",\"resourceVersion\":\"250\"},"
	    "\"responses\":[{\"chunks\":[\"{\\\"type\\\":\\\"MODIFIED\\\",\\\"obj\"],"
	    "\"close_early\":true},"
	    "{\"chunks\":[\"\\n{\\\"type\\\":\\\"MODIFIED\\\",\\\"object\\\":{\\\"metadata\\\":{"
	    "\\\"name\\\":\\\"web\\\",\\\"resourceVersion\\\":\\\"300\\\"}}}\\n\"],"
	    "\"chunk_delay_ms\":5000}]},"
	    "{\"path\":\"" DEPLOY "\",\"absent\":[\"watch\"],\"responses\":["
	    "{\"body\":{\"metadata\":{\"resourceVersion\":\"100\"},\"items\":[{\"metadata\":{"
	    "\"name\":\"web\",\"resourceVersion\":\"90\"}}]}},"
	    "{\"body\":{\"metadata\":{\"resourceVersion\":\"200\"},\"items\":[{\"metadata\":{"
	    "\"name\":\"web\",\"resourceVersion\":\"190\"}}]}},"
	    "{\"body\":{\"metadata\":{\"resourceVersion\":\"250\"},\"items\":[]}}]}]}");
	struct kube_client *c = client(5000, 3);
	struct kube_error err;
	struct seen s = {""};
	int rc = kube_watch_until(c, DEPLOY, NULL, "metadata.name=web", kube_now() + 30, on_ev, &s,
	                          &err);
	CHECK_INT_EQ(rc, 0);
	/* The second re-list no longer has "web": a DELETED with its last state. */
	CHECK_STR_EQ(s.log, "A90 M120 A190 D190 M300 ");
	json_t *log = requests();
	const char *want[][2] = {{NULL, NULL}, {"1", "100"}, {"1", "150"}, {NULL, NULL},
	                         {"1", "200"}, {NULL, NULL}, {"1", "250"}, {"1", "250"}};
	CHECK_INT_EQ(json_array_size(log), 8);
	for (size_t i = 0; i < 8 && i < json_array_size(log); i++) {
		const char *w = req_query(log, i, "watch");
		const char *rv = req_query(log, i, "resourceVersion");
		CHECK((w == NULL) == (want[i][0] == NULL));
		if (want[i][1])
			CHECK(rv && strcmp(rv, want[i][1]) == 0);
		CHECK_STR_EQ(req_query(log, i, "fieldSelector"), "metadata.name=web");
		if (w) {
			CHECK_STR_EQ(req_query(log, i, "allowWatchBookmarks"), "true");
			CHECK(req_query(log, i, "timeoutSeconds") != NULL);
		}
	}
	json_decref(log);
	kube_client_free(c);
}

static void test_watch_deadline_and_errors(void)
{
	script(
	    "{\"routes\":[{\"path\":\"" DEPLOY "\",\"query\":{\"watch\":\"1\"},"
	    "\"responses\":[{\"chunks\":[\"{\\\"type\\\":\\\"ADDED\\\",\\\"object\\\":{"
	    "\\\"metadata\\\":{\\\"name\\\":\\\"w\\\",\\\"resourceVersion\\\":\\\"2\\\"}}}\\n\"],"
	    "\"chunk_delay_ms\":10000}]},"
	    "{\"path\":\"" DEPLOY "\",\"responses\":[{\"body\":{\"metadata\":{\"resourceVersion\":"
	    "\"1\"},\"items\":[]}}]},"
	    "{\"path\":\"/apis/apps/v1/namespaces/prod/replicasets\",\"responses\":[{\"status\":"
	    "403,\"body\":{\"kind\":\"Status\",\"reason\":\"Forbidden\",\"code\":403,\"message\":"
	    "\"replicasets.apps is forbidden\"}}]}]}");
	struct kube_client *c = client(5000, 3);
	struct kube_error err;
	struct seen s = {""};
	double t0 = kube_now();
	CHECK_INT_EQ(kube_watch_until(c, DEPLOY, NULL, NULL, kube_now() + 1.0, on_ev, &s, &err),
	             MV_ETIMEDOUT);
	CHECK(kube_now() - t0 < 8.0); /* bounded by the deadline, not the server */
	CHECK_STR_EQ(s.log, "A2 ");
	CHECK_INT_EQ(kube_watch_until(c, "/apis/apps/v1/namespaces/prod/replicasets", NULL, NULL, 0,
	                              on_ev, &s, &err),
	             MV_EINVAL);
	CHECK_STR_EQ(err.reason, "Forbidden");
	kube_client_free(c);
}

static void write_text(const char *name, const char *text, int mode)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	if (!f)
		abort();
	fputs(text, f);
	fclose(f);
	chmod(p, (mode_t)mode);
}

static const char *auth_of(json_t *log, size_t i)
{
	return json_string_value(
	    json_object_get(json_object_get(json_array_get(log, i), "headers"), "authorization"));
}

static void test_proxy_url(void)
{
	/* proxy-url: the request goes to the proxy (the double) with an absolute URI
	 * for a server name that does not resolve. */
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"body\":{}}]}]}");
	char server[] = "http://kubernetes.invalid:6443", proxy[128];
	snprintf(proxy, sizeof(proxy), "%s", base);
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.server = server;
	cfg.proxy_url = proxy;
	struct kube_client_opts o = {.timeout_ms = 5000, .max_retries = -1};
	struct kube_client *c;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	json_t *log = requests();
	CHECK_INT_EQ(json_array_size(log), 1);
	CHECK_STR_EQ(json_string_value(json_object_get(
	                 json_object_get(json_array_get(log, 0), "headers"), "host")),
	             "kubernetes.invalid:6443");
	json_decref(log);
	kube_client_free(c);
}

static void test_token_file_rotation(void)
{
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"body\":{}}]}]}");
	write_text("token", "first\n", 0600);
	char server[128], tf[512];
	snprintf(server, sizeof(server), "%s", base);
	snprintf(tf, sizeof(tf), "%s/token", dir);
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.server = server;
	cfg.token_file = tf;
	struct kube_client_opts o = {.timeout_ms = 5000, .token_refresh_ms = 2000};
	struct kube_client *c;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	write_text("token", "second\n", 0600);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	/* Poll until the rotated token is used (bounded by a deadline). */
	double until = kube_now() + 20;
	int rotated = 0;
	while (!rotated && kube_now() < until) {
		CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
		json_decref(obj);
		json_t *log = requests();
		const char *a = auth_of(log, json_array_size(log) - 1);
		rotated = a && strcmp(a, "Bearer second") == 0;
		json_decref(log);
	}
	CHECK(rotated);
	json_t *log = requests();
	CHECK_STR_EQ(auth_of(log, 0), "Bearer first");
	CHECK_STR_EQ(auth_of(log, 1), "Bearer first"); /* cached right after the rotation */
	json_decref(log);
	/* A half-written rotation (empty file) keeps the last good token. */
	write_text("token", "", 0600);
	double past = kube_now() + 2.1;
	while (kube_now() < past) { /* let the refresh period lapse */
		struct timespec ts = {0, 20 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	log = requests();
	CHECK_STR_EQ(auth_of(log, json_array_size(log) - 1), "Bearer second");
	json_decref(log);
	kube_client_free(c);
}

static void test_exec_plugin_credentials(void)
{
	/* 401 for the first token: the plugin runs again once, its new token works. */
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"status\":401,\"body\":"
	       "{\"kind\":\"Status\",\"reason\":\"Unauthorized\",\"code\":401,\"message\":"
	       "\"Unauthorized\"}},{\"body\":{}}]}]}");
	char counter[600], plugin_text[2048];
	snprintf(counter, sizeof(counter), "%s/runs", dir);
	unlink(counter);
	snprintf(plugin_text, sizeof(plugin_text),
	         "#!/bin/sh\necho x >> '%s'\nn=$(wc -l < '%s' | tr -d ' ')\n"
	         "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
	         "\"ExecCredential\",\"status\":{\"token\":\"exec-'$n'\"}}'\n",
	         counter, counter);
	write_text("plugin.sh", plugin_text, 0700);
	char server[128], cmd[512], api[] = "client.authentication.k8s.io/v1";
	snprintf(server, sizeof(server), "%s", base);
	snprintf(cmd, sizeof(cmd), "%s/plugin.sh", dir);
	char *argv[] = {cmd, NULL}, *env[] = {NULL};
	struct kube_exec_config ex = {.api_version = api, .command = cmd, .argv = argv, .env = env};
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.server = server;
	cfg.exec = &ex;
	struct kube_client_opts o = {.timeout_ms = 5000};
	struct kube_client *c;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	struct kube_error err;
	json_t *obj = NULL;
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0); /* cached: no third run */
	json_decref(obj);
	json_t *log = requests();
	CHECK_INT_EQ(json_array_size(log), 3);
	CHECK_STR_EQ(auth_of(log, 0), "Bearer exec-1");
	CHECK_STR_EQ(auth_of(log, 1), "Bearer exec-2");
	CHECK_STR_EQ(auth_of(log, 2), "Bearer exec-2");
	json_decref(log);
	kube_client_free(c);
	/* An expired credential is not reused: the plugin runs for every request. */
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"body\":{}}]}]}");
	unlink(counter);
	snprintf(plugin_text, sizeof(plugin_text),
	         "#!/bin/sh\necho x >> '%s'\nn=$(wc -l < '%s' | tr -d ' ')\n"
	         "echo '{\"apiVersion\":\"client.authentication.k8s.io/v1\",\"kind\":"
	         "\"ExecCredential\",\"status\":{\"token\":\"exp-'$n'\",\"expirationTimestamp\":"
	         "\"2001-01-01T00:00:00Z\"}}'\n",
	         counter, counter);
	write_text("plugin.sh", plugin_text, 0700);
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	log = requests();
	CHECK_STR_EQ(auth_of(log, 0), "Bearer exp-1");
	CHECK_STR_EQ(auth_of(log, 1), "Bearer exp-2");
	json_decref(log);
	kube_client_free(c);
	/* A plugin that fails: the call fails with its reason, nothing is sent. */
	script("{\"routes\":[]}");
	write_text("plugin.sh", "#!/bin/sh\nexit 1\n", 0700);
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), MV_EIO);
	CHECK_STR_EQ(err.reason, "ExecPlugin");
	log = requests();
	CHECK_INT_EQ(json_array_size(log), 0);
	json_decref(log);
	kube_client_free(c);
}

static int sh(const char *cmd)
{
	int rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static void test_tls_ca_and_client_cert(void)
{
	char cmd[4096];
	snprintf(
	    cmd, sizeof(cmd),
	    "cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt "
	    "-days 2 -subj /CN=test-ca >/dev/null 2>&1 && "
	    "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr -subj /CN=kube "
	    ">/dev/null 2>&1 && printf 'subjectAltName=DNS:kubernetes,IP:127.0.0.1\\n' > ext && "
	    "openssl x509 -req -in srv.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out srv.crt "
	    "-days 2 -extfile ext >/dev/null 2>&1 && "
	    "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr -subj /CN=moviectl "
	    ">/dev/null 2>&1 && openssl x509 -req -in cli.csr -CA ca.crt -CAkey ca.key "
	    "-CAcreateserial -out cli.crt -days 2 >/dev/null 2>&1",
	    dir);
	if (sh(cmd) != 0) {
		CHECK(!"openssl could not make the test CA");
		return;
	}
	stop_server();
	char crt[512], key[512], ca[512];
	snprintf(crt, sizeof(crt), "%s/srv.crt", dir);
	snprintf(key, sizeof(key), "%s/srv.key", dir);
	snprintf(ca, sizeof(ca), "%s/ca.crt", dir);
	CHECK_INT_EQ(start_server(crt, key, ca), 0);
	tls_mode = 1;
	script("{\"routes\":[{\"path\":\"" DEPLOY "/web\",\"responses\":[{\"body\":{}}]}]}");

	size_t calen;
	char *ca_pem = NULL;
	{
		FILE *f = fopen(ca, "rb");
		ca_pem = calloc(1, 65536);
		calen = f ? fread(ca_pem, 1, 65535, f) : 0;
		if (f)
			fclose(f);
	}
	struct kube_client_opts o = {.timeout_ms = 5000, .max_retries = -1};
	struct kube_error err;
	json_t *obj = NULL;
	struct kube_client *c;
	char srv[128], cli_crt[512], cli_key[512], name[] = "kubernetes";
	snprintf(srv, sizeof(srv), "%s", base);
	snprintf(cli_crt, sizeof(cli_crt), "%s/cli.crt", dir);
	snprintf(cli_key, sizeof(cli_key), "%s/cli.key", dir);

	/* No CA configured: the server's certificate is not trusted. */
	struct kube_config cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.server = srv;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK(kube_get(c, DEPLOY "/web", &obj, &err) < 0);
	kube_client_free(c);
	/* certificate-authority-data (bytes) and a client certificate from files. */
	buf_init(&cfg.ca_data, 0);
	buf_append(&cfg.ca_data, ca_pem, calen);
	cfg.cert_file = cli_crt;
	cfg.key_file = cli_key;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	if (err.message[0])
		fprintf(stderr, "  %s\n", err.message);
	json_decref(obj);
	kube_client_free(c);
	json_t *log = requests();
	json_t *peer = json_object_get(json_array_get(log, 0), "client_cert");
	CHECK_STR_EQ(json_string_value(json_object_get(peer, "commonName")), "moviectl");
	json_decref(log);
	/* tls-server-name: the certificate names "kubernetes", not the host we dial. */
	char localhost_srv[128];
	snprintf(localhost_srv, sizeof(localhost_srv), "https://localhost:%s",
	         strrchr(base, ':') + 1);
	cfg.server = localhost_srv;
	cfg.cert_file = cfg.key_file = NULL;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK(kube_get(c, DEPLOY "/web", &obj, &err) < 0); /* "localhost" is not in the cert */
	kube_client_free(c);
	cfg.tls_server_name = name;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	kube_client_free(c);
	/* insecure-skip-tls-verify without any CA. */
	buf_release(&cfg.ca_data);
	cfg.tls_server_name = NULL;
	cfg.server = srv;
	cfg.insecure = 1;
	CHECK_INT_EQ(kube_client_new(&cfg, &o, &c), 0);
	CHECK_INT_EQ(kube_get(c, DEPLOY "/web", &obj, &err), 0);
	json_decref(obj);
	kube_client_free(c);
	free(ca_pem);
	/* This test runs in a child process of its own (testing.h): the TLS
	 * server it started is its child, and would outlive it (holding ctest's
	 * output pipe open) unless stopped here. */
	stop_server();
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/moviectl-kubehttp-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	curl_global_init(CURL_GLOBAL_DEFAULT);
	if (start_server(NULL, NULL, NULL)) {
		fprintf(stderr, "fake API server did not start\n");
		return 1;
	}
	RUN(test_get_and_status_errors);
	RUN(test_retries);
	RUN(test_patch_types_and_test_failure);
	RUN(test_timeout);
	RUN(test_list_continue);
	RUN(test_watch_resume_bookmark_and_expired);
	RUN(test_watch_deadline_and_errors);
	RUN(test_proxy_url);
	RUN(test_token_file_rotation);
	RUN(test_exec_plugin_credentials);
	RUN(test_tls_ca_and_client_cert);
	stop_server();
	char cmd[512];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
	curl_global_cleanup();
	return TEST_SUMMARY();
}
