/*
 * cmd_release.c - `moviectl release`: the command line of the canary release
 * (release_run.c does the work). Exit 0 promoted, 1 aborted and reverted,
 * 2 error (the verdict's "state" says what was left).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"
#include "release_run.h"

#include "movie/err.h"
#include "movie/log.h"
#include "movie/banned.h"

#define PROG             "moviectl release"
#define MAX_POLICY_BYTES ((size_t)1024 * 1024)

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: moviectl release [-n NS] --image SVC=IMAGE... [--config SVC=FILE...]\n"
	        "                        [--prometheus URL]\n"
	        "                        [--policy FILE] [--verdict FILE] [--output json]\n"
	        "                        [--dry-run] [--kubeconfig FILE] [--context NAME]\n"
	        "\n"
	        "Canary release of one or more services of the movie system: in dependency\n"
	        "order (from each service's config peers), <svc>-canary gets IMAGE, is judged\n"
	        "against <svc>-production on Prometheus (server-error ratio beyond chance and\n"
	        "beyond a floor, p99 latency, restarts; synthetic load when traffic is low),\n"
	        "then <svc>-production is promoted, or everything is reverted.\n"
	        "\n"
	        "  --image SVC=IMAGE   the new version of SVC (repeatable)\n"
	        "  --config SVC=FILE   FILE replaces the key of that name (production.yaml) in\n"
	        "                      SVC's ConfigMaps: a new ConfigMap per track, canary first\n"
	        "  --prometheus URL    the Prometheus that scrapes the pods (required unless\n"
	        "                      --dry-run; never promotes without it)\n"
	        "  --policy FILE       YAML policy (docs/release.md, Policy reference)\n"
	        "  --verdict FILE      write the verdict JSON document to FILE\n"
	        "  --output json       print the verdict JSON on stdout\n"
	        "  --dry-run           print the plan, change nothing\n"
	        "Progress goes to stderr. Exit 0 promoted, 1 aborted and reverted, 2 error.\n");
}

static int read_file(const char *path, char **out, size_t *len)
{
	FILE *f = fopen(path, "rb");
	if (!f)
		return MV_EIO;
	char *buf = malloc(MAX_POLICY_BYTES + 1);
	if (!buf) {
		fclose(f);
		return MV_ENOMEM;
	}
	size_t n = fread(buf, 1, MAX_POLICY_BYTES + 1, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n > MAX_POLICY_BYTES) {
		free(buf);
		return bad ? MV_EIO : MV_ETOOBIG;
	}
	buf[n] = '\0';
	*out = buf;
	*len = n;
	return 0;
}

/* SVC=IMAGE with SVC a DNS label (it names Deployments) and IMAGE non-empty. */
static int parse_image(const char *v, struct release_target *t)
{
	const char *eq = strchr(v, '=');
	if (!eq || eq == v || !eq[1] || (size_t)(eq - v) >= sizeof(t->service) ||
	    strlen(eq + 1) >= sizeof(t->image))
		return MV_EINVAL;
	snprintf(t->service, sizeof(t->service), "%.*s", (int)(eq - v), v);
	snprintf(t->image, sizeof(t->image), "%s", eq + 1);
	if (!kube_cli_valid_name(t->service) || strchr(t->service, '.'))
		return MV_EINVAL;
	for (const char *p = t->image; *p; p++)
		if ((unsigned char)*p <= ' ')
			return MV_EINVAL;
	return 0;
}

/* The target of SVC, added (image "": production's) when not there yet. */
static struct release_target *target(struct release_opts *o, const char *svc, size_t len)
{
	for (size_t k = 0; k < o->n_targets; k++)
		if (strlen(o->targets[k].service) == len &&
		    strncmp(o->targets[k].service, svc, len) == 0)
			return &o->targets[k];
	if (o->n_targets >= RELEASE_MAX_SERVICES || len >= RELEASE_NAME_MAX)
		return NULL;
	struct release_target *t = &o->targets[o->n_targets++];
	memset(t, 0, sizeof(*t));
	snprintf(t->service, sizeof(t->service), "%.*s", (int)len, svc);
	return t;
}

