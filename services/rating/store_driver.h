/*
 * store_driver.h - the rating store's driver vtable and the batch plan every
 * driver applies (private to services/rating/store_*.c).
 *
 * store.c validates a batch and collapses it into a plan: the distinct
 * ratings it touches, each with its final state after applying the changes
 * in order (put 3, put 5, delete -> absent), and the distinct records. Keys
 * and records are sorted, so every driver writes (and locks) rows in one
 * global order. A driver then reads each key's current value, derives the
 * aggregate deltas with rating_plan_deltas and writes the final states and
 * deltas in one transaction. Applying a plan depends only on its final
 * states, so applying the same batch twice gives the same result: a
 * transaction whose commit outcome is unknown can be retried.
 */
#ifndef RATING_STORE_DRIVER_H
#define RATING_STORE_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "store.h"

/* Largest batch rating_store_apply accepts (kafka.batch_max's upper bound). */
#define RATING_BATCH_MAX 100000

struct rating_plan_key {
	const char *record_type, *record_id, *user_id; /* borrowed from the changes */
	size_t record;                                 /* index into plan->records */
	bool present;                                  /* a rating exists after the batch */
	int32_t value;                                 /* its value when present */
	bool had_old; /* filled by the driver: a rating existed before */
	int32_t old;  /* its value when had_old */
};

struct rating_plan_record {
	const char *record_type, *record_id;
	int64_t dsum; /* filled by rating_plan_deltas */
	int64_t dcount;
};

struct rating_plan {
	struct rating_plan_key *keys;
	size_t nkeys;
	struct rating_plan_record *records;
	size_t nrecords;
	size_t *index; /* open-addressing table of key indexes + 1 (0 = empty) */
	size_t index_mask;
};

/* Build the plan of a validated batch. Returns 0 or MV_ENOMEM. */
int rating_plan_build(struct rating_plan *plan, const struct rating_change *changes, size_t count);
void rating_plan_release(struct rating_plan *plan);
/* Index of the key (record_type, record_id, user_id), or -1. Lengths are of
 * the byte strings given (they need no NUL). */
long rating_plan_find(const struct rating_plan *plan, const char *type, size_t type_len,
                      const char *id, size_t id_len, const char *user, size_t user_len);
/* Clear had_old/old of every key (before a retry). */
void rating_plan_reset_old(struct rating_plan *plan);
/* From each key's old and final state, compute every record's dsum/dcount. */
void rating_plan_deltas(struct rating_plan *plan);

struct rating_store_ops {
	const char *name;
	bool blocking;
	void *(*open)(const struct store_config *cfg, char *errbuf, size_t errbuf_size);
	void (*close)(void *impl);
	int (*apply)(void *impl, struct rating_plan *plan);
	int (*aggregate)(void *impl, const char *record_id, const char *record_type, int64_t *sum,
	                 uint64_t *count);
	int (*ping)(void *impl);
};

extern const struct rating_store_ops rating_store_memory_ops;
extern const struct rating_store_ops rating_store_sqlite_ops;
extern const struct rating_store_ops rating_store_mysql_ops;

#endif
