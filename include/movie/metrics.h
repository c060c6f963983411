/*
 * metrics.h - a Prometheus metrics registry, lock-free on the hot path.
 *
 * Families (name, help, type, label names) and their children (one per label
 * value set) are created at start-up or on first use under a mutex; updating a
 * child is a relaxed atomic operation, safe from any thread. Histogram sums of
 * families named *_seconds are kept as integer nanoseconds (one atomic add);
 * other histogram sums and gauges are doubles updated by compare-and-swap.
 * Rendering produces the Prometheus text exposition format 0.0.4, which
 * `promtool check metrics` accepts without warnings (names carry their unit,
 * counters end in _total, HELP and TYPE precede samples, label values escaped).
 * Families render in registration order, children in creation order; a family
 * without labels has its one child from registration on (it renders as 0).
 *
 * Callback gauges are evaluated at render time (process RSS, in-flight
 * requests read from elsewhere, consumer lag).
 */
#ifndef MOVIE_METRICS_H
#define MOVIE_METRICS_H

#include <stddef.h>
#include <stdint.h>

struct buf;
struct metrics_registry;
struct metrics_family;
struct metrics_counter;
struct metrics_gauge;
struct metrics_histogram;

#define METRICS_MAX_LABELS 4
/* Caps on what label values (possibly derived from requests) can create. */
#define METRICS_MAX_CHILDREN    1024          /* children per family */
#define METRICS_MAX_LABEL_VALUE ((size_t)256) /* bytes per label value */
#define METRICS_MAX_BUCKETS     64            /* bounds per histogram */

/* A new empty registry. Returns NULL on allocation failure. */
struct metrics_registry *metrics_registry_new(void);
/* Free the registry, its families and children. No other thread may use it. */
void metrics_registry_free(struct metrics_registry *reg);

/* Register families. `name` matches [a-zA-Z_:][a-zA-Z0-9_:]*, label names
 * [a-zA-Z_][a-zA-Z0-9_]* without a leading "__" ("le" is reserved for
 * histograms). `label_names` has `label_count` (<= METRICS_MAX_LABELS)
 * entries. Name, help and label names are copied.
 * Registering the same name twice returns the existing family if the type,
 * labels (and bounds) match, else NULL. Return NULL on allocation failure or
 * invalid arguments too. */
struct metrics_family *metrics_counter_family(struct metrics_registry *reg, const char *name,
                                              const char *help, size_t label_count,
                                              const char *const *label_names);
struct metrics_family *metrics_gauge_family(struct metrics_registry *reg, const char *name,
                                            const char *help, size_t label_count,
                                            const char *const *label_names);
/* `bounds` are the upper bounds of the buckets, strictly ascending and finite,
 * at most METRICS_MAX_BUCKETS, copied; +Inf is implicit. */
struct metrics_family *metrics_histogram_family(struct metrics_registry *reg, const char *name,
                                                const char *help, const double *bounds,
                                                size_t bound_count, size_t label_count,
                                                const char *const *label_names);

/* Get or create the child for these label values (copied; `label_count`
 * values as declared; a NULL value means ""; `values` may be NULL when there
 * are no labels). Returns NULL on allocation failure, type mismatch, a value
 * longer than METRICS_MAX_LABEL_VALUE or a family already holding
 * METRICS_MAX_CHILDREN children. Takes the registry mutex: resolve children
 * once and keep the pointer (valid until metrics_registry_free). */
struct metrics_counter *metrics_counter_get(struct metrics_family *fam, const char *const *values);
struct metrics_gauge *metrics_gauge_get(struct metrics_family *fam, const char *const *values);
struct metrics_histogram *metrics_histogram_get(struct metrics_family *fam,
                                                const char *const *values);

/* Hot-path updates: lock-free, any thread. NULL pointers are ignored.
 * A counter add is one relaxed atomic add. Non-finite histogram observations
 * are dropped (they would poison the sum). */
void metrics_counter_add(struct metrics_counter *c, uint64_t n);
static inline void metrics_counter_inc(struct metrics_counter *c)
{
	metrics_counter_add(c, 1);
}
void metrics_gauge_set(struct metrics_gauge *g, double v);
void metrics_gauge_add(struct metrics_gauge *g, double delta);
/* Observe a value in the histogram's unit (seconds for *_seconds). */
void metrics_histogram_observe(struct metrics_histogram *h, double value);

/* Read back (tests, the canary judge). NULL reads as 0. */
uint64_t metrics_counter_value(const struct metrics_counter *c);
double metrics_gauge_value(const struct metrics_gauge *g);
uint64_t metrics_histogram_count(const struct metrics_histogram *h);
double metrics_histogram_sum(const struct metrics_histogram *h);
/* Observations <= bounds[i] (cumulative); i == bound_count gives the +Inf
 * bucket. Returns 0 for i out of range. */
uint64_t metrics_histogram_bucket(const struct metrics_histogram *h, size_t i);

/* A gauge without labels whose value is computed by `fn(arg)` at render time,
 * on the rendering thread, under the registry mutex (fn must not call into the
 * registry). Returns 0, MV_ENOMEM, MV_EEXIST, MV_EINVAL (bad name, NULL fn). */
int metrics_gauge_callback(struct metrics_registry *reg, const char *name, const char *help,
                           double (*fn)(void *arg), void *arg);
/* The same for a counter (fn must return a non-decreasing value). */
int metrics_counter_callback(struct metrics_registry *reg, const char *name, const char *help,
                             double (*fn)(void *arg), void *arg);

/* Register the standard process collectors: process_cpu_seconds_total
 * (counter), process_resident_memory_bytes, process_virtual_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds (gauges),
 * read from /proc/self at render time (NaN when unreadable).
 * Returns 0, MV_ENOMEM, MV_EEXIST (already registered), MV_EINVAL (NULL). */
int metrics_register_process(struct metrics_registry *reg);

/* Append the whole registry in text exposition format. Returns 0, MV_ENOMEM,
 * MV_ETOOBIG, MV_EINVAL (NULL argument); on failure `out` is left as it was.
 * Safe to call from any thread, concurrently with updates; a histogram's +Inf
 * bucket and _count always agree within one render. */
int metrics_render(struct metrics_registry *reg, struct buf *out);

/* Buckets for request latency in seconds (go-grpc-prometheus defaults refined
 * below 5 ms, where this system lives). */
extern const double metrics_latency_buckets[];
extern const size_t metrics_latency_bucket_count;

#endif
