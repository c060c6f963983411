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
#include <time.h>

#include "cmd_kube.h"
#include "rollout.h"

#include "movie/err.h"
#include "movie/banned.h"

#define PROG "moviectl status"

/* How often --wait-terminated re-reads pods when the server has no
 * status.terminatingReplicas (a product poll, bounded by --timeout). */
#define TERMINATED_POLL_MS 1000

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

struct judge_ctx {
	const char *name;
	long revision;
	enum rollout_state state;
	char msg[512];
	int deleted;
};

static int on_event(void *user, const struct kube_event *ev)
{
	struct judge_ctx *j = user;
	const char *n =
	    json_string_value(json_object_get(json_object_get(ev->object, "metadata"), "name"));
	if (!n || strcmp(n, j->name) != 0)
		return 0;
	if (ev->type == KUBE_EVENT_DELETED) {
		j->deleted = 1;
		return 1;
	}
	j->state = rollout_status_judge(ev->object, j->revision, j->msg, sizeof(j->msg));
	if (j->state == ROLLOUT_FAILED)
		return 1;
	fputs(j->msg, stdout);
	fflush(stdout);
	return j->state == ROLLOUT_DONE ? 1 : 0;
}

static int path_for(struct buf *b, const char *ns, const char *res, const char *name)
{
	buf_reset(b);
	const char *api = strcmp(res, "pods") == 0 ? "/api/v1" : "/apis/apps/v1";
	return name ? buf_printf(b, "%s/namespaces/%s/%s/%s", api, ns, res, name)
	            : buf_printf(b, "%s/namespaces/%s/%s", api, ns, res);
}

static void timed_out(void)
{
	fprintf(stderr, "error: timed out waiting for the condition\n");
}

/* Wait until no pod of an old ReplicaSet is left. */
static int wait_terminated(struct kube_client *c, const char *ns, const char *name, double deadline)
{
	struct buf path, sel;
	buf_init(&path, 8192);
	buf_init(&sel, 65536);
	struct kube_error err;
	int status = CMD_FAILED;
	long long last = -1;
	for (;;) {
		json_t *d = NULL, *rs = NULL, *pods = NULL;
		long long left;
		if (path_for(&path, ns, "deployments", name) || kube_get(c, path.data, &d, &err)) {
			kube_error_print(&err, PROG);
			goto out;
		}
		json_t *term = json_object_get(json_object_get(d, "status"), "terminatingReplicas");
		if (json_is_integer(term)) {
			left = (long long)json_integer_value(term);
		} else {
			buf_reset(&sel);
			if (kube_selector_string(
			        json_object_get(json_object_get(d, "spec"), "selector"), &sel)) {
				fprintf(stderr,
				        "error: deployment \"%s\" has an invalid selector\n", name);
				json_decref(d);
				goto out;
			}
			if (path_for(&path, ns, "replicasets", NULL) ||
			    kube_list(c, path.data, sel.data, NULL, &rs, NULL, &err) ||
			    path_for(&path, ns, "pods", NULL) ||
			    kube_list(c, path.data, sel.data, NULL, &pods, NULL, &err)) {
				kube_error_print(&err, PROG);
				json_decref(d);
				json_decref(rs);
				goto out;
			}
			left = (long long)rollout_old_pods(d, rs, pods);
		}
		json_decref(d);
		json_decref(rs);
		json_decref(pods);
		if (left == 0) {
			printf("deployment \"%s\": no old pods left\n", name);
			status = CMD_OK;
			goto out;
		}
		if (left != last)
			printf(
			    "Waiting for deployment \"%s\" old pods to terminate: %lld left...\n",
			    name, left);
		fflush(stdout);
		last = left;
		if (deadline > 0 && kube_now() + TERMINATED_POLL_MS / 1000.0 >= deadline) {
			timed_out();
			goto out;
		}
		struct timespec ts = {TERMINATED_POLL_MS / 1000,
		                      (TERMINATED_POLL_MS % 1000) * 1000000L};
		nanosleep(&ts, NULL);
	}
out:
	buf_release(&path);
	buf_release(&sel);
	return status;
}

static int status_one(struct kube_client *c, const char *name, double timeout, long revision,
                      int wait_term)
{
	const char *ns = kube_client_namespace(c);
	double deadline = timeout > 0 ? kube_now() + timeout : 0;
	struct buf path, fs;
	buf_init(&path, 8192);
	buf_init(&fs, 8192);
	struct kube_error err;
	int status = CMD_FAILED;
	json_t *d = NULL;
	if (path_for(&path, ns, "deployments", name) || buf_printf(&fs, "metadata.name=%s", name))
		goto out;
	if (kube_get(c, path.data, &d, &err)) {
		kube_error_print(&err, PROG);
		goto out;
	}
	struct judge_ctx j = {.name = name, .revision = revision};
	path_for(&path, ns, "deployments", NULL);
	int rc = kube_watch_until(c, path.data, NULL, fs.data, deadline, on_event, &j, &err);
	if (rc == MV_ETIMEDOUT) {
		timed_out();
		goto out;
	}
	if (rc) {
		kube_error_print(&err, PROG);
		goto out;
	}
	if (j.deleted) {
		fprintf(stderr, "error: object has been deleted\n");
		goto out;
	}
	if (j.state == ROLLOUT_FAILED) {
		fprintf(stderr, "error: %s\n", j.msg);
		goto out;
	}
	status = wait_term ? wait_terminated(c, ns, name, deadline) : CMD_OK;
out:
	json_decref(d);
	buf_release(&path);
	buf_release(&fs);
	return status;
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
