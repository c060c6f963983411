/*
 * ingest.c - Kafka rating events -> rating store (contract in ingest.h).
 *
 * Everything but ingest_start/stop/healthy runs on the consumer thread,
 * including librdkafka's rebalance callback (served from inside
 * rd_kafka_consumer_poll), so the batch needs no lock.
 */
#include "ingest.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <librdkafka/rdkafka.h>

#include "event.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/metrics.h"
#include "store.h"

#include "movie/banned.h"

#define POLL_SLICE_MS   100
#define BACKOFF_MIN_MS  100
#define BACKOFF_MAX_MS  5000
#define LAG_INTERVAL_MS 1000
/* Partitions beyond this id get no position from end-of-partition events
 * (their lag stays unknown until a message is consumed): bounds eof_offset. */
#define EOF_PARTITIONS_MAX 4096
#define DLQ_FLUSH_MS       10000
/* Shutdown budget with Kafka unreachable: a Kubernetes grace period must not
 * be spent waiting on a coordinator that is gone. */
#define STOP_DLQ_FLUSH_MS 2000
#define STOP_COMMIT_MS    2000
#define STOP_CLOSE_MS     3000
#define REVOKE_COMMIT_MS  5000
#define BROKERS_MAX_BYTES 4096
/* Prefetch bound. Also bounds `deferred` below: after a pause librdkafka
 * stops fetching, so at most this much can still reach the application. */
#define QUEUED_MAX_KBYTES "16384"

/* One valid event of the batch; its strings live in batch.arena at these
 * offsets (the arena may move while the batch grows). */
struct slot {
	enum rating_op op;
	int32_t value;
	size_t user, record, type;
};

struct batch {
	struct slot *slots;            /* batch_max entries */
	struct rating_change *changes; /* batch_max entries, built at apply time */
	size_t count;                  /* valid events */
	size_t messages;               /* messages including rejected ones */
	struct buf arena;
	rd_kafka_topic_partition_list_t *offsets; /* next offset per partition */
};

enum reject_extra {
	REJECT_STORE_INVALID = RATING_EVENT_REASON_COUNT,
	REJECT_LABELS
};

struct commit_wait;

struct ingest {
	rd_kafka_t *rk;
	/* Waiters of commits that timed out (consumer thread only): their reply
	 * may still arrive, so they are freed after rd_kafka_destroy. */
	struct commit_wait *orphan_waits;
	rd_kafka_t *dlq; /* NULL: no dead-letter topic */
	struct rating_store *store;
	char *topic;
	char *dlq_topic;
	size_t batch_max;
	int32_t min_value, max_value;

	pthread_t thread;
	atomic_bool stop;
	atomic_bool running;
	atomic_bool fatal;
	atomic_bool paused;
	bool closed; /* the consumer left the group cleanly */

	struct batch batch;
	/* Messages polled while a failed batch waits for its retry; processed
	 * after it. Bounded by QUEUED_MAX_KBYTES (see above). */
	rd_kafka_message_t **deferred;
	size_t deferred_count, deferred_cap;
	bool dlq_pending; /* dead-letter messages produced since the last flush */

	struct metrics_counter *consumed, *stored, *batches, *retries;
	struct metrics_counter *rejected[REJECT_LABELS];
	struct metrics_gauge *lag, *paused_gauge;

	/* The lag needs each assigned partition's position. librdkafka knows it
	 * only once a message of the partition was consumed; a partition with
	 * nothing new since its committed offset gets it from the end-of-partition
	 * event instead: eof_offset[partition] (-1 unknown), reset on every
	 * rebalance. Consumer thread only. */
	bool assigned;
	int64_t *eof_offset;
	size_t eof_cap;
};

static int64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static const char *reject_label(int reason)
{
	return reason == REJECT_STORE_INVALID
	           ? "store_invalid"
	           : rating_event_reason_name((enum rating_event_reason)reason);
}

/* librdkafka logs (syslog levels) into our JSON log. Called from librdkafka's
 * threads; log_emit is thread-safe. */
static void on_rdkafka_log(const rd_kafka_t *rk, int level, const char *fac, const char *buf)
{
	enum log_level l = level <= 3   ? MV_LOG_ERROR
	                   : level == 4 ? MV_LOG_WARN
	                   : level <= 6 ? MV_LOG_INFO
	                                : MV_LOG_DEBUG;
	if (!log_enabled(l))
		return;
	log_emit(l, buf,
	         MV_LOG_FIELDS(MV_LOG_S("component", "rdkafka"), MV_LOG_S("facility", fac),
	                       MV_LOG_S("client", rd_kafka_name(rk))));
}

