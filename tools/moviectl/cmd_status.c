/*
 * cmd_status.c - `moviectl status`: `kubectl rollout status` for Deployments
 * (K8S-API.md §1), plus --wait-terminated for old pods still draining (§1.4).
 *
 * Wire behaviour as kubectl: GET the Deployment, then LIST+WATCH deployments
 * with fieldSelector=metadata.name=X, judging every ADDED/MODIFIED event with
 * rollout_status_judge. Unlike kubectl, several Deployments are all waited
 * for (each with its own --timeout) and the exit status says whether all
 * rolled out.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"
#include "rollout_ops.h"

#include "movie/err.h"
#include "movie/banned.h"

#define PROG "moviectl status"

static void usage(FILE *out)
{
	fprintf(
	    out,
	    "usage: moviectl status [-n NS] [--timeout D] [--revision N] [--wait-terminated]\n"
	    "                       [--kubeconfig FILE] [--context NAME] DEPLOYMENT...\n"
	    "\n"
	    "Waits for each Deployment's rollout with kubectl rollout status' rules and\n"
	    "messages. --timeout D (e.g. 90s, 5m; 0 = no limit, the default) bounds each\n"
	    "Deployment. --wait-terminated also waits until no pod of an old ReplicaSet is\n"
	    "left (kubectl's success can print while old pods still drain).\n"
	    "Exit 0 when every rollout finished, 1 when one failed, timed out or was deleted.\n");
}

static void print_line(void *user, const char *line)
{
	(void)user;
	fputs(line, stdout);
	fflush(stdout);
}

static int status_one(struct kube_client *c, const char *name, double timeout, long revision,
                      int wait_term)
{
	const char *ns = kube_client_namespace(c);
	double deadline = timeout > 0 ? kube_now() + timeout : 0;
	struct kube_error err;
	if (rollout_status_wait(c, ns, name, revision, deadline, print_line, NULL, &err)) {
		kube_error_print(&err, PROG);
		return CMD_FAILED;
	}
	if (!wait_term)
		return CMD_OK;
	if (rollout_wait_terminated(c, ns, name, deadline, print_line, NULL, &err)) {
		kube_error_print(&err, PROG);
		return CMD_FAILED;
	}
	printf("deployment \"%s\": no old pods left\n", name);
	return CMD_OK;
}

int cmd_status(int argc, char **argv)
{
	struct kube_cli cli;
	memset(&cli, 0, sizeof(cli));
	double timeout = 0;
	long revision = 0;
	int wait_term = 0;
	const char **names = calloc((size_t)argc + 1, sizeof(*names));
	size_t n = 0;
	int status = CMD_USAGE;
	if (!names)
		return CMD_FAILED;
	for (int i = 0; i < argc; i++) {
		const char *v;
		int r = kube_cli_option(&cli, argc, argv, &i, PROG);
		if (r < 0)
			goto out;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			status = CMD_OK;
			goto out;
		} else if (strcmp(argv[i], "--wait-terminated") == 0) {
			wait_term = 1;
		} else if ((v = kube_cli_value(argc, argv, &i, "--timeout"))) {
			if (kube_cli_duration(v, &timeout)) {
				fprintf(stderr, "%s: --timeout: bad duration \"%s\"\n", PROG, v);
				goto out;
			}
		} else if ((v = kube_cli_value(argc, argv, &i, "--revision"))) {
			char *end;
			revision = strtol(v, &end, 10);
			if (!*v || *end || revision < 0) {
				fprintf(stderr, "%s: --revision needs a number\n", PROG);
				goto out;
			}
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "%s: unknown option %s\n", PROG, argv[i]);
			goto out;
		} else {
			/* "deployment/X" and "deployments/X" as kubectl accepts them. */
			const char *a = argv[i];
			if (strncmp(a, "deployment/", 11) == 0)
				a += 11;
			else if (strncmp(a, "deployments/", 12) == 0)
				a += 12;
			else if (strncmp(a, "deployment.apps/", 16) == 0)
				a += 16;
			if (!kube_cli_valid_name(a)) {
				fprintf(stderr, "%s: %s is not a Deployment name\n", PROG, argv[i]);
				goto out;
			}
			names[n++] = a;
		}
	}
	if (n == 0) {
		usage(stderr);
		goto out;
	}
	struct kube_client *c;
	if (kube_cli_connect(&cli, &c, PROG)) {
		status = CMD_FAILED;
		goto out;
	}
	if (!kube_cli_valid_name(kube_client_namespace(c))) {
		fprintf(stderr, "error: \"%s\" is not a valid namespace\n",
		        kube_client_namespace(c));
		kube_client_free(c);
		status = CMD_FAILED;
		goto out;
	}
	status = CMD_OK;
	for (size_t k = 0; k < n; k++)
		if (status_one(c, names[k], timeout, revision, wait_term) != CMD_OK)
			status = CMD_FAILED;
	kube_client_free(c);
out:
	free(names);
	return status;
}
