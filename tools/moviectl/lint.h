/*
 * lint.h - the rules of `moviectl lint`: what generic Kubernetes linters miss
 * because it needs the rendered manifests and the service configs together.
 *
 * Input: parsed YAML documents (rendered manifests, e.g. `kubectl kustomize`
 * output). Each container of one of our services (by container name or
 * image) gets its config loaded as the binary loads it: through lib/cfg with
 * the service's own schema and validate function (services/<svc>/config.c),
 * from the defaults, then each `--config PATH` argument in order, resolved
 * through volumeMounts to a ConfigMap value (loaded from memory, errors
 * placed at the manifest's own file and line), then the container's env
 * (`value:` entries; `valueFrom:` ones are not in the manifests), then the
 * start-up checks that need no file. Every value the rules below compare with
 * the manifests (api.port, shutdown.*, peers.*.addresses) is read from that
 * loaded config; lint has no defaults of its own. No I/O: findings are
 * returned, not printed.
 *
 * Rules (the `rule` string of a finding):
 *   config             the binary would refuse its config: every error it reports at
 *                      start (syntax, unknown key, bad value, a rule across keys, an
 *                      unknown <SERVICE>_ variable), each at its ConfigMap line; or
 *                      the config cannot be found (no --config, missing ConfigMap
 *                      or key). The rules below that need the config are skipped.
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
 *   faults-production  a faults.* key (docs/release.md "Faults on purpose") enabled,
 *                      by a ConfigMap or the container env, in a production
 *                      Deployment that is not a canary. Production: the namespace
 *                      is "production", or ends in "-production" or starts with
 *                      "production-". Canary: the Deployment's name ends in
 *                      "-canary", or its metadata or pod-template labels say
 *                      `track: canary`.
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

#endif