static void on_rdkafka_error(rd_kafka_t *rk, int err, const char *reason, void *opaque)
{
	struct ingest *in = opaque;
	if (err == RD_KAFKA_RESP_ERR__FATAL) {
		char fatal[512];
		rd_kafka_fatal_error(rk, fatal, sizeof(fatal));
		atomic_store(&in->fatal, true);
		log_error("kafka fatal error", MV_LOG_S("component", "ingest"),
		          MV_LOG_S("error", fatal));
		return;
	}
	log_warn("kafka error", MV_LOG_S("component", "ingest"),
	         MV_LOG_S("error", rd_kafka_err2name((rd_kafka_resp_err_t)err)),
	         MV_LOG_S("reason", reason));
}

static void on_dlq_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
	if (m->err)
		log_error("dead-letter delivery failed", MV_LOG_S("component", "ingest"),
		          MV_LOG_S("error", rd_kafka_err2str(m->err)));
}

static void batch_reset(struct batch *b)
{
	b->count = 0;
	b->messages = 0;
	buf_reset(&b->arena);
	if (b->offsets->cnt > 0) {
		rd_kafka_topic_partition_list_destroy(b->offsets);
		/* Allocation of an empty list cannot fail in librdkafka (it aborts). */
		b->offsets = rd_kafka_topic_partition_list_new(8);
	}
}

static void deferred_drop(struct ingest *in)
{
	for (size_t i = 0; i < in->deferred_count; i++)
		rd_kafka_message_destroy(in->deferred[i]);
	in->deferred_count = 0;
}

static void set_paused(struct ingest *in, bool paused)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (atomic_load(&in->paused) == paused)
		return;
	if (rd_kafka_assignment(in->rk, &parts) == RD_KAFKA_RESP_ERR_NO_ERROR) {
		rd_kafka_resp_err_t err = paused ? rd_kafka_pause_partitions(in->rk, parts)
		                                 : rd_kafka_resume_partitions(in->rk, parts);
		if (err)
			log_warn(paused ? "pause failed" : "resume failed",
			         MV_LOG_S("component", "ingest"),
			         MV_LOG_S("error", rd_kafka_err2str(err)));
		rd_kafka_topic_partition_list_destroy(parts);
	}
	atomic_store(&in->paused, paused);
	metrics_gauge_set(in->paused_gauge, paused ? 1 : 0);
	log_info(paused ? "consumption paused: store unavailable" : "consumption resumed",
	         MV_LOG_S("component", "ingest"));
}

struct commit_wait {
	bool done;
	rd_kafka_resp_err_t err;
	struct commit_wait *next; /* in ingest.orphan_waits after a timeout */
};

static void on_commit_done(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                           rd_kafka_topic_partition_list_t *offsets, void *opaque)
{
	struct commit_wait *w = opaque;
	w->done = true;
	w->err = err;
}

/* Commit the stored offsets, waiting at most timeout_ms (rd_kafka_commit
 * would wait for an unreachable coordinator far longer). Returns the result,
 * RD_KAFKA_RESP_ERR__NO_OFFSET when nothing was stored, or
 * RD_KAFKA_RESP_ERR__TIMED_OUT. */
static rd_kafka_resp_err_t commit_bounded(struct ingest *in, rd_kafka_t *rk, int timeout_ms)
{
	/* On the heap: after a timeout the result may still arrive, so the
	 * waiter then stays alive until ingest_stop has destroyed the handle. */
	struct commit_wait *w = calloc(1, sizeof(*w));
	if (!w)
		return RD_KAFKA_RESP_ERR__FAIL;
	rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
	rd_kafka_resp_err_t err = rd_kafka_commit_queue(rk, NULL, q, on_commit_done, w);
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR) {
		int64_t deadline = now_ms() + timeout_ms;
		while (!w->done && now_ms() < deadline)
			rd_kafka_queue_poll_callback(q, POLL_SLICE_MS);
		err = w->done ? w->err : RD_KAFKA_RESP_ERR__TIMED_OUT;
	}
	rd_kafka_queue_destroy(q);
	if (err == RD_KAFKA_RESP_ERR__TIMED_OUT) {
		w->next = in->orphan_waits;
		in->orphan_waits = w;
	} else {
		free(w);
	}
	return err;
}

