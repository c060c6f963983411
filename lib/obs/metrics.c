#include "movie/metrics.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "movie/buf.h"
#include "movie/err.h"
#include "num.h"
#include "movie/banned.h"

/* Children are cache-line aligned so that hot counters of one family do not
 * share a line (false sharing costs more than the atomic add itself). */
#define CHILD_ALIGN 64

enum family_type {
	FAM_COUNTER,
	FAM_GAUGE,
	FAM_HISTOGRAM
};

struct child {
	struct child *next;
	const char *values[METRICS_MAX_LABELS];
	char *value_store;
};

struct metrics_counter {
	struct child hdr;
	_Atomic uint64_t value;
};

struct metrics_gauge {
	struct child hdr;
	_Atomic uint64_t bits; /* a double, bit-cast */
};

struct metrics_histogram {
	struct child hdr;
	const double *bounds;
	size_t bound_count;
	bool sum_ns;
	/* sum_ns: nanoseconds as two's-complement int64 (wraps only after
	 * 292 years of summed latency); else a double, bit-cast. */
	_Atomic uint64_t sum;
	/* bound_count + 1 non-cumulative counters, the last for +Inf. The count
	 * is their sum: one atomic add fewer per observation, and _count equals
	 * the +Inf bucket in every render. */
	_Atomic uint64_t buckets[];
};

struct metrics_family {
	struct metrics_family *next;
	struct metrics_registry *reg;
	char *name;
	char *help;
	enum family_type type;
	size_t label_count;
	char *label_names[METRICS_MAX_LABELS];
	double *bounds;
	size_t bound_count;
	double (*fn)(void *arg); /* callback family: no children */
	void *arg;
	struct child *children;
	struct child **children_tail;
	size_t child_count;
};

struct metrics_registry {
	pthread_mutex_t lock;
	struct metrics_family *families;
	struct metrics_family **families_tail;
	bool process_registered;
};

const double metrics_latency_buckets[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
                                          0.01,   0.025,   0.05,   0.1,   0.25,   0.5,
                                          1,      2.5,     5,      10};
const size_t metrics_latency_bucket_count =
    sizeof(metrics_latency_buckets) / sizeof(metrics_latency_buckets[0]);

static uint64_t double_bits(double d)
{
	uint64_t u;
	memcpy(&u, &d, sizeof(u));
	return u;
}

static double bits_double(uint64_t u)
{
	double d;
	memcpy(&d, &u, sizeof(d));
	return d;
}

static void atomic_add_double(_Atomic uint64_t *p, double delta)
{
	uint64_t old = atomic_load_explicit(p, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(p, &old,
	                                              double_bits(bits_double(old) + delta),
	                                              memory_order_relaxed, memory_order_relaxed))
		;
}

/* ---- registry and families ---- */

struct metrics_registry *metrics_registry_new(void)
{
	struct metrics_registry *reg = calloc(1, sizeof(*reg));
	if (!reg)
		return NULL;
	if (pthread_mutex_init(&reg->lock, NULL) != 0) {
		free(reg);
		return NULL;
	}
	reg->families_tail = &reg->families;
	return reg;
}

static void child_free(struct child *c)
{
	free(c->value_store);
	free(c);
}

static void family_free(struct metrics_family *f)
{
	struct child *c = f->children;
	while (c) {
		struct child *next = c->next;
		child_free(c);
		c = next;
	}
	for (size_t i = 0; i < f->label_count; i++)
		free(f->label_names[i]);
	free(f->bounds);
	free(f->help);
	free(f->name);
	free(f);
}

void metrics_registry_free(struct metrics_registry *reg)
{
	if (!reg)
		return;
	struct metrics_family *f = reg->families;
	while (f) {
		struct metrics_family *next = f->next;
		family_free(f);
		f = next;
	}
	pthread_mutex_destroy(&reg->lock);
	free(reg);
}

