/*
 * kubeconfig.c - find the API server and credentials the way kubectl does
 * (client-go tools/clientcmd loader.go and client_config.go, rest/config.go
 * InClusterConfig, plugin/pkg/client/auth/exec), K8S-API.md §5.
 *
 * The parse/merge/resolve steps take bytes and values (fuzzed by
 * fuzz_kubeconfig.c); kube_config_load is the thin layer that reads files and
 * the environment; kube_exec_run starts credential plugins.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kube.h"
#include "ytree.h"

#include "movie/err.h"
#include "movie/banned.h"

extern char **environ;

#define SA_DIR "/var/run/secrets/kubernetes.io/serviceaccount"

/* ---- YAML to JSON, first-wins merge ---- */

/* Scalars stay strings: kubeconfig values are strings and booleans, and the
 * resolver reads booleans by their text. */
static json_t *ynode_to_json(const struct ynode *n)
{
	if (!n)
		return json_null();
	switch (n->type) {
	case YNODE_SCALAR:
		if (!n->quoted &&
		    (strcmp(n->str, "null") == 0 || strcmp(n->str, "~") == 0 || n->str[0] == '\0'))
			return json_null();
		return json_string(n->str);
	case YNODE_SEQ: {
		json_t *a = json_array();
		for (size_t i = 0; a && i < n->n; i++) {
			if (json_array_append_new(a, ynode_to_json(n->vals[i]))) {
				json_decref(a);
				return NULL;
			}
		}
		return a;
	}
	case YNODE_MAP: {
		json_t *o = json_object();
		for (size_t i = 0; o && i < n->n; i++) {
			json_t *v = ynode_to_json(n->vals[i]);
			if (!v || json_object_set_new(o, n->keys[i], v)) {
				json_decref(o);
				return NULL;
			}
		}
		return o;
	}
	}
	return NULL;
}

static int is_abs(const char *p)
{
	return p[0] == '/';
}

/* Make field `key` of `obj` absolute against dir (clientcmd ResolvePaths). */
static int resolve_path(json_t *obj, const char *key, const char *dir, int need_slash)
{
	const char *p = json_string_value(json_object_get(obj, key));
	if (!p || !*p || is_abs(p) || !dir)
		return 0;
	if (need_slash && !strchr(p, '/'))
		return 0; /* an exec command without a separator is looked up in PATH */
	while (p[0] == '.' && p[1] == '/')
		p += 2; /* filepath.Join cleans "./" */
	struct buf b;
	buf_init(&b, 8192);
	int rc = buf_printf(&b, "%s/%s", dir, p);
	if (!rc && json_object_set_new(obj, key, json_string(b.data)))
		rc = MV_ENOMEM;
	buf_release(&b);
	return rc;
}

/* Merge a named list ("clusters": [{name, cluster: {...}}]) into a map, first wins. */
static int merge_named(json_t *merged, const json_t *file, const char *list, const char *inner,
                       const char *dir, char *err, size_t errlen)
{
	const json_t *arr = json_object_get(file, list);
	if (!arr || json_is_null(arr))
		return 0;
	if (!json_is_array(arr)) {
		snprintf(err, errlen, "%s: expected a list", list);
		return MV_EINVAL;
	}
	json_t *map = json_object_get(merged, list);
	if (!map) {
		map = json_object();
		if (!map || json_object_set_new(merged, list, map))
			return MV_ENOMEM;
	}
	size_t i;
	json_t *item;
	json_array_foreach(arr, i, item)
	{
		const char *name = json_string_value(json_object_get(item, "name"));
		json_t *body = json_object_get(item, inner);
		if (!name || !*name) {
			snprintf(err, errlen, "%s[%zu]: missing name", list, i);
			return MV_EINVAL;
		}
		if (body && !json_is_object(body) && !json_is_null(body)) {
			snprintf(err, errlen, "%s[%zu] (%s): %s must be a mapping", list, i, name,
			         inner);
			return MV_EINVAL;
		}
		if (json_object_get(map, name))
			continue; /* a later file's entry of the same name is discarded whole */
		json_t *copy = json_is_object(body) ? json_deep_copy(body) : json_object();
		if (!copy)
			return MV_ENOMEM;
		int rc = 0;
		if (strcmp(inner, "cluster") == 0) {
			rc = resolve_path(copy, "certificate-authority", dir, 0);
		} else if (strcmp(inner, "user") == 0) {
			rc = resolve_path(copy, "client-certificate", dir, 0);
			if (!rc)
				rc = resolve_path(copy, "client-key", dir, 0);
			if (!rc)
				rc = resolve_path(copy, "tokenFile", dir, 0);
			json_t *ex = json_object_get(copy, "exec");
			if (!rc && json_is_object(ex))
				rc = resolve_path(ex, "command", dir, 1);
		}
		if (rc || json_object_set_new(map, name, copy)) {
			if (!rc)
				rc = MV_ENOMEM;
			return rc;
		}
	}
	return 0;
}

