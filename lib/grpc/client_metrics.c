/*
 * The client's go-grpc-prometheus call metrics: see client_metrics.h.
 */
#include "client_metrics.h"

#include <string.h>

#include "movie/metrics.h"
#include "movie/banned.h"

static const char *const labels[] = {"grpc_type", "grpc_service", "grpc_method", "grpc_code"};

void client_metrics_init(struct client_metrics *m, struct metrics_registry *reg)
{
	memset(m, 0, sizeof(*m));
	if (!reg)
		return;
	m->started =
	    metrics_counter_family(reg, "grpc_client_started_total",
	                           "Total number of RPCs started on the client.", 3, labels);
	m->handled = metrics_counter_family(
	    reg, "grpc_client_handled_total",
	    "Total number of RPCs completed by the client, regardless of success or failure.", 4,
	    labels);
	m->seconds = metrics_histogram_family(
	    reg, "grpc_client_handling_seconds",
	    "Histogram of response latency (seconds) of the gRPC until it is finished by the "
	    "application.",
	    metrics_latency_buckets, metrics_latency_bucket_count, 3, labels);
	if (!m->started || !m->handled || !m->seconds)
		m->started = m->handled = m->seconds = NULL;
}

static struct client_method_metrics *method_find(struct client_metrics *m, const char *path,
                                                 size_t path_len)
{
	for (size_t i = 0; i < m->count; i++) {
		struct client_method_metrics *mm = &m->methods[i];
		if (strncmp(mm->path, path, path_len) == 0 && mm->path[path_len] == '\0')
			return mm;
	}
	return NULL;
}

static struct client_method_metrics *method_add(struct client_metrics *m, const char *path,
                                                size_t path_len)
{
	if (m->count == CLIENT_METRICS_METHODS || path_len >= CLIENT_METRICS_PATH_MAX)
		return NULL;
	struct client_method_metrics *mm = &m->methods[m->count];
	memset(mm, 0, sizeof(*mm));
	memcpy(mm->path, path, path_len);
	mm->path[path_len] = '\0';
	/* "/pkg.Service/Method": service and method as the server labels them. */
	const char *p = mm->path[0] == '/' ? mm->path + 1 : mm->path;
	const char *slash = strchr(p, '/');
	size_t service_len = slash ? (size_t)(slash - p) : strlen(p);
	memcpy(mm->service, p, service_len);
	mm->service[service_len] = '\0';
	mm->method = slash ? slash + 1 : "";
	const char *values[3] = {"unary", mm->service, mm->method};
	mm->started = metrics_counter_get(m->started, values);
	mm->seconds = metrics_histogram_get(m->seconds, values);
	if (!mm->started || !mm->seconds)
		return NULL;
	m->count++;
	return mm;
}

struct client_method_metrics *client_metrics_started(struct client_metrics *m, const char *path,
                                                     size_t path_len)
{
	if (!m->started)
		return NULL;
	struct client_method_metrics *mm = method_find(m, path, path_len);
	if (!mm)
		mm = method_add(m, path, path_len);
	if (mm)
		metrics_counter_inc(mm->started);
	return mm;
}

void client_metrics_handled(struct client_metrics *m, struct client_method_metrics *mm, int status,
                            double seconds)
{
	if (!mm)
		return;
	if (status < 0 || status >= GRPC_STATUS_COUNT)
		status = GRPC_STATUS_UNKNOWN;
	if (!mm->handled[status]) {
		/* First call with this code: one registry lookup, then cached. */
		const char *values[4] = {"unary", mm->service, mm->method,
		                         grpc_status_label(status)};
		mm->handled[status] = metrics_counter_get(m->handled, values);
	}
	metrics_counter_inc(mm->handled[status]);
	metrics_histogram_observe(mm->seconds, seconds);
}
