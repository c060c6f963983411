/*
 * moviectl - the movie system's release tool. First command: lint.
 *
 *   moviectl lint [--format text|json] FILE...   (FILE "-" reads stdin)
 *
 * Exit status: 0 no finding, 1 at least one finding, 2 usage, I/O or YAML error.
 * This file is the thin I/O adapter; the rules live in lint.c.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"
#include "lint.h"
#include "ytree.h"

#include "movie/err.h"
#include "movie/banned.h"

#ifndef MOVIECTL_COMMIT
#define MOVIECTL_COMMIT "unknown"
#endif
#ifndef MOVIECTL_VERSION
#define MOVIECTL_VERSION "0.1.0-dev"
#endif

/* A rendered manifest set is a few hundred KiB; this only stops runaway input. */
#define MAX_FILE_BYTES ((size_t)64 * 1024 * 1024)
#define MAX_FILES      1024

enum {
	EXIT_CLEAN = 0,
	EXIT_FINDINGS = 1,
	EXIT_USAGE = 2
};

static void usage(FILE *out)
{
	fprintf(out,
	        "usage: moviectl lint [--format text|json] FILE...\n"
	        "       moviectl status [-n NS] [--timeout D] [--wait-terminated] DEPLOYMENT...\n"
	        "       moviectl undo [-n NS] DEPLOYMENT [--to-revision N | --to REPLICASET]\n"
	        "       moviectl guard [--once] [-n NS] [--policy FILE] [--prometheus URL] "
	        "[DEPLOYMENT...]\n"
	        "       moviectl release [-n NS] --image SVC=IMAGE... [--config SVC=FILE...]\n"
	        "                        [--prometheus URL] [--policy FILE] [--verdict FILE]\n"
	        "                        [--output json] [--dry-run]\n"
	        "       moviectl --version\n"
	        "\n"
	        "lint checks rendered Kubernetes manifests (kubectl kustomize output) together\n"
	        "with the service configs embedded in their ConfigMaps. One line per finding:\n"
	        "FILE:LINE: OBJECT: RULE: MESSAGE. Exit 1 when any rule fails.\n"
	        "status and undo talk to the Kubernetes API as kubectl rollout status/undo do\n"
	        "(kubeconfig, --context, -n as kubectl; see moviectl status --help).\n");
}

/* Read a whole file ("-" = stdin) into a NUL-terminated heap buffer.
 * Returns 0, MV_EIO (errno kept), MV_ETOOBIG, MV_ENOMEM. */
static int read_file(const char *path, char **out, size_t *outlen)
{
	int rc = 0;
	FILE *f = strcmp(path, "-") == 0 ? stdin : fopen(path, "rb");
	if (!f)
		return MV_EIO;
	size_t cap = 65536, len = 0;
	char *data = malloc(cap);
	if (!data) {
		rc = MV_ENOMEM;
		goto fail_alloc;
	}
	for (;;) {
		if (cap - len < 2) {
			if (cap >= MAX_FILE_BYTES) {
				rc = MV_ETOOBIG;
				goto fail_read;
			}
			char *bigger = realloc(data, cap * 2);
			if (!bigger) {
				rc = MV_ENOMEM;
				goto fail_read;
			}
			data = bigger;
			cap *= 2;
		}
		size_t n = fread(data + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0) {
			if (ferror(f)) {
				rc = MV_EIO;
				goto fail_read;
			}
			break;
		}
	}
	data[len] = '\0';
	if (f != stdin)
		fclose(f);
	*out = data;
	*outlen = len;
	return 0;

fail_read:
	free(data);
fail_alloc:
	if (f != stdin)
		fclose(f);
	return rc;
}

static int print_json(const struct lint_report *rep)
{
	json_t *root = json_object();
	json_t *arr = json_array();
	if (!root || !arr)
		goto fail;
	for (size_t i = 0; i < rep->n; i++) {
		const struct lint_finding *f = &rep->items[i];
		json_t *o = json_pack("{s:s, s:i, s:s, s:s, s:s}", "file", f->file, "line", f->line,
		                      "object", f->object, "rule", f->rule, "message", f->message);
		if (!o || json_array_append_new(arr, o))
			goto fail;
	}
	if (json_object_set_new(root, "findings", arr)) {
		arr = NULL;
		goto fail;
	}
	arr = NULL;
	json_object_set_new(root, "objects", json_integer((json_int_t)rep->objects));
	json_object_set_new(root, "dropped", json_integer((json_int_t)rep->dropped));
	json_object_set_new(root, "passed", json_boolean(rep->n == 0 && rep->dropped == 0));
	if (json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER))
		goto fail;
	fputc('\n', stdout);
	json_decref(root);
	return 0;
