#include "lint.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/cfg.h"
#include "movie/err.h"
#include "movie_services.h" /* generated from services/services.txt */
#include "movie/banned.h"

/* The services (services/services.txt): their gRPC service name (a readiness health name) and
 * their config schema, the one the binary loads with. Every config value
 * lint compares with the manifests comes from loading through it. */
struct svc_kind {
	const char *name;
	const char *grpc_name;
	const struct cfg_schema *schema;
};

#define SVC_KIND(name, grpc_name, port) {#name, grpc_name, &name##_config_schema},
static const struct svc_kind kinds[] = {MOVIE_SERVICES(SVC_KIND)};
#undef SVC_KIND

/* Kubernetes' default terminationGracePeriodSeconds. */
#define DEFAULT_TERMINATION_GRACE_S 30LL

static const char *or_dflt(const char *s, const char *dflt)
{
	return s ? s : dflt;
}

struct ctx {
	const struct lint_doc *docs;
	size_t ndocs;
	struct lint_report *rep;
	int oom;
};

void lint_report_init(struct lint_report *rep)
{
	memset(rep, 0, sizeof(*rep));
}

void lint_report_release(struct lint_report *rep)
{
	for (size_t i = 0; i < rep->n; i++) {
		free(rep->items[i].object);
		free(rep->items[i].message);
	}
	free(rep->items);
	lint_report_init(rep);
}

static const char *meta_str(const struct ynode *obj, const char *key)
{
	return ytree_str(ytree_at(obj, "metadata", key, YTREE_END));
}

static const char *ns_of(const struct ynode *obj)
{
	const char *ns = meta_str(obj, "namespace");
	return ns ? ns : "";
}

static char *object_name(const struct ynode *obj)
{
	const char *kind = ytree_str(ytree_get(obj, "kind"));
	const char *name = meta_str(obj, "name");
	const char *ns = meta_str(obj, "namespace");
	char tmp[512];
	if (ns)
		snprintf(tmp, sizeof(tmp), "%s/%s/%s", kind ? kind : "?", ns, name ? name : "?");
	else
		snprintf(tmp, sizeof(tmp), "%s/%s", kind ? kind : "?", name ? name : "?");
	size_t len = strlen(tmp);
	char *s = malloc(len + 1);
	if (s)
		memcpy(s, tmp, len + 1);
	return s;
}

static void vadd(struct ctx *c, const char *file, int line, const struct ynode *obj,
                 const char *rule, const char *fmt, va_list ap)
    __attribute__((format(printf, 6, 0)));

/* A finding about `obj` at `file`:`line` (a ConfigMap line for config errors). */
static void vadd(struct ctx *c, const char *file, int line, const struct ynode *obj,
                 const char *rule, const char *fmt, va_list ap)
{
	struct lint_report *rep = c->rep;
	if (rep->n >= LINT_MAX_FINDINGS) {
		rep->dropped++;
		return;
	}
	if (rep->n == rep->cap) {
		size_t cap = rep->cap ? rep->cap * 2 : 16;
		struct lint_finding *items = realloc(rep->items, cap * sizeof(*items));
		if (!items) {
			c->oom = 1;
			return;
		}
		rep->items = items;
		rep->cap = cap;
	}
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	struct lint_finding *f = &rep->items[rep->n];
	f->file = file;
	f->line = line;
	f->rule = rule;
	f->object = object_name(obj);
	size_t len = strlen(msg);
	f->message = malloc(len + 1);
	if (!f->object || !f->message) {
		free(f->object);
		free(f->message);
		c->oom = 1;
		return;
	}
	memcpy(f->message, msg, len + 1);
	rep->n++;
}

static void add(struct ctx *c, const struct lint_doc *d, const struct ynode *obj, const char *rule,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct ctx *c, const struct lint_doc *d, const struct ynode *obj, const char *rule,
                const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vadd(c, d->file, obj->line, obj, rule, fmt, ap);
	va_end(ap);
}

static void add_at(struct ctx *c, const char *file, int line, const struct ynode *obj,
                   const char *rule, const char *fmt, ...) __attribute__((format(printf, 6, 7)));

static void add_at(struct ctx *c, const char *file, int line, const struct ynode *obj,
                   const char *rule, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vadd(c, file, line, obj, rule, fmt, ap);
	va_end(ap);
}

static const struct lint_doc *find_object(const struct ctx *c, const char *kind, const char *ns,
                                          const char *name)
{
	for (size_t i = 0; i < c->ndocs; i++) {
		const struct ynode *r = c->docs[i].root;
		const char *k = ytree_str(ytree_get(r, "kind"));
		const char *n = meta_str(r, "name");
		if (k && n && strcmp(k, kind) == 0 && strcmp(n, name) == 0 &&
		    strcmp(ns_of(r), ns) == 0)
			return &c->docs[i];
	}
	return NULL;
}

/* Which of our services a container runs: by container name, else by image
 * name ("registry/movie-rating:tag" -> rating). NULL for anything else. */
