/*
 * lock.h - the release lock of `moviectl release` (CONTRACTS.md, issue 10):
 * annotation movie.dev/release-lock on every Deployment of a release, value
 * {"owner":"<host>/<pid>/<8 hex>","release":"<id>","expires":"<RFC 3339 UTC>"}.
 * Held = present, parseable and `expires` in the future; absent, unparseable
 * or expired = free (an unparseable value is reported, never trusted as held
 * forever). This first version parses and judges (no I/O); the release branch
 * adds take/renew/give-back here.
 */
#ifndef MOVIECTL_LOCK_H
#define MOVIECTL_LOCK_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#define LOCK_ANNOTATION "movie.dev/release-lock"
#define LOCK_MAX_VALUE  4096 /* bytes of an annotation value we parse */

enum lock_state {
	LOCK_ABSENT = 0,  /* no annotation */
	LOCK_HELD = 1,    /* parseable and not expired */
	LOCK_EXPIRED = 2, /* parseable, expires <= now */
	LOCK_INVALID = 3, /* present but not a lock value: problem says why */
};

struct release_lock {
	enum lock_state state;
	char owner[256];
	char release[256];
	time_t expires;
	char problem[160]; /* LOCK_INVALID: what is wrong with the value */
};

/*
 * Parse an annotation value into out (state LOCK_HELD with expires filled;
 * the caller compares with the clock). Requires a JSON object with string
 * owner, release and expires (RFC 3339); unknown keys are ignored so later
 * versions can add some. On failure out->state is LOCK_INVALID and
 * out->problem says why. Returns 0, MV_ESYNTAX (not JSON), MV_EINVAL (missing
 * or wrong field, bad timestamp), MV_ETOOBIG (over LOCK_MAX_VALUE).
 */
int lock_parse(const char *value, struct release_lock *out);

/*
 * Is the Deployment's release lock held at `now`? Returns 1 held, 0 free
 * (absent, expired or invalid). out (may be NULL) gets the details, so an
 * invalid value can be reported.
 */
int lock_held(const json_t *deployment, time_t now, struct release_lock *out);

/* ---- take / renew / give back (release branch): the JSON patches ---- */

/* The annotation value: compact JSON {"owner","release","expires"} (RFC 3339
 * UTC). Caller frees. NULL when out of memory. */
char *lock_value_new(const char *owner, const char *release, time_t expires);

/*
 * The JSON patch (an array; caller decrefs) taking the lock on `deployment`:
 * a `test` of metadata.resourceVersion as read, then `add` of the annotation
 * (or of the whole annotations map when it has none), so a concurrent writer
 * makes the server answer 422 and nothing is taken. NULL: no
 * resourceVersion, or out of memory.
 */
json_t *lock_take_patch(const json_t *deployment, const char *value);

/* Renew: `test` that the annotation is still `old`, `replace` with `value`. */
json_t *lock_renew_patch(const char *old, const char *value);

/* Give back: `test` that the annotation is still ours, then `remove` it. */
json_t *lock_give_back_patch(const char *value);

/*
 * 1 when the owner "<host>/<pid>/<rand>" names a process of host `host` that
 * no longer runs (a crashed release): its lock may be taken over before it
 * expires. 0 otherwise (another host, malformed, or the process runs).
 */
int lock_owner_gone(const char *owner, const char *host);

#endif
