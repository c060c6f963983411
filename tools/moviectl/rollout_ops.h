/*
 * rollout_ops.h - kubectl rollout status / undo on the wire: the pure rules of
 * rollout.h driven through a kube_client. What `moviectl status`, `moviectl
 * undo` and (next) `moviectl guard` call.
 *
 * Every function reports failures in `err`: server answers keep their HTTP
 * code and Status reason; local verdicts have http 0 and one of the reasons
 * below, with kubectl's message. Print with kube_error_print.
 * Same thread rules as kube.h (one thread per client).
 */
#ifndef MOVIECTL_ROLLOUT_OPS_H
#define MOVIECTL_ROLLOUT_OPS_H

#include "kube.h"
#include "rollout.h"

/* Called with each status line kubectl would print ("Waiting for ...\n",
 * "deployment \"X\" successfully rolled out\n"). May be NULL. */
typedef void (*rollout_progress_fn)(void *user, const char *line);

/*
 * Wait for Deployment ns/name to roll out (K8S-API.md §1): GET it, then
 * LIST+WATCH deployments with fieldSelector=metadata.name=<name>, judging every
 * event with rollout_status_judge. `revision` > 0 is kubectl's --revision;
 * `deadline` is kube_now()-based (0: none).
 * Returns 0 (rolled out), MV_ETIMEDOUT (reason "Timeout", "timed out waiting
 * for the condition"), MV_EINVAL (reason "RolloutFailed": progress deadline or
 * revision mismatch), MV_ENOTFOUND (the GET's 404, or reason "Deleted": "object
 * has been deleted"), or the codes of kube_watch_until.
 */
int rollout_status_wait(struct kube_client *c, const char *ns, const char *name, long revision,
                        double deadline, rollout_progress_fn fn, void *user,
                        struct kube_error *err);

/*
 * Wait until no pod of an old ReplicaSet of ns/name is left: while
 * status.terminatingReplicas > 0 where the server reports it (WATCH of the
 * Deployment), else while rollout_old_pods() over the Deployment's pods is
 * non-zero: the ReplicaSets and pods (by its selector) are LISTed once, then
 * the pods are WATCHed from the list's resourceVersion (re-listed on 410),
 * until `deadline` (CLOCK_MONOTONIC seconds, 0: none). fn gets "Waiting for
 * deployment \"X\" old pods to terminate: N left...\n" when N changes.
 * Returns 0, MV_ETIMEDOUT, MV_ENOTFOUND (deleted meanwhile), MV_EINVAL (reason
 * "InvalidSelector"), or the codes of kube_get, kube_list and kube_watch_until.
 */
int rollout_wait_terminated(struct kube_client *c, const char *ns, const char *name,
                            double deadline, rollout_progress_fn fn, void *user,
                            struct kube_error *err);

/*
 * LIST the `resource` ("replicasets" or "pods") of namespace `ns` that
 * `deployment`'s spec.selector selects into *out (a JSON array the caller
 * decrefs). Returns 0, MV_EINVAL (reason "InvalidSelector"), MV_ENOMEM or the
 * codes of kube_list.
 */
int rollout_list_selected(struct kube_client *c, const char *ns, const json_t *deployment,
                          const char *resource, json_t **out, struct kube_error *err);

struct rollout_undo_result {
	enum rollout_undo_action action; /* ROLLOUT_UNDO_PATCH (sent) or _SKIP */
	long long revision;              /* the target ReplicaSet's revision */
	char rs_name[254];               /* the target ReplicaSet */
	int last_applied;                /* warn: last-applied-configuration not updated */
};

/*
 * `kubectl rollout undo` for ns/name (K8S-API.md §2.1): GET the Deployment,
 * LIST its ReplicaSets by its selector, rollout_undo_plan, and (unless the plan
 * is SKIP) one PATCH application/json-patch+json, with ?dryRun=All when
 * dry_run. With target->guard set, a concurrent change makes the server answer
 * 422 (MV_EINVAL, err->http 422): nothing was changed; re-read and decide again.
 * Returns 0 (res filled), MV_ENOTFOUND (reason "NotFound" from the server, or
 * "NoHistory" locally: no such revision/ReplicaSet), MV_EINVAL (reason
 * "Paused", "InvalidSelector", or a server 4xx such as the guard's 422), the
 * codes of kube_get/kube_list/kube_patch.
 */
int rollout_undo_run(struct kube_client *c, const char *ns, const char *name,
                     const struct rollout_undo_target *target, int dry_run,
                     struct rollout_undo_result *res, struct kube_error *err);

#endif
