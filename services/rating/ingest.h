/*
 * ingest.h - the rating service's Kafka consumer: rating events -> rating store.
 *
 * One consumer thread (never an event loop) joins the consumer group, polls
 * the topic, validates each message with event.h and applies the valid ones
 * to the store with rating_store_apply, one transaction per batch of up to
 * batch_max events drawn from one poll cycle.
 *
 * Delivery is at-least-once and nothing is lost:
 *   - enable.auto.offset.store=false: a message's offset is stored (and then
 *     committed by the periodic auto-commit, on revocation and on stop) only
 *     after the batch holding it was applied durably;
 *   - while the store answers MV_EUNAVAIL (or MV_ENOMEM) the assigned
 *     partitions are paused, the consumer keeps polling so the group
 *     membership stays alive, and the SAME batch is retried with capped
 *     exponential backoff (100 ms doubling to 5 s); consumption resumes once
 *     it succeeds. Nothing is skipped;
 *   - on revocation the unapplied batch is dropped; it is redelivered from the
 *     last committed offset. Effects are idempotent (put replaces the user's
 *     rating, delete of an absent rating is a no-op), so replays are harmless.
 * An invalid event is logged (reason, partition, offset), counted, produced to
 * the dead-letter topic when one is configured (headers "reason", "detail",
 * "source_topic", "source_partition", "source_offset") and skipped; its offset
 * is committed with the batch it arrived in. An event the store itself
 * refuses (MV_EINVAL) is handled the same way with reason "store_invalid".
 *
 * Metrics (when a registry is given): rating_ingest_events_consumed_total,
 * rating_ingest_events_stored_total, rating_ingest_events_rejected_total{reason},
 * rating_ingest_batches_total, rating_ingest_store_retries_total,
 * rating_ingest_consumer_lag (sum over the assigned partitions of high
 * watermark - position, from the watermarks of the last fetch, every second;
 * NaN while not every assigned partition has a known position),
 * rating_ingest_paused (0/1).
 * librdkafka's own logs go to log.h with "component":"rdkafka".
 */
#ifndef RATING_INGEST_H
#define RATING_INGEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rating_store;
struct metrics_registry;

struct ingest_config {
	const char *const *brokers; /* bootstrap "host:port" entries, at least one */
	size_t broker_count;
	const char *topic;             /* "ratings" */
	const char *group_id;          /* "rating" */
	const char *dead_letter_topic; /* "" or NULL: no dead-letter topic */
	int64_t batch_max;             /* 1..100000 events per transaction */
	int64_t session_timeout_ms;    /* consumer group session timeout, 1000..3600000 */
	int32_t min_value, max_value;  /* accepted "put" values, min <= max */
};

struct ingest;

/* Validate cfg, create the consumer (and the dead-letter producer), register
 * the metrics and start the consumer thread. The strings of cfg are copied;
 * `store` and `metrics` (NULL: no metrics) must outlive the ingest.
 * Returns NULL with a reason in errbuf when cfg is invalid or librdkafka
 * refuses its configuration, or on allocation failure. Broker reachability
 * is not checked here: the consumer connects, and retries, in the background.
 * Call from any thread, once per ingest. */
struct ingest *ingest_start(const struct ingest_config *cfg, struct rating_store *store,
                            struct metrics_registry *metrics, char *errbuf, size_t errbuf_size);

/* Stop consuming, drop a batch that could not be applied (it will be
 * redelivered), commit the stored offsets, leave the group, join the thread
 * and free everything. Bounded even when Kafka is unreachable: at most
 * 2 s flushing dead letters, 2 s committing, 3 s leaving the group (the group
 * then expires the member after the session timeout) and ~5 s of librdkafka
 * teardown: about 12 s in the worst case (measured: 12 s with the broker
 * gone, no dead-letter topic), well under a second normally. NULL is a no-op.
 * Call once, from the thread that started it (not from the consumer thread). */
void ingest_stop(struct ingest *in);

/* True while the consumer thread runs and librdkafka reported no fatal error.
 * A paused consumer (store unavailable) or unreachable brokers are not
 * unhealthy: both heal by themselves and readiness reflects the store.
 * Any thread. */
bool ingest_healthy(const struct ingest *in);

/* True while consumption is paused because the store is unavailable. Any thread. */
bool ingest_paused(const struct ingest *in);

#endif