static const struct svc_kind *kind_of_container(const struct ynode *ctr)
{
	const char *name = ytree_str(ytree_get(ctr, "name"));
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (name && strcmp(name, kinds[i].name) == 0)
			return &kinds[i];
	const char *image = ytree_str(ytree_get(ctr, "image"));
	if (!image)
		return NULL;
	const char *base = strrchr(image, '/');
	base = base ? base + 1 : image;
	if (strncmp(base, "movie-", 6) == 0)
		base += 6;
	size_t len = strcspn(base, ":@");
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strlen(kinds[i].name) == len && strncmp(base, kinds[i].name, len) == 0)
			return &kinds[i];
	return NULL;
}

/* The ConfigMap value a --config path names through the container's
 * volumeMounts and the pod's volumes. Returns 0 (*cm_doc and *value set) or
 * 1 (not resolvable; why is set). */
static int resolve_config_file(const struct ctx *c, const char *ns, const struct ynode *pod,
                               const struct ynode *ctr, const char *path,
                               const struct lint_doc **cm_doc, const struct ynode **value,
                               char *why, size_t whylen)
{
	const struct ynode *mounts = ytree_get(ctr, "volumeMounts");
	const char *vol_name = NULL, *key = NULL;
	for (size_t i = 0; mounts && mounts->type == YNODE_SEQ && i < mounts->n; i++) {
		const char *mp = ytree_str(ytree_get(mounts->vals[i], "mountPath"));
		const char *sub = ytree_str(ytree_get(mounts->vals[i], "subPath"));
		if (!mp)
			continue;
		size_t mlen = strlen(mp);
		while (mlen > 1 && mp[mlen - 1] == '/')
			mlen--;
		if (sub && strcmp(mp, path) == 0) {
			vol_name = ytree_str(ytree_get(mounts->vals[i], "name"));
			key = sub;
		} else if (!sub && strncmp(path, mp, mlen) == 0 && path[mlen] == '/' &&
		           !strchr(path + mlen + 1, '/')) {
			vol_name = ytree_str(ytree_get(mounts->vals[i], "name"));
			key = path + mlen + 1;
		}
	}
	if (!vol_name) {
		snprintf(why, whylen, "--config %s is not in a mounted volume", path);
		return 1;
	}
	const struct ynode *vols = ytree_get(pod, "volumes");
	const struct ynode *cm = NULL;
	for (size_t i = 0; vols && vols->type == YNODE_SEQ && i < vols->n; i++) {
		const char *n = ytree_str(ytree_get(vols->vals[i], "name"));
		if (n && strcmp(n, vol_name) == 0)
			cm = ytree_get(vols->vals[i], "configMap");
	}
	const char *cm_name = ytree_str(ytree_get(cm, "name"));
	if (!cm_name) {
		snprintf(why, whylen, "--config %s: volume %s is not a ConfigMap", path, vol_name);
		return 1;
	}
	const struct ynode *items = ytree_get(cm, "items");
	if (items && items->type == YNODE_SEQ) {
		const char *mapped = NULL;
		for (size_t i = 0; i < items->n; i++) {
			const char *p = ytree_str(ytree_get(items->vals[i], "path"));
			if (p && strcmp(p, key) == 0)
				mapped = ytree_str(ytree_get(items->vals[i], "key"));
		}
		if (!mapped) {
			snprintf(why, whylen, "--config %s: ConfigMap %s projects no such item",
			         path, cm_name);
			return 1;
		}
		key = mapped;
	}
	const struct lint_doc *cmd = find_object(c, "ConfigMap", ns, cm_name);
	if (!cmd) {
		snprintf(why, whylen, "--config %s: ConfigMap %s is not in the input", path,
		         cm_name);
		return 1;
	}
	const struct ynode *text = ytree_at(cmd->root, "data", key, YTREE_END);
	if (!ytree_str(text)) {
		snprintf(why, whylen, "--config %s: ConfigMap %s has no key %s", path, cm_name,
		         key);
		return 1;
	}
	*cm_doc = cmd;
	*value = text;
	return 0;
}

/* A container's service config, loaded as its binary would load it. */
struct loaded {
	const struct cfg_schema *schema;
	void *config;
	struct cfg_errors *errs;
	size_t reported; /* errs->items already turned into findings */
	int failed;      /* the binary would refuse this config */
};

/* The borrowed name of the input file that `where` ("file:line:column")
 * points into, with its line and column; NULL when `where` is no such
 * position (an env variable, a default). */
static const char *position_in_input(const struct ctx *c, const char *where, int *line, int *column)
{
	const char *last = strrchr(where, ':');
	if (!last || last == where)
		return NULL;
	const char *mid = last - 1;
	while (mid > where && *mid != ':')
		mid--;
	if (mid == where)
		return NULL;
	char *end;
	long l = strtol(mid + 1, &end, 10);
	if (end != last || l < 1 || l > 100000000)
		return NULL;
	long col = strtol(last + 1, &end, 10);
	if (*end || col < 1 || col > 100000000)
		return NULL;
	size_t flen = (size_t)(mid - where);
	for (size_t i = 0; i < c->ndocs; i++) {
		const char *f = c->docs[i].file;
		if (f && strlen(f) == flen && memcmp(f, where, flen) == 0) {
			*line = (int)l;
			*column = (int)col;
			return f;
		}
	}
	return NULL;
}