int kube_config_merge(json_t **merged, const char *data, size_t len, const char *dir, char *err,
                      size_t errlen)
{
	if (len > KUBE_MAX_CONFIG_BYTES) {
		snprintf(err, errlen, "larger than %zu bytes", KUBE_MAX_CONFIG_BYTES);
		return MV_ETOOBIG;
	}
	struct ydocs docs = {0};
	char yerr[256] = "";
	int rc = ytree_parse(data, len, &docs, yerr, sizeof(yerr));
	if (rc) {
		snprintf(err, errlen, "%s", yerr[0] ? yerr : mv_strerror(rc));
		ytree_docs_release(&docs);
		return rc;
	}
	json_t *file = NULL;
	if (docs.n > 1) {
		snprintf(err, errlen, "more than one YAML document");
		rc = MV_EINVAL;
		goto out;
	}
	if (docs.n == 0)
		goto out; /* an empty file is allowed and contributes nothing */
	if (docs.docs[0]->type != YNODE_MAP) {
		snprintf(err, errlen, "not a mapping");
		rc = MV_EINVAL;
		goto out;
	}
	file = ynode_to_json(docs.docs[0]);
	if (!file) {
		rc = MV_ENOMEM;
		goto out;
	}
	if (!*merged && !(*merged = json_object())) {
		rc = MV_ENOMEM;
		goto out;
	}
	const char *cc = json_string_value(json_object_get(file, "current-context"));
	if (cc && *cc && !json_object_get(*merged, "current-context") &&
	    json_object_set_new(*merged, "current-context", json_string(cc))) {
		rc = MV_ENOMEM;
		goto out;
	}
	if ((rc = merge_named(*merged, file, "clusters", "cluster", dir, err, errlen)) ||
	    (rc = merge_named(*merged, file, "users", "user", dir, err, errlen)) ||
	    (rc = merge_named(*merged, file, "contexts", "context", dir, err, errlen)))
		goto out;
out:
	json_decref(file);
	ytree_docs_release(&docs);
	return rc;
}

/* ---- resolve ---- */

static int b64val(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

/* Standard base64 (Go's []byte JSON encoding); whitespace ignored. */
static int base64_decode(const char *s, struct buf *out)
{
	unsigned acc = 0;
	int bits = 0, pad = 0;
	for (; *s; s++) {
		unsigned char c = (unsigned char)*s;
		if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
			continue;
		if (c == '=') {
			pad++;
			continue;
		}
		int v = b64val(c);
		if (v < 0 || pad)
			return MV_EINVAL;
		acc = (acc << 6) | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			char byte = (char)((acc >> bits) & 0xff);
			int rc = buf_append(out, &byte, 1);
			if (rc)
				return rc;
		}
	}
	if (pad > 2 || bits >= 6)
		return MV_EINVAL;
	return 0;
}

static int dup_field(const json_t *obj, const char *key, char **out)
{
	const char *s = json_string_value(json_object_get(obj, key));
	*out = NULL;
	if (!s || !*s)
		return 0;
	*out = strdup(s);
	return *out ? 0 : MV_ENOMEM;
}

static int bool_field(const json_t *obj, const char *key)
{
	const char *s = json_string_value(json_object_get(obj, key));
	return s && (strcmp(s, "true") == 0 || strcmp(s, "True") == 0);
}

