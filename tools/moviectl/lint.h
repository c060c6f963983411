/*
 * lint.h - the rules of `moviectl lint`: what generic Kubernetes linters miss
 * because it needs the rendered manifests and the service configs together.
 *
 * Input: parsed YAML documents (rendered manifests, e.g. `kubectl kustomize`
 * output). Each Deployment's service config is rebuilt from the ConfigMaps in
 * the same input: the container's `--config PATH` arguments, in order (later
 * files override earlier ones), are resolved through its volumeMounts to
 * ConfigMap keys, and `<SERVICE>_API_PORT` in the container env wins last, as
 * in the service binaries. No I/O: findings are returned, not printed.
 *
 * Rules (the `rule` string of a finding):
 *   config             the config cannot be rebuilt (no --config, missing ConfigMap or
 *                      key, unparsable YAML or duration)
 *   port-container     api.port is not a containerPort of the container
 *   port-probe         a gRPC probe's port differs from api.port
 *   port-service       a Service selecting the pods targets another port than api.port
 *   probe-missing      startup, readiness or liveness probe absent or not native gRPC
 *   probe-health-name  a probe asks a health name the binary does not serve
 *   probe-distinct     readiness and liveness ask the same health name
 *   probe-liveness     liveness or startup asks a name that depends on the database
 *   drain-grace        preStop + shutdown.drain_delay + shutdown.grace_period is not
 *                      below terminationGracePeriodSeconds
 *   rollout-strategy   not RollingUpdate with maxUnavailable 0 and maxSurge > 0
 *   rollout-deadline   progressDeadlineSeconds not above minReadySeconds (or unset)
 *   image-tag          image untagged or tagged latest
 *   resources          cpu/memory requests or limits missing
 *   security-context   runAsNonRoot, readOnlyRootFilesystem, allowPrivilegeEscalation
 *                      false, drop ALL or seccomp RuntimeDefault missing
 *   peer-headless      a peers.*.addresses host is not a headless Service in the
 *                      input, or its port is not a port of that Service
 */
#ifndef MOVIECTL_LINT_H
#define MOVIECTL_LINT_H

#include <stddef.h>

#include "ytree.h"

/* Upper bound on findings kept (the rest are counted in `dropped`). */
#define LINT_MAX_FINDINGS 10000

struct lint_doc {
	const char *file;         /* for findings; borrowed, must outlive the report */
	const struct ynode *root; /* one YAML document; borrowed */
};

struct lint_finding {
	const char *file; /* borrowed from the lint_doc */
	int line;         /* 1-based line of the object */
	char *object;     /* "Kind/name" or "Kind/namespace/name" */
	const char *rule; /* static rule name, see above */
	char *message;
};

struct lint_report {
	struct lint_finding *items;
	size_t n;
	size_t cap;
	size_t dropped; /* findings beyond LINT_MAX_FINDINGS */
	size_t objects; /* Deployments checked */
};

void lint_report_init(struct lint_report *rep);
void lint_report_release(struct lint_report *rep);

/*
 * Check every Deployment in `docs` and append findings to `rep`.
 * Returns 0 (whether or not there are findings) or MV_ENOMEM.
 */
int lint_check(const struct lint_doc *docs, size_t ndocs, struct lint_report *rep);

/*
 * Parse a duration as the services do: "250ms", "5s", "2m", "1h", a bare
 * number is milliseconds. Returns 0, MV_EINVAL, MV_ERANGE.
 */
int lint_parse_duration_ms(const char *s, long long *ms);

#endif