/* The line of the container's env entry that `where` ("env NAME") names, or 0. */
static int env_line(const struct ynode *ctr, const char *where)
{
	const struct ynode *env = ytree_get(ctr, "env");
	const char *name = strncmp(where, "env ", 4) == 0 ? where + 4 : NULL;
	for (size_t i = 0; name && env && env->type == YNODE_SEQ && i < env->n; i++) {
		const char *n = ytree_str(ytree_get(env->vals[i], "name"));
		if (n && strcmp(n, name) == 0)
			return env->vals[i]->line;
	}
	return 0;
}

/* Turn the errors added since the last call into "config" findings, each at
 * the manifest line it names (a ConfigMap data line, an env entry) or else
 * at the Deployment. `context` ("--config PATH" or "") ends each message. */
static void report_config_errors(struct ctx *c, const struct lint_doc *dep, const struct ynode *ctr,
                                 struct loaded *l, const char *context)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	for (; l->reported < l->errs->count; l->reported++) {
		const struct cfg_error *e = &l->errs->items[l->reported];
		int line = 0, column = 0;
		const char *file = position_in_input(c, e->where, &line, &column);
		char what[600];
		snprintf(what, sizeof(what), "%s%s%s", e->key, e->key[0] ? ": " : "", e->message);
		l->failed = 1;
		if (file) {
			add_at(c, file, line, dep->root, "config",
			       "container %s: %s (column %d%s%s)", cname, what, column,
			       context[0] ? ", " : "", context);
			continue;
		}
		line = env_line(ctr, e->where);
		add_at(c, dep->file, line ? line : dep->root->line, dep->root, "config",
		       "container %s: %s%s%s%s%s%s", cname, e->where, e->where[0] ? ": " : "", what,
		       context[0] ? " (" : "", context, context[0] ? ")" : "");
	}
	if (l->errs->dropped) {
		l->failed = 1;
		add(c, dep, dep->root, "config", "container %s: %zu more config errors not shown",
		    cname, l->errs->dropped);
		l->errs->dropped = 0;
	}
}

/* The container's environment as "NAME=value" strings, for the variables
 * with the service's prefix. A value from valueFrom (a Secret, a field) is
 * not in the manifests: such variables are left out. NULL when out of memory. */
static char **container_env(const struct ynode *ctr, const char *prefix)
{
	const struct ynode *env = ytree_get(ctr, "env");
	size_t n = env && env->type == YNODE_SEQ ? env->n : 0, used = 0;
	size_t plen = strlen(prefix);
	char **envp = calloc(n + 1, sizeof(*envp));
	if (!envp)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		const char *name = ytree_str(ytree_get(env->vals[i], "name"));
		const struct ynode *v = ytree_get(env->vals[i], "value");
		if (!name || strncmp(name, prefix, plen) != 0 || name[plen] != '_')
			continue;
		if (!v && ytree_get(env->vals[i], "valueFrom"))
			continue;
		const char *value = or_dflt(ytree_str(v), "");
		size_t len = strlen(name) + 1 + strlen(value) + 1;
		envp[used] = malloc(len);
		if (!envp[used])
			goto fail;
		snprintf(envp[used++], len, "%s=%s", name, value);
	}
	return envp;
fail:
	for (size_t i = 0; i < used; i++)
		free(envp[i]);
	free(envp);
	return NULL;
}

/* Variables whose value is not in the manifests (valueFrom) are still
 * refused at start when their name is no option. */
static void check_env_names(struct ctx *c, const struct lint_doc *dep, const struct ynode *ctr,
                            struct loaded *l)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	const struct ynode *env = ytree_get(ctr, "env");
	const char *prefix = l->schema->env_prefix;
	size_t plen = strlen(prefix);
	for (size_t i = 0; env && env->type == YNODE_SEQ && i < env->n; i++) {
		const char *name = ytree_str(ytree_get(env->vals[i], "name"));
		if (!name || ytree_get(env->vals[i], "value") ||
		    !ytree_get(env->vals[i], "valueFrom") || strncmp(name, prefix, plen) != 0 ||
		    name[plen] != '_' || cfg_env_known(l->schema, name))
			continue;
		add_at(c, dep->file, env->vals[i]->line, dep->root, "config",
		       "container %s: env %s: unknown variable: no option has this name", cname,
		       name);
		l->failed = 1;
	}
}

static void free_env(char **envp)
{
	for (size_t i = 0; envp && envp[i]; i++)
		free(envp[i]);
	free(envp);
}

