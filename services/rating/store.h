/*
 * store.h - the rating service's storage interface.
 *
 * One rating per (record_type, record_id, user_id); a second put by the same
 * user replaces the first. Every driver keeps the aggregate (sum, count) of a
 * record up to date in the same transaction as the rating itself, so reading
 * the mean costs the same for 5 ratings as for 1,000,000.
 * Thread-safe; when rating_store_blocking() is true, call only from worker
 * threads, never from an event loop.
 */
#ifndef RATING_STORE_H
#define RATING_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "movie/store_config.h"

#define RATING_ID_MAX 256

enum rating_op {
	RATING_OP_PUT = 0,
	RATING_OP_DELETE = 1
};

/* One change, as PutRating or a Kafka event produces it. Strings are borrowed,
 * NUL-terminated and free of NUL and control characters (the handlers and the
 * event parser apply movie/text.h first): drivers bind them by strlen and the
 * memory store joins them with NUL separators, which that makes unambiguous. */
struct rating_change {
	enum rating_op op;
	const char *record_id;
	const char *record_type;
	const char *user_id;
	int32_t value; /* ignored for RATING_OP_DELETE */
};

struct rating_store;

/* Open the driver named in cfg->driver (see the metadata store for semantics).
 * Returns NULL with a reason in errbuf on failure. */
struct rating_store *rating_store_open(const struct store_config *cfg, char *errbuf,
                                       size_t errbuf_size);
void rating_store_close(struct rating_store *s);
bool rating_store_blocking(const struct rating_store *s);

/* Apply changes atomically, in order, in one transaction: all are durable
 * when this returns 0, none on error. A delete of an absent rating is a no-op.
 * Applying the same batch again leaves the same state (safe to retry after
 * an error whose outcome is unknown). MV_EINVAL: an empty, NULL or longer
 * than RATING_ID_MAX id or type, an unknown op, or more than 100,000 changes
 * (nothing is applied). count 0 is a no-op. The value range is the caller's
 * to check. Returns 0, MV_EUNAVAIL, MV_ENOMEM, MV_EINVAL. */
int rating_store_apply(struct rating_store *s, const struct rating_change *changes, size_t count);

/* Mean and count of the current ratings of a record (mean and count may be
 * NULL); reads only the aggregate row. The mean is sum / count computed in
 * double from exact integers.
 * Returns 0, MV_ENOTFOUND (no ratings), MV_EUNAVAIL, MV_ENOMEM, MV_EINVAL
 * (empty or over-long id or type). */
int rating_store_aggregate(struct rating_store *s, const char *record_id, const char *record_type,
                           double *mean, uint64_t *count);

/* Cheap readiness probe. Returns 0 or MV_EUNAVAIL. */
int rating_store_ping(struct rating_store *s);

#endif