static bool valid_metric_name(const char *s)
{
	if (!s || !*s)
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		          c == ':' || (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static bool valid_label_name(const char *s, enum family_type type)
{
	if (!s || !*s || (s[0] == '_' && s[1] == '_'))
		return false;
	if (type == FAM_HISTOGRAM && strcmp(s, "le") == 0)
		return false;
	for (size_t i = 0; s[i]; i++) {
		char c = s[i];
		bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
		          (i > 0 && c >= '0' && c <= '9');
		if (!ok)
			return false;
	}
	return true;
}

static bool ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && memcmp(s + n - m, suffix, m) == 0;
}

static struct metrics_family *family_find(struct metrics_registry *reg, const char *name)
{
	for (struct metrics_family *f = reg->families; f; f = f->next)
		if (strcmp(f->name, name) == 0)
			return f;
	return NULL;
}

static bool family_matches(const struct metrics_family *f, enum family_type type,
                           const double *bounds, size_t bound_count, size_t label_count,
                           const char *const *label_names)
{
	if (f->type != type || f->fn || f->label_count != label_count ||
	    f->bound_count != bound_count)
		return false;
	for (size_t i = 0; i < label_count; i++)
		if (strcmp(f->label_names[i], label_names[i]) != 0)
			return false;
	for (size_t i = 0; i < bound_count; i++)
		if (f->bounds[i] != bounds[i])
			return false;
	return true;
}

static struct child *child_new_locked(struct metrics_family *f, const char *const *values);

/* Allocate and link a family. Called with reg->lock held. */
static int family_new_locked(struct metrics_registry *reg, const char *name, const char *help,
                             enum family_type type, const double *bounds, size_t bound_count,
                             size_t label_count, const char *const *label_names,
                             struct metrics_family **out)
{
	struct metrics_family *f = calloc(1, sizeof(*f));
	if (!f)
		return MV_ENOMEM;
	f->reg = reg;
	f->type = type;
	f->children_tail = &f->children;
	f->name = strdup(name);
	f->help = strdup(help ? help : "");
	if (!f->name || !f->help)
		goto fail_alloc;
	for (size_t i = 0; i < label_count; i++) {
		f->label_names[i] = strdup(label_names[i]);
		if (!f->label_names[i])
			goto fail_alloc;
		f->label_count = i + 1;
	}
	if (bound_count) {
		f->bounds = malloc(bound_count * sizeof(*bounds));
		if (!f->bounds)
			goto fail_alloc;
		memcpy(f->bounds, bounds, bound_count * sizeof(*bounds));
		f->bound_count = bound_count;
	}
	/* A label-free family exports its single series (as 0) from the start,
	 * so that rate() sees the first increment. */
	if (label_count == 0 && !child_new_locked(f, NULL))
		goto fail_alloc;
	*reg->families_tail = f;
	reg->families_tail = &f->next;
	*out = f;
	return 0;

fail_alloc:
	family_free(f);
	return MV_ENOMEM;
}

static struct metrics_family *family_register(struct metrics_registry *reg, const char *name,
                                              const char *help, enum family_type type,
                                              const double *bounds, size_t bound_count,
                                              size_t label_count, const char *const *label_names)
{
	struct metrics_family *f = NULL;
	if (!reg || !valid_metric_name(name) || label_count > METRICS_MAX_LABELS ||
	    (label_count && !label_names))
		return NULL;
	for (size_t i = 0; i < label_count; i++) {
		if (!valid_label_name(label_names[i], type))
			return NULL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(label_names[i], label_names[j]) == 0)
				return NULL;
	}
	if (type == FAM_HISTOGRAM) {
		if (bound_count == 0 || bound_count > METRICS_MAX_BUCKETS || !bounds)
			return NULL;
		for (size_t i = 0; i < bound_count; i++)
			if (!isfinite(bounds[i]) || (i > 0 && !(bounds[i] > bounds[i - 1])))
				return NULL;
	}
	pthread_mutex_lock(&reg->lock);
	struct metrics_family *existing = family_find(reg, name);
	if (existing) {
		if (family_matches(existing, type, bounds, bound_count, label_count, label_names))
			f = existing;
	} else if (family_new_locked(reg, name, help, type, bounds, bound_count, label_count,
	                             label_names, &f) != 0) {
		f = NULL;
	}
	pthread_mutex_unlock(&reg->lock);
	return f;
}

