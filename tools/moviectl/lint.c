#include "lint.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "movie/err.h"
#include "movie/banned.h"

/* The three services, their default port (docs/config.md) and gRPC service name. */
struct svc_kind {
	const char *name;
	const char *grpc_name;
	long long default_port;
	const char *env_port; /* <SERVICE>_API_PORT */
};

static const struct svc_kind kinds[] = {
    {"metadata", "MetadataService", 8081, "METADATA_API_PORT"},
    {"rating", "RatingService", 8082, "RATING_API_PORT"},
    {"movie", "MovieService", 8083, "MOVIE_API_PORT"},
};

/* Defaults the binaries use when a key is absent (docs/config.md). */
#define DEFAULT_DRAIN_MS            5000LL
#define DEFAULT_GRACE_MS            20000LL
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

static void add(struct ctx *c, const struct lint_doc *d, const struct ynode *obj, const char *rule,
                const char *fmt, ...) __attribute__((format(printf, 5, 6)));

static void add(struct ctx *c, const struct lint_doc *d, const struct ynode *obj, const char *rule,
                const char *fmt, ...)
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
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	struct lint_finding *f = &rep->items[rep->n];
	f->file = d->file;
	f->line = obj->line;
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

int lint_parse_duration_ms(const char *s, long long *ms)
{
	if (!s || !isdigit((unsigned char)s[0]))
		return MV_EINVAL;
	char *end;
	errno = 0;
	long long v = strtoll(s, &end, 10);
	if (errno == ERANGE)
		return MV_ERANGE;
	long long mul;
	if (strcmp(end, "") == 0 || strcmp(end, "ms") == 0)
		mul = 1;
	else if (strcmp(end, "s") == 0)
		mul = 1000;
	else if (strcmp(end, "m") == 0)
		mul = 60 * 1000;
	else if (strcmp(end, "h") == 0)
		mul = 3600 * 1000;
	else
		return MV_EINVAL;
	if (v > (long long)1e12)
		return MV_ERANGE;
	*ms = v * mul;
	return 0;
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

/* Load one ConfigMap key named by a --config path and merge it into *cfg.
 * Returns 0, 1 (not resolvable; why is set), MV_ENOMEM. */
static int merge_config_file(const struct ctx *c, const char *ns, const struct ynode *pod,
                             const struct ynode *ctr, const char *path, struct ynode **cfg,
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
	const char *text = ytree_str(ytree_at(cmd->root, "data", key, YTREE_END));
	if (!text) {
		snprintf(why, whylen, "--config %s: ConfigMap %s has no key %s", path, cm_name,
		         key);
		return 1;
	}
	struct ydocs docs = {0};
	char err[256];
	int rc = ytree_parse(text, strlen(text), &docs, err, sizeof(err));
	if (rc == MV_ENOMEM)
		goto out;
	if (rc) {
		snprintf(why, whylen, "ConfigMap %s key %s: %s", cm_name, key, err);
		rc = 1;
		goto out;
	}
	for (size_t i = 0; i < docs.n; i++) {
		if (docs.docs[i]->type != YNODE_MAP)
			continue;
		rc = ytree_merge(cfg, docs.docs[i]);
		if (rc)
			goto out;
	}
out:
	ytree_docs_release(&docs);
	return rc;
}

/* The effective service config of a container, as the binary would load it.
 * Returns 0, 1 (why is set), MV_ENOMEM. */
static int build_config(const struct ctx *c, const char *ns, const struct ynode *pod,
                        const struct ynode *ctr, const struct svc_kind *kind, struct ynode **cfg,
                        char *why, size_t whylen)
{
	const struct ynode *args = ytree_get(ctr, "args");
	int found = 0;
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
		int rc = merge_config_file(c, ns, pod, ctr, path, cfg, why, whylen);
		if (rc)
			return rc;
	}
	if (!found) {
		snprintf(why, whylen, "no --config argument names a ConfigMap key");
		return 1;
	}
	if (!*cfg) {
		/* Every file was empty: the binary runs on defaults. */
		struct ydocs d = {0};
		char err[64];
		int rc = ytree_parse("{}", 2, &d, err, sizeof(err));
		if (rc)
			return MV_ENOMEM;
		*cfg = d.docs[0];
		d.n = 0;
		ytree_docs_release(&d);
	}
	/* Environment variables override the files (docs/config.md). */
	const struct ynode *env = ytree_get(ctr, "env");
	for (size_t i = 0; kind && env && env->type == YNODE_SEQ && i < env->n; i++) {
		const char *name = ytree_str(ytree_get(env->vals[i], "name"));
		const char *value = ytree_str(ytree_get(env->vals[i], "value"));
		if (!name || !value || strcmp(name, kind->env_port) != 0)
			continue;
		if (!ytree_get(*cfg, "api")) {
			struct ydocs d = {0};
			char err[64];
			if (ytree_parse("api: {}", 7, &d, err, sizeof(err)))
				return MV_ENOMEM;
			int rc = ytree_merge(cfg, d.docs[0]);
			ytree_docs_release(&d);
			if (rc)
				return rc;
		}
		if (ytree_map_set_str(ytree_get_mut(*cfg, "api"), "port", value))
			return MV_ENOMEM;
	}
	return 0;
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

static void check_peers(struct ctx *c, const struct lint_doc *d, const struct ynode *cfg,
                        const struct svc_kind *kind)
{
	static const char *const movie_peers[][2] = {
	    {"metadata", "127.0.0.1:8081"},
	    {"rating", "127.0.0.1:8082"},
	};
	const struct ynode *peers = ytree_get(cfg, "peers");
	for (size_t i = 0; peers && peers->type == YNODE_MAP && i < peers->n; i++) {
		const struct ynode *addrs = ytree_get(peers->vals[i], "addresses");
		for (size_t j = 0; addrs && addrs->type == YNODE_SEQ && j < addrs->n; j++) {
			const char *a = ytree_str(addrs->vals[j]);
			if (a)
				check_peer(c, d, peers->keys[i], a);
		}
	}
	if (!kind || strcmp(kind->name, "movie") != 0)
		return;
	/* An absent peer list means the loopback default, which is wrong in a pod. */
	for (size_t i = 0; i < 2; i++)
		if (!ytree_at(peers, movie_peers[i][0], "addresses", YTREE_END))
			check_peer(c, d, movie_peers[i][0], movie_peers[i][1]);
}

static long long config_duration(struct ctx *c, const struct lint_doc *d, const struct ynode *cfg,
                                 const char *key, long long dflt)
{
	const struct ynode *n = ytree_at(cfg, "shutdown", key, YTREE_END);
	if (!n)
		return dflt;
	long long ms;
	if (lint_parse_duration_ms(ytree_str(n), &ms)) {
		add(c, d, d->root, "config", "shutdown.%s \"%s\" is not a duration", key,
		    or_dflt(ytree_str(n), "(not a scalar)"));
		return dflt;
	}
	return ms;
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

static void check_config_rules(struct ctx *c, const struct lint_doc *d, const struct ynode *pod,
                               const struct ynode *ctr, const struct svc_kind *kind)
{
	const char *cname = or_dflt(ytree_str(ytree_get(ctr, "name")), "?");
	struct ynode *cfg = NULL;
	char why[512];
	int rc = build_config(c, ns_of(d->root), pod, ctr, kind, &cfg, why, sizeof(why));
	if (rc) {
		if (rc == MV_ENOMEM)
			c->oom = 1;
		else
			add(c, d, d->root, "config", "container %s: %s", cname, why);
		goto out;
	}

	long long port = kind ? kind->default_port : 0;
	const struct ynode *pn = ytree_at(cfg, "api", "port", YTREE_END);
	if (pn && (ytree_int(pn, &port) || port < 1 || port > 65535)) {
		add(c, d, d->root, "config", "container %s: api.port \"%s\" is not a port", cname,
		    or_dflt(ytree_str(pn), "(not a scalar)"));
		goto out;
	}
	if (!pn && !kind) {
		add(c, d, d->root, "config", "container %s: no api.port and no default for it",
		    cname);
		goto out;
	}

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

	long long drain = config_duration(c, d, cfg, "drain_delay", DEFAULT_DRAIN_MS);
	long long grace = config_duration(c, d, cfg, "grace_period", DEFAULT_GRACE_MS);
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

	check_peers(c, d, cfg, kind);
out:
	ytree_free(cfg);
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
		if (kind || ytree_get(ctr, "args"))
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
