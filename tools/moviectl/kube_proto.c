/*
 * kube_proto.c - the Kubernetes protocol pieces that do no I/O: Status errors,
 * the watch-stream framer, ExecCredential, label selectors, timestamps.
 * Everything here parses bytes from the network or a plugin: each input has a
 * cap and a fuzz target (fuzz_kube_proto.c).
 */
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kube.h"

#include "movie/err.h"
#include "movie/banned.h"

void kube_error_clear(struct kube_error *e)
{
	if (!e)
		return;
	e->http = 0;
	e->reason[0] = '\0';
	e->message[0] = '\0';
}

static void copy_str(char *dst, size_t cap, const char *src)
{
	snprintf(dst, cap, "%s", src ? src : "");
}

void kube_error_set(struct kube_error *e, const char *reason, const char *fmt, ...)
{
	if (!e)
		return;
	e->http = 0;
	copy_str(e->reason, sizeof(e->reason), reason);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof(e->message), fmt, ap);
	va_end(ap);
}

/* The reason apimachinery gives a code when the body says nothing
 * (pkg/api/errors: NewGenericServerResponse). */
static const char *reason_for_code(long http)
{
	switch (http) {
	case 400: return "BadRequest";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "NotFound";
	case 405: return "MethodNotAllowed";
	case 406: return "NotAcceptable";
	case 409: return "Conflict";
	case 410: return "Expired";
	case 413: return "RequestEntityTooLarge";
	case 415: return "UnsupportedMediaType";
	case 422: return "Invalid";
	case 429: return "TooManyRequests";
	case 500: return "InternalError";
	case 503: return "ServiceUnavailable";
	case 504: return "Timeout";
	default: return http >= 500 ? "InternalError" : "Unknown";
	}
}

void kube_error_from_status(struct kube_error *e, const json_t *status)
{
	if (!e)
		return;
	kube_error_clear(e);
	json_t *code = json_object_get(status, "code");
	const char *reason = json_string_value(json_object_get(status, "reason"));
	const char *msg = json_string_value(json_object_get(status, "message"));
	if (json_is_integer(code) && json_integer_value(code) > 0 &&
	    json_integer_value(code) < 1000)
		e->http = (long)json_integer_value(code);
	copy_str(e->reason, sizeof(e->reason),
	         reason && *reason ? reason : reason_for_code(e->http));
	copy_str(e->message, sizeof(e->message), msg ? msg : "");
}

void kube_error_from_body(struct kube_error *e, long http, const char *body, size_t len)
{
	if (!e)
		return;
	kube_error_clear(e);
	e->http = http;
	json_t *root = NULL;
	if (body && len > 0 && len <= KUBE_MAX_STATUS_BYTES)
		root = json_loadb(body, len, 0, NULL);
	const char *kind = json_string_value(json_object_get(root, "kind"));
	if (root && kind && strcmp(kind, "Status") == 0) {
		long keep = http;
		kube_error_from_status(e, root);
		if (keep)
			e->http = keep; /* the HTTP status is the truth; code may lie */
	} else {
		copy_str(e->reason, sizeof(e->reason), reason_for_code(http));
		/* The first line of whatever came back, printable bytes only. */
		size_t n = 0;
		for (size_t i = 0; body && i < len && n + 1 < sizeof(e->message) && n < 200; i++) {
			unsigned char ch = (unsigned char)body[i];
			if (ch == '\n')
				break;
			e->message[n++] = (ch >= 0x20 && ch < 0x7f) ? (char)ch : '?';
		}
		e->message[n] = '\0';
		if (n == 0)
			snprintf(e->message, sizeof(e->message),
			         "the server responded with HTTP %ld", http);
	}
	json_decref(root);
}

void kube_error_print(const struct kube_error *e, const char *prog)
{
	(void)prog;
	if (e->http)
		fprintf(stderr, "Error from server (%s): %s\n",
		        e->reason[0] ? e->reason : "Unknown", e->message);
	else
		fprintf(stderr, "error: %s\n", e->message);
}

/* ---- label selectors ---- */

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