struct metrics_family *metrics_counter_family(struct metrics_registry *reg, const char *name,
                                              const char *help, size_t label_count,
                                              const char *const *label_names)
{
	return family_register(reg, name, help, FAM_COUNTER, NULL, 0, label_count, label_names);
}

struct metrics_family *metrics_gauge_family(struct metrics_registry *reg, const char *name,
                                            const char *help, size_t label_count,
                                            const char *const *label_names)
{
	return family_register(reg, name, help, FAM_GAUGE, NULL, 0, label_count, label_names);
}

struct metrics_family *metrics_histogram_family(struct metrics_registry *reg, const char *name,
                                                const char *help, const double *bounds,
                                                size_t bound_count, size_t label_count,
                                                const char *const *label_names)
{
	return family_register(reg, name, help, FAM_HISTOGRAM, bounds, bound_count, label_count,
	                       label_names);
}

static int callback_register(struct metrics_registry *reg, const char *name, const char *help,
                             enum family_type type, double (*fn)(void *arg), void *arg)
{
	struct metrics_family *f;
	int rc;
	if (!reg || !fn || !valid_metric_name(name))
		return MV_EINVAL;
	pthread_mutex_lock(&reg->lock);
	if (family_find(reg, name)) {
		rc = MV_EEXIST;
		goto out_unlock;
	}
	rc = family_new_locked(reg, name, help, type, NULL, 0, 0, NULL, &f);
	if (rc)
		goto out_unlock;
	f->fn = fn;
	f->arg = arg;
out_unlock:
	pthread_mutex_unlock(&reg->lock);
	return rc;
}

int metrics_gauge_callback(struct metrics_registry *reg, const char *name, const char *help,
                           double (*fn)(void *arg), void *arg)
{
	return callback_register(reg, name, help, FAM_GAUGE, fn, arg);
}

int metrics_counter_callback(struct metrics_registry *reg, const char *name, const char *help,
                             double (*fn)(void *arg), void *arg)
{
	return callback_register(reg, name, help, FAM_COUNTER, fn, arg);
}

/* ---- children ---- */

static size_t child_size(const struct metrics_family *f)
{
	switch (f->type) {
	case FAM_COUNTER: return sizeof(struct metrics_counter);
	case FAM_GAUGE: return sizeof(struct metrics_gauge);
	default:
		return sizeof(struct metrics_histogram) +
		       (f->bound_count + 1) * sizeof(_Atomic uint64_t);
	}
}

static const char *label_value(const char *const *values, size_t i)
{
	return values && values[i] ? values[i] : "";
}

static struct child *child_find_locked(struct metrics_family *f, const char *const *values)
{
	for (struct child *c = f->children; c; c = c->next) {
		size_t i = 0;
		while (i < f->label_count && strcmp(c->values[i], label_value(values, i)) == 0)
			i++;
		if (i == f->label_count)
			return c;
	}
	return NULL;
}

/* Create and link a child; the label values were checked against their cap. */
static struct child *child_new_locked(struct metrics_family *f, const char *const *values)
{
	size_t lens[METRICS_MAX_LABELS];
	size_t total = 0;
	for (size_t i = 0; i < f->label_count; i++) {
		lens[i] = strlen(label_value(values, i));
		total += lens[i] + 1;
	}
	size_t size = (child_size(f) + CHILD_ALIGN - 1) / CHILD_ALIGN * CHILD_ALIGN;
	struct child *c = aligned_alloc(CHILD_ALIGN, size);
	if (!c)
		return NULL;
	memset(c, 0, size);
	c->value_store = malloc(total ? total : 1);
	if (!c->value_store) {
		free(c);
		return NULL;
	}
	char *p = c->value_store;
	for (size_t i = 0; i < f->label_count; i++) {
		memcpy(p, label_value(values, i), lens[i] + 1);
		c->values[i] = p;
		p += lens[i] + 1;
	}
	if (f->type == FAM_HISTOGRAM) {
		struct metrics_histogram *h = (struct metrics_histogram *)c;
		h->bounds = f->bounds;
		h->bound_count = f->bound_count;
		h->sum_ns = ends_with(f->name, "_seconds");
		atomic_init(&h->sum, h->sum_ns ? 0 : double_bits(0.0));
		for (size_t i = 0; i <= f->bound_count; i++)
			atomic_init(&h->buckets[i], 0);
	} else if (f->type == FAM_GAUGE) {
		atomic_init(&((struct metrics_gauge *)c)->bits, double_bits(0.0));
	} else {
		atomic_init(&((struct metrics_counter *)c)->value, 0);
	}
	*f->children_tail = c;
	f->children_tail = &c->next;
	f->child_count++;
	return c;
}