static void config_init(struct kube_config *c)
{
	memset(c, 0, sizeof(*c));
	buf_init(&c->ca_data, KUBE_MAX_CONFIG_BYTES);
	buf_init(&c->cert_data, KUBE_MAX_CONFIG_BYTES);
	buf_init(&c->key_data, KUBE_MAX_CONFIG_BYTES);
}

static void free_strv(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

void kube_config_release(struct kube_config *c)
{
	if (!c)
		return;
	free(c->server);
	free(c->namespace);
	free(c->context);
	free(c->ca_file);
	free(c->tls_server_name);
	free(c->proxy_url);
	free(c->cert_file);
	free(c->key_file);
	free(c->token);
	free(c->token_file);
	buf_release(&c->ca_data);
	buf_release(&c->cert_data);
	buf_release(&c->key_data);
	if (c->exec) {
		free(c->exec->api_version);
		free(c->exec->command);
		free_strv(c->exec->argv);
		free_strv(c->exec->env);
		free(c->exec);
	}
	memset(c, 0, sizeof(*c));
}

static int parse_exec(const json_t *ex, struct kube_config *c, char *err, size_t errlen)
{
	struct kube_exec_config *e = calloc(1, sizeof(*e));
	if (!e)
		return MV_ENOMEM;
	c->exec = e;
	if (dup_field(ex, "apiVersion", &e->api_version) || dup_field(ex, "command", &e->command))
		return MV_ENOMEM;
	if (!e->command) {
		snprintf(err, errlen, "exec: command is required");
		return MV_EINVAL;
	}
	if (!e->api_version ||
	    (strcmp(e->api_version, "client.authentication.k8s.io/v1") != 0 &&
	     strcmp(e->api_version, "client.authentication.k8s.io/v1beta1") != 0)) {
		snprintf(err, errlen,
		         "exec: apiVersion must be client.authentication.k8s.io/v1 or "
		         "v1beta1");
		return MV_EINVAL;
	}
	const json_t *args = json_object_get(ex, "args");
	const json_t *env = json_object_get(ex, "env");
	if ((args && !json_is_array(args) && !json_is_null(args)) ||
	    (env && !json_is_array(env) && !json_is_null(env)) ||
	    json_array_size(args) + json_array_size(env) > KUBE_MAX_EXEC_ARGS) {
		snprintf(err, errlen, "exec: args and env must be lists (at most %d entries)",
		         KUBE_MAX_EXEC_ARGS);
		return MV_EINVAL;
	}
	e->argv = calloc(json_array_size(args) + 2, sizeof(char *));
	e->env = calloc(json_array_size(env) + 1, sizeof(char *));
	if (!e->argv || !e->env)
		return MV_ENOMEM;
	if (!(e->argv[0] = strdup(e->command)))
		return MV_ENOMEM;
	for (size_t i = 0; i < json_array_size(args); i++) {
		const char *a = json_string_value(json_array_get(args, i));
		if (!a) {
			snprintf(err, errlen, "exec: args[%zu] is not a string", i);
			return MV_EINVAL;
		}
		if (!(e->argv[i + 1] = strdup(a)))
			return MV_ENOMEM;
	}
	for (size_t i = 0; i < json_array_size(env); i++) {
		const json_t *kv = json_array_get(env, i);
		const char *n = json_string_value(json_object_get(kv, "name"));
		const char *v = json_string_value(json_object_get(kv, "value"));
		if (!n || !*n || strchr(n, '=')) {
			snprintf(err, errlen, "exec: env[%zu] needs a name", i);
			return MV_EINVAL;
		}
		struct buf b;
		buf_init(&b, 65536);
		if (buf_printf(&b, "%s=%s", n, v ? v : "")) {
			buf_release(&b);
			return MV_ENOMEM;
		}
		e->env[i] = b.data; /* the buffer's storage becomes the string */
	}
	const char *mode = json_string_value(json_object_get(ex, "interactiveMode"));
	e->interactive_always = mode && strcmp(mode, "Always") == 0;
	e->provide_cluster_info = bool_field(ex, "provideClusterInfo");
	return 0;
}

static int decode_data(const json_t *obj, const char *key, struct buf *out, char *err,
                       size_t errlen)
{
	const char *s = json_string_value(json_object_get(obj, key));
	if (!s || !*s)
		return 0;
	int rc = base64_decode(s, out);
	if (rc == MV_EINVAL)
		snprintf(err, errlen, "%s is not valid base64", key);
	return rc;
}

int kube_config_resolve(const json_t *merged, const struct kube_config_opts *opts,
                        struct kube_config *out, char *err, size_t errlen)
{
	config_init(out);
	const char *ctx_name = opts && opts->context && *opts->context
	                           ? opts->context
	                           : json_string_value(json_object_get(merged, "current-context"));
	if (!ctx_name || !*ctx_name) {
		snprintf(err, errlen, "no context chosen: set current-context or use --context");
		return MV_ENOTFOUND;
	}
	const json_t *ctx = json_object_get(json_object_get(merged, "contexts"), ctx_name);
	if (!ctx) {
		snprintf(err, errlen, "context \"%s\" does not exist", ctx_name);
		return MV_ENOTFOUND;
	}
	const char *cl_name = json_string_value(json_object_get(ctx, "cluster"));
	const char *us_name = json_string_value(json_object_get(ctx, "user"));
	const json_t *cl =
	    cl_name ? json_object_get(json_object_get(merged, "clusters"), cl_name) : NULL;
	if (!cl) {
		snprintf(err, errlen, "context \"%s\": cluster \"%s\" does not exist", ctx_name,
		         cl_name ? cl_name : "");
		return MV_ENOTFOUND;
	}
	const json_t *us = NULL;
	if (us_name && *us_name) {
		us = json_object_get(json_object_get(merged, "users"), us_name);
		if (!us) {
			snprintf(err, errlen, "context \"%s\": user \"%s\" does not exist",
			         ctx_name, us_name);
			return MV_ENOTFOUND;
		}
	}
	int rc;
	if ((rc = dup_field(cl, "server", &out->server)) ||
	    (rc = dup_field(cl, "certificate-authority", &out->ca_file)) ||
	    (rc = dup_field(cl, "tls-server-name", &out->tls_server_name)) ||
	    (rc = dup_field(cl, "proxy-url", &out->proxy_url)) ||
	    (rc = dup_field(us, "client-certificate", &out->cert_file)) ||
	    (rc = dup_field(us, "client-key", &out->key_file)) ||
	    (rc = dup_field(us, "token", &out->token)) ||
	    (rc = dup_field(us, "tokenFile", &out->token_file)))
		return rc;
	if (!out->server) {
		snprintf(err, errlen, "cluster \"%s\" has no server", cl_name);
		return MV_EINVAL;
	}
	size_t sl = strlen(out->server);
	while (sl > 0 && out->server[sl - 1] == '/')
		out->server[--sl] = '\0';
	if (strncmp(out->server, "https://", 8) != 0 && strncmp(out->server, "http://", 7) != 0) {
		snprintf(err, errlen, "cluster \"%s\": server must be an http(s) URL", cl_name);
		return MV_EINVAL;
	}
	out->insecure = bool_field(cl, "insecure-skip-tls-verify");
	if ((rc = decode_data(cl, "certificate-authority-data", &out->ca_data, err, errlen)) ||
	    (rc = decode_data(us, "client-certificate-data", &out->cert_data, err, errlen)) ||
	    (rc = decode_data(us, "client-key-data", &out->key_data, err, errlen)))
		return rc;
	const json_t *ex = json_object_get(us, "exec");
	if (json_is_object(ex) && (rc = parse_exec(ex, out, err, errlen)))
		return rc;
	const char *ns = opts && opts->namespace && *opts->namespace
	                     ? opts->namespace
	                     : json_string_value(json_object_get(ctx, "namespace"));
	if (!(out->namespace = strdup(ns && *ns ? ns : "default")) ||
	    !(out->context = strdup(ctx_name)))
		return MV_ENOMEM;
	return 0;
}

/* ---- files and environment ---- */

static int read_capped(const char *path, size_t cap, struct buf *out)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return MV_EIO;
	int rc = 0;
	char chunk[8192];
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
		if (out->len + (size_t)n > cap) {
			rc = MV_ETOOBIG;
			break;
		}
		if ((rc = buf_append(out, chunk, (size_t)n)))
			break;
	}
	close(fd);
	return rc;
}