/* Served from inside rd_kafka_consumer_poll on the consumer thread. */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *parts, void *opaque)
{
	struct ingest *in = opaque;
	for (size_t i = 0; i < in->eof_cap; i++)
		in->eof_offset[i] = -1;
	if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
		log_info("partitions assigned", MV_LOG_S("component", "ingest"),
		         MV_LOG_I("partitions", parts->cnt));
		size_t need = 0;
		for (int i = 0; i < parts->cnt; i++)
			if (parts->elems[i].partition >= 0 &&
			    (size_t)parts->elems[i].partition < EOF_PARTITIONS_MAX &&
			    (size_t)parts->elems[i].partition >= need)
				need = (size_t)parts->elems[i].partition + 1;
		if (need > in->eof_cap) {
			int64_t *grown = realloc(in->eof_offset, need * sizeof(*grown));
			if (grown) {
				for (size_t i = in->eof_cap; i < need; i++)
					grown[i] = -1;
				in->eof_offset = grown;
				in->eof_cap = need;
			}
		}
		in->assigned = true;
		rd_kafka_assign(rk, parts);
		return;
	}
	in->assigned = false;
	/* Revoked (or an error): whatever is applied has its offset stored:
	 * commit it now so the next owner does not replay it. The unapplied batch
	 * is dropped; the next owner gets it from the committed offset. */
	/* While stopping, the stop path has just committed (bounded). */
	if (!atomic_load(&in->stop)) {
		rd_kafka_resp_err_t cerr = commit_bounded(in, rk, REVOKE_COMMIT_MS);
		if (cerr && cerr != RD_KAFKA_RESP_ERR__NO_OFFSET)
			log_warn("commit on revocation failed", MV_LOG_S("component", "ingest"),
			         MV_LOG_S("error", rd_kafka_err2str(cerr)));
	}
	if (in->batch.messages > 0 || in->deferred_count > 0)
		log_info("dropping unapplied batch on revocation", MV_LOG_S("component", "ingest"),
		         MV_LOG_I("messages", in->batch.messages + in->deferred_count));
	batch_reset(&in->batch);
	deferred_drop(in);
	if (atomic_load(&in->paused)) {
		atomic_store(&in->paused, false);
		metrics_gauge_set(in->paused_gauge, 0);
	}
	log_info("partitions revoked", MV_LOG_S("component", "ingest"),
	         MV_LOG_S("reason", rd_kafka_err2name(err)));
	rd_kafka_assign(rk, NULL);
}

static void send_dead_letter(struct ingest *in, const rd_kafka_message_t *m, const char *reason,
                             const char *detail)
{
	char part[16], off[24];
	snprintf(part, sizeof(part), "%d", (int)m->partition);
	snprintf(off, sizeof(off), "%lld", (long long)m->offset);
	rd_kafka_resp_err_t err = rd_kafka_producev(
	    in->dlq, RD_KAFKA_V_TOPIC(in->dlq_topic), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
	    RD_KAFKA_V_KEY(m->key, m->key_len), RD_KAFKA_V_VALUE(m->payload, m->len),
	    RD_KAFKA_V_HEADER("reason", reason, -1), RD_KAFKA_V_HEADER("detail", detail, -1),
	    RD_KAFKA_V_HEADER("source_topic", in->topic, -1),
	    RD_KAFKA_V_HEADER("source_partition", part, -1),
	    RD_KAFKA_V_HEADER("source_offset", off, -1), RD_KAFKA_V_END);
	if (err) {
		log_error("dead-letter produce failed", MV_LOG_S("component", "ingest"),
		          MV_LOG_S("error", rd_kafka_err2str(err)),
		          MV_LOG_I("partition", m->partition), MV_LOG_I("offset", m->offset));
		return;
	}
	in->dlq_pending = true;
	rd_kafka_poll(in->dlq, 0);
}

static void reject(struct ingest *in, const rd_kafka_message_t *m, int reason, const char *detail)
{
	const char *label = reject_label(reason);
	log_warn("rating event rejected", MV_LOG_S("component", "ingest"),
	         MV_LOG_S("reason", label), MV_LOG_S("detail", detail),
	         MV_LOG_I("partition", m->partition), MV_LOG_I("offset", m->offset));
	metrics_counter_inc(in->rejected[reason]);
	if (in->dlq)
		send_dead_letter(in, m, label, detail);
}

static int arena_put(struct buf *arena, const char *s, size_t *off)
{
	*off = arena->len;
	return buf_append(arena, s, strlen(s) + 1);
}

