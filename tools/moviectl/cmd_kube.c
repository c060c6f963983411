/*
 * cmd_kube.c - connection flags and small parsers shared by `moviectl status`
 * and `moviectl undo`.
 */
#include <ctype.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cmd_kube.h"

#include "movie/err.h"
#include "movie/banned.h"

const char *kube_cli_value(int argc, char **argv, int *i, const char *name)
{
	size_t n = strlen(name);
	const char *a = argv[*i];
	if (strncmp(a, name, n) != 0)
		return NULL;
	if (a[n] == '=')
		return a + n + 1;
	if (a[n] == '\0') {
		if (*i + 1 >= argc)
			return "";
		return argv[++*i];
	}
	return NULL;
}

int kube_cli_option(struct kube_cli *cli, int argc, char **argv, int *i, const char *prog)
{
	static const struct {
		const char *name;
		size_t off;
	} flags[] = {
	    {"--kubeconfig", offsetof(struct kube_config_opts, kubeconfig)},
	    {"--context", offsetof(struct kube_config_opts, context)},
	    {"--namespace", offsetof(struct kube_config_opts, namespace)},
	    {"-n", offsetof(struct kube_config_opts, namespace)},
	};
	for (size_t f = 0; f < sizeof(flags) / sizeof(flags[0]); f++) {
		const char *v = kube_cli_value(argc, argv, i, flags[f].name);
		if (!v)
			continue;
		if (!*v) {
			fprintf(stderr, "%s: %s needs a value\n", prog, flags[f].name);
			return -1;
		}
		*(const char **)((char *)&cli->opts + flags[f].off) = v;
		return 1;
	}
	return 0;
}

int kube_cli_connect(const struct kube_cli *cli, struct kube_client **out, const char *prog)
{
	struct kube_config cfg;
	char err[768] = "";
	int rc = kube_config_load(&cli->opts, &cfg, err, sizeof(err));
	if (rc) {
		fprintf(stderr, "error: %s: %s\n", prog, err[0] ? err : mv_strerror(rc));
		kube_config_release(&cfg);
		return rc;
	}
	rc = kube_client_new(&cfg, NULL, out);
	kube_config_release(&cfg);
	if (rc)
		fprintf(stderr, "error: %s: cannot create a client: %s\n", prog, mv_strerror(rc));
	return rc;
}

int kube_cli_duration(const char *s, double *seconds)
{
	double total = 0;
	const char *p = s;
	if (!s || !*s)
		return MV_EINVAL;
	while (*p) {
		if (!isdigit((unsigned char)*p) && *p != '.')
			return MV_EINVAL;
		char *end;
		double v = strtod(p, &end);
		if (end == p || v < 0)
			return MV_EINVAL;
		p = end;
		double unit;
		if (strncmp(p, "ms", 2) == 0) {
			unit = 0.001;
			p += 2;
		} else if (*p == 's') {
			unit = 1;
			p++;
		} else if (*p == 'm') {
			unit = 60;
			p++;
		} else if (*p == 'h') {
			unit = 3600;
			p++;
		} else if (*p == '\0' && p == end && total == 0) {
			unit = 1; /* a bare number: seconds */
		} else {
			return MV_EINVAL;
		}
		total += v * unit;
		if (total > 366.0 * 86400)
			return MV_EINVAL;
	}
	*seconds = total;
	return 0;
}

int kube_cli_valid_name(const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (n == 0 || n > 253 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[n - 1]))
		return 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (!(islower(ch) || isdigit(ch) || ch == '-' || ch == '.'))
			return 0;
	}
	return 1;
}