int kube_selector_string(const json_t *selector, struct buf *out)
{
	if (!json_is_object(selector))
		return MV_EINVAL;
	int rc = 0, first = 1;
	const json_t *ml = json_object_get(selector, "matchLabels");
	if (ml && !json_is_object(ml))
		return MV_EINVAL;
	size_t n = json_object_size(ml);
	const char **keys = NULL;
	if (n) {
		keys = calloc(n, sizeof(*keys));
		if (!keys)
			return MV_ENOMEM;
		size_t i = 0;
		const char *k;
		json_t *v;
		json_object_foreach(JMUT(ml), k, v)
		{
			if (!json_is_string(v)) {
				free(keys);
				return MV_EINVAL;
			}
			keys[i++] = k;
		}
		qsort(keys, n, sizeof(*keys), cmp_str);
		for (i = 0; i < n && !rc; i++) {
			rc = buf_printf(out, "%s%s=%s", first ? "" : ",", keys[i],
			                json_string_value(json_object_get(ml, keys[i])));
			first = 0;
		}
		free(keys);
		if (rc)
			return rc;
	}
	const json_t *exprs = json_object_get(selector, "matchExpressions");
	if (exprs && !json_is_array(exprs))
		return MV_EINVAL;
	size_t i;
	json_t *ex;
	json_array_foreach(exprs, i, ex)
	{
		const char *key = json_string_value(json_object_get(ex, "key"));
		const char *op = json_string_value(json_object_get(ex, "operator"));
		const json_t *vals = json_object_get(ex, "values");
		if (!key || !op)
			return MV_EINVAL;
		if ((rc = buf_append_str(out, first ? "" : ",")))
			return rc;
		first = 0;
		if (strcmp(op, "Exists") == 0) {
			rc = buf_append_str(out, key);
		} else if (strcmp(op, "DoesNotExist") == 0) {
			rc = buf_printf(out, "!%s", key);
		} else if (strcmp(op, "In") == 0 || strcmp(op, "NotIn") == 0) {
			if (!json_is_array(vals) || json_array_size(vals) == 0)
				return MV_EINVAL;
			/* labels.Selector sorts the values of a set requirement. */
			size_t nv = json_array_size(vals);
			const char **sv = calloc(nv, sizeof(*sv));
			if (!sv)
				return MV_ENOMEM;
			for (size_t j = 0; j < nv; j++) {
				sv[j] = json_string_value(json_array_get(vals, j));
				if (!sv[j]) {
					free(sv);
					return MV_EINVAL;
				}
			}
			qsort(sv, nv, sizeof(*sv), cmp_str);
			rc = buf_printf(out, "%s %s (", key, op[0] == 'I' ? "in" : "notin");
			for (size_t j = 0; j < nv && !rc; j++)
				rc = buf_printf(out, "%s%s", j ? "," : "", sv[j]);
			if (!rc)
				rc = buf_append_str(out, ")");
			free(sv);
		} else {
			return MV_EINVAL;
		}
		if (rc)
			return rc;
	}
	return 0;
}

/* ---- watch stream ---- */

void kube_event_release(struct kube_event *ev)
{
	if (!ev)
		return;
	json_decref(ev->object);
	ev->object = NULL;
}

void kube_watch_decoder_init(struct kube_watch_decoder *d, size_t max_event)
{
	memset(d, 0, sizeof(*d));
	d->max_event = max_event ? max_event : KUBE_MAX_EVENT_BYTES;
	buf_init(&d->in, d->max_event + 4096);
}

void kube_watch_decoder_release(struct kube_watch_decoder *d)
{
	buf_release(&d->in);
	memset(d, 0, sizeof(*d));
}

int kube_watch_decoder_feed(struct kube_watch_decoder *d, const void *data, size_t len)
{
	/* Drop what earlier events consumed before growing. */
	if (d->scan > 0 && d->depth == 0) {
		buf_consume(&d->in, d->scan);
		d->scan = 0;
	} else if (d->depth > 0 && d->start > 0) {
		buf_consume(&d->in, d->start);
		d->scan -= d->start;
		d->start = 0;
	}
	size_t pending = d->depth > 0 ? d->in.len - d->start : 0;
	if (pending + len > d->max_event + 4096)
		return MV_ETOOBIG;
	return buf_append(&d->in, data, len);
}

