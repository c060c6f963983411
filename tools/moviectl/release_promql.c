/*
 * release_promql.c - PromQL for the canary analysis (see release_promql.h).
 */
#include <string.h>

#include "release_promql.h"

#include "movie/err.h"
#include "movie/banned.h"

static const struct {
	const char *canonical, *label;
} codes_table[] = {
    {"OK", "OK"},
    {"CANCELLED", "Canceled"},
    {"UNKNOWN", "Unknown"},
    {"INVALID_ARGUMENT", "InvalidArgument"},
    {"DEADLINE_EXCEEDED", "DeadlineExceeded"},
    {"NOT_FOUND", "NotFound"},
    {"ALREADY_EXISTS", "AlreadyExists"},
    {"PERMISSION_DENIED", "PermissionDenied"},
    {"RESOURCE_EXHAUSTED", "ResourceExhausted"},
    {"FAILED_PRECONDITION", "FailedPrecondition"},
    {"ABORTED", "Aborted"},
    {"OUT_OF_RANGE", "OutOfRange"},
    {"UNIMPLEMENTED", "Unimplemented"},
    {"INTERNAL", "Internal"},
    {"UNAVAILABLE", "Unavailable"},
    {"DATA_LOSS", "DataLoss"},
    {"UNAUTHENTICATED", "Unauthenticated"},
};

const char *release_grpc_code_label(const char *canonical)
{
	if (!canonical)
		return NULL;
	for (size_t i = 0; i < sizeof(codes_table) / sizeof(codes_table[0]); i++)
		if (strcmp(codes_table[i].canonical, canonical) == 0)
			return codes_table[i].label;
	return NULL;
}

int release_promql_duration_ok(const char *w)
{
	if (!w)
		return 0;
	size_t n = strlen(w), d = 0;
	if (n == 0 || n > 15)
		return 0;
	while (d < n && w[d] >= '0' && w[d] <= '9')
		d++;
	if (d == 0 || (d == 1 && w[0] == '0'))
		return 0;
	const char *u = w + d;
	return strcmp(u, "ms") == 0 || strcmp(u, "s") == 0 || strcmp(u, "m") == 0 ||
	       strcmp(u, "h") == 0;
}

static int put_label(struct buf *out, const char *name, const char *value)
{
	int rc = buf_printf(out, ",%s=\"", name);
	for (const char *p = value; !rc && *p; p++) {
		if (*p == '"' || *p == '\\')
			rc = buf_printf(out, "\\%c", *p);
		else if (*p == '\n')
			rc = buf_printf(out, "\\n");
		else
			rc = buf_printf(out, "%c", *p);
	}
	return rc ? rc : buf_printf(out, "\"");
}

/* The label matchers between the braces. */
static int selector(struct buf *out, const struct release_series *s)
{
	int rc = buf_printf(out, "grpc_service!=\"grpc.health.v1.Health\"");
	if (!rc)
		rc = put_label(out, "namespace", s->namespace);
	if (!rc)
		rc = put_label(out, "app", s->app);
	if (!rc && s->track)
		rc = put_label(out, "track", s->track);
	if (!rc && s->hash)
		rc = put_label(out, "pod_template_hash", s->hash);
	return rc;
}

int release_promql(enum release_query q, const struct release_series *s, const char *window,
                   const char *const *codes, size_t n_codes, struct buf *out)
{
	if (!s || !s->namespace || !*s->namespace || !s->app || !*s->app ||
	    !release_promql_duration_ok(window))
		return MV_EINVAL;
	int rc = 0;
	switch (q) {
	case RELEASE_Q_CALLS:
	case RELEASE_Q_ERRORS:
		rc = buf_printf(out, "sum(increase(grpc_server_handled_total{");
		if (!rc)
			rc = selector(out, s);
		if (!rc && q == RELEASE_Q_ERRORS) {
			if (n_codes == 0)
				return MV_EINVAL;
			rc = buf_printf(out, ",grpc_code=~\"");
			for (size_t i = 0; !rc && i < n_codes; i++) {
				const char *l = release_grpc_code_label(codes[i]);
				if (!l)
					return MV_EINVAL;
				rc = buf_printf(out, "%s%s", i ? "|" : "", l);
			}
			if (!rc)
				rc = buf_printf(out, "\"");
		}
		if (!rc)
			rc = buf_printf(out, "}[%s]))", window);
		break;
	case RELEASE_Q_P99:
		rc = buf_printf(out, "histogram_quantile(0.99, sum by (le) "
		                     "(rate(grpc_server_handling_seconds_bucket{");
		if (!rc)
			rc = selector(out, s);
		if (!rc)
			rc = buf_printf(out, "}[%s])))", window);
		break;
	default: return MV_EINVAL;
	}
	return rc;
}
