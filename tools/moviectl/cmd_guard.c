/*
 * cmd_guard.c - `moviectl guard`: automatic rollback of a bad rollout.
 *
 *   moviectl guard --once [-n NS] [flags] DEPLOYMENT...   (a pipeline step)
 *   moviectl guard [-n NS] [--listen ADDR] [flags]        (the controller)
 *
 * --once watches each Deployment's current rollout and its window: exit 0
 * healthy, 1 rolled back, 2 could not judge (or would not act: outside the
 * window, paused, locked, template rolled back before). The controller
 * watches every Deployment labelled app.kubernetes.io/part-of=movie in the
 * namespace and serves /healthz and /metrics. One JSON verdict line per
 * decision on stdout; diagnostics on stderr.
 */
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cmd_kube.h"
#include "guard.h"
#include "guard_http.h"
#include "rollout_ops.h"

#include "movie/err.h"
#include "movie/metrics.h"
#include "movie/banned.h"

#define PART_OF_SELECTOR "app.kubernetes.io/part-of=movie"
#define MAX_POLICY_BYTES ((size_t)1024 * 1024)
#define MAX_TARGETS      256

enum {
	EXIT_HEALTHY = 0,
	EXIT_ROLLED_BACK = 1,
	EXIT_UNJUDGED = 2
};

struct guard_opts {
	struct kube_cli cli;
	const char *policy_file;
	const char *prometheus;
	const char *listen;
	double timeout;        /* --once: give up after (1800 s) */
	double status_timeout; /* wait for the rollback's rollout (600 s) */
	int once;
	const char *targets[MAX_TARGETS];
	size_t ntargets;
};

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: moviectl guard --once [-n NS] [options] DEPLOYMENT...\n"
	        "       moviectl guard [-n NS] [--listen ADDR] [options]\n"
	        "\n"
	        "Rolls a Deployment back to its previous ReplicaSet when its current rollout\n"
	        "is bad: progress deadline exceeded, new pods crash-looping or restarting,\n"
	        "new pods not ready, or (with --prometheus) a server-error ratio or p99\n"
	        "latency worse than the previous ReplicaSet's before the rollout. Only a\n"
	        "rollout in progress or completed within the policy window is rolled back.\n"
	        "\n"
	        "  --once               judge the named Deployments until healthy or rolled\n"
	        "                       back; exit 0 healthy, 1 rolled back, 2 could not judge\n"
	        "  --policy FILE        YAML policy (defaults: docs/release.md)\n"
	        "  --prometheus URL     Prometheus for the metric checks (else: Kubernetes-side\n"
	        "                       checks only)\n"
	        "  --timeout D          --once: give up after D (default 30m), exit 2\n"
	        "  --status-timeout D   wait at most D for the rollback's rollout (default 10m)\n"
	        "  --listen ADDR        controller: /healthz and /metrics (default :9102)\n"
	        "  --kubeconfig, --context, -n/--namespace   as kubectl\n"
	        "\n"
	        "One JSON line per decision on stdout: outcome, action, check, value,\n"
	        "threshold, baseline, samples, the new and previous pod-template-hash.\n");
}

static int read_policy(const char *file, struct guard_policy *p)
{
	guard_policy_defaults(p);
	if (!file)
		return 0;
	FILE *f = fopen(file, "rb");
	if (!f) {
		fprintf(stderr, "moviectl guard: %s: cannot open the policy\n", file);
		return -1;
	}
	char *data = malloc(MAX_POLICY_BYTES + 1);
	size_t len = data ? fread(data, 1, MAX_POLICY_BYTES + 1, f) : 0;
	fclose(f);
	if (!data)
		return -1;
	char err[512] = "";
	int rc = len > MAX_POLICY_BYTES ? MV_ETOOBIG
	                                : guard_policy_parse(p, data, len, err, sizeof(err));
	free(data);
	if (rc) {
		fprintf(stderr, "%s:%s\n", file, err[0] ? err : " policy too large");
		return -1;
	}
	return 0;
}