/* Add one consumed message to the batch; the caller destroys it. */
static void batch_add(struct ingest *in, const rd_kafka_message_t *m)
{
	struct batch *b = &in->batch;
	struct rating_event ev;
	struct rating_event_error perr;

	metrics_counter_inc(in->consumed);
	if (rating_event_parse(m->payload, m->len, in->min_value, in->max_value, &ev, &perr) == 0) {
		struct slot *s = &b->slots[b->count];
		s->op = ev.op;
		s->value = ev.value;
		/* The arena is sized for batch_max events of maximal ids: cannot fail
		 * short of memory exhaustion. */
		if (arena_put(&b->arena, ev.user_id, &s->user) != 0 ||
		    arena_put(&b->arena, ev.record_id, &s->record) != 0 ||
		    arena_put(&b->arena, ev.record_type, &s->type) != 0) {
			reject(in, m, REJECT_STORE_INVALID, "out of memory buffering the event");
		} else {
			b->count++;
		}
	} else {
		reject(in, m, perr.reason, perr.detail);
	}
	b->messages++;
	rd_kafka_topic_partition_t *p = rd_kafka_topic_partition_list_find(
	    b->offsets, rd_kafka_topic_name(m->rkt), m->partition);
	if (!p)
		p = rd_kafka_topic_partition_list_add(b->offsets, rd_kafka_topic_name(m->rkt),
		                                      m->partition);
	p->offset = m->offset + 1;
}

/* Take one message from poll: errors are logged and dropped; true when it
 * joined the batch. */
static bool take_message(struct ingest *in, rd_kafka_message_t *m)
{
	if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF && m->partition >= 0 &&
	    (size_t)m->partition < in->eof_cap)
		in->eof_offset[m->partition] = m->offset; /* caught up: position known */
	if (m->err) {
		if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
			log_warn("consumer error", MV_LOG_S("component", "ingest"),
			         MV_LOG_S("error", rd_kafka_message_errstr(m)),
			         MV_LOG_I("partition", m->partition));
		rd_kafka_message_destroy(m);
		return false;
	}
	batch_add(in, m);
	rd_kafka_message_destroy(m);
	return true;
}

/* Fill the batch from the deferred messages, then from one poll cycle: wait
 * up to POLL_SLICE_MS for a first message, then take what is already queued. */
static void batch_fill(struct ingest *in)
{
	size_t i = 0;
	for (; i < in->deferred_count && in->batch.messages < in->batch_max; i++)
		take_message(in, in->deferred[i]);
	if (i > 0) {
		memmove(in->deferred, in->deferred + i,
		        (in->deferred_count - i) * sizeof(*in->deferred));
		in->deferred_count -= i;
		return;
	}
	int timeout = POLL_SLICE_MS;
	while (in->batch.messages < in->batch_max && !atomic_load(&in->stop)) {
		rd_kafka_message_t *m = rd_kafka_consumer_poll(in->rk, timeout);
		if (!m)
			break;
		take_message(in, m);
		timeout = 0;
	}
}

/* Apply the batch's valid events. Returns 0 when they are durable (or were
 * rejected by the store one by one), else the store's retryable error. */
static int batch_apply(struct ingest *in)
{
	struct batch *b = &in->batch;
	if (b->count == 0) /* only rejected events: nothing to store */
		return 0;
	for (size_t i = 0; i < b->count; i++) {
		const struct slot *s = &b->slots[i];
		b->changes[i] = (struct rating_change){
		    .op = s->op,
		    .value = s->value,
		    .user_id = b->arena.data + s->user,
		    .record_id = b->arena.data + s->record,
		    .record_type = b->arena.data + s->type,
		};
	}
	int rc = rating_store_apply(in->store, b->changes, b->count);
	if (rc != MV_EINVAL)
		return rc;
	/* A change the parser accepted but the store refuses: isolate it so the
	 * rest of the batch is not held hostage. Redoing a prefix is harmless:
	 * every change is idempotent and order is preserved. */
	for (size_t i = 0; i < b->count; i++) {
		rc = rating_store_apply(in->store, &b->changes[i], 1);
		if (rc == MV_EINVAL) {
			log_warn("rating event rejected", MV_LOG_S("component", "ingest"),
			         MV_LOG_S("reason", "store_invalid"),
			         MV_LOG_S("record_id", b->changes[i].record_id),
			         MV_LOG_S("record_type", b->changes[i].record_type));
			metrics_counter_inc(in->rejected[REJECT_STORE_INVALID]);
		} else if (rc != 0) {
			return rc;
		}
	}
	return 0;
}

/* After a successful apply: mark the offsets for commit. */
static void batch_done(struct ingest *in)
{
	struct batch *b = &in->batch;
	if (in->dlq_pending) {
		/* Dead letters first: their source offsets are about to be committed. */
		if (rd_kafka_flush(in->dlq, DLQ_FLUSH_MS) != RD_KAFKA_RESP_ERR_NO_ERROR)
			log_error("dead-letter flush timed out", MV_LOG_S("component", "ingest"),
			          MV_LOG_I("pending", rd_kafka_outq_len(in->dlq)));
		in->dlq_pending = false;
	}
	rd_kafka_resp_err_t err = rd_kafka_offsets_store(in->rk, b->offsets);
	if (err)
		/* Partitions revoked meanwhile: the next owner replays; harmless. */
		log_debug("offsets not stored", MV_LOG_S("component", "ingest"),
		          MV_LOG_S("error", rd_kafka_err2str(err)));
	if (b->count > 0)
		metrics_counter_inc(in->batches);
	metrics_counter_add(in->stored, b->count);
	batch_reset(b);
}