static struct child *child_get(struct metrics_family *f, enum family_type type,
                               const char *const *values)
{
	struct child *c = NULL;
	if (!f || f->type != type || f->fn)
		return NULL;
	for (size_t i = 0; i < f->label_count; i++)
		if (strnlen(label_value(values, i), METRICS_MAX_LABEL_VALUE + 1) >
		    METRICS_MAX_LABEL_VALUE)
			return NULL;
	pthread_mutex_lock(&f->reg->lock);
	c = child_find_locked(f, values);
	if (!c && f->child_count < METRICS_MAX_CHILDREN)
		c = child_new_locked(f, values);
	pthread_mutex_unlock(&f->reg->lock);
	return c;
}

struct metrics_counter *metrics_counter_get(struct metrics_family *fam, const char *const *values)
{
	return (struct metrics_counter *)child_get(fam, FAM_COUNTER, values);
}

struct metrics_gauge *metrics_gauge_get(struct metrics_family *fam, const char *const *values)
{
	return (struct metrics_gauge *)child_get(fam, FAM_GAUGE, values);
}

struct metrics_histogram *metrics_histogram_get(struct metrics_family *fam,
                                                const char *const *values)
{
	return (struct metrics_histogram *)child_get(fam, FAM_HISTOGRAM, values);
}

/* ---- hot path ---- */

void metrics_counter_add(struct metrics_counter *c, uint64_t n)
{
	if (c)
		atomic_fetch_add_explicit(&c->value, n, memory_order_relaxed);
}

void metrics_gauge_set(struct metrics_gauge *g, double v)
{
	if (g)
		atomic_store_explicit(&g->bits, double_bits(v), memory_order_relaxed);
}

void metrics_gauge_add(struct metrics_gauge *g, double delta)
{
	if (g)
		atomic_add_double(&g->bits, delta);
}

void metrics_histogram_observe(struct metrics_histogram *h, double value)
{
	if (!h || !isfinite(value))
		return;
	size_t i = 0;
	/* Linear: with the usual 10-20 bounds it beats a binary search. */
	while (i < h->bound_count && value > h->bounds[i])
		i++;
	atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
	if (h->sum_ns) {
		double ns = nearbyint(value * 1e9);
		int64_t v = ns >= 9.2e18 ? INT64_MAX : ns <= -9.2e18 ? INT64_MIN : (int64_t)ns;
		atomic_fetch_add_explicit(&h->sum, (uint64_t)v, memory_order_relaxed);
	} else {
		atomic_add_double(&h->sum, value);
	}
}

uint64_t metrics_counter_value(const struct metrics_counter *c)
{
	return c ? atomic_load_explicit(&c->value, memory_order_relaxed) : 0;
}

double metrics_gauge_value(const struct metrics_gauge *g)
{
	return g ? bits_double(atomic_load_explicit(&g->bits, memory_order_relaxed)) : 0.0;
}

uint64_t metrics_histogram_bucket(const struct metrics_histogram *h, size_t i)
{
	uint64_t cum = 0;
	if (!h || i > h->bound_count)
		return 0;
	for (size_t k = 0; k <= i; k++)
		cum += atomic_load_explicit(&h->buckets[k], memory_order_relaxed);
	return cum;
}

uint64_t metrics_histogram_count(const struct metrics_histogram *h)
{
	return h ? metrics_histogram_bucket(h, h->bound_count) : 0;
}

static int64_t histogram_sum_ns(const struct metrics_histogram *h)
{
	return (int64_t)atomic_load_explicit(&h->sum, memory_order_relaxed);
}

