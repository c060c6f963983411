/*
 * kube.c - the REST layer of the Kubernetes client: libcurl requests with
 * credentials, bounded retries with jittered back-off, LIST pagination and the
 * LIST+WATCH loop (client-go's Reflector, reduced to what moviectl needs).
 * Protocol parsing lives in kube_proto.c; this file only moves bytes.
 */
#include <curl/curl.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kube.h"

#include "movie/err.h"
#include "movie/banned.h"

struct kube_client {
	struct kube_config cfg;
	struct kube_client_opts opts;
	CURL *easy;       /* reused: keeps the connection alive between calls */
	char *url_base;   /* scheme://host:port used in URLs (tls-server-name applied) */
	char *connect_to; /* CURLOPT_CONNECT_TO entry when tls-server-name is set */
	char *file_token;
	double file_token_at;
	struct kube_exec_cred exec_cred;
	int have_exec_cred;
	unsigned rand_state;
};

double kube_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dup_or_null(const char *s, char **out)
{
	*out = NULL;
	if (!s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : MV_ENOMEM;
}

static int copy_buf(const struct buf *src, struct buf *dst)
{
	buf_init(dst, KUBE_MAX_CONFIG_BYTES);
	return src->len ? buf_append(dst, src->data, src->len) : 0;
}

static char **copy_strv(char **v)
{
	size_t n = 0;
	while (v && v[n])
		n++;
	char **out = calloc(n + 1, sizeof(char *));
	for (size_t i = 0; out && i < n; i++) {
		if (!(out[i] = strdup(v[i]))) {
			for (size_t j = 0; j < i; j++)
				free(out[j]);
			free(out);
			return NULL;
		}
	}
	return out;
}

static int config_copy(const struct kube_config *s, struct kube_config *d)
{
	memset(d, 0, sizeof(*d));
	int rc;
	if ((rc = dup_or_null(s->server, &d->server)) ||
	    (rc = dup_or_null(s->namespace, &d->namespace)) ||
	    (rc = dup_or_null(s->context, &d->context)) ||
	    (rc = dup_or_null(s->ca_file, &d->ca_file)) ||
	    (rc = dup_or_null(s->tls_server_name, &d->tls_server_name)) ||
	    (rc = dup_or_null(s->proxy_url, &d->proxy_url)) ||
	    (rc = dup_or_null(s->cert_file, &d->cert_file)) ||
	    (rc = dup_or_null(s->key_file, &d->key_file)) ||
	    (rc = dup_or_null(s->token, &d->token)) ||
	    (rc = dup_or_null(s->token_file, &d->token_file)) ||
	    (rc = copy_buf(&s->ca_data, &d->ca_data)) ||
	    (rc = copy_buf(&s->cert_data, &d->cert_data)) ||
	    (rc = copy_buf(&s->key_data, &d->key_data)))
		return rc;
	d->insecure = s->insecure;
	if (s->exec) {
		struct kube_exec_config *e = calloc(1, sizeof(*e));
		if (!e)
			return MV_ENOMEM;
		d->exec = e;
		if ((rc = dup_or_null(s->exec->api_version, &e->api_version)) ||
		    (rc = dup_or_null(s->exec->command, &e->command)))
			return rc;
		e->argv = copy_strv(s->exec->argv);
		e->env = copy_strv(s->exec->env);
		if (!e->argv || !e->env)
			return MV_ENOMEM;
		e->interactive_always = s->exec->interactive_always;
		e->provide_cluster_info = s->exec->provide_cluster_info;
	}
	return 0;
}

/*
 * tls-server-name: libcurl takes the TLS name from the URL, so the URL names
 * tls-server-name and CONNECT_TO sends the connection to the real host. The
 * Host header then carries that name too, which the API server ignores.
 */
static int build_urls(struct kube_client *c)
{
	const char *s = c->cfg.server;
	const char *hostp = strstr(s, "://");
	if (!hostp)
		return MV_EINVAL;
	hostp += 3;
	size_t scheme_len = (size_t)(hostp - s);
	const char *path = strchr(hostp, '/');
	size_t hostport_len = path ? (size_t)(path - hostp) : strlen(hostp);
	struct buf b;
	buf_init(&b, 8192);
	int rc;
	if (!c->cfg.tls_server_name) {
		rc = buf_append_str(&b, s);
		if (rc) {
			buf_release(&b);
			return rc;
		}
		c->url_base = b.data;
		return 0;
	}
	/* Split host[:port] (IPv6 in brackets). */
	const char *port = NULL;
	size_t host_len = hostport_len;
	if (hostp[0] == '[') {
		const char *close = memchr(hostp, ']', hostport_len);
		if (!close)
			return MV_EINVAL;
		if ((size_t)(close - hostp) + 1 < hostport_len && close[1] == ':') {
			port = close + 2;
			host_len = (size_t)(close - hostp) + 1;
		}
	} else {
		const char *colon = memchr(hostp, ':', hostport_len);
		if (colon) {
			port = colon + 1;
			host_len = (size_t)(colon - hostp);
		}
	}
	int port_len = port ? (int)(hostport_len - (size_t)(port - hostp)) : 0;
	const char *dflt = strncmp(s, "https", 5) == 0 ? "443" : "80";
	rc = buf_printf(&b, "%.*s%s:%.*s%s", (int)scheme_len, s, c->cfg.tls_server_name,
	                port ? port_len : (int)strlen(dflt), port ? port : dflt, path ? path : "");
	if (rc) {
		buf_release(&b);
		return rc;
	}
	c->url_base = b.data;
	buf_init(&b, 8192);
	/* CONNECT_TO wants a bare IPv6 address in brackets as well. */
	rc = buf_printf(&b, "%s:%.*s:%.*s:%.*s", c->cfg.tls_server_name,
	                port ? port_len : (int)strlen(dflt), port ? port : dflt, (int)host_len,
	                hostp, port ? port_len : (int)strlen(dflt), port ? port : dflt);
	if (rc) {
		buf_release(&b);
		return rc;
	}
	c->connect_to = b.data;
	return 0;
}

int kube_client_new(const struct kube_config *cfg, const struct kube_client_opts *opts,
                    struct kube_client **out)
{
	*out = NULL;
	if (!cfg || !cfg->server)
		return MV_EINVAL;
	static int curl_ready;
	if (!curl_ready) {
		if (curl_global_init(CURL_GLOBAL_DEFAULT))
			return MV_ENOMEM;
		curl_ready = 1;
	}
	struct kube_client *c = calloc(1, sizeof(*c));
	if (!c)
		return MV_ENOMEM;
	int rc = config_copy(cfg, &c->cfg);
	if (rc)
		goto fail;
	if (opts)
		c->opts = *opts;
	if (c->opts.timeout_ms <= 0)
		c->opts.timeout_ms = 30000;
	if (c->opts.connect_timeout_ms <= 0)
		c->opts.connect_timeout_ms = 10000;
	if (c->opts.max_retries == 0)
		c->opts.max_retries = 5;
	if (c->opts.max_retries < 0)
		c->opts.max_retries = 0;
	if (c->opts.backoff_base_ms <= 0)
		c->opts.backoff_base_ms = 250;
	if (c->opts.backoff_max_ms <= 0)
		c->opts.backoff_max_ms = 8000;
	if (c->opts.token_refresh_ms <= 0)
		c->opts.token_refresh_ms = KUBE_TOKEN_FILE_REFRESH_S * 1000L;
	if (!c->opts.user_agent)
		c->opts.user_agent = "moviectl";
	if ((rc = build_urls(c)))
		goto fail;
	c->easy = curl_easy_init();
	if (!c->easy) {
		rc = MV_ENOMEM;
		goto fail;
	}
	c->rand_state = (unsigned)time(NULL) ^ ((unsigned)getpid() << 16);
	*out = c;
	return 0;
fail:
	kube_client_free(c);
	return rc;
}

void kube_client_free(struct kube_client *c)
{
	if (!c)
		return;
	if (c->easy)
		curl_easy_cleanup(c->easy);
	kube_config_release(&c->cfg);
	kube_exec_cred_release(&c->exec_cred);
	free(c->url_base);
	free(c->connect_to);
	free(c->file_token);
	free(c);
}

const char *kube_client_namespace(const struct kube_client *c)
{
	return c->cfg.namespace ? c->cfg.namespace : "default";
}

/* ---- credentials ---- */

static int read_token_file(const char *path, char **out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return MV_EIO;
	struct buf b;
	buf_init(&b, KUBE_MAX_TOKEN_BYTES);
	int rc = 0;
	char chunk[4096];
	for (;;) {
		ssize_t n = read(fd, chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			rc = MV_EIO;
			break;
		}
		if (n == 0)
			break;
		if ((rc = buf_append(&b, chunk, (size_t)n)))
			break;
	}
	close(fd);
	if (rc) {
		buf_release(&b);
		return rc;
	}
	while (b.len && isspace((unsigned char)b.data[b.len - 1]))
		b.data[--b.len] = '\0';
	if (!b.len) {
		buf_release(&b);
		return MV_EINVAL;
	}
	*out = b.data;
	return 0;
}

/* The bearer token for the next request (NULL: none). */
static int current_token(struct kube_client *c, const char **tok, struct kube_error *err)
{
	*tok = NULL;
	if (c->cfg.exec) {
		time_t now = time(NULL);
		if (c->have_exec_cred && c->exec_cred.expires && now >= c->exec_cred.expires) {
			kube_exec_cred_release(&c->exec_cred);
			c->have_exec_cred = 0;
		}
		if (!c->have_exec_cred) {
			char e[512] = "";
			int rc = kube_exec_run(c->cfg.exec, c->cfg.server, KUBE_EXEC_TIMEOUT_MS,
			                       &c->exec_cred, e, sizeof(e));
			if (rc) {
				kube_error_set(err, "ExecPlugin", "getting credentials: %s", e);
				return rc == MV_ENOMEM ? rc : MV_EIO;
			}
			c->have_exec_cred = 1;
		}
		*tok = c->exec_cred.token;
		return 0;
	}
	if (c->cfg.token_file) {
		double now = kube_now();
		/* Projected service-account tokens rotate: never cache one longer than this. */
		if (!c->file_token ||
		    (now - c->file_token_at) * 1000.0 >= c->opts.token_refresh_ms) {
			char *fresh = NULL;
			int rc = read_token_file(c->cfg.token_file, &fresh);
			if (rc == 0) {
				free(c->file_token);
				c->file_token = fresh;
				c->file_token_at = now;
			} else if (!c->file_token) {
				/* Keep the last good token if a rotation is half-written. */
				kube_error_set(err, "Unauthorized", "cannot read token file %s: %s",
				               c->cfg.token_file,
				               rc == MV_EIO ? strerror(errno) : mv_strerror(rc));
				return MV_EIO;
			}
		}
		*tok = c->file_token;
		return 0;
	}
	*tok = c->cfg.token;
	return 0;
}

/* ---- one HTTP exchange ---- */

struct exchange {
	struct buf body; /* non-watch bodies, and watch error bodies */
	int too_big;
	double retry_after; /* seconds, from Retry-After */
	/* watch streaming */
	CURL *easy;
	struct kube_watch_decoder *dec;
	int (*on_event)(void *user, struct kube_event *ev);
	void *user;
	int stream_rc; /* decoder or handler code that stopped the stream */
	int stopped;
};

static size_t on_header(char *data, size_t size, size_t n, void *user)
{
	struct exchange *x = user;
	size_t len = size * n;
	if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0) {
		char tmp[32];
		size_t l = len - 12 < sizeof(tmp) - 1 ? len - 12 : sizeof(tmp) - 1;
		memcpy(tmp, data + 12, l);
		tmp[l] = '\0';
		char *end;
		double v = strtod(tmp, &end);
		if (end != tmp && v > 0)
			x->retry_after = v > 3600 ? 3600 : v;
	}
	return len;
}

