/*
 * rollout.h - kubectl's rollout rules as pure functions over jansson objects.
 *
 * No I/O: each takes objects as the API server returns them (a Deployment, the
 * items of a ReplicaSet or Pod list) and returns a verdict or a plan. The
 * commands (cmd_status.c, cmd_undo.c) and the future guard do the talking.
 * Facts: K8S-API.md §1.1 (rollout status), §2.1 (rollout undo), §3.3 (new RS).
 */
#ifndef MOVIECTL_ROLLOUT_H
#define MOVIECTL_ROLLOUT_H

#include <jansson.h>
#include <stddef.h>

#define ROLLOUT_REVISION_ANNOTATION "deployment.kubernetes.io/revision"
#define ROLLOUT_HASH_LABEL          "pod-template-hash"

enum rollout_state {
	ROLLOUT_WAITING = 0, /* msg says what is pending */
	ROLLOUT_DONE = 1,    /* msg is "deployment \"X\" successfully rolled out\n" */
	ROLLOUT_FAILED = 2,  /* msg is the error text (no "error: " prefix, no newline) */
};

/*
 * `kubectl rollout status` for one Deployment, in kubectl's exact order and
 * words (K8S-API.md §1.1). `revision` > 0 is --revision. Writes the message
 * (NUL-terminated, truncated to msglen) and returns the state. A Deployment
 * without metadata.name is judged with name "".
 */
enum rollout_state rollout_status_judge(const json_t *deploy, long revision, char *msg,
                                        size_t msglen);

/* The revision annotation of an object as kubectl reads it: missing → 0.
 * Returns 0, or -1 when it does not parse (kubectl skips such a ReplicaSet). */
int rollout_revision(const json_t *obj, long long *out);

/* 1 when some ownerReference of `obj` has controller: true and the uid `uid`
 * (metav1.IsControlledBy: name and kind are not checked). */
int rollout_controlled_by(const json_t *obj, const char *uid);

/* Templates equal ignoring the pod-template-hash label, with Go's semantic
 * equality (absent, null, {} and [] compare equal). 1 equal, 0 not. */
int rollout_templates_equal(const json_t *a, const json_t *b);

/*
 * The Deployment's new ReplicaSet: the oldest (creationTimestamp, then name)
 * owned RS whose template equals the Deployment's ignoring the hash. Borrowed
 * pointer into rs_items, or NULL.
 */
const json_t *rollout_new_replicaset(const json_t *deploy, const json_t *rs_items);

/*
 * Pods that still belong to old ReplicaSets of the Deployment: pods in
 * pod_items whose pod-template-hash label is that of an owned RS other than
 * the new one (terminating or not). Returns the count (>= 0).
 */
size_t rollout_old_pods(const json_t *deploy, const json_t *rs_items, const json_t *pod_items);

/* How a rollback patch protects itself against a concurrent writer. */
enum rollout_guard {
	ROLLOUT_GUARD_NONE = 0, /* kubectl's patch: last writer wins */
	/* {"op":"test","path":"/metadata/resourceVersion","value":<RV read>} first:
	 * any write since the read makes the patch fail with 422. */
	ROLLOUT_GUARD_RESOURCE_VERSION,
	/* {"op":"test","path":"/spec/template","value":<template read>} first: only a
	 * change of the pod template (a new rollout, what the pod-template-hash
	 * stands for) makes it fail; status and scale writes do not. */
	ROLLOUT_GUARD_TEMPLATE,
};

/* Which revision to go back to. */
struct rollout_undo_target {
	long long to_revision; /* 0: the previous one (second-highest revision) */
	const char *to;        /* RS name or pod-template-hash; wins over to_revision */
	enum rollout_guard guard;
};

enum rollout_undo_action {
	ROLLOUT_UNDO_PATCH = 1, /* send plan.patch */
	ROLLOUT_UNDO_SKIP = 2,  /* the template already matches: nothing to send */
};

struct rollout_undo_plan {
	enum rollout_undo_action action;
	long long revision;  /* the target RS's revision (what kubectl prints) */
	const char *rs_name; /* borrowed from rs_items */
	json_t *patch;       /* owned: the JSON patch array (PATCH action only) */
	int last_applied;    /* the Deployment has last-applied-configuration */
};

/*
 * Plan `kubectl rollout undo` (K8S-API.md §2.1 steps 3-9): keep the RSs
 * controlled by the Deployment's uid; choose the target; refuse a paused
 * Deployment; skip when the templates are equal ignoring the hash; otherwise
 * build one JSON patch replacing /spec/template (the RS template minus the
 * hash label) and /metadata/annotations (skip-list keys from the Deployment,
 * every other key from the RS), preceded by a `test` op per target->guard.
 * On failure msg holds kubectl's error text. Release the plan with
 * rollout_undo_plan_release (also after failure).
 * Returns 0, MV_ENOTFOUND ("no rollout history found ...", "unable to find
 * specified revision N in history", no RS of that name/hash), MV_EINVAL
 * (paused: "you cannot rollback a paused deployment; ..."; a Deployment
 * without uid or template), MV_ENOMEM.
 */
int rollout_undo_plan(const json_t *deploy, const json_t *rs_items,
                      const struct rollout_undo_target *target, struct rollout_undo_plan *plan,
                      char *msg, size_t msglen);
void rollout_undo_plan_release(struct rollout_undo_plan *plan);

#endif