/* Wait `ms` while keeping the group membership alive: poll the (paused)
 * consumer, deferring any message that still arrives. Returns early on stop
 * or when a revocation dropped the batch. */
static void wait_polling(struct ingest *in, int64_t ms)
{
	int64_t deadline = now_ms() + ms;
	for (;;) {
		int64_t left = deadline - now_ms();
		if (left <= 0 || atomic_load(&in->stop) || in->batch.messages == 0)
			return;
		rd_kafka_message_t *m = rd_kafka_consumer_poll(
		    in->rk, (int)(left < POLL_SLICE_MS ? left : POLL_SLICE_MS));
		if (!m)
			continue;
		if (in->batch.messages == 0) {
			/* Revoked and reassigned inside this poll: a fresh message. */
			take_message(in, m);
			return;
		}
		if (in->deferred_count == in->deferred_cap) {
			size_t cap = in->deferred_cap ? in->deferred_cap * 2 : 64;
			rd_kafka_message_t **d = realloc(in->deferred, cap * sizeof(*d));
			if (!d) {
				/* Not taking it would lose it: drop the whole uncommitted
				 * state and rewind to the committed offsets instead. */
				log_error("out of memory deferring a message; rewinding",
				          MV_LOG_S("component", "ingest"));
				rd_kafka_message_destroy(m);
				batch_reset(&in->batch);
				deferred_drop(in);
				rd_kafka_topic_partition_list_t *parts = NULL;
				if (rd_kafka_assignment(in->rk, &parts) == 0) {
					rd_kafka_assign(in->rk, parts);
					rd_kafka_topic_partition_list_destroy(parts);
				}
				atomic_store(&in->paused, false);
				metrics_gauge_set(in->paused_gauge, 0);
				return;
			}
			in->deferred = d;
			in->deferred_cap = cap;
		}
		in->deferred[in->deferred_count++] = m;
	}
}

/* Cached watermarks only: rd_kafka_query_watermark_offsets can block far
 * past its timeout when the leader is unreachable (seen with 2.0.2), which
 * would stall this thread and ingest_stop. The cached high watermark is
 * refreshed by every fetch response, so while paused the gauge shows the
 * last known lag; rating_ingest_paused says why.
 * The lag is NaN ("unknown", docs/internals/kafka.md) while any assigned
 * partition lacks a position or a high watermark, and before the first
 * assignment: counting from the low watermark instead reported a whole
 * topic of backlog after every clean restart. */
