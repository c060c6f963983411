/*
 * cmd_kube.h - what the Kubernetes commands of moviectl share: the kubectl
 * connection flags, durations, and the command entry points.
 */
#ifndef MOVIECTL_CMD_KUBE_H
#define MOVIECTL_CMD_KUBE_H

#include "kube.h"

/* Exit statuses of status/undo (kubectl's: 1 for any failure). */
enum {
	CMD_OK = 0,
	CMD_FAILED = 1,
	CMD_USAGE = 2,
};

/* --kubeconfig, --context, -n/--namespace (also --flag=value forms). */
struct kube_cli {
	struct kube_config_opts opts;
};

/*
 * Consume argv[*i] (and its value) when it is a connection flag. Returns 1
 * consumed, 0 not a connection flag, -1 flag without value (message printed).
 */
int kube_cli_option(struct kube_cli *cli, int argc, char **argv, int *i, const char *prog);

/* Load the configuration and make a client; prints the problem and returns
 * non-zero on failure. */
int kube_cli_connect(const struct kube_cli *cli, struct kube_client **out, const char *prog);

/* A Go-style duration ("90s", "5m", "1h30m", "250ms", "0"); a bare number is
 * seconds. Returns 0 or MV_EINVAL. */
int kube_cli_duration(const char *s, double *seconds);

/* The value of "--name VALUE" or "--name=VALUE" at argv[*i]; NULL otherwise. */
const char *kube_cli_value(int argc, char **argv, int *i, const char *name);

/* 1 when `s` can be a Kubernetes object or namespace name (DNS-1123
 * subdomain: [a-z0-9.-], alphanumeric at both ends, at most 253 bytes), so it
 * can go into a URL path unescaped. */
int kube_cli_valid_name(const char *s);

/* The commands. argv excludes "moviectl" and the command word. */
int cmd_status(int argc, char **argv);
int cmd_undo(int argc, char **argv);
int cmd_guard(int argc, char **argv);
int cmd_release(int argc, char **argv);

#endif