/* Load the container's config through lib/cfg with the service's own schema:
 * defaults, each --config file (a ConfigMap value) in order, the container
 * env, then what start-up checks without files (required options, a secret
 * set twice, the service's validate). Every error becomes a finding at its
 * manifest line. Returns 0 (l->failed: the binary would refuse the config)
 * or MV_ENOMEM. Release `l` with loaded_release either way. */
static int load_config(struct ctx *c, const struct lint_doc *dep, const struct ynode *pod,
                       const struct ynode *ctr, const struct svc_kind *kind, struct loaded *l)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	const char *ns = ns_of(dep->root);
	struct cfg_error err;
	char why[512], context[600];
	int found = 0;
	memset(l, 0, sizeof(*l));
	l->schema = kind->schema;
	l->config = calloc(1, kind->schema->config_size);
	l->errs = malloc(sizeof(*l->errs));
	if (!l->config || !l->errs)
		return MV_ENOMEM;
	cfg_errors_init(l->errs);
	if (cfg_set_defaults(l->schema, l->config, &err))
		return MV_ENOMEM; /* the schemas are tested: only memory can fail */

	const struct ynode *args = ytree_get(ctr, "args");
	for (size_t i = 0; args && args->type == YNODE_SEQ && i < args->n; i++) {
		const char *a = ytree_str(args->vals[i]);
		const char *path = NULL;
		if (a && strcmp(a, "--config") == 0 && i + 1 < args->n)
			path = ytree_str(args->vals[++i]);
		else if (a && strncmp(a, "--config=", 9) == 0)
			path = a + 9;
		if (!path)
			continue;
		found = 1;
		const struct lint_doc *cm_doc = NULL;
		const struct ynode *value = NULL;
		if (resolve_config_file(c, ns, pod, ctr, path, &cm_doc, &value, why, sizeof(why))) {
			add(c, dep, dep->root, "config", "container %s: %s", cname, why);
			l->failed = 1;
			continue;
		}
		struct cfg_source src = {
		    .name = cm_doc->file,
		    .data = value->str,
		    .len = value->len,
		    .line_offset = (unsigned)(value->text_line - 1),
		    .column_offset = (unsigned)value->text_indent,
		};
		int rc = cfg_apply_source(l->schema, l->config, &src, l->errs);
		snprintf(context, sizeof(context), "--config %s", path);
		report_config_errors(c, dep, ctr, l, context);
		if (rc == MV_ENOMEM)
			return rc;
	}
	if (!found) {
		add(c, dep, dep->root, "config",
		    "container %s: no --config argument names a ConfigMap key", cname);
		l->failed = 1;
	}
	check_env_names(c, dep, ctr, l);
	char **envp = container_env(ctr, l->schema->env_prefix);
	if (!envp)
		return MV_ENOMEM;
	int rc = cfg_apply_env_all(l->schema, l->config, envp, l->errs);
	free_env(envp);
	report_config_errors(c, dep, ctr, l, "");
	if (rc == MV_ENOMEM)
		return rc;
	rc = cfg_check_all(l->schema, l->config, l->errs);
	report_config_errors(c, dep, ctr, l, "");
	return rc == MV_ENOMEM ? rc : 0;
}

static void loaded_release(struct loaded *l)
{
	if (l->config)
		cfg_release(l->schema, l->config);
	free(l->config);
	free(l->errs);
	memset(l, 0, sizeof(*l));
}

/* An INT or DURATION_MS value of the loaded config (0 if the schema lacks it). */
static long long config_int(const struct loaded *l, const char *key, enum cfg_type type)
{
	const int64_t *v = cfg_get(l->schema, l->config, key, type);
	return v ? (long long)*v : 0;
}

static int in_list(const char *s, const char *const *list, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, list[i]) == 0)
			return 1;
	return 0;
}

/* Probes: presence, ports, health names. */
static void check_probes(struct ctx *c, const struct lint_doc *d, const struct ynode *ctr,
                         const struct svc_kind *kind, long long port)
{
	static const char *const which[] = {"startupProbe", "readinessProbe", "livenessProbe"};
	const char *names[3] = {NULL, NULL, NULL};
	const char *readiness_names[] = {"", kind ? kind->grpc_name : "", "readiness"};
	const char *cname = ytree_str(ytree_get(ctr, "name"));
	cname = cname ? cname : "?";

	for (size_t i = 0; i < 3; i++) {
		const struct ynode *grpc = ytree_at(ctr, which[i], "grpc", YTREE_END);
		if (!grpc) {
			add(c, d, d->root, "probe-missing",
			    "container %s: %s is not a native gRPC probe", cname, which[i]);
			continue;
		}
		long long p;
		if (ytree_int(ytree_get(grpc, "port"), &p) || p != port)
			add(c, d, d->root, "port-probe",
			    "container %s: %s port %s != api.port %lld", cname, which[i],
			    or_dflt(ytree_str(ytree_get(grpc, "port")), "(none)"), port);
		const char *svc = ytree_str(ytree_get(grpc, "service"));
		svc = svc ? svc : "";
		if (!in_list(svc, readiness_names, 3) && strcmp(svc, "liveness") != 0) {
			add(c, d, d->root, "probe-health-name",
			    "container %s: %s asks health name \"%s\", which the binary does not "
			    "serve",
			    cname, which[i], svc);
			continue;
		}
		names[i] = svc;
	}
	if (names[1] && names[2] && strcmp(names[1], names[2]) == 0)
		add(c, d, d->root, "probe-distinct",
		    "container %s: readiness and liveness both ask \"%s\"", cname, names[1]);
	for (size_t i = 0; i < 3; i += 2) {
		if (names[i] && in_list(names[i], readiness_names, 3))
			add(c, d, d->root, "probe-liveness",
			    "container %s: %s asks \"%s\", which depends on the database; use "
			    "\"liveness\"",
			    cname, which[i], names[i]);
	}
}