static int merge_file(json_t **merged, const char *path, char *err, size_t errlen)
{
	struct buf data, dir;
	buf_init(&data, KUBE_MAX_CONFIG_BYTES + 1);
	buf_init(&dir, 8192);
	int rc = read_capped(path, KUBE_MAX_CONFIG_BYTES, &data);
	if (rc) {
		snprintf(err, errlen, "%s: %s", path,
		         rc == MV_EIO ? strerror(errno) : mv_strerror(rc));
		goto out;
	}
	/* The directory of the file, absolute, for relative paths inside it. */
	const char *slash = strrchr(path, '/');
	if (!is_abs(path)) {
		char cwd[4096];
		if (!getcwd(cwd, sizeof(cwd))) {
			rc = MV_EIO;
			goto out;
		}
		rc = buf_printf(&dir, "%s/%.*s", cwd, slash ? (int)(slash - path) : 0, path);
	} else {
		rc = buf_printf(&dir, "%.*s", (int)(slash - path), path);
	}
	if (rc)
		goto out;
	while (dir.len > 1 && dir.data[dir.len - 1] == '/')
		dir.data[--dir.len] = '\0';
	char perr[384] = "";
	rc = kube_config_merge(merged, data.data ? data.data : "", data.len,
	                       dir.len ? dir.data : "/", perr, sizeof(perr));
	if (rc)
		snprintf(err, errlen, "%s: %s", path, perr);
out:
	buf_release(&data);
	buf_release(&dir);
	return rc;
}