static void update_lag(struct ingest *in)
{
	rd_kafka_topic_partition_list_t *parts = NULL;
	if (!in->assigned) {
		metrics_gauge_set(in->lag, NAN);
		return;
	}
	if (rd_kafka_assignment(in->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR)
		return;
	rd_kafka_position(in->rk, parts);
	int64_t lag = 0;
	bool known = true;
	for (int i = 0; i < parts->cnt && known; i++) {
		int64_t lo = RD_KAFKA_OFFSET_INVALID, hi = RD_KAFKA_OFFSET_INVALID;
		const rd_kafka_topic_partition_t *p = &parts->elems[i];
		int64_t pos = p->offset;
		if (pos < 0 && p->partition >= 0 && (size_t)p->partition < in->eof_cap)
			pos = in->eof_offset[p->partition];
		if (pos < 0 ||
		    rd_kafka_get_watermark_offsets(in->rk, p->topic, p->partition, &lo, &hi) != 0 ||
		    hi < 0)
			known = false;
		else if (hi > pos)
			lag += hi - pos;
	}
	rd_kafka_topic_partition_list_destroy(parts);
	metrics_gauge_set(in->lag, known ? (double)lag : NAN);
}

static void *consumer_main(void *arg)
{
	struct ingest *in = arg;
	int64_t backoff = BACKOFF_MIN_MS;
	int64_t next_lag = 0;

	while (!atomic_load(&in->stop)) {
		if (now_ms() >= next_lag) {
			update_lag(in);
			next_lag = now_ms() + LAG_INTERVAL_MS;
		}
		if (in->batch.messages == 0)
			batch_fill(in);
		if (in->batch.messages == 0)
			continue;
		int rc = batch_apply(in);
		if (rc == 0) {
			batch_done(in);
			set_paused(in, false);
			backoff = BACKOFF_MIN_MS;
			continue;
		}
		metrics_counter_inc(in->retries);
		log_warn("store apply failed; retrying the batch", MV_LOG_S("component", "ingest"),
		         MV_LOG_S("error", mv_strerror(rc)), MV_LOG_I("events", in->batch.count),
		         MV_LOG_I("backoff_ms", backoff));
		set_paused(in, true);
		wait_polling(in, backoff);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}

	if (in->batch.messages > 0)
		log_info("stopping with an unapplied batch; it will be redelivered",
		         MV_LOG_S("component", "ingest"), MV_LOG_I("messages", in->batch.messages));
	batch_reset(&in->batch);
	deferred_drop(in);
	if (in->dlq)
		rd_kafka_flush(in->dlq, STOP_DLQ_FLUSH_MS);
	rd_kafka_resp_err_t err = commit_bounded(in, in->rk, STOP_COMMIT_MS);
	if (err && err != RD_KAFKA_RESP_ERR__NO_OFFSET)
		log_warn("final commit failed; the next owner replays from the last commit",
		         MV_LOG_S("component", "ingest"), MV_LOG_S("error", rd_kafka_err2str(err)));
	/* Leave the group, bounded: without a coordinator the group times us out. */
	rd_kafka_queue_t *q = rd_kafka_queue_new(in->rk);
	rd_kafka_error_t *cerr = rd_kafka_consumer_close_queue(in->rk, q);
	if (cerr) {
		log_warn("consumer close failed", MV_LOG_S("component", "ingest"),
		         MV_LOG_S("error", rd_kafka_error_string(cerr)));
		rd_kafka_error_destroy(cerr);
	} else {
		int64_t deadline = now_ms() + STOP_CLOSE_MS;
		while (!rd_kafka_consumer_closed(in->rk) && now_ms() < deadline)
			rd_kafka_queue_poll_callback(q, POLL_SLICE_MS);
		in->closed = rd_kafka_consumer_closed(in->rk) != 0;
		if (!in->closed)
			log_warn("consumer did not leave the group in time",
			         MV_LOG_S("component", "ingest"),
			         MV_LOG_I("timeout_ms", STOP_CLOSE_MS));
	}
	rd_kafka_queue_destroy(q);
	atomic_store(&in->running, false);
	return NULL;
}

static int set_conf(rd_kafka_conf_t *conf, const char *key, const char *value, char *errbuf,
                    size_t errbuf_size)
{
	if (rd_kafka_conf_set(conf, key, value, errbuf, errbuf_size) != RD_KAFKA_CONF_OK)
		return MV_EINVAL;
	return 0;
}

static int join_brokers(const struct ingest_config *cfg, char *out, size_t out_size)
{
	struct buf b;
	int rc = 0;
	buf_init(&b, out_size - 1);
	for (size_t i = 0; i < cfg->broker_count && rc == 0; i++) {
		if (!cfg->brokers[i] || !cfg->brokers[i][0] || strchr(cfg->brokers[i], ','))
			rc = MV_EINVAL;
		else
			rc = buf_printf(&b, "%s%s", i ? "," : "", cfg->brokers[i]);
	}
	if (rc == 0 && b.len > 0)
		memcpy(out, b.data, b.len + 1);
	buf_release(&b);
	return rc;
}

static rd_kafka_conf_t *base_conf(struct ingest *in, const char *brokers, char *errbuf,
                                  size_t errbuf_size)
{
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	if (set_conf(conf, "bootstrap.servers", brokers, errbuf, errbuf_size) != 0) {
		rd_kafka_conf_destroy(conf);
		return NULL;
	}
	rd_kafka_conf_set_log_cb(conf, on_rdkafka_log);
	rd_kafka_conf_set_error_cb(conf, on_rdkafka_error);
	rd_kafka_conf_set_opaque(conf, in);
	return conf;
}

static void register_metrics(struct ingest *in, struct metrics_registry *reg)
{
	static const char *const reason_label[] = {"reason"};
	if (!reg)
		return;
#define COUNTER(field, name, help) \
	in->field = metrics_counter_get(metrics_counter_family(reg, name, help, 0, NULL), NULL)
	COUNTER(consumed, "rating_ingest_events_consumed_total",
	        "Rating events consumed from Kafka.");
	COUNTER(stored, "rating_ingest_events_stored_total", "Rating events applied to the store.");
	COUNTER(batches, "rating_ingest_batches_total", "Batches applied to the store.");
	COUNTER(retries, "rating_ingest_store_retries_total",
	        "Batch applications that failed and were retried.");
#undef COUNTER
	struct metrics_family *rej = metrics_counter_family(
	    reg, "rating_ingest_events_rejected_total",
	    "Rating events rejected as malformed or invalid, by reason.", 1, reason_label);
	for (int i = RATING_EVENT_OK + 1; i < REJECT_LABELS; i++) {
		const char *v[1] = {reject_label(i)};
		in->rejected[i] = rej ? metrics_counter_get(rej, v) : NULL;
	}
	struct metrics_family *lag = metrics_gauge_family(
	    reg, "rating_ingest_consumer_lag",
	    "Messages behind the high watermark, summed over the assigned partitions.", 0, NULL);
	in->lag = lag ? metrics_gauge_get(lag, NULL) : NULL;
	metrics_gauge_set(in->lag, NAN); /* unknown until a position is */
	struct metrics_family *paused =
	    metrics_gauge_family(reg, "rating_ingest_paused",
	                         "1 while consumption is paused (store unavailable).", 0, NULL);
	in->paused_gauge = paused ? metrics_gauge_get(paused, NULL) : NULL;
}

static bool config_valid(const struct ingest_config *cfg, char *errbuf, size_t errbuf_size)
{
	const char *why = NULL;
	if (!cfg->brokers || cfg->broker_count == 0)
		why = "kafka.brokers: empty";
	else if (!cfg->topic || !cfg->topic[0])
		why = "kafka.topic: empty";
	else if (!cfg->group_id || !cfg->group_id[0])
		why = "kafka.group_id: empty";
	else if (cfg->batch_max < 1 || cfg->batch_max > 100000)
		why = "kafka.batch_max: outside 1..100000";
	else if (cfg->session_timeout_ms < 1000 || cfg->session_timeout_ms > 3600000)
		why = "kafka.session_timeout: outside 1s..1h";
	else if (cfg->min_value > cfg->max_value)
		why = "rating.min_value > rating.max_value";
	if (why)
		snprintf(errbuf, errbuf_size, "%s", why);
	return why == NULL;
}

struct ingest *ingest_start(const struct ingest_config *cfg, struct rating_store *store,
                            struct metrics_registry *metrics, char *errbuf, size_t errbuf_size)
{
	char brokers[BROKERS_MAX_BYTES];
	char num[32];
	rd_kafka_conf_t *conf = NULL;

	if (errbuf_size)
		errbuf[0] = '\0';
	if (!config_valid(cfg, errbuf, errbuf_size))
		return NULL;
	if (join_brokers(cfg, brokers, sizeof(brokers)) != 0) {
		snprintf(errbuf, errbuf_size, "kafka.brokers: empty entry, comma, or too long");
		return NULL;
	}
	struct ingest *in = calloc(1, sizeof(*in));
	if (!in)
		goto fail_alloc;
	in->store = store;
	in->batch_max = (size_t)cfg->batch_max;
	in->min_value = cfg->min_value;
	in->max_value = cfg->max_value;
	in->topic = strdup(cfg->topic);
	in->dlq_topic = strdup(cfg->dead_letter_topic ? cfg->dead_letter_topic : "");
	in->batch.slots = calloc(in->batch_max, sizeof(*in->batch.slots));
	in->batch.changes = calloc(in->batch_max, sizeof(*in->batch.changes));
	in->batch.offsets = rd_kafka_topic_partition_list_new(8);
	buf_init(&in->batch.arena, in->batch_max * 3 * (RATING_ID_MAX + 1));
	if (!in->topic || !in->dlq_topic || !in->batch.slots || !in->batch.changes ||
	    !in->batch.offsets)
		goto fail_fields;
	register_metrics(in, metrics);

	conf = base_conf(in, brokers, errbuf, errbuf_size);
	if (!conf)
		goto fail_fields;
	snprintf(num, sizeof(num), "%lld", (long long)cfg->session_timeout_ms);
	if (set_conf(conf, "group.id", cfg->group_id, errbuf, errbuf_size) ||
	    set_conf(conf, "client.id", "rating-ingest", errbuf, errbuf_size) ||
	    set_conf(conf, "session.timeout.ms", num, errbuf, errbuf_size) ||
	    set_conf(conf, "enable.auto.offset.store", "false", errbuf, errbuf_size) ||
	    set_conf(conf, "enable.auto.commit", "true", errbuf, errbuf_size) ||
	    set_conf(conf, "auto.commit.interval.ms", "1000", errbuf, errbuf_size) ||
	    set_conf(conf, "auto.offset.reset", "earliest", errbuf, errbuf_size) ||
	    set_conf(conf, "enable.partition.eof", "true", errbuf, errbuf_size) ||
	    set_conf(conf, "queued.max.messages.kbytes", QUEUED_MAX_KBYTES, errbuf, errbuf_size))
		goto fail_conf;
	/* The heartbeat must fit in the session several times over. */
	snprintf(
	    num, sizeof(num), "%lld",
	    (long long)(cfg->session_timeout_ms / 3 < 3000 ? cfg->session_timeout_ms / 3 : 3000));
	if (set_conf(conf, "heartbeat.interval.ms", num, errbuf, errbuf_size))
		goto fail_conf;
	rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
	in->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, errbuf, errbuf_size);
	if (!in->rk)
		goto fail_conf;
	conf = NULL; /* owned by rk now */
	rd_kafka_poll_set_consumer(in->rk);

	if (in->dlq_topic[0]) {
		conf = base_conf(in, brokers, errbuf, errbuf_size);
		if (!conf)
			goto fail_dlq;
		if (set_conf(conf, "client.id", "rating-ingest-dlq", errbuf, errbuf_size) ||
		    set_conf(conf, "enable.idempotence", "true", errbuf, errbuf_size))
			goto fail_dlq_conf;
		rd_kafka_conf_set_dr_msg_cb(conf, on_dlq_delivery);
		in->dlq = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errbuf, errbuf_size);
		if (!in->dlq)
			goto fail_dlq_conf;
		conf = NULL;
	}

	rd_kafka_topic_partition_list_t *sub = rd_kafka_topic_partition_list_new(1);
	rd_kafka_topic_partition_list_add(sub, in->topic, RD_KAFKA_PARTITION_UA);
	rd_kafka_resp_err_t err = rd_kafka_subscribe(in->rk, sub);
	rd_kafka_topic_partition_list_destroy(sub);
	if (err) {
		snprintf(errbuf, errbuf_size, "subscribe %s: %s", in->topic, rd_kafka_err2str(err));
		goto fail_subscribe;
	}

	atomic_store(&in->running, true);
	if (pthread_create(&in->thread, NULL, consumer_main, in) != 0) {
		atomic_store(&in->running, false);
		snprintf(errbuf, errbuf_size, "cannot start the consumer thread");
		goto fail_thread;
	}
	log_info("kafka ingestion started", MV_LOG_S("component", "ingest"),
	         MV_LOG_S("brokers", brokers), MV_LOG_S("topic", in->topic),
	         MV_LOG_S("group_id", cfg->group_id), MV_LOG_S("dead_letter_topic", in->dlq_topic),
	         MV_LOG_I("batch_max", cfg->batch_max));
	return in;

