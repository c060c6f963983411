/*
 * prom.c - Prometheus HTTP API: the response decoder (no I/O) and the
 * libcurl adapter. API facts: prometheus.io/docs/prometheus/latest/querying/api/
 * (envelope {"status","data":{"resultType","result"},"errorType","error",
 * "warnings"}; a sample value is [<unix time>, "<float as string>"]).
 */
#include <curl/curl.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prom.h"

#include "movie/buf.h"
#include "movie/err.h"
#include "movie/banned.h"

static void set_err(struct prom_error *e, long http, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void set_err(struct prom_error *e, long http, const char *type, const char *fmt, ...)
{
	if (!e)
		return;
	e->http = http;
	snprintf(e->type, sizeof(e->type), "%s", type);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

void prom_result_release(struct prom_result *r)
{
	if (!r)
		return;
	for (size_t i = 0; i < r->n; i++)
		json_decref(r->samples[i].labels);
	free(r->samples);
	memset(r, 0, sizeof(*r));
}

const char *prom_label(const struct prom_sample *s, const char *name)
{
	return json_string_value(json_object_get(s->labels, name));
}

/* Prometheus writes floats as Go's strconv.FormatFloat: digits, "NaN",
 * "+Inf", "-Inf"; strtod reads all of them. The whole string must parse. */
static int parse_float(const char *s, double *out)
{
	if (!s || !*s)
		return MV_EPROTO;
	char *end;
	double v = strtod(s, &end);
	if (*end != '\0')
		return MV_EPROTO;
	*out = v;
	return 0;
}

/* [<number>, "<float>"] */
static int parse_pair(const json_t *pair, double *t, double *v)
{
	if (!json_is_array(pair) || json_array_size(pair) != 2)
		return MV_EPROTO;
	const json_t *jt = json_array_get(pair, 0);
	if (!json_is_number(jt))
		return MV_EPROTO;
	*t = json_number_value(jt);
	return parse_float(json_string_value(json_array_get(pair, 1)), v);
}

static int labels_ok(const json_t *metric)
{
	if (!json_is_object(metric))
		return 0;
	const char *k;
	json_t *v;
	json_object_foreach((json_t *)(uintptr_t)(metric), k, v)
	{
		if (!json_is_string(v))
			return 0;
	}
	return 1;
}

static int parse_vector(const json_t *result, struct prom_result *r, struct prom_error *err)
{
	if (!json_is_array(result)) {
		set_err(err, 0, "BadResponse", "vector result is not an array");
		return MV_EPROTO;
	}
	size_t n = json_array_size(result);
	if (n > PROM_MAX_SAMPLES) {
		set_err(err, 0, "TooBig", "%zu samples (at most %d)", n, PROM_MAX_SAMPLES);
		return MV_ETOOBIG;
	}
	r->type = PROM_VECTOR;
	if (n == 0)
		return 0;
	r->samples = calloc(n, sizeof(*r->samples));
	if (!r->samples)
		return MV_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		const json_t *el = json_array_get(result, i);
		const json_t *metric = json_object_get(el, "metric");
		struct prom_sample *s = &r->samples[r->n];
		if (!json_is_object(el) || (metric && !labels_ok(metric)) ||
		    parse_pair(json_object_get(el, "value"), &s->time, &s->value)) {
			set_err(err, 0, "BadResponse", "vector element %zu is not a sample", i);
			return MV_EPROTO;
		}
		s->labels = metric ? json_deep_copy(metric) : json_object();
		if (!s->labels)
			return MV_ENOMEM;
		r->n++;
	}
	return 0;
}

static int code_for_type(const char *type, long http)
{
	if (type && strcmp(type, "timeout") == 0)
		return MV_ETIMEDOUT;
	if ((type && strcmp(type, "unavailable") == 0) || http >= 500 || http == 429)
		return MV_EUNAVAIL;
	return MV_EINVAL;
}

static int parse_envelope(const json_t *root, long http, struct prom_result *r,
                          struct prom_error *err)
{
	const char *status = json_string_value(json_object_get(root, "status"));
	if (!status) {
		set_err(err, http, "BadResponse", "answer has no \"status\" (HTTP %ld)", http);
		return http >= 500 ? MV_EUNAVAIL : MV_EPROTO;
	}
	if (strcmp(status, "success") != 0) {
		const char *type = json_string_value(json_object_get(root, "errorType"));
		const char *msg = json_string_value(json_object_get(root, "error"));
		set_err(err, http, type ? type : "error", "%s", msg ? msg : "(no message)");
		return code_for_type(type, http);
	}
	if (http && (http < 200 || http >= 300)) {
		set_err(err, http, "BadResponse", "HTTP %ld with a success body", http);
		return code_for_type(NULL, http);
	}
	const json_t *warn = json_object_get(root, "warnings");
	r->warnings = json_is_array(warn) ? json_array_size(warn) : 0;
	const json_t *data = json_object_get(root, "data");
	const char *rtype = json_string_value(json_object_get(data, "resultType"));
	const json_t *result = json_object_get(data, "result");
	if (!rtype || !result) {
		set_err(err, http, "BadResponse", "answer has no data.resultType/result");
		return MV_EPROTO;
	}
	if (strcmp(rtype, "vector") == 0)
		return parse_vector(result, r, err);
	if (strcmp(rtype, "scalar") == 0) {
		r->type = PROM_SCALAR;
		if (parse_pair(result, &r->time, &r->scalar)) {
			set_err(err, http, "BadResponse", "scalar result is not a sample");
			return MV_EPROTO;
		}
		return 0;
	}
	set_err(err, http, "BadResponse", "unsupported resultType \"%s\"", rtype);
	return MV_EPROTO;
}

int prom_parse_response(const char *body, size_t len, long http, struct prom_result *r,
                        struct prom_error *err)
{
	memset(r, 0, sizeof(*r));
	if (err)
		memset(err, 0, sizeof(*err));
	if (len > PROM_MAX_BODY_BYTES) {
		set_err(err, http, "TooBig", "response larger than %zu bytes", PROM_MAX_BODY_BYTES);
		return MV_ETOOBIG;
	}
	json_error_t jerr;
	json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
	if (!json_is_object(root)) {
		json_decref(root);
		if (http && (http < 200 || http >= 300)) {
			/* body need not be NUL-terminated. */
			int shown = len > 200 ? 200 : (int)len;
			set_err(err, http, "HTTP", "HTTP %ld: %.*s", http, shown, body ? body : "");
			return code_for_type(NULL, http);
		}
		set_err(err, http, "BadResponse", "answer is not a JSON object: %s", jerr.text);
		return MV_ESYNTAX;
	}
	int rc = parse_envelope(root, http, r, err);
	json_decref(root);
	if (rc)
		prom_result_release(r);
	return rc;
}

/* ---- the libcurl adapter ---- */

struct prom_client {
	char *url;
	long timeout_ms;
	CURL *easy;
};

int prom_client_new(const char *url, long timeout_ms, struct prom_client **out)
{
	*out = NULL;
	if (!url || (strncmp(url, "http://", 7) != 0 && strncmp(url, "https://", 8) != 0))
		return MV_EINVAL;
	struct prom_client *c = calloc(1, sizeof(*c));
	if (!c)
		return MV_ENOMEM;
	size_t n = strlen(url);
	while (n > 0 && url[n - 1] == '/')
		n--;
	c->url = strndup(url, n);
	c->easy = curl_easy_init();
	c->timeout_ms = timeout_ms > 0 ? timeout_ms : 10000;
	if (!c->url || !c->easy) {
		prom_client_free(c);
		return MV_ENOMEM;
	}
	*out = c;
	return 0;
}

void prom_client_free(struct prom_client *c)
{
	if (!c)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	free(c->url);
	free(c);
}

const char *prom_client_url(const struct prom_client *c)
{
	return c->url;
}

struct sink {
	struct buf body;
	int too_big;
};

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
	struct sink *s = user;
	size_t len = size * n;
	if (buf_append(&s->body, data, len)) {
		s->too_big = 1;
		return 0;
	}
	return len;
}