double metrics_histogram_sum(const struct metrics_histogram *h)
{
	if (!h)
		return 0.0;
	if (h->sum_ns)
		return (double)histogram_sum_ns(h) / 1e9;
	return bits_double(atomic_load_explicit(&h->sum, memory_order_relaxed));
}

/* ---- rendering ---- */

static int append_double(struct buf *out, double v)
{
	char num[OBS_DOUBLE_MAX];
	if (isnan(v))
		return buf_append(out, "NaN", 3);
	if (isinf(v))
		return v > 0 ? buf_append(out, "+Inf", 4) : buf_append(out, "-Inf", 4);
	return buf_append(out, num, obs_format_double(num, v));
}

/* Exact decimal seconds from integer nanoseconds, trailing zeros trimmed. */
static int append_seconds_from_ns(struct buf *out, int64_t ns)
{
	uint64_t mag = ns < 0 ? (uint64_t)0 - (uint64_t)ns : (uint64_t)ns;
	uint64_t frac = mag % 1000000000u;
	int digits = 9;
	if (frac == 0)
		return buf_printf(out, "%s%llu", ns < 0 ? "-" : "",
		                  (unsigned long long)(mag / 1000000000u));
	while (frac % 10 == 0) {
		frac /= 10;
		digits--;
	}
	return buf_printf(out, "%s%llu.%0*llu", ns < 0 ? "-" : "",
	                  (unsigned long long)(mag / 1000000000u), digits,
	                  (unsigned long long)frac);
}

/* HELP text escapes backslash and newline; label values also the double quote. */
static int append_escaped(struct buf *out, const char *s, bool quote)
{
	int rc = 0;
	const char *run = s;
	for (const char *p = s; !rc && *p; p++) {
		const char *esc = NULL;
		if (*p == '\\')
			esc = "\\\\";
		else if (*p == '\n')
			esc = "\\n";
		else if (quote && *p == '"')
			esc = "\\\"";
		if (esc) {
			rc = buf_append(out, run, (size_t)(p - run));
			if (!rc)
				rc = buf_append(out, esc, 2);
			run = p + 1;
		}
	}
	if (!rc)
		rc = buf_append_str(out, run);
	return rc;
}

/* `name{labels,le="..."} ` for one sample; braces omitted without labels. */
static int append_series(struct buf *out, const struct metrics_family *f, const char *suffix,
                         const struct child *c, const char *le)
{
	int rc = buf_append_str(out, f->name);
	if (!rc && suffix)
		rc = buf_append_str(out, suffix);
	if (rc || (f->label_count == 0 && !le))
		goto out_space;
	rc = buf_append(out, "{", 1);
	for (size_t i = 0; !rc && i < f->label_count; i++) {
		rc = buf_printf(out, "%s%s=\"", i ? "," : "", f->label_names[i]);
		if (!rc)
			rc = append_escaped(out, c->values[i], true);
		if (!rc)
			rc = buf_append(out, "\"", 1);
	}
	if (!rc && le)
		rc = buf_printf(out, "%sle=\"%s\"", f->label_count ? "," : "", le);
	if (!rc)
		rc = buf_append(out, "}", 1);
out_space:
	if (!rc)
		rc = buf_append(out, " ", 1);
	return rc;
}

static int render_histogram(struct buf *out, const struct metrics_family *f,
                            const struct metrics_histogram *h)
{
	char le[OBS_DOUBLE_MAX];
	uint64_t cum = 0;
	int rc = 0;
	/* Sum first, buckets after: an observation racing with the render then
	 * shows in the buckets rather than in a sum without its count. */
	double sum = h->sum_ns ? 0.0 : metrics_histogram_sum(h);
	int64_t sum_ns = h->sum_ns ? histogram_sum_ns(h) : 0;
	for (size_t i = 0; !rc && i <= h->bound_count; i++) {
		cum += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
		if (i < h->bound_count)
			obs_format_double(le, h->bounds[i]);
		else
			memcpy(le, "+Inf", 5);
		rc = append_series(out, f, "_bucket", &h->hdr, le);
		if (!rc)
			rc = buf_printf(out, "%llu\n", (unsigned long long)cum);
	}
	if (!rc)
		rc = append_series(out, f, "_sum", &h->hdr, NULL);
	if (!rc)
		rc = h->sum_ns ? append_seconds_from_ns(out, sum_ns) : append_double(out, sum);
	if (!rc)
		rc = buf_append(out, "\n", 1);
	if (!rc)
		rc = append_series(out, f, "_count", &h->hdr, NULL);
	if (!rc)
		rc = buf_printf(out, "%llu\n", (unsigned long long)cum);
	return rc;
}