static size_t on_body(char *data, size_t size, size_t n, void *user)
{
	struct exchange *x = user;
	size_t len = size * n;
	if (x->dec) {
		long code = 0;
		curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &code);
		if (code == 200) {
			int rc = kube_watch_decoder_feed(x->dec, data, len);
			while (rc == 0) {
				struct kube_event ev;
				rc = kube_watch_decoder_next(x->dec, &ev);
				if (rc == 1) {
					rc = x->on_event(x->user, &ev);
					kube_event_release(&ev);
					if (rc == 1) {
						x->stopped = 1;
						return 0;
					}
				} else if (rc == 0) {
					return len;
				}
			}
			x->stream_rc = rc;
			return 0;
		}
		/* Not a stream: keep the Status body, capped. */
		if (x->body.len + len > KUBE_MAX_STATUS_BYTES)
			return len;
		return buf_append(&x->body, data, len) ? 0 : len;
	}
	if (buf_append(&x->body, data, len)) {
		x->too_big = 1;
		return 0;
	}
	return len;
}

static const char *content_type(enum kube_patch_type t)
{
	switch (t) {
	case KUBE_PATCH_MERGE: return "application/merge-patch+json";
	case KUBE_PATCH_STRATEGIC: return "application/strategic-merge-patch+json";
	case KUBE_PATCH_JSON:
	default: return "application/json-patch+json";
	}
}