/* --config SVC=FILE: FILE replaces the ConfigMap key named like its basename. */
static int add_config(struct release_opts *o, const char *v)
{
	const char *eq = strchr(v, '=');
	if (!eq || eq == v || !eq[1]) {
		fprintf(stderr, "%s: --config needs SVC=FILE (got \"%s\")\n", PROG, v);
		return -1;
	}
	struct release_target *t = target(o, v, (size_t)(eq - v));
	if (!t || !kube_cli_valid_name(t->service) || strchr(t->service, '.')) {
		fprintf(stderr, "%s: --config %s: bad service name\n", PROG, v);
		return -1;
	}
	if (t->config_data) {
		fprintf(stderr, "%s: --config %s given twice\n", PROG, t->service);
		return -1;
	}
	const char *file = eq + 1, *base = strrchr(file, '/');
	base = base ? base + 1 : file;
	if (!*base || strlen(base) >= sizeof(t->config_key)) {
		fprintf(stderr, "%s: --config %s: the file needs a name\n", PROG, v);
		return -1;
	}
	snprintf(t->config_key, sizeof(t->config_key), "%s", base);
	int rc = read_file(file, &t->config_data, &t->config_len);
	if (rc) {
		fprintf(stderr, "%s: %s: %s\n", PROG, file, mv_strerror(rc));
		return -1;
	}
	return 0;
}

int cmd_release(int argc, char **argv)
{
	struct kube_cli cli;
	memset(&cli, 0, sizeof(cli));
	struct release_opts *o = calloc(1, sizeof(*o));
	if (!o)
		return RELEASE_EXIT_ERROR;
	release_policy_defaults(&o->policy);
	const char *policy_file = NULL, *verdict_file = NULL;
	int json_out = 0, status = RELEASE_EXIT_ERROR;
	for (int i = 0; i < argc; i++) {
		const char *v;
		int r = kube_cli_option(&cli, argc, argv, &i, PROG);
		if (r < 0)
			goto out;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			status = 0;
			goto out;
		} else if (strcmp(argv[i], "--dry-run") == 0) {
			o->dry_run = 1;
		} else if ((v = kube_cli_value(argc, argv, &i, "--image"))) {
			if (o->n_targets >= RELEASE_MAX_SERVICES ||
			    parse_image(v, &o->targets[o->n_targets])) {
				fprintf(stderr, "%s: --image needs SVC=IMAGE (got \"%s\")\n", PROG,
				        v);
				goto out;
			}
			for (size_t k = 0; k < o->n_targets; k++)
				if (strcmp(o->targets[k].service,
				           o->targets[o->n_targets].service) == 0) {
					fprintf(stderr, "%s: --image %s given twice\n", PROG,
					        o->targets[k].service);
					goto out;
				}
			o->n_targets++;
		} else if ((v = kube_cli_value(argc, argv, &i, "--config"))) {
			if (add_config(o, v))
				goto out;
		} else if ((v = kube_cli_value(argc, argv, &i, "--prometheus"))) {
			o->prometheus = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--policy"))) {
			policy_file = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--verdict"))) {
			verdict_file = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--output"))) {
			if (strcmp(v, "json") != 0) {
				fprintf(stderr, "%s: --output takes json\n", PROG);
				goto out;
			}
			json_out = 1;
		} else {
			fprintf(stderr, "%s: unknown argument %s\n", PROG, argv[i]);
			goto out;
		}
	}
	if (o->n_targets == 0) {
		usage(stderr);
		goto out;
	}
	if (policy_file) {
		char *data = NULL, err[512];
		size_t len = 0;
		int rc = read_file(policy_file, &data, &len);
		if (rc) {
			fprintf(stderr, "%s: %s: %s\n", PROG, policy_file, mv_strerror(rc));
			goto out;
		}
		rc = release_policy_parse(&o->policy, data, len, err, sizeof(err));
		free(data);
		if (rc) {
			fprintf(stderr, "%s: %s: %s\n", PROG, policy_file, err);
			goto out;
		}
	}
	struct kube_client *kc;
	if (kube_cli_connect(&cli, &kc, PROG))
		goto out;
	o->ns = kube_client_namespace(kc);
	if (!kube_cli_valid_name(o->ns)) {
		fprintf(stderr, "%s: \"%s\" is not a valid namespace\n", PROG, o->ns);
		kube_client_free(kc);
		goto out;
	}
	/* The gRPC client of the synthetic load logs connection events: only
	 * warnings and errors belong between the progress lines. */
	log_init("moviectl", MV_LOG_WARN, 2);
	json_t *verdict = NULL;
	status = release_run(kc, o, &verdict);
	kube_client_free(kc);
	if (verdict_file) {
		if (json_dump_file(verdict, verdict_file, JSON_INDENT(2) | JSON_SORT_KEYS)) {
			fprintf(stderr, "%s: cannot write %s\n", PROG, verdict_file);
			status = RELEASE_EXIT_ERROR;
		}
	}
	if (json_out) {
		char *s = json_dumps(verdict, JSON_COMPACT | JSON_SORT_KEYS);
		if (s)
			printf("%s\n", s);
		free(s);
	}
	json_decref(verdict);
out:
	for (size_t k = 0; k < o->n_targets; k++)
		free(o->targets[k].config_data);
	free(o);
	return status;
}