fail_thread:
	rd_kafka_unsubscribe(in->rk);
fail_subscribe:
	if (in->dlq)
		rd_kafka_destroy(in->dlq);
	goto fail_dlq;
fail_dlq_conf:
	rd_kafka_conf_destroy(conf);
	conf = NULL;
fail_dlq:
	rd_kafka_consumer_close(in->rk);
	rd_kafka_destroy(in->rk);
fail_conf:
	if (conf)
		rd_kafka_conf_destroy(conf);
fail_fields:
	if (in->batch.offsets)
		rd_kafka_topic_partition_list_destroy(in->batch.offsets);
	buf_release(&in->batch.arena);
	free(in->batch.changes);
	free(in->batch.slots);
	free(in->dlq_topic);
	free(in->topic);
	free(in);
	if (errbuf_size && !errbuf[0])
		snprintf(errbuf, errbuf_size, "out of memory");
	return NULL;
fail_alloc:
	snprintf(errbuf, errbuf_size, "out of memory");
	return NULL;
}

void ingest_stop(struct ingest *in)
{
	if (!in)
		return;
	atomic_store(&in->stop, true);
	pthread_join(in->thread, NULL);
	if (in->dlq)
		rd_kafka_destroy(in->dlq);
	rd_kafka_destroy_flags(in->rk, in->closed ? 0 : RD_KAFKA_DESTROY_F_NO_CONSUMER_CLOSE);
	/* No callback can run any more: release the waiters of timed-out commits. */
	while (in->orphan_waits) {
		struct commit_wait *w = in->orphan_waits;
		in->orphan_waits = w->next;
		free(w);
	}
	rd_kafka_topic_partition_list_destroy(in->batch.offsets);
	buf_release(&in->batch.arena);
	free(in->deferred);
	free(in->eof_offset);
	free(in->batch.changes);
	free(in->batch.slots);
	free(in->dlq_topic);
	free(in->topic);
	log_info("kafka ingestion stopped", MV_LOG_S("component", "ingest"));
	free(in);
}

bool ingest_healthy(const struct ingest *in)
{
	return in && atomic_load(&in->running) && !atomic_load(&in->fatal);
}

bool ingest_paused(const struct ingest *in)
{
	return in && atomic_load(&in->paused);
}