/*
 * One request. Returns 0 with *http set, or a curl failure in *cc (then
 * *http is 0). Local failures (credentials, memory) return a negative code.
 */
static int exchange(struct kube_client *c, const char *method, const char *path, const char *ctype,
                    const char *body, long timeout_ms, struct exchange *x, long *http, CURLcode *cc,
                    struct kube_error *err)
{
	CURL *e = c->easy;
	*http = 0;
	*cc = CURLE_OK;
	const char *tok;
	int rc = current_token(c, &tok, err);
	if (rc)
		return rc;
	struct buf url, auth;
	buf_init(&url, 65536);
	buf_init(&auth, KUBE_MAX_TOKEN_BYTES + 64);
	struct curl_slist *hdrs = NULL, *ct = NULL;
	if ((rc = buf_printf(&url, "%s%s", c->url_base, path)))
		goto out;
	curl_easy_reset(e);
	curl_easy_setopt(e, CURLOPT_URL, url.data);
	curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
	curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
	curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(e, CURLOPT_USERAGENT, c->opts.user_agent);
	curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, c->opts.connect_timeout_ms);
	curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, timeout_ms);
	curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(e, CURLOPT_WRITEDATA, x);
	curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(e, CURLOPT_HEADERDATA, x);
	if (c->connect_to) {
		ct = curl_slist_append(NULL, c->connect_to);
		if (!ct) {
			rc = MV_ENOMEM;
			goto out;
		}
		curl_easy_setopt(e, CURLOPT_CONNECT_TO, ct);
	}
	if (c->cfg.proxy_url)
		curl_easy_setopt(e, CURLOPT_PROXY, c->cfg.proxy_url);
	if (c->cfg.insecure) {
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(e, CURLOPT_SSL_VERIFYHOST, 0L);
	} else if (c->cfg.ca_data.len) {
		struct curl_blob blob = {c->cfg.ca_data.data, c->cfg.ca_data.len, CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_CAINFO_BLOB, &blob);
	} else if (c->cfg.ca_file) {
		curl_easy_setopt(e, CURLOPT_CAINFO, c->cfg.ca_file);
	}
	const char *cert_pem = c->have_exec_cred ? c->exec_cred.cert_pem : NULL;
	const char *key_pem = c->have_exec_cred ? c->exec_cred.key_pem : NULL;
	if (cert_pem && key_pem) {
		struct curl_blob cb = {(void *)(uintptr_t)cert_pem, strlen(cert_pem),
		                       CURL_BLOB_COPY};
		struct curl_blob kb = {(void *)(uintptr_t)key_pem, strlen(key_pem), CURL_BLOB_COPY};
		curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
		curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
		curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
	} else {
		if (c->cfg.cert_data.len) {
			struct curl_blob cb = {c->cfg.cert_data.data, c->cfg.cert_data.len,
			                       CURL_BLOB_COPY};
			curl_easy_setopt(e, CURLOPT_SSLCERT_BLOB, &cb);
			curl_easy_setopt(e, CURLOPT_SSLCERTTYPE, "PEM");
		} else if (c->cfg.cert_file) {
			curl_easy_setopt(e, CURLOPT_SSLCERT, c->cfg.cert_file);
		}
		if (c->cfg.key_data.len) {
			struct curl_blob kb = {c->cfg.key_data.data, c->cfg.key_data.len,
			                       CURL_BLOB_COPY};
			curl_easy_setopt(e, CURLOPT_SSLKEY_BLOB, &kb);
		} else if (c->cfg.key_file) {
			curl_easy_setopt(e, CURLOPT_SSLKEY, c->cfg.key_file);
		}
	}
	if (!(hdrs = curl_slist_append(hdrs, "Accept: application/json"))) {
		rc = MV_ENOMEM;
		goto out;
	}
	if (tok) {
		if ((rc = buf_printf(&auth, "Authorization: Bearer %s", tok)))
			goto out;
		struct curl_slist *h = curl_slist_append(hdrs, auth.data);
		if (!h) {
			rc = MV_ENOMEM;
			goto out;
		}
		hdrs = h;
	}
	if (ctype) {
		char line[128];
		snprintf(line, sizeof(line), "Content-Type: %s", ctype);
		struct curl_slist *h = curl_slist_append(hdrs, line);
		if (!h) {
			rc = MV_ENOMEM;
			goto out;
		}
		hdrs = h;
	}
	/* No "Expect: 100-continue" round trip for patches. */
	struct curl_slist *h = curl_slist_append(hdrs, "Expect:");
	if (!h) {
		rc = MV_ENOMEM;
		goto out;
	}
	hdrs = h;
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
	if (body) {
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(body));
	}
	x->easy = e;
	*cc = curl_easy_perform(e);
	curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, http);