static int file_exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static int load_in_cluster(const struct kube_config_opts *opts, struct kube_config *out, char *err,
                           size_t errlen)
{
	const char *host = getenv("KUBERNETES_SERVICE_HOST");
	const char *port = getenv("KUBERNETES_SERVICE_PORT");
	const char *dir = opts && opts->sa_dir ? opts->sa_dir : SA_DIR;
	config_init(out);
	if (!host || !*host || !port || !*port) {
		snprintf(err, errlen,
		         "no configuration has been provided: no kubeconfig found (set "
		         "KUBECONFIG or --kubeconfig) and not running in a cluster");
		return MV_ENOTFOUND;
	}
	struct buf b;
	buf_init(&b, 8192);
	int v6 = strchr(host, ':') != NULL; /* net.JoinHostPort brackets IPv6 */
	int rc = buf_printf(&b, "https://%s%s%s:%s", v6 ? "[" : "", host, v6 ? "]" : "", port);
	if (rc) {
		buf_release(&b);
		return rc;
	}
	out->server = b.data;
	buf_init(&b, 8192);
	if ((rc = buf_printf(&b, "%s/token", dir))) {
		buf_release(&b);
		return rc;
	}
	out->token_file = b.data;
	buf_init(&b, 8192);
	if ((rc = buf_printf(&b, "%s/ca.crt", dir))) {
		buf_release(&b);
		return rc;
	}
	if (file_exists(b.data))
		out->ca_file = b.data;
	else
		buf_release(&b); /* client-go only logs this; TLS then uses the system CAs */
	const char *ns =
	    opts && opts->namespace && *opts->namespace ? opts->namespace : getenv("POD_NAMESPACE");
	struct buf nsb;
	buf_init(&nsb, 8192);
	if (!ns || !*ns) {
		struct buf path;
		buf_init(&path, 8192);
		if (!buf_printf(&path, "%s/namespace", dir) &&
		    read_capped(path.data, 4096, &nsb) == 0 && nsb.len) {
			while (nsb.len &&
			       (nsb.data[nsb.len - 1] == '\n' || nsb.data[nsb.len - 1] == ' ' ||
			        nsb.data[nsb.len - 1] == '\r' || nsb.data[nsb.len - 1] == '\t'))
				nsb.data[--nsb.len] = '\0';
			if (nsb.len)
				ns = nsb.data;
		}
		buf_release(&path);
	}
	out->namespace = strdup(ns && *ns ? ns : "default");
	out->context = strdup("in-cluster");
	buf_release(&nsb);
	if (!out->namespace || !out->context)
		return MV_ENOMEM;
	return 0;
}