static int labels_select(const struct ynode *selector, const struct ynode *labels)
{
	if (!selector || selector->type != YNODE_MAP || selector->n == 0)
		return 0;
	for (size_t i = 0; i < selector->n; i++) {
		const char *want = ytree_str(selector->vals[i]);
		const char *have = ytree_str(ytree_get(labels, selector->keys[i]));
		if (!want || !have || strcmp(want, have) != 0)
			return 0;
	}
	return 1;
}

static void check_services(struct ctx *c, const struct lint_doc *dep, const struct ynode *ctr,
                           long long port)
{
	const char *ns = ns_of(dep->root);
	const struct ynode *labels =
	    ytree_at(dep->root, "spec", "template", "metadata", "labels", YTREE_END);
	for (size_t i = 0; i < c->ndocs; i++) {
		const struct lint_doc *d = &c->docs[i];
		const char *k = ytree_str(ytree_get(d->root, "kind"));
		if (!k || strcmp(k, "Service") != 0 || strcmp(ns_of(d->root), ns) != 0)
			continue;
		if (!labels_select(ytree_at(d->root, "spec", "selector", YTREE_END), labels))
			continue;
		const struct ynode *ports = ytree_at(d->root, "spec", "ports", YTREE_END);
		for (size_t j = 0; ports && ports->type == YNODE_SEQ && j < ports->n; j++) {
			const struct ynode *tp = ytree_get(ports->vals[j], "targetPort");
			if (!tp)
				tp = ytree_get(ports->vals[j], "port");
			long long target = -1;
			if (ytree_int(tp, &target) != 0 && ytree_str(tp)) {
				const struct ynode *cps = ytree_get(ctr, "ports");
				for (size_t m = 0; cps && cps->type == YNODE_SEQ && m < cps->n;
				     m++) {
					const char *pn = ytree_str(ytree_get(cps->vals[m], "name"));
					if (pn && strcmp(pn, ytree_str(tp)) == 0)
						ytree_int(ytree_get(cps->vals[m], "containerPort"),
						          &target);
				}
			}
			if (target != port)
				add(c, d, d->root, "port-service",
				    "targetPort %s of the pods of %s resolves to %lld, api.port is "
				    "%lld",
				    or_dflt(ytree_str(tp), "(none)"),
				    or_dflt(meta_str(dep->root, "name"), "?"), target, port);
		}
	}
}

static int is_ip_or_local(const char *host)
{
	if (strcmp(host, "localhost") == 0 || strchr(host, ':'))
		return 1;
	for (const char *p = host; *p; p++)
		if (!isdigit((unsigned char)*p) && *p != '.')
			return 0;
	return 1;
}

static void check_peer(struct ctx *c, const struct lint_doc *d, const char *peer, const char *addr)
{
	char host[256];
	const char *colon = strrchr(addr, ':');
	long long port = -1;
	if (colon) {
		char *end;
		errno = 0;
		port = strtoll(colon + 1, &end, 10);
		if (errno || *end || colon == addr)
			port = -1;
	}
	size_t hlen = colon ? (size_t)(colon - addr) : strlen(addr);
	if (port < 0 || hlen >= sizeof(host)) {
		add(c, d, d->root, "peer-headless", "peers.%s address \"%s\" is not host:port",
		    peer, addr);
		return;
	}
	memcpy(host, addr, hlen);
	host[hlen] = '\0';
	if (hlen > 2 && host[0] == '[')
		host[0] = ':'; /* bracketed IPv6: an address, not a name */
	if (is_ip_or_local(host)) {
		add(c, d, d->root, "peer-headless",
		    "peers.%s address %s is an address, not a headless Service name", peer, addr);
		return;
	}
	/* name, name.namespace, name.namespace.svc[.cluster.local] */
	const char *ns = ns_of(d->root);
	char nsbuf[256];
	char *dot = strchr(host, '.');
	if (dot) {
		*dot = '\0';
		const char *rest = dot + 1;
		size_t nslen = strcspn(rest, ".");
		if (nslen >= sizeof(nsbuf))
			nslen = sizeof(nsbuf) - 1;
		memcpy(nsbuf, rest, nslen);
		nsbuf[nslen] = '\0';
		ns = nsbuf;
	}
	const struct lint_doc *svc = find_object(c, "Service", ns, host);
	if (!svc) {
		add(c, d, d->root, "peer-headless",
		    "peers.%s address %s: no Service %s in the input", peer, addr, host);
		return;
	}
	const char *cip = ytree_str(ytree_at(svc->root, "spec", "clusterIP", YTREE_END));
	if (!cip || strcmp(cip, "None") != 0) {
		add(c, d, d->root, "peer-headless",
		    "peers.%s address %s: Service %s is not headless (clusterIP: None); one HTTP/2 "
		    "connection would pin one pod",
		    peer, addr, host);
		return;
	}
	const struct ynode *ports = ytree_at(svc->root, "spec", "ports", YTREE_END);
	for (size_t i = 0; ports && ports->type == YNODE_SEQ && i < ports->n; i++) {
		long long p;
		if (ytree_int(ytree_get(ports->vals[i], "port"), &p) == 0 && p == port)
			return;
	}
	add(c, d, d->root, "peer-headless", "peers.%s address %s: Service %s has no port %lld",
	    peer, addr, host, port);
}