static int parse_args(int argc, char **argv, struct guard_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->timeout = 1800;
	o->status_timeout = 600;
	o->listen = ":9102";
	for (int i = 0; i < argc; i++) {
		const char *v;
		int k = kube_cli_option(&o->cli, argc, argv, &i, "moviectl guard");
		if (k < 0)
			return -1;
		if (k > 0)
			continue;
		if (strcmp(argv[i], "--once") == 0) {
			o->once = 1;
		} else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			usage(stdout);
			exit(0);
		} else if ((v = kube_cli_value(argc, argv, &i, "--policy"))) {
			o->policy_file = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--prometheus"))) {
			o->prometheus = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--listen"))) {
			o->listen = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--timeout"))) {
			if (kube_cli_duration(v, &o->timeout)) {
				fprintf(stderr, "moviectl guard: bad --timeout \"%s\"\n", v);
				return -1;
			}
		} else if ((v = kube_cli_value(argc, argv, &i, "--status-timeout"))) {
			if (kube_cli_duration(v, &o->status_timeout)) {
				fprintf(stderr, "moviectl guard: bad --status-timeout \"%s\"\n", v);
				return -1;
			}
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "moviectl guard: unknown flag %s\n", argv[i]);
			return -1;
		} else if (!kube_cli_valid_name(argv[i]) || o->ntargets >= MAX_TARGETS) {
			fprintf(stderr, "moviectl guard: \"%s\" is not a Deployment name\n",
			        argv[i]);
			return -1;
		} else {
			o->targets[o->ntargets++] = argv[i];
		}
	}
	if (o->once && o->ntargets == 0) {
		fprintf(stderr, "moviectl guard: --once needs at least one DEPLOYMENT\n");
		return -1;
	}
	if (!o->once && o->ntargets) {
		fprintf(stderr, "moviectl guard: DEPLOYMENT names need --once (the controller "
		                "watches every part-of=movie Deployment)\n");
		return -1;
	}
	return 0;
}

static void sleep_s(double s)
{
	struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
	nanosleep(&ts, NULL);
}

/* ---- --once ---- */

struct target {
	const char *name;
	int done, code;
	struct guard_verdict last;
	int have_last;
};

static int wait_rollback(struct guard_ctx *g, const char *ns, const char *name, double timeout,
                         const char **how)
{
	struct kube_error err;
	int rc = rollout_status_wait(g->kube, ns, name, 0, kube_now() + timeout, NULL, NULL, &err);
	*how = rc == 0 ? "complete" : rc == MV_ETIMEDOUT ? "timeout" : "failed";
	if (rc)
		kube_error_print(&err, "moviectl guard");
	return rc;
}

/* One round for one target; sets t->done and t->code when decided. */
static void once_step(struct guard_ctx *g, const struct guard_opts *o, const char *ns,
                      struct target *t)
{
	struct guard_verdict v;
	struct kube_error err;
	int rc = guard_evaluate(g, ns, t->name, &v, &err);
	if (rc) {
		kube_error_print(&err, "moviectl guard");
		if (rc == MV_ENOTFOUND) {
			t->done = 1;
			t->code = EXIT_UNJUDGED;
		}
		return;
	}
	t->last = v;
	t->have_last = 1;
	const char *how;
	switch (v.outcome) {
	case GUARD_FAILED:
		t->done = 1;
		if (v.action == GUARD_ACTION_ROLLBACK) {
			wait_rollback(g, ns, t->name, o->status_timeout, &how);
			guard_verdict_print(stdout, ns, t->name, &v, "rollback", how);
			t->code = EXIT_ROLLED_BACK;
		} else {
			guard_verdict_print(stdout, ns, t->name, &v, NULL, NULL);
			t->code = EXIT_UNJUDGED;
		}
		break;
	case GUARD_RECOVERED:
		/* A guard before us rolled back (and was stopped): finish its work. */
		wait_rollback(g, ns, t->name, o->status_timeout, &how);
		guard_verdict_print(stdout, ns, t->name, &v, "rollback", how);
		t->done = 1;
		t->code = EXIT_ROLLED_BACK;
		break;
	case GUARD_HEALTHY:
		guard_verdict_print(stdout, ns, t->name, &v, NULL, NULL);
		t->done = 1;
		t->code = EXIT_HEALTHY;
		break;
	case GUARD_PENDING:
	case GUARD_UNKNOWN: break;
	}
}

static int run_once(struct guard_ctx *g, const struct guard_opts *o, const char *ns)
{
	struct target ts[MAX_TARGETS];
	memset(ts, 0, sizeof(ts));
	for (size_t i = 0; i < o->ntargets; i++)
		ts[i].name = o->targets[i];
	double deadline = kube_now() + o->timeout;
	size_t left = o->ntargets;
	while (left > 0 && !stopping) {
		for (size_t i = 0; i < o->ntargets; i++) {
			if (ts[i].done)
				continue;
			once_step(g, o, ns, &ts[i]);
			if (ts[i].done)
				left--;
		}
		if (left == 0 || kube_now() + g->policy->interval > deadline)
			break;
		sleep_s(g->policy->interval); /* the evaluation period, not synchronisation */
	}
	int code = EXIT_HEALTHY;
	for (size_t i = 0; i < o->ntargets; i++) {
		if (!ts[i].done) {
			ts[i].code = EXIT_UNJUDGED;
			if (ts[i].have_last) {
				char last[200];
				snprintf(last, sizeof(last), "%.199s", ts[i].last.reason);
				snprintf(ts[i].last.reason, sizeof(ts[i].last.reason),
				         "no verdict before --timeout (last: %s: %s)",
				         guard_outcome_name(ts[i].last.outcome), last);
				ts[i].last.outcome = GUARD_UNKNOWN;
				guard_verdict_print(stdout, ns, ts[i].name, &ts[i].last, NULL,
				                    NULL);
			} else {
				fprintf(stderr,
				        "moviectl guard: %s: could not be read before --timeout\n",
				        ts[i].name);
			}
		}
		if (ts[i].code == EXIT_ROLLED_BACK)
			code = EXIT_ROLLED_BACK;
		else if (ts[i].code == EXIT_UNJUDGED && code != EXIT_ROLLED_BACK)
			code = EXIT_UNJUDGED;
	}
	return code;
}