int kube_watch_decoder_partial(const struct kube_watch_decoder *d)
{
	if (d->depth > 0)
		return 1;
	for (size_t i = d->scan; i < d->in.len; i++)
		if (!isspace((unsigned char)d->in.data[i]))
			return 1;
	return 0;
}

static int event_type(const char *s, enum kube_event_type *out)
{
	static const struct {
		const char *name;
		enum kube_event_type type;
	} types[] = {
	    {"ADDED", KUBE_EVENT_ADDED},     {"MODIFIED", KUBE_EVENT_MODIFIED},
	    {"DELETED", KUBE_EVENT_DELETED}, {"BOOKMARK", KUBE_EVENT_BOOKMARK},
	    {"ERROR", KUBE_EVENT_ERROR},
	};
	for (size_t i = 0; s && i < sizeof(types) / sizeof(types[0]); i++) {
		if (strcmp(s, types[i].name) == 0) {
			*out = types[i].type;
			return 0;
		}
	}
	return MV_EPROTO;
}

int kube_watch_decoder_next(struct kube_watch_decoder *d, struct kube_event *ev)
{
	ev->object = NULL;
	const char *p = d->in.data;
	int found = 0;
	while (!found && d->scan < d->in.len) {
		unsigned char ch = (unsigned char)p[d->scan];
		if (d->depth == 0) {
			if (isspace(ch)) {
				d->scan++;
				continue;
			}
			if (ch != '{')
				return MV_EPROTO; /* events are objects, nothing else between them */
			d->start = d->scan;
			d->depth = 1;
			d->scan++;
			continue;
		}
		d->scan++;
		if (d->in_string) {
			if (d->escape)
				d->escape = 0;
			else if (ch == '\\')
				d->escape = 1;
			else if (ch == '"')
				d->in_string = 0;
		} else if (ch == '"') {
			d->in_string = 1;
		} else if (ch == '{' || ch == '[') {
			if (++d->depth > 512)
				return MV_ETOOBIG;
		} else if (ch == '}' || ch == ']') {
			if (--d->depth == 0)
				found = 1;
		}
		if (d->scan - d->start > d->max_event)
			return MV_ETOOBIG;
	}
	if (!found)
		return 0;
	if (p[d->scan - 1] != '}')
		return MV_ESYNTAX; /* '{' closed by ']' */
	/* One whole top-level value [start, scan): brackets matched, strings closed. */
	json_error_t jerr;
	json_t *root = json_loadb(p + d->start, d->scan - d->start, 0, &jerr);
	d->start = d->scan;
	if (!root)
		return MV_ESYNTAX;
	const char *type = json_string_value(json_object_get(root, "type"));
	json_t *obj = json_object_get(root, "object");
	enum kube_event_type t;
	if (!json_is_object(root) || event_type(type, &t) || !json_is_object(obj)) {
		json_decref(root);
		return MV_EPROTO;
	}
	ev->type = t;
	ev->object = json_incref(obj);
	json_decref(root);
	return 1;
}

/* ---- timestamps ---- */