/* Every peers.<name>.addresses list of the schema, defaults included (the
 * loopback default is wrong in a pod). */
static void check_peers(struct ctx *c, const struct lint_doc *d, const struct loaded *l)
{
	static const char prefix[] = "peers.", suffix[] = ".addresses";
	const size_t plen = sizeof(prefix) - 1, slen = sizeof(suffix) - 1;
	for (size_t i = 0; i < l->schema->option_count; i++) {
		const struct cfg_option *opt = &l->schema->options[i];
		size_t klen = strlen(opt->key);
		if (opt->type != CFG_STRING_LIST || klen <= plen + slen ||
		    strncmp(opt->key, prefix, plen) != 0 ||
		    strcmp(opt->key + klen - slen, suffix) != 0)
			continue;
		char peer[128];
		snprintf(peer, sizeof(peer), "%.*s", (int)(klen - plen - slen), opt->key + plen);
		const struct cfg_string_list *list =
		    cfg_get(l->schema, l->config, opt->key, CFG_STRING_LIST);
		for (size_t j = 0; list && j < list->count; j++)
			check_peer(c, d, peer, list->items[j]);
	}
}

static long long prestop_seconds(const struct ynode *ctr)
{
	const struct ynode *pre = ytree_at(ctr, "lifecycle", "preStop", YTREE_END);
	long long s = 0;
	if (ytree_int(ytree_at(pre, "sleep", "seconds", YTREE_END), &s) == 0)
		return s;
	const struct ynode *cmd = ytree_at(pre, "exec", "command", YTREE_END);
	if (cmd && cmd->type == YNODE_SEQ && cmd->n > 0 &&
	    strstr(or_dflt(ytree_str(cmd->vals[0]), ""), "sleep")) {
		/* ["sleep", "5"] or ["/bin/sh", "-c", "sleep 5"] */
		const char *last = ytree_str(cmd->vals[cmd->n - 1]);
		const char *digits = last ? last + strcspn(last, "0123456789") : NULL;
		if (digits && *digits)
			s = strtoll(digits, NULL, 10);
	}
	return s;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* The definitions of lint.h's faults-production rule. */
static int is_production_namespace(const char *ns)
{
	return strcmp(ns, "production") == 0 || ends_with(ns, "-production") ||
	       strncmp(ns, "production-", 11) == 0;
}

static int is_canary(const struct ynode *dep)
{
	const char *name = meta_str(dep, "name");
	if (name && ends_with(name, "-canary"))
		return 1;
	const char *track = ytree_str(ytree_at(dep, "metadata", "labels", "track", YTREE_END));
	const char *tpl =
	    ytree_str(ytree_at(dep, "spec", "template", "metadata", "labels", "track", YTREE_END));
	return (track && strcmp(track, "canary") == 0) || (tpl && strcmp(tpl, "canary") == 0);
}

/* Faults are for tests, demos and a canary made bad on purpose: in the
 * production track they fail real users. */
static void check_faults(struct ctx *c, const struct lint_doc *d, const struct loaded *l,
                         const char *cname)
{
	if (!is_production_namespace(ns_of(d->root)) || is_canary(d->root))
		return;
	const double *ratio = cfg_get(l->schema, l->config, "faults.error_ratio", CFG_DOUBLE);
	const int64_t *delay = cfg_get(l->schema, l->config, "faults.delay", CFG_DURATION_MS);
	const bool *not_ready = cfg_get(l->schema, l->config, "faults.not_ready", CFG_BOOL);
	const int64_t *exit_after =
	    cfg_get(l->schema, l->config, "faults.exit_after", CFG_DURATION_MS);
	char what[256] = "";
	size_t used = 0;
	if (ratio && *ratio > 0)
		used += (size_t)snprintf(what + used, sizeof(what) - used, " faults.error_ratio=%g",
		                         *ratio);
	if (delay && *delay > 0 && used < sizeof(what))
		used += (size_t)snprintf(what + used, sizeof(what) - used, " faults.delay=%lldms",
		                         (long long)*delay);
	if (not_ready && *not_ready && used < sizeof(what))
		used +=
		    (size_t)snprintf(what + used, sizeof(what) - used, " faults.not_ready=true");
	if (exit_after && *exit_after > 0 && used < sizeof(what))
		used += (size_t)snprintf(what + used, sizeof(what) - used,
		                         " faults.exit_after=%lldms", (long long)*exit_after);
	if (used == 0)
		return;
	add(c, d, d->root, "faults-production",
	    "container %s:%s: faults enabled in production namespace %s, and the Deployment is "
	    "not a canary (name *-canary or label track: canary)",
	    cname, what, ns_of(d->root));
}

static void check_config_rules(struct ctx *c, const struct lint_doc *d, const struct ynode *pod,
                               const struct ynode *ctr, const struct svc_kind *kind)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	struct loaded l;
	if (load_config(c, d, pod, ctr, kind, &l)) {
		c->oom = 1;
		goto out;
	}
	/* The binary would not start: rules about its values would only guess. */
	if (l.failed)
		goto out;

	long long port = config_int(&l, "api.port", CFG_INT);
	int has_port = 0;
	const struct ynode *cps = ytree_get(ctr, "ports");
	for (size_t i = 0; cps && cps->type == YNODE_SEQ && i < cps->n; i++) {
		long long p;
		if (ytree_int(ytree_get(cps->vals[i], "containerPort"), &p) == 0 && p == port)
			has_port = 1;
	}
	if (!has_port)
		add(c, d, d->root, "port-container",
		    "container %s: api.port %lld is not a containerPort", cname, port);

	check_probes(c, d, ctr, kind, port);
	check_services(c, d, ctr, port);

	long long drain = config_int(&l, "shutdown.drain_delay", CFG_DURATION_MS);
	long long grace = config_int(&l, "shutdown.grace_period", CFG_DURATION_MS);
	long long pre = prestop_seconds(ctr);
	long long tgps = DEFAULT_TERMINATION_GRACE_S;
	const struct ynode *tn = ytree_get(pod, "terminationGracePeriodSeconds");
	if (tn && ytree_int(tn, &tgps))
		tgps = 0;
	if (pre * 1000 + drain + grace >= tgps * 1000)
		add(c, d, d->root, "drain-grace",
		    "container %s: preStop %llds + drain_delay %lldms + grace_period %lldms >= "
		    "terminationGracePeriodSeconds %llds: SIGKILL before the drain ends",
		    cname, pre, drain, grace, tgps);

	check_peers(c, d, &l);
	check_faults(c, d, &l, cname);
out:
	loaded_release(&l);
}