/* ---- the controller ---- */

#define MAX_WATCHED 512

struct watched {
	char name[254];
	int present;
	char reported[128]; /* hash/check last reported (outside window, skipped) */
};

struct controller {
	struct guard_ctx *g;
	const struct guard_opts *o;
	const char *ns;
	pthread_mutex_t mu;
	struct watched items[MAX_WATCHED];
	size_t n;
	atomic_int synced;       /* the watch delivered its first list */
	atomic_llong last_round; /* kube_now() of the last evaluation round, as ms */
	struct metrics_registry *reg;
	struct metrics_family *decisions, *errors;
};

static int on_deploy_event(void *user, const struct kube_event *ev)
{
	struct controller *c = user;
	const char *name =
	    json_string_value(json_object_get(json_object_get(ev->object, "metadata"), "name"));
	if (!name || strlen(name) >= sizeof(c->items[0].name))
		return 0;
	pthread_mutex_lock(&c->mu);
	size_t i = 0;
	while (i < c->n && strcmp(c->items[i].name, name) != 0)
		i++;
	if (ev->type == KUBE_EVENT_DELETED) {
		if (i < c->n)
			c->items[i].present = 0;
	} else if (i < c->n) {
		c->items[i].present = 1;
	} else if (c->n < MAX_WATCHED) {
		memset(&c->items[c->n], 0, sizeof(c->items[0]));
		snprintf(c->items[c->n].name, sizeof(c->items[0].name), "%s", name);
		c->items[c->n].present = 1;
		c->n++;
	}
	pthread_mutex_unlock(&c->mu);
	atomic_store(&c->synced, 1);
	return stopping ? 1 : 0;
}

static void *watch_thread(void *arg)
{
	struct controller *c = arg;
	struct kube_client *kc;
	if (kube_cli_connect(&c->o->cli, &kc, "moviectl guard"))
		return NULL;
	char path[512];
	snprintf(path, sizeof(path), "/apis/apps/v1/namespaces/%s/deployments", c->ns);
	while (!stopping) {
		struct kube_error err;
		/* Bounded so a stop request is noticed; the watch resumes from its RV. */
		int rc = kube_watch_until(kc, path, PART_OF_SELECTOR, NULL, kube_now() + 10,
		                          on_deploy_event, c, &err);
		if (rc && rc != MV_ETIMEDOUT) {
			kube_error_print(&err, "moviectl guard: watch");
			sleep_s(2);
		}
	}
	kube_client_free(kc);
	return NULL;
}

static void count(struct controller *c, struct metrics_family *f, const char *a, const char *b,
                  const char *d)
{
	const char *vals[3] = {a, b, d};
	metrics_counter_inc(metrics_counter_get(f, vals));
}

static void control_one(struct controller *c, struct watched *w)
{
	struct guard_verdict v;
	struct kube_error err;
	int rc = guard_evaluate(c->g, c->ns, w->name, &v, &err);
	if (rc) {
		if (rc != MV_ENOTFOUND)
			kube_error_print(&err, "moviectl guard");
		count(c, c->errors, w->name, err.reason[0] ? err.reason : "error", NULL);
		return;
	}
	const char *check = v.check[0] ? v.check : "none";
	count(c, c->decisions, check, guard_outcome_name(v.outcome), guard_action_name(v.action));
	if (v.outcome != GUARD_FAILED)
		return;
	char key[128];
	snprintf(key, sizeof(key), "%s/%s/%s", v.bad_hash, v.check, guard_action_name(v.action));
	if (v.action != GUARD_ACTION_ROLLBACK && strcmp(key, w->reported) == 0)
		return; /* reported once per template and check */
	snprintf(w->reported, sizeof(w->reported), "%s", key);
	guard_verdict_print(stdout, c->ns, w->name, &v, NULL, NULL);
}

