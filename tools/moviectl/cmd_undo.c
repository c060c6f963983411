/*
 * cmd_undo.c - `moviectl undo`: what `kubectl rollout undo` sends
 * (K8S-API.md §2.1): GET the Deployment, LIST its ReplicaSets by the
 * Deployment's selector, plan with rollout_undo_plan, one JSON-patch PATCH.
 * --to names the target by ReplicaSet name or pod-template-hash, because
 * revision numbers move on every rollback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"
#include "rollout_ops.h"

#include "movie/err.h"
#include "movie/banned.h"

#define PROG "moviectl undo"

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: moviectl undo [-n NS] DEPLOYMENT [--to-revision N | --to REPLICASET]\n"
	        "                     [--guard none|resource-version|template] [--dry-run=server]\n"
	        "                     [--kubeconfig FILE] [--context NAME]\n"
	        "\n"
	        "Rolls DEPLOYMENT back as kubectl rollout undo does: to the previous revision,\n"
	        "to revision N, or to the ReplicaSet named by --to (name or pod-template-hash).\n"
	        "--guard adds a JSON-patch test op so that a concurrent change makes the undo\n"
	        "fail (HTTP 422) instead of being overwritten. Exit 0 rolled back or skipped, 1\n"
	        "failed.\n");
}

int cmd_undo(int argc, char **argv)
{
	struct kube_cli cli;
	memset(&cli, 0, sizeof(cli));
	struct rollout_undo_target target = {0};
	const char *name = NULL;
	int dry_run = 0, have_rev = 0;
	for (int i = 0; i < argc; i++) {
		const char *v;
		int r = kube_cli_option(&cli, argc, argv, &i, PROG);
		if (r < 0)
			return CMD_USAGE;
		if (r > 0)
			continue;
		if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return CMD_OK;
		} else if ((v = kube_cli_value(argc, argv, &i, "--to-revision"))) {
			char *end;
			target.to_revision = strtoll(v, &end, 10);
			if (!*v || *end || target.to_revision < 0) {
				fprintf(stderr, "%s: --to-revision needs a number >= 0\n", PROG);
				return CMD_USAGE;
			}
			have_rev = 1;
		} else if ((v = kube_cli_value(argc, argv, &i, "--to"))) {
			if (!*v) {
				fprintf(stderr, "%s: --to needs a ReplicaSet name or hash\n", PROG);
				return CMD_USAGE;
			}
			target.to = v;
		} else if ((v = kube_cli_value(argc, argv, &i, "--guard"))) {
			if (strcmp(v, "none") == 0)
				target.guard = ROLLOUT_GUARD_NONE;
			else if (strcmp(v, "resource-version") == 0)
				target.guard = ROLLOUT_GUARD_RESOURCE_VERSION;
			else if (strcmp(v, "template") == 0)
				target.guard = ROLLOUT_GUARD_TEMPLATE;
			else {
				fprintf(stderr,
				        "%s: --guard is none, resource-version or template\n",
				        PROG);
				return CMD_USAGE;
			}
		} else if (strcmp(argv[i], "--dry-run=server") == 0) {
			dry_run = 1;
		} else if (argv[i][0] == '-') {
			fprintf(stderr, "%s: unknown option %s\n", PROG, argv[i]);
			return CMD_USAGE;
		} else if (!name) {
			name = argv[i];
			if (strncmp(name, "deployment/", 11) == 0)
				name += 11;
			else if (strncmp(name, "deployments/", 12) == 0)
				name += 12;
			else if (strncmp(name, "deployment.apps/", 16) == 0)
				name += 16;
			if (!kube_cli_valid_name(name)) {
				fprintf(stderr, "%s: %s is not a Deployment name\n", PROG, argv[i]);
				return CMD_USAGE;
			}
		} else {
			fprintf(stderr, "%s: one Deployment at a time\n", PROG);
			return CMD_USAGE;
		}
	}
	if (!name || (have_rev && target.to)) {
		if (have_rev && target.to)
			fprintf(stderr, "%s: --to-revision and --to exclude each other\n", PROG);
		usage(stderr);
		return CMD_USAGE;
	}
	struct kube_client *c;
	if (kube_cli_connect(&cli, &c, PROG))
		return CMD_FAILED;
	const char *ns = kube_client_namespace(c);
	if (!kube_cli_valid_name(ns)) {
		fprintf(stderr, "error: \"%s\" is not a valid namespace\n", ns);
		kube_client_free(c);
		return CMD_FAILED;
	}
	int status = CMD_FAILED;
	struct kube_error err;
	struct rollout_undo_result res;
	if (rollout_undo_run(c, ns, name, &target, dry_run, &res, &err)) {
		kube_error_print(&err, PROG);
		if (target.guard != ROLLOUT_GUARD_NONE && err.http == 422)
			fprintf(stderr,
			        "error: deployment \"%s\" changed since it was read; nothing was "
			        "rolled back\n",
			        name);
		goto out;
	}
	if (res.last_applied)
		fprintf(stderr,
		        "Warning: Rolling back will not update the "
		        "kubectl.kubernetes.io/last-applied-configuration annotation; a later "
		        "kubectl apply may revert it.\n");
	if (res.action == ROLLOUT_UNDO_SKIP) {
		if (target.to)
			printf(
			    "deployment.apps/%s skipped rollback (current template already matches "
			    "replica set %s)\n",
			    name, res.rs_name);
		else
			printf(
			    "deployment.apps/%s skipped rollback (current template already matches "
			    "revision %lld)\n",
			    name, target.to_revision);
	} else {
		printf("deployment.apps/%s rolled back%s\n", name,
		       dry_run ? " (server dry run)" : "");
	}
	status = CMD_OK;
out:
	kube_client_free(c);
	return status;
}