static int render_family(struct buf *out, const struct metrics_family *f)
{
	static const char *const type_names[] = {"counter", "gauge", "histogram"};
	int rc = buf_printf(out, "# HELP %s ", f->name);
	if (!rc)
		rc = append_escaped(out, f->help, false);
	if (!rc)
		rc = buf_printf(out, "\n# TYPE %s %s\n", f->name, type_names[f->type]);
	for (const struct child *c = f->children; !rc && c; c = c->next) {
		rc = f->type == FAM_HISTOGRAM ? 0 : append_series(out, f, NULL, c, NULL);
		if (rc)
			break;
		if (f->fn)
			rc = append_double(out, f->fn(f->arg));
		else if (f->type == FAM_COUNTER)
			rc = buf_printf(out, "%llu",
			                (unsigned long long)metrics_counter_value(
			                    (const struct metrics_counter *)c));
		else if (f->type == FAM_GAUGE)
			rc = append_double(out,
			                   metrics_gauge_value((const struct metrics_gauge *)c));
		else
			rc = render_histogram(out, f, (const struct metrics_histogram *)c);
		if (!rc && f->type != FAM_HISTOGRAM)
			rc = buf_append(out, "\n", 1);
	}
	return rc;
}

int metrics_render(struct metrics_registry *reg, struct buf *out)
{
	if (!reg || !out)
		return MV_EINVAL;
	size_t start = out->len;
	int rc = 0;
	pthread_mutex_lock(&reg->lock);
	for (const struct metrics_family *f = reg->families; !rc && f; f = f->next)
		rc = render_family(out, f);
	pthread_mutex_unlock(&reg->lock);
	if (rc) {
		out->len = start;
		if (out->data)
			out->data[start] = '\0';
	}
	return rc;
}

/* ---- process collector (Linux /proc) ---- */

enum proc_metric {
	PROC_CPU,
	PROC_RSS,
	PROC_VSIZE,
	PROC_FDS,
	PROC_MAX_FDS,
	PROC_START
};

/* Read a small /proc file whole into buf (NUL-terminated). Returns bytes or -1. */
static ssize_t read_proc(const char *path, char *dst, size_t cap)
{
	size_t len = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	while (len + 1 < cap) {
		ssize_t n = read(fd, dst + len, cap - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	dst[len] = '\0';
	return (ssize_t)len;
}

/* Field `index` (1-based, as in proc(5)) of /proc/self/stat, as a number.
 * The comm field may hold spaces and parentheses: count from the last ')'. */
static bool proc_stat_field(int index, unsigned long long *out)
{
	char text[1024];
	if (read_proc("/proc/self/stat", text, sizeof(text)) <= 0)
		return false;
	char *p = strrchr(text, ')');
	if (!p)
		return false;
	p++;
	for (int field = 3; field <= index; field++) {
		while (*p == ' ')
			p++;
		if (!*p)
			return false;
		if (field == index) {
			char *end;
			errno = 0;
			*out = strtoull(p, &end, 10);
			return end != p && errno == 0;
		}
		while (*p && *p != ' ')
			p++;
	}
	return false;
}

/* Field `index` (0-based) of /proc/self/statm, in bytes. */
static double proc_statm_bytes(int index)
{
	char text[256];
	if (read_proc("/proc/self/statm", text, sizeof(text)) <= 0)
		return NAN;
	char *p = text, *end;
	unsigned long long v = 0;
	for (int i = 0; i <= index; i++) {
		errno = 0;
		v = strtoull(p, &end, 10);
		if (end == p || errno)
			return NAN;
		p = end;
	}
	long page = sysconf(_SC_PAGESIZE);
	return page > 0 ? (double)v * (double)page : NAN;
}

static double proc_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (!d)
		return NAN;
	int self = dirfd(d);
	double n = 0;
	struct dirent *e;
	/* Bounded by the process's fd table; the directory's own fd is not counted. */
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *end;
		long fd = strtol(e->d_name, &end, 10);
		if (*end == '\0' && fd != self)
			n++;
	}
	closedir(d);
	return n;
}