/* maxSurge / maxUnavailable: an int or "N%". Returns -1 when absent or malformed. */
static long long int_or_percent(const struct ynode *n)
{
	const char *s = ytree_str(n);
	if (!s || !isdigit((unsigned char)s[0]))
		return -1;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno || (*end && strcmp(end, "%") != 0))
		return -1;
	return v;
}

static void check_rollout(struct ctx *c, const struct lint_doc *d)
{
	const struct ynode *spec = ytree_get(d->root, "spec");
	const char *type = ytree_str(ytree_at(spec, "strategy", "type", YTREE_END));
	const struct ynode *ru = ytree_at(spec, "strategy", "rollingUpdate", YTREE_END);
	long long unavail = int_or_percent(ytree_get(ru, "maxUnavailable"));
	long long surge = int_or_percent(ytree_get(ru, "maxSurge"));
	if ((type && strcmp(type, "RollingUpdate") != 0) || unavail != 0 || surge <= 0)
		add(c, d, d->root, "rollout-strategy",
		    "strategy must be RollingUpdate with maxUnavailable 0 and maxSurge > 0 "
		    "(type %s, maxUnavailable %s, maxSurge %s)",
		    type ? type : "RollingUpdate",
		    or_dflt(ytree_str(ytree_get(ru, "maxUnavailable")), "unset"),
		    or_dflt(ytree_str(ytree_get(ru, "maxSurge")), "unset"));

	long long mrs, pds;
	if (ytree_int(ytree_get(spec, "minReadySeconds"), &mrs) ||
	    ytree_int(ytree_get(spec, "progressDeadlineSeconds"), &pds))
		add(c, d, d->root, "rollout-deadline",
		    "minReadySeconds and progressDeadlineSeconds must both be set");
	else if (pds <= mrs)
		add(c, d, d->root, "rollout-deadline",
		    "progressDeadlineSeconds %lld <= minReadySeconds %lld: every rollout would "
		    "fail",
		    pds, mrs);
}