static int form_body(CURL *e, const char *promql, double at, struct buf *form)
{
	char *q = curl_easy_escape(e, promql, 0);
	if (!q)
		return MV_ENOMEM;
	int rc = buf_printf(form, "query=%s", q);
	curl_free(q);
	if (!rc && at > 0)
		rc = buf_printf(form, "&time=%.3f", at);
	return rc;
}

int prom_query(struct prom_client *c, const char *promql, double at, struct prom_result *r,
               struct prom_error *err)
{
	memset(r, 0, sizeof(*r));
	if (err)
		memset(err, 0, sizeof(*err));
	if (strlen(promql) > PROM_MAX_QUERY) {
		set_err(err, 0, "TooBig", "query longer than %zu bytes", PROM_MAX_QUERY);
		return MV_ETOOBIG;
	}
	struct buf url, form;
	struct sink s = {.too_big = 0};
	buf_init(&url, 65536);
	buf_init(&form, PROM_MAX_QUERY * 3 + 64);
	buf_init(&s.body, PROM_MAX_BODY_BYTES);
	int rc = buf_printf(&url, "%s/api/v1/query", c->url);
	if (!rc)
		rc = form_body(c->easy, promql, at, &form);
	if (rc)
		goto out;
	CURL *e = c->easy;
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url.data);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, "moviectl");
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->timeout_ms);
	curl_easy_setopt(e, CURLOPT_POSTFIELDS, form.data);
	curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)form.len);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, &s);
	CURLcode cc = curl_easy_perform(e);
	long http = 0;
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &http);
	if (cc != CURLE_OK) {
		if (s.too_big) {
			set_err(err, http, "TooBig", "response larger than %zu bytes",
			        PROM_MAX_BODY_BYTES);
			rc = MV_ETOOBIG;
		} else {
			set_err(err, 0,
			        cc == CURLE_OPERATION_TIMEDOUT ? "Timeout" : "ConnectionFailed",
			        "%s: %s", c->url, curl_easy_strerror(cc));
			rc = cc == CURLE_OPERATION_TIMEDOUT ? MV_ETIMEDOUT : MV_EUNAVAIL;
		}
		goto out;
	}
	rc = prom_parse_response(s.body.data, s.body.len, http, r, err);
out:
	buf_release(&s.body);
	buf_release(&form);
	buf_release(&url);
	return rc;
}