static double proc_max_fds(void)
{
	char text[4096];
	static const char key[] = "Max open files";
	if (read_proc("/proc/self/limits", text, sizeof(text)) <= 0)
		return NAN;
	char *p = strstr(text, key);
	if (!p)
		return NAN;
	p += sizeof(key) - 1;
	while (*p == ' ')
		p++;
	if (strncmp(p, "unlimited", 9) == 0)
		return INFINITY;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(p, &end, 10);
	return end != p && errno == 0 ? (double)v : NAN;
}

/* btime of /proc/stat. The file is read line by line: on many-CPU machines
 * the "intr" line before btime alone can exceed any fixed buffer. */
static double proc_boot_time(void)
{
	FILE *f = fopen("/proc/stat", "re");
	char *line = NULL;
	size_t cap = 0;
	double boot = NAN;
	if (!f)
		return NAN;
	while (getline(&line, &cap, f) > 0) {
		if (strncmp(line, "btime ", 6) == 0) {
			char *end;
			errno = 0;
			unsigned long long v = strtoull(line + 6, &end, 10);
			if (end != line + 6 && errno == 0)
				boot = (double)v;
			break;
		}
	}
	free(line);
	fclose(f);
	return boot;
}

static double proc_collect(void *arg)
{
	enum proc_metric which = (enum proc_metric)(uintptr_t)arg;
	unsigned long long a, b;
	long ticks = sysconf(_SC_CLK_TCK);
	switch (which) {
	case PROC_CPU:
		if (ticks <= 0 || !proc_stat_field(14, &a) || !proc_stat_field(15, &b))
			return NAN;
		return (double)(a + b) / (double)ticks;
	case PROC_RSS: return proc_statm_bytes(1);
	case PROC_VSIZE: return proc_statm_bytes(0);
	case PROC_FDS: return proc_open_fds();
	case PROC_MAX_FDS: return proc_max_fds();
	case PROC_START:
		if (ticks <= 0 || !proc_stat_field(22, &a))
			return NAN;
		return proc_boot_time() + (double)a / (double)ticks;
	}
	return NAN;
}

int metrics_register_process(struct metrics_registry *reg)
{
	static const struct {
		const char *name;
		const char *help;
		enum family_type type;
		enum proc_metric which;
	} defs[] = {
	    {"process_cpu_seconds_total", "Total user and system CPU time spent in seconds.",
	     FAM_COUNTER, PROC_CPU},
	    {"process_resident_memory_bytes", "Resident memory size in bytes.", FAM_GAUGE,
	     PROC_RSS},
	    {"process_virtual_memory_bytes", "Virtual memory size in bytes.", FAM_GAUGE,
	     PROC_VSIZE},
	    {"process_open_fds", "Number of open file descriptors.", FAM_GAUGE, PROC_FDS},
	    {"process_max_fds", "Maximum number of open file descriptors.", FAM_GAUGE,
	     PROC_MAX_FDS},
	    {"process_start_time_seconds", "Start time of the process since unix epoch in seconds.",
	     FAM_GAUGE, PROC_START},
	};
	if (!reg)
		return MV_EINVAL;
	pthread_mutex_lock(&reg->lock);
	bool done = reg->process_registered;
	reg->process_registered = true;
	pthread_mutex_unlock(&reg->lock);
	if (done)
		return MV_EEXIST;
	for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
		int rc = callback_register(reg, defs[i].name, defs[i].help, defs[i].type,
		                           proc_collect, (void *)(uintptr_t)defs[i].which);
		if (rc)
			return rc;
	}
	return 0;
}