out:
	curl_easy_setopt(e, CURLOPT_HTTPHEADER, NULL);
	curl_easy_setopt(e, CURLOPT_CONNECT_TO, NULL);
	curl_slist_free_all(hdrs);
	curl_slist_free_all(ct);
	/* The token must not outlive the call in our heap. */
	if (auth.data)
		memset(auth.data, 0, auth.len);
	buf_release(&auth);
	buf_release(&url);
	return rc;
}

static void backoff_sleep(struct kube_client *c, int attempt, double retry_after, double deadline)
{
	double ms = (double)c->opts.backoff_base_ms;
	for (int i = 0; i < attempt && ms < c->opts.backoff_max_ms; i++)
		ms *= 2;
	if (ms > c->opts.backoff_max_ms)
		ms = (double)c->opts.backoff_max_ms;
	/* Jitter in [ms/2, ms]: many clients restarting together spread out. */
	ms = ms / 2 + (double)(rand_r(&c->rand_state) % 1000) / 1000.0 * (ms / 2);
	if (retry_after > 0) {
		double ra = retry_after * 1000.0;
		ms = ra > c->opts.backoff_max_ms ? (double)c->opts.backoff_max_ms : ra;
	}
	if (deadline > 0) {
		double left = (deadline - kube_now()) * 1000.0;
		if (left < ms)
			ms = left > 0 ? left : 0;
	}
	struct timespec ts = {(time_t)(ms / 1000),
	                      (long)((ms - (double)(time_t)(ms / 1000) * 1000) * 1e6)};
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

static int connect_failure(CURLcode cc)
{
	return cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST ||
	       cc == CURLE_COULDNT_RESOLVE_PROXY;
}

static int lost_connection(CURLcode cc)
{
	return cc == CURLE_RECV_ERROR || cc == CURLE_SEND_ERROR || cc == CURLE_GOT_NOTHING ||
	       cc == CURLE_PARTIAL_FILE || cc == CURLE_SSL_CONNECT_ERROR;
}

static int code_for_http(long http)
{
	if (http == 404)
		return MV_ENOTFOUND;
	if (http == 409)
		return MV_EEXIST;
	if (http == 429 || http >= 500)
		return MV_EUNAVAIL;
	return MV_EINVAL;
}

static void curl_error(struct kube_error *err, CURLcode cc, const char *url_base)
{
	kube_error_set(err, cc == CURLE_OPERATION_TIMEDOUT ? "Timeout" : "ConnectionFailed",
	               "%s: %s", url_base, curl_easy_strerror(cc));
}

/*
 * A request with the retry policy. idempotent: 5xx and lost connections are
 * retried too. *out gets the JSON object of a 2xx answer when out != NULL.
 */
static int request(struct kube_client *c, const char *method, const char *path, const char *ctype,
                   const char *body, int idempotent, json_t **out, struct kube_error *err)
{
	if (out)
		*out = NULL;
	kube_error_clear(err);
	int reauth = 0;
	for (int attempt = 0;; attempt++) {
		struct exchange x;
		memset(&x, 0, sizeof(x));
		buf_init(&x.body, KUBE_MAX_BODY_BYTES);
		long http;
		CURLcode cc;
		int rc =
		    exchange(c, method, path, ctype, body, c->opts.timeout_ms, &x, &http, &cc, err);
		if (rc) {
			buf_release(&x.body);
			return rc;
		}
		int retry = 0;
		if (cc != CURLE_OK) {
			if (x.too_big) {
				kube_error_set(err, "TooBig",
				               "%s %s: response larger than %zu bytes", method,
				               path, KUBE_MAX_BODY_BYTES);
				rc = MV_ETOOBIG;
			} else if (cc == CURLE_OPERATION_TIMEDOUT) {
				curl_error(err, cc, c->url_base);
				rc = MV_ETIMEDOUT;
			} else {
				curl_error(err, cc, c->url_base);
				rc = MV_EUNAVAIL;
				retry = connect_failure(cc) || (idempotent && lost_connection(cc));
			}
		} else if (http >= 200 && http < 300) {
			if (out) {
				json_error_t jerr;
				*out = json_loadb(x.body.data ? x.body.data : "", x.body.len, 0,
				                  &jerr);
				if (!json_is_object(*out)) {
					json_decref(*out);
					*out = NULL;
					kube_error_set(err, "BadResponse",
					               "%s %s: answer is not a JSON object", method,
					               path);
					rc = MV_EPROTO;
				}
			}
		} else {
			kube_error_from_body(err, http, x.body.data, x.body.len);
			rc = code_for_http(http);
			if (http == 429 || (idempotent && http >= 500))
				retry = 1;
			if (http == 401 && c->have_exec_cred && !reauth) {
				/* client-go: a 401 refreshes the plugin's credential once. */
				kube_exec_cred_release(&c->exec_cred);
				c->have_exec_cred = 0;
				reauth = 1;
				buf_release(&x.body);
				attempt--;
				continue;
			}
		}
		double ra = x.retry_after;
		buf_release(&x.body);
		if (!retry || attempt >= c->opts.max_retries)
			return rc;
		backoff_sleep(c, attempt, ra, 0);
	}
}

int kube_get(struct kube_client *c, const char *path, json_t **out, struct kube_error *err)
{
	return request(c, "GET", path, NULL, NULL, 1, out, err);
}

int kube_patch(struct kube_client *c, const char *path, enum kube_patch_type type, const char *body,
               json_t **out, struct kube_error *err)
{
	json_t *obj = NULL;
	int rc = request(c, "PATCH", path, content_type(type), body, 0, &obj, err);
	if (out)
		*out = obj;
	else
		json_decref(obj);
	return rc;
}

int kube_create(struct kube_client *c, const char *path, const char *body, json_t **out,
                struct kube_error *err)
{
	json_t *obj = NULL;
	/* Not idempotent: a 5xx or lost connection may have created it. */
	int rc = request(c, "POST", path, "application/json", body, 0, &obj, err);
	if (out)
		*out = obj;
	else
		json_decref(obj);
	return rc;
}

static int add_param(struct buf *q, const char *name, const char *value)
{
	int rc = buf_printf(q, "%c%s=", q->len ? '&' : '?', name);
	return rc ? rc : kube_query_escape(q, value);
}

int kube_list(struct kube_client *c, const char *path, const char *label_selector,
              const char *field_selector, json_t **items, char **rv, struct kube_error *err)
{
	*items = NULL;
	if (rv)
		*rv = NULL;
	json_t *all = json_array();
	if (!all)
		return MV_ENOMEM;
	char *cont = NULL;
	int rc = 0, restarted = 0;
	struct buf q;
	buf_init(&q, 65536);
	for (int page = 0;; page++) {
		if (page >= KUBE_MAX_LIST_PAGES) {
			kube_error_set(err, "TooBig", "%s: more than %d list pages", path,
			               KUBE_MAX_LIST_PAGES);
			rc = MV_ETOOBIG;
			break;
		}
		buf_reset(&q);
		if ((label_selector && *label_selector &&
		     (rc = add_param(&q, "labelSelector", label_selector))) ||
		    (field_selector && *field_selector &&
		     (rc = add_param(&q, "fieldSelector", field_selector))) ||
		    (cont && (rc = add_param(&q, "continue", cont))))
			break;
		struct buf full;
		buf_init(&full, 131072);
		if ((rc = buf_printf(&full, "%s%s", path, q.len ? q.data : ""))) {
			buf_release(&full);
			break;
		}
		json_t *list = NULL;
		rc = kube_get(c, full.data, &list, err);
		buf_release(&full);
		if (rc && err->http == 410 && cont && !restarted) {
			/* The continue token expired: the list restarts once, whole. */
			restarted = 1;
			free(cont);
			cont = NULL;
			json_array_clear(all);
			page = -1;
			rc = 0;
			continue;
		}
		if (rc)
			break;
		json_t *its = json_object_get(list, "items");
		json_t *meta = json_object_get(list, "metadata");
		if (its && !json_is_array(its) && !json_is_null(its)) {
			json_decref(list);
			kube_error_set(err, "BadResponse", "%s: items is not a list", path);
			rc = MV_EPROTO;
			break;
		}
		if (json_is_array(its) && json_array_extend(all, its)) {
			json_decref(list);
			rc = MV_ENOMEM;
			break;
		}
		const char *next = json_string_value(json_object_get(meta, "continue"));
		const char *lrv = json_string_value(json_object_get(meta, "resourceVersion"));
		if (rv && lrv) {
			free(*rv);
			*rv = strdup(lrv);
		}
		free(cont);
		cont = next && *next ? strdup(next) : NULL;
		json_decref(list);
		if (!cont)
			break;
	}
	free(cont);
	buf_release(&q);
	if (rc) {
		json_decref(all);
		if (rv) {
			free(*rv);
			*rv = NULL;
		}
		return rc;
	}
	*items = all;
	return 0;
}

/* ---- LIST + WATCH ---- */

struct watch_state {
	kube_event_fn fn;
	void *user;
	char *rv;
	json_t *seen;    /* "ns/name" -> last object, to notice deletions on a re-list */
	int expired;     /* an ERROR event with code 410 arrived */
	int error_event; /* an ERROR event arrived */
	int events;      /* events received on this watch */
	struct kube_error *err;
	int fn_rc; /* the callback's negative code */
};

static int object_key(const json_t *obj, struct buf *key)
{
	const json_t *m = json_object_get(obj, "metadata");
	const char *ns = json_string_value(json_object_get(m, "namespace"));
	const char *n = json_string_value(json_object_get(m, "name"));
	buf_reset(key);
	return buf_printf(key, "%s/%s", ns ? ns : "", n ? n : "");
}

static void remember_rv(struct watch_state *w, const json_t *obj)
{
	const char *rv =
	    json_string_value(json_object_get(json_object_get(obj, "metadata"), "resourceVersion"));
	if (rv && *rv) {
		char *copy = strdup(rv);
		if (copy) {
			free(w->rv);
			w->rv = copy;
		}
	}
}

static int deliver(struct watch_state *w, enum kube_event_type type, json_t *obj)
{
	struct buf key;
	buf_init(&key, 4096);
	int rc = object_key(obj, &key);
	if (!rc) {
		if (type == KUBE_EVENT_DELETED)
			json_object_del(w->seen, key.data);
		else if (json_object_set(w->seen, key.data, obj))
			rc = MV_ENOMEM;
	}
	buf_release(&key);
	if (rc)
		return rc;
	struct kube_event ev = {type, obj};
	rc = w->fn(w->user, &ev);
	if (rc < 0)
		w->fn_rc = rc;
	return rc;
}

static int on_watch_event(void *user, struct kube_event *ev)
{
	struct watch_state *w = user;
	w->events++;
	switch (ev->type) {
	case KUBE_EVENT_BOOKMARK: remember_rv(w, ev->object); return 0;
	case KUBE_EVENT_ERROR:
		w->error_event = 1;
		kube_error_from_status(w->err, ev->object);
		if (w->err->http == 410)
			w->expired = 1;
		return 1; /* the server ends the stream after an ERROR event */
	default: remember_rv(w, ev->object); return deliver(w, ev->type, ev->object) == 0 ? 0 : 1;
	}
}

/* LIST and deliver: items as ADDED, vanished objects as DELETED. */
static int relist(struct kube_client *c, const char *path, const char *ls, const char *fs,
                  struct watch_state *w, struct kube_error *err)
{
	json_t *items;
	char *rv = NULL;
	int rc = kube_list(c, path, ls, fs, &items, &rv, err);
	if (rc)
		return rc;
	free(w->rv);
	w->rv = rv;
	json_t *gone = json_copy(w->seen); /* shallow: values are shared references */
	struct buf key;
	buf_init(&key, 4096);
	size_t i;
	json_t *it;
	if (!gone)
		rc = MV_ENOMEM;
	json_array_foreach(items, i, it)
	{
		if (rc)
			break;
		if (!object_key(it, &key))
			json_object_del(gone, key.data);
		rc = deliver(w, KUBE_EVENT_ADDED, it);
	}
	const char *k;
	json_t *v;
	void *tmp;
	json_object_foreach_safe(gone, tmp, k, v)
	{
		if (rc)
			break;
		rc = deliver(w, KUBE_EVENT_DELETED, v);
	}
	buf_release(&key);
	json_decref(gone);
	json_decref(items);
	return rc;
}

int kube_watch_until(struct kube_client *c, const char *path, const char *label_selector,
                     const char *field_selector, double deadline, kube_event_fn fn, void *user,
                     struct kube_error *err)
{
	struct watch_state w = {.fn = fn, .user = user, .err = err};
	w.seen = json_object();
	if (!w.seen)
		return MV_ENOMEM;
	kube_error_clear(err);
	int rc = 0, need_list = 1, failures = 0;
	struct buf q;
	buf_init(&q, 131072);
	for (;;) {
		if (deadline > 0 && kube_now() >= deadline) {
			kube_error_set(err, "Timeout", "timed out waiting for the condition");
			rc = MV_ETIMEDOUT;
			break;
		}
		if (need_list) {
			rc = relist(c, path, label_selector, field_selector, &w, err);
			if (rc == 1 || w.fn_rc) {
				rc = rc == 1 ? 0 : w.fn_rc;
				break;
			}
			if (rc)
				break;
			need_list = 0;
		}
		/* Like the Reflector: a server-side timeout in [300, 600) s, then re-watch. */
		long tsec = 300 + (long)(rand_r(&c->rand_state) % 300);
		long curl_ms = (tsec + 30) * 1000;
		if (deadline > 0) {
			double left = deadline - kube_now();
			if (left * 1000 < curl_ms)
				curl_ms = (long)(left * 1000) + 1;
			if (left < tsec)
				tsec = (long)left + 1;
		}
		buf_reset(&q);
		char num[32];
		snprintf(num, sizeof(num), "%ld", tsec);
		if ((rc = buf_printf(&q, "%s?watch=1&allowWatchBookmarks=true", path)) ||
		    (w.rv && (rc = add_param(&q, "resourceVersion", w.rv))) ||
		    (rc = buf_printf(&q, "&timeoutSeconds=%s", num)) ||
		    (label_selector && *label_selector &&
		     (rc = add_param(&q, "labelSelector", label_selector))) ||
		    (field_selector && *field_selector &&
		     (rc = add_param(&q, "fieldSelector", field_selector))))
			break;
		struct kube_watch_decoder dec;
		kube_watch_decoder_init(&dec, 0);
		struct exchange x;
		memset(&x, 0, sizeof(x));
		buf_init(&x.body, KUBE_MAX_STATUS_BYTES + 1);
		x.dec = &dec;
		x.on_event = on_watch_event;
		x.user = &w;
		w.expired = 0;
		w.error_event = 0;
		w.events = 0;
		long http;
		CURLcode cc;
		double started = kube_now();
		rc = exchange(c, "GET", q.data, NULL, NULL, curl_ms, &x, &http, &cc, err);
		int partial = kube_watch_decoder_partial(&dec);
		kube_watch_decoder_release(&dec);
		double ra = x.retry_after;
		if (rc) {
			buf_release(&x.body);
			break;
		}
		if (x.stopped && w.fn_rc) {
			rc = w.fn_rc;
			buf_release(&x.body);
			break;
		}
		if (x.stopped && !w.error_event) {
			rc = 0; /* the callback is satisfied */
			buf_release(&x.body);
			break;
		}
		int retry = 0;
		if (w.expired || (http == 410)) {
			need_list = 1; /* too old resourceVersion: re-list, then watch from there */
			free(w.rv);
			w.rv = NULL;
			kube_error_clear(err);
		} else if (x.stopped) {
			/* An ERROR event other than 410: back off and re-watch. */
			retry = 1;
		} else if (x.stream_rc) {
			kube_error_set(err, "BadResponse", "watch %s: malformed stream (%s)", path,
			               mv_strerror(x.stream_rc));
			retry = 1;
		} else if (cc == CURLE_OPERATION_TIMEDOUT) {
			/* Our own bound on one watch; the deadline check above decides. */
			kube_error_clear(err);
		} else if (cc != CURLE_OK) {
			curl_error(err, cc, c->url_base);
			retry = 1;
		} else if (http == 200) {
			if (partial) {
				kube_error_set(err, "BadResponse",
				               "watch %s: stream ended inside an event", path);
				retry = 1;
			} else if (w.events) {
				failures =
				    0; /* a clean end after progress: re-watch from the last RV */
			}
		} else {
			kube_error_from_body(err, http, x.body.data, x.body.len);
			if (http == 429 || http >= 500) {
				retry = 1;
			} else {
				rc = code_for_http(http);
				buf_release(&x.body);
				break;
			}
		}
		buf_release(&x.body);
		if (retry) {
			if (++failures > c->opts.max_retries) {
				rc = MV_EUNAVAIL;
				break;
			}
			backoff_sleep(c, failures - 1, ra, deadline);
		} else if (http == 200 && !w.events && !need_list && cc == CURLE_OK &&
		           kube_now() - started < 1.0) {
			/* An empty stream ending at once: do not spin on the server. (A quiet
			 * watch ending at its timeoutSeconds is normal and not counted.) */
			if (++failures > c->opts.max_retries * 4 + 20) {
				kube_error_set(err, "BadResponse",
				               "watch %s: server keeps closing the stream", path);
				rc = MV_EUNAVAIL;
				break;
			}
			backoff_sleep(c, 0, 0, deadline);
		}
	}
	buf_release(&q);
	free(w.rv);
	json_decref(w.seen);
	return rc;
}