static int controller_health(void *user, char *why, size_t whylen)
{
	struct controller *c = user;
	if (!atomic_load(&c->synced)) {
		snprintf(why, whylen, "the Deployment watch has not listed yet");
		return 0;
	}
	double last = (double)atomic_load(&c->last_round) / 1000.0;
	double limit = 3 * c->g->policy->interval + 120;
	if (kube_now() - last > limit) {
		snprintf(why, whylen, "no evaluation round for %.0fs", kube_now() - last);
		return 0;
	}
	return 1;
}

static int controller_metrics(struct controller *c)
{
	c->reg = metrics_registry_new();
	static const char *const dl[] = {"check", "outcome", "action"};
	static const char *const el[] = {"deployment", "reason"};
	c->decisions = c->reg ? metrics_counter_family(c->reg, "moviectl_guard_decisions_total",
	                                               "Evaluations by failed check (none when "
	                                               "none failed), outcome and action.",
	                                               3, dl)
	                      : NULL;
	c->errors = c->reg ? metrics_counter_family(c->reg, "moviectl_guard_errors_total",
	                                            "Evaluations that could not read the "
	                                            "Deployment, by reason.",
	                                            2, el)
	                   : NULL;
	if (!c->decisions || !c->errors || metrics_register_process(c->reg))
		return MV_ENOMEM;
	return 0;
}

static int run_controller(struct guard_ctx *g, const struct guard_opts *o, const char *ns)
{
	static struct controller c; /* large: not on the stack */
	memset(&c, 0, sizeof(c));
	c.g = g;
	c.o = o;
	c.ns = ns;
	pthread_mutex_init(&c.mu, NULL);
	atomic_store(&c.last_round, (long long)(kube_now() * 1000));
	if (controller_metrics(&c)) {
		fprintf(stderr, "moviectl guard: out of memory\n");
		return EXIT_UNJUDGED;
	}
	struct guard_http *http;
	int rc = guard_http_start(o->listen, c.reg, controller_health, &c, &http);
	if (rc) {
		fprintf(stderr, "moviectl guard: cannot listen on %s: %s\n", o->listen,
		        mv_strerror(rc));
		metrics_registry_free(c.reg);
		return EXIT_UNJUDGED;
	}
	pthread_t wt;
	pthread_create(&wt, NULL, watch_thread, &c);
	fprintf(stderr,
	        "moviectl guard: watching Deployments %s in %s, /healthz and /metrics on %s%s\n",
	        PART_OF_SELECTOR, ns, o->listen,
	        g->prom ? "" : " (no --prometheus: Kubernetes-side checks only)");
	while (!stopping) {
		pthread_mutex_lock(&c.mu);
		size_t n = c.n;
		pthread_mutex_unlock(&c.mu);
		for (size_t i = 0; i < n && !stopping; i++) {
			pthread_mutex_lock(&c.mu);
			int present = c.items[i].present;
			pthread_mutex_unlock(&c.mu);
			if (present)
				control_one(&c, &c.items[i]);
		}
		atomic_store(&c.last_round, (long long)(kube_now() * 1000));
		sleep_s(g->policy->interval); /* the evaluation period */
	}
	pthread_join(wt, NULL);
	guard_http_stop(http);
	metrics_registry_free(c.reg);
	pthread_mutex_destroy(&c.mu);
	return EXIT_HEALTHY;
}

int cmd_guard(int argc, char **argv)
{
	struct guard_opts o;
	if (parse_args(argc, argv, &o)) {
		usage(stderr);
		return EXIT_UNJUDGED;
	}
	struct guard_policy policy;
	if (read_policy(o.policy_file, &policy))
		return EXIT_UNJUDGED;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	struct guard_ctx g = {.policy = &policy};
	char instance[300];
	char host[256] = "unknown";
	gethostname(host, sizeof(host) - 1);
	snprintf(instance, sizeof(instance), "%s/%ld", host, (long)getpid());
	g.instance = instance;
	if (kube_cli_connect(&o.cli, &g.kube, "moviectl guard"))
		return EXIT_UNJUDGED;
	int code = EXIT_UNJUDGED;
	if (o.prometheus && prom_client_new(o.prometheus, 10000, &g.prom)) {
		fprintf(stderr, "moviectl guard: bad --prometheus URL \"%s\"\n", o.prometheus);
		goto out;
	}
	if (!g.prom)
		fprintf(stderr, "moviectl guard: no --prometheus: only the Kubernetes-side checks "
		                "run (progress-deadline, restarts, readiness)\n");
	const char *ns = kube_client_namespace(g.kube);
	code = o.once ? run_once(&g, &o, ns) : run_controller(&g, &o, ns);
out:
	prom_client_free(g.prom);
	kube_client_free(g.kube);
	return code;
}