fail:
	json_decref(arr);
	json_decref(root);
	return MV_ENOMEM;
}

static int cmd_lint(int argc, char **argv)
{
	int json = 0, status = EXIT_USAGE;
	const char *files[MAX_FILES];
	size_t nfiles = 0;
	for (int i = 0; i < argc; i++) {
		const char *fmt = NULL;
		if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
			fmt = argv[++i];
		else if (strncmp(argv[i], "--format=", 9) == 0)
			fmt = argv[i] + 9;
		else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
			usage(stdout);
			return EXIT_CLEAN;
		} else if (argv[i][0] == '-' && argv[i][1] != '\0') {
			fprintf(stderr, "moviectl lint: unknown option %s\n", argv[i]);
			return EXIT_USAGE;
		} else if (nfiles < MAX_FILES) {
			files[nfiles++] = argv[i];
		} else {
			fprintf(stderr, "moviectl lint: more than %d files\n", MAX_FILES);
			return EXIT_USAGE;
		}
		if (fmt) {
			if (strcmp(fmt, "json") != 0 && strcmp(fmt, "text") != 0) {
				fprintf(stderr, "moviectl lint: --format is text or json\n");
				return EXIT_USAGE;
			}
			json = strcmp(fmt, "json") == 0;
		}
	}
	if (nfiles == 0) {
		usage(stderr);
		return EXIT_USAGE;
	}

	struct ydocs parsed[MAX_FILES];
	memset(parsed, 0, sizeof(parsed));
	struct lint_doc *docs = NULL;
	size_t ndocs = 0;
	struct lint_report rep;
	lint_report_init(&rep);

	for (size_t i = 0; i < nfiles; i++) {
		char *data;
		size_t len;
		int rc = read_file(files[i], &data, &len);
		if (rc) {
			fprintf(stderr, "moviectl lint: %s: %s\n", files[i],
			        rc == MV_EIO ? strerror(errno) : mv_strerror(rc));
			goto out;
		}
		char err[256];
		rc = ytree_parse(data, len, &parsed[i], err, sizeof(err));
		free(data);
		if (rc) {
			fprintf(stderr, "%s:%s: %s\n", files[i], err, mv_strerror(rc));
			goto out;
		}
		struct lint_doc *more = realloc(docs, (ndocs + parsed[i].n + 1) * sizeof(*docs));
		if (!more) {
			fprintf(stderr, "moviectl lint: out of memory\n");
			goto out;
		}
		docs = more;
		for (size_t j = 0; j < parsed[i].n; j++) {
			docs[ndocs].file = files[i];
			docs[ndocs].root = parsed[i].docs[j];
			ndocs++;
		}
	}
	if (lint_check(docs, ndocs, &rep)) {
		fprintf(stderr, "moviectl lint: out of memory\n");
		goto out;
	}
	if (json) {
		if (print_json(&rep)) {
			fprintf(stderr, "moviectl lint: cannot write JSON\n");
			goto out;
		}
	} else {
		for (size_t i = 0; i < rep.n; i++) {
			const struct lint_finding *f = &rep.items[i];
			printf("%s:%d: %s: %s: %s\n", f->file, f->line, f->object, f->rule,
			       f->message);
		}
		if (rep.dropped)
			printf("(%zu more findings not shown)\n", rep.dropped);
		fprintf(stderr, "moviectl lint: %zu Deployments checked, %zu findings\n",
		        rep.objects, rep.n + rep.dropped);
	}
	status = rep.n || rep.dropped ? EXIT_FINDINGS : EXIT_CLEAN;
out:
	lint_report_release(&rep);
	free(docs);
	for (size_t i = 0; i < nfiles; i++)
		ytree_docs_release(&parsed[i]);
	return status;
}

int main(int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "lint") == 0)
		return cmd_lint(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return cmd_status(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "undo") == 0)
		return cmd_undo(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "guard") == 0)
		return cmd_guard(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "release") == 0)
		return cmd_release(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "--version") == 0) {
		printf("moviectl %s (commit %s)\n", MOVIECTL_VERSION, MOVIECTL_COMMIT);
		return EXIT_CLEAN;
	}
	if (argc >= 2 && (strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0)) {
		usage(stdout);
		return EXIT_CLEAN;
	}
	usage(stderr);
	return EXIT_USAGE;
}