int kube_config_load(const struct kube_config_opts *opts, struct kube_config *out, char *err,
                     size_t errlen)
{
	json_t *merged = NULL;
	int rc = 0, found = 0;
	memset(out, 0, sizeof(*out));
	if (opts && opts->kubeconfig && *opts->kubeconfig) {
		/* An explicit file must exist (clientcmd: ExplicitPath). */
		if ((rc = merge_file(&merged, opts->kubeconfig, err, errlen)))
			goto out;
		found = 1;
	} else {
		const char *list =
		    opts && opts->env_kubeconfig ? opts->env_kubeconfig : getenv("KUBECONFIG");
		if (list && *list) {
			char *copy = strdup(list), *save = NULL;
			if (!copy) {
				rc = MV_ENOMEM;
				goto out;
			}
			int n = 0;
			for (char *p = strtok_r(copy, ":", &save); p;
			     p = strtok_r(NULL, ":", &save)) {
				if (++n > KUBE_MAX_CONFIG_FILES) {
					snprintf(err, errlen, "KUBECONFIG lists more than %d files",
					         KUBE_MAX_CONFIG_FILES);
					rc = MV_ETOOBIG;
					break;
				}
				if (!*p || !file_exists(p))
					continue; /* missing entries of the list are skipped */
				if ((rc = merge_file(&merged, p, err, errlen)))
					break;
				found = 1;
			}
			free(copy);
			if (rc)
				goto out;
		} else {
			const char *home = opts && opts->home ? opts->home : getenv("HOME");
			if (home && *home) {
				struct buf p;
				buf_init(&p, 8192);
				if (!buf_printf(&p, "%s/.kube/config", home) &&
				    file_exists(p.data)) {
					rc = merge_file(&merged, p.data, err, errlen);
					found = 1;
				}
				buf_release(&p);
				if (rc)
					goto out;
			}
		}
	}
	if (!found) {
		rc = load_in_cluster(opts, out, err, errlen);
		goto out;
	}
	if (!merged && !(merged = json_object())) {
		rc = MV_ENOMEM;
		goto out;
	}
	rc = kube_config_resolve(merged, opts, out, err, errlen);
out:
	json_decref(merged);
	return rc;
}

/* ---- exec credential plugins ---- */

static double mono_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1000.0 + (double)ts.tv_nsec / 1e6;
}

int kube_exec_run(const struct kube_exec_config *cfg, const char *server, int timeout_ms,
                  struct kube_exec_cred *out, char *err, size_t errlen)
{
	memset(out, 0, sizeof(*out));
	if (cfg->interactive_always && !isatty(STDIN_FILENO)) {
		snprintf(err, errlen,
		         "exec plugin %s needs an interactive terminal (interactiveMode: "
		         "Always)",
		         cfg->command);
		return MV_EIO;
	}
	int rc = 0;
	struct buf info, output;
	buf_init(&info, 65536);
	buf_init(&output, KUBE_MAX_EXEC_OUTPUT + 1);
	char **envp = NULL;
	int pipefd[2] = {-1, -1};
	pid_t pid = -1;
	posix_spawn_file_actions_t fa;
	int fa_ok = 0;

	json_t *spec = json_pack("{s:b}", "interactive", 0);
	if (spec && cfg->provide_cluster_info && server)
		json_object_set_new(spec, "cluster", json_pack("{s:s}", "server", server));
	json_t *req = spec ? json_pack("{s:s, s:s, s:o}", "apiVersion", cfg->api_version, "kind",
	                               "ExecCredential", "spec", spec)
	                   : NULL;
	char *req_s = req ? json_dumps(req, JSON_COMPACT) : NULL;
	json_decref(req);
	if (!req_s || buf_printf(&info, "KUBERNETES_EXEC_INFO=%s", req_s)) {
		free(req_s);
		rc = MV_ENOMEM;
		goto out;
	}
	free(req_s);