static void check_image(struct ctx *c, const struct lint_doc *d, const struct ynode *ctr)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	const char *image = ytree_str(ytree_get(ctr, "image"));
	if (!image) {
		add(c, d, d->root, "image-tag", "container %s: no image", cname);
		return;
	}
	if (strchr(image, '@'))
		return; /* pinned by digest */
	const char *slash = strrchr(image, '/');
	const char *tag = strchr(slash ? slash : image, ':');
	if (!tag)
		add(c, d, d->root, "image-tag", "container %s: image %s has no tag (means latest)",
		    cname, image);
	else if (strcmp(tag + 1, "latest") == 0)
		add(c, d, d->root, "image-tag", "container %s: image %s uses the latest tag", cname,
		    image);
}

static void check_resources(struct ctx *c, const struct lint_doc *d, const struct ynode *ctr)
{
	static const char *const need[][2] = {
	    {"requests", "cpu"},
	    {"requests", "memory"},
	    {"limits", "cpu"},
	    {"limits", "memory"},
	};
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	char missing[128] = "";
	size_t used = 0;
	for (size_t i = 0; i < 4; i++) {
		if (ytree_str(ytree_at(ctr, "resources", need[i][0], need[i][1], YTREE_END)))
			continue;
		int w = snprintf(missing + used, sizeof(missing) - used, "%s%s.%s",
		                 used ? ", " : "", need[i][0], need[i][1]);
		if (w > 0 && (size_t)w < sizeof(missing) - used)
			used += (size_t)w;
	}
	if (used)
		add(c, d, d->root, "resources", "container %s: missing %s", cname, missing);
}

static void check_security(struct ctx *c, const struct lint_doc *d, const struct ynode *pod,
                           const struct ynode *ctr)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	const struct ynode *psc = ytree_get(pod, "securityContext");
	const struct ynode *csc = ytree_get(ctr, "securityContext");
	char missing[256] = "";
	size_t used = 0;
	int b;
#define MISSING(what)                                                             \
	do {                                                                      \
		int w_ = snprintf(missing + used, sizeof(missing) - used, "%s%s", \
		                  used ? ", " : "", what);                        \
		if (w_ > 0 && (size_t)w_ < sizeof(missing) - used)                \
			used += (size_t)w_;                                       \
	} while (0)

	const struct ynode *nonroot = ytree_get(csc, "runAsNonRoot");
	if (!nonroot)
		nonroot = ytree_get(psc, "runAsNonRoot");
	if (ytree_bool(nonroot, &b) || !b)
		MISSING("runAsNonRoot: true");
	if (ytree_bool(ytree_get(csc, "readOnlyRootFilesystem"), &b) || !b)
		MISSING("readOnlyRootFilesystem: true");
	if (ytree_bool(ytree_get(csc, "allowPrivilegeEscalation"), &b) || b)
		MISSING("allowPrivilegeEscalation: false");
	const struct ynode *drop = ytree_at(csc, "capabilities", "drop", YTREE_END);
	int all = 0;
	for (size_t i = 0; drop && drop->type == YNODE_SEQ && i < drop->n; i++)
		if (ytree_str(drop->vals[i]) && strcmp(ytree_str(drop->vals[i]), "ALL") == 0)
			all = 1;
	if (!all)
		MISSING("capabilities.drop: [ALL]");
	const struct ynode *sp = ytree_at(csc, "seccompProfile", "type", YTREE_END);
	if (!sp)
		sp = ytree_at(psc, "seccompProfile", "type", YTREE_END);
	const char *spt = ytree_str(sp);
	if (!spt || (strcmp(spt, "RuntimeDefault") != 0 && strcmp(spt, "Localhost") != 0))
		MISSING("seccompProfile.type: RuntimeDefault");
#undef MISSING
	if (used)
		add(c, d, d->root, "security-context", "container %s: missing %s", cname, missing);
}

static void check_deployment(struct ctx *c, const struct lint_doc *d)
{
	const struct ynode *pod = ytree_at(d->root, "spec", "template", "spec", YTREE_END);
	const struct ynode *ctrs = ytree_get(pod, "containers");
	c->rep->objects++;
	check_rollout(c, d);
	for (size_t i = 0; ctrs && ctrs->type == YNODE_SEQ && i < ctrs->n; i++) {
		const struct ynode *ctr = ctrs->vals[i];
		const struct svc_kind *kind = kind_of_container(ctr);
		check_image(c, d, ctr);
		check_resources(c, d, ctr);
		check_security(c, d, pod, ctr);
		/* Config rules apply to our services; a foreign sidecar has no config. */
		if (kind)
			check_config_rules(c, d, pod, ctr, kind);
	}
}

int lint_check(const struct lint_doc *docs, size_t ndocs, struct lint_report *rep)
{
	struct ctx c = {docs, ndocs, rep, 0};
	for (size_t i = 0; i < ndocs && !c.oom; i++) {
		const char *kind = ytree_str(ytree_get(docs[i].root, "kind"));
		if (kind && strcmp(kind, "Deployment") == 0)
			check_deployment(&c, &docs[i]);
	}
	return c.oom ? MV_ENOMEM : 0;
}