static int digits(const char *s, int n, int *out)
{
	int v = 0;
	for (int i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return 0;
}

int kube_parse_time(const char *s, time_t *out)
{
	int y, mo, d, h, mi, se;
	if (!s || strlen(s) < 20 || digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) ||
	    s[7] != '-' || digits(s + 8, 2, &d) || (s[10] != 'T' && s[10] != 't') ||
	    digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) || s[16] != ':' ||
	    digits(s + 17, 2, &se))
		return MV_EINVAL;
	if (mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || se > 60 || y < 1970)
		return MV_EINVAL;
	const char *z = s + 19;
	if (*z == '.') {
		z++;
		if (!isdigit((unsigned char)*z))
			return MV_EINVAL;
		while (isdigit((unsigned char)*z))
			z++;
	}
	long off = 0;
	if (*z == 'Z' || *z == 'z') {
		z++;
	} else if (*z == '+' || *z == '-') {
		int oh, om;
		if (digits(z + 1, 2, &oh) || z[3] != ':' || digits(z + 4, 2, &om) || oh > 23 ||
		    om > 59)
			return MV_EINVAL;
		off = (oh * 60L + om) * 60L * (*z == '+' ? 1 : -1);
		z += 6;
	} else {
		return MV_EINVAL;
	}
	if (*z)
		return MV_EINVAL;
	/* Days from civil (Howard Hinnant's algorithm): no timegm/TZ dependence. */
	int yy = y - (mo <= 2);
	long era = yy / 400;
	long yoe = yy - era * 400;
	long doy = (153L * (mo + (mo > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	long doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	long long days = era * 146097LL + doe - 719468LL;
	*out = (time_t)(days * 86400LL + h * 3600LL + mi * 60LL + se - off);
	return 0;
}

/* ---- ExecCredential ---- */

void kube_exec_cred_release(struct kube_exec_cred *c)
{
	if (!c)
		return;
	free(c->token);
	free(c->cert_pem);
	free(c->key_pem);
	memset(c, 0, sizeof(*c));
}

static int dup_opt(const char *s, char **out)
{
	*out = NULL;
	if (!s || !*s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : MV_ENOMEM;
}

int kube_exec_cred_parse(const char *data, size_t len, const char *api_version,
                         struct kube_exec_cred *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (len > KUBE_MAX_EXEC_OUTPUT) {
		snprintf(err, errlen, "plugin output over %zu bytes", KUBE_MAX_EXEC_OUTPUT);
		return MV_ETOOBIG;
	}
	json_error_t jerr;
	json_t *root = json_loadb(data, len, 0, &jerr);
	if (!root) {
		snprintf(err, errlen, "plugin output is not JSON: %s", jerr.text);
		return MV_ESYNTAX;
	}
	int rc = MV_EPROTO;
	const char *kind = json_string_value(json_object_get(root, "kind"));
	const char *av = json_string_value(json_object_get(root, "apiVersion"));
	json_t *st = json_object_get(root, "status");
	if (!kind || strcmp(kind, "ExecCredential") != 0) {
		snprintf(err, errlen, "plugin output is not an ExecCredential");
		goto out;
	}
	if (!av || (api_version && strcmp(av, api_version) != 0)) {
		snprintf(err, errlen, "plugin answered apiVersion %s, expected %s",
		         av ? av : "(none)", api_version ? api_version : "(any)");
		goto out;
	}
	if (!json_is_object(st)) {
		snprintf(err, errlen, "ExecCredential has no status");
		goto out;
	}
	const char *tok = json_string_value(json_object_get(st, "token"));
	const char *cert = json_string_value(json_object_get(st, "clientCertificateData"));
	const char *key = json_string_value(json_object_get(st, "clientKeyData"));
	const char *exp = json_string_value(json_object_get(st, "expirationTimestamp"));
	if (((cert && *cert) != 0) != ((key && *key) != 0)) {
		snprintf(err, errlen,
		         "ExecCredential needs both clientCertificateData and "
		         "clientKeyData");
		goto out;
	}
	if (!(tok && *tok) && !(cert && *cert)) {
		snprintf(err, errlen,
		         "ExecCredential status has neither token nor client certificate");
		goto out;
	}
	if (exp && kube_parse_time(exp, &out->expires)) {
		snprintf(err, errlen, "ExecCredential expirationTimestamp %.64s is not RFC 3339",
		         exp);
		goto out;
	}
	if (dup_opt(tok, &out->token) || dup_opt(cert, &out->cert_pem) ||
	    dup_opt(key, &out->key_pem)) {
		rc = MV_ENOMEM;
		goto out;
	}
	rc = 0;
out:
	if (rc)
		kube_exec_cred_release(out);
	json_decref(root);
	return rc;
}

int kube_query_escape(struct buf *out, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	for (; *s; s++) {
		unsigned char ch = (unsigned char)*s;
		int rc;
		if (isalnum(ch) || ch == '-' || ch == '_' || ch == '.' || ch == '~') {
			rc = buf_append(out, s, 1);
		} else {
			char e[3] = {'%', hex[ch >> 4], hex[ch & 15]};
			rc = buf_append(out, e, 3);
		}
		if (rc)
			return rc;
	}
	return 0;
}