	size_t nenv = 0, nplug = 0;
	while (environ && environ[nenv])
		nenv++;
	while (cfg->env && cfg->env[nplug])
		nplug++;
	envp = calloc(nenv + nplug + 2, sizeof(char *));
	if (!envp) {
		rc = MV_ENOMEM;
		goto out;
	}
	size_t k = 0;
	for (size_t i = 0; i < nenv; i++) {
		if (strncmp(environ[i], "KUBERNETES_EXEC_INFO=", 21) == 0)
			continue;
		/* The plugin's own entries override ours. */
		const char *eq = strchr(environ[i], '=');
		size_t nl = eq ? (size_t)(eq - environ[i]) : strlen(environ[i]);
		int overridden = 0;
		for (size_t j = 0; j < nplug; j++)
			if (strncmp(cfg->env[j], environ[i], nl) == 0 && cfg->env[j][nl] == '=')
				overridden = 1;
		if (!overridden)
			envp[k++] = environ[i];
	}
	for (size_t j = 0; j < nplug; j++)
		envp[k++] = cfg->env[j];
	envp[k++] = info.data;

	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = MV_EIO;
		goto out;
	}
	if (posix_spawn_file_actions_init(&fa)) {
		rc = MV_ENOMEM;
		goto out;
	}
	fa_ok = 1;
	if (posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0) ||
	    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO)) {
		rc = MV_ENOMEM;
		goto out;
	}
	int serr = posix_spawnp(&pid, cfg->command, &fa, NULL, cfg->argv, envp);
	if (serr) {
		pid = -1;
		snprintf(err, errlen, "exec plugin %s: cannot start: %s", cfg->command,
		         strerror(serr));
		rc = MV_EIO;
		goto out;
	}
	close(pipefd[1]);
	pipefd[1] = -1;

	double deadline = mono_ms() + timeout_ms;
	for (;;) {
		double left = deadline - mono_ms();
		if (left <= 0) {
			snprintf(err, errlen, "exec plugin %s did not finish within %d ms",
			         cfg->command, timeout_ms);
			rc = MV_ETIMEDOUT;
			goto out;
		}
		struct pollfd pfd = {.fd = pipefd[0], .events = POLLIN};
		int pr = poll(&pfd, 1, (int)left + 1);
		if (pr < 0 && errno == EINTR)
			continue;
		if (pr <= 0)
			continue;
		char chunk[8192];
		ssize_t n = read(pipefd[0], chunk, sizeof(chunk));
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (output.len + (size_t)n > KUBE_MAX_EXEC_OUTPUT) {
			snprintf(err, errlen, "exec plugin %s wrote more than %zu bytes",
			         cfg->command, KUBE_MAX_EXEC_OUTPUT);
			rc = MV_ETOOBIG;
			goto out;
		}
		if ((rc = buf_append(&output, chunk, (size_t)n)))
			goto out;
	}
	/* stdout closed: reap it, still bounded by the deadline. */
	int status = 0;
	for (;;) {
		pid_t w = waitpid(pid, &status, WNOHANG);
		if (w == pid)
			break;
		if (w < 0 && errno != EINTR) {
			rc = MV_EIO;
			goto out;
		}
		if (mono_ms() > deadline) {
			snprintf(err, errlen, "exec plugin %s did not exit within %d ms",
			         cfg->command, timeout_ms);
			rc = MV_ETIMEDOUT;
			goto out;
		}
		struct timespec ts = {0, 5 * 1000 * 1000}; /* reaping poll, bounded by deadline */
		nanosleep(&ts, NULL);
	}
	pid = -1;
	if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		snprintf(err, errlen, "exec plugin %s failed (%s %d)", cfg->command,
		         WIFEXITED(status) ? "exit status" : "signal",
		         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status));
		rc = MV_EIO;
		goto out;
	}
	char perr[256] = "";
	rc = kube_exec_cred_parse(output.data ? output.data : "", output.len, cfg->api_version, out,
	                          perr, sizeof(perr));
	if (rc)
		snprintf(err, errlen, "exec plugin %s: %s", cfg->command, perr);
out:
	if (pid > 0) {
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	if (fa_ok)
		posix_spawn_file_actions_destroy(&fa);
	if (pipefd[0] >= 0)
		close(pipefd[0]);
	if (pipefd[1] >= 0)
		close(pipefd[1]);
	free(envp);
	buf_release(&info);
	buf_release(&output);
	return rc;
}
