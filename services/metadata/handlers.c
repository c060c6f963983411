/*
 * The metadata service's handlers: MetadataService over gRPC and /metadata
 * over HTTP/JSON. Every request becomes a job: validate on the loop, run the
 * store call (on the thread pool when the store blocks), answer on the loop.
 */
#include "handlers.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "movie.pb-c.h"
#include "movie/buf.h"
#include "movie/err.h"
#include "movie/log.h"
#include "movie/service.h"
#include "movie/service_job.h"
#include "movie/text.h"
#include "movie/banned.h"

struct handlers {
	struct server *srv;
	struct metadata_store *store;
};

static struct handlers handlers_ctx;

enum job_kind {
	JOB_GRPC_GET,
	JOB_GRPC_PUT,
	JOB_HTTP_GET,
	JOB_HTTP_PUT
};

struct job {
	struct service_job base; /* first: call, ex, rc */
	enum job_kind kind;
	struct handlers *h;
	char *id;
	struct metadata in;  /* put: owned copies */
	struct metadata out; /* get: filled by the store */
};

static char *dup_or_empty(const char *s)
{
	return strdup(s ? s : "");
}

static void job_free(struct job *j)
{
	free(j->id);
	metadata_release(&j->in);
	metadata_release(&j->out);
	free(j);
}

/* A valid id (docs/api.md, "Strings"): non-empty, at most METADATA_ID_MAX
 * bytes, UTF-8 without control characters. len is the id's true length: a
 * client's id with an embedded NUL is longer than strlen says. */
static const char *check_id(const char *id, size_t len)
{
	if (!id || len == 0)
		return "movie id must not be empty";
	if (len > METADATA_ID_MAX)
		return "movie id too long";
	if (text_check_id(id, len)) {
		static __thread char why[64]; /* per loop thread */
		snprintf(why, sizeof(why), "movie id: %s", text_check_id(id, len));
		return why;
	}
	return NULL;
}

/* The strings of m are whole: the wire check (gRPC) or the JSON decoder
 * refused any with an embedded NUL before they were copied. */
static const char *check_text(const struct metadata *m)
{
	const char *why = check_id(m->id, strlen(m->id));
	if (why)
		return why;
	if (strlen(m->title) > METADATA_TEXT_MAX || strlen(m->description) > METADATA_TEXT_MAX ||
	    strlen(m->director) > METADATA_TEXT_MAX)
		return "a metadata field is too long";
	return NULL;
}

static void job_work(struct service_job *base)
{
	struct job *j = (struct job *)base;
	switch (j->kind) {
	case JOB_GRPC_GET:
	case JOB_HTTP_GET: j->base.rc = metadata_store_get(j->h->store, j->id, &j->out); break;
	case JOB_GRPC_PUT:
	case JOB_HTTP_PUT: j->base.rc = metadata_store_put(j->h->store, &j->in); break;
	}
}

static const char *store_error_message(int rc)
{
	switch (rc) {
	case MV_ENOTFOUND: return "movie not found";
	case MV_EUNAVAIL: return "metadata store unavailable";
	default: return mv_strerror(rc);
	}
}

/* Point *field at a valid UTF-8 version of itself: records written before the
 * string rules (docs/api.md) may hold invalid UTF-8, and grpcio refuses a
 * whole response that carries it. Such bytes go out as U+FFFD, as JSON
 * answers already do. Returns true when `field` had to be repaired. */
static bool repair_utf8(char **field, struct buf *scratch)
{
	if (!*field)
		return false;
	size_t n = strlen(*field);
	if (text_utf8_valid(*field, n))
		return false;
	if (buf_append_utf8(scratch, *field, n) != 0)
		return false; /* out of memory: the client sees the bytes as stored */
	free(*field);
	*field = strdup(scratch->data ? scratch->data : "");
	buf_reset(scratch);
	if (!*field)
		*field = strdup("");
	return true;
}

static void finish_grpc(struct service_job *base)
{
	struct job *j = (struct job *)base;
	if (service_grpc_finish_failed(j->base.call, j->base.rc, store_error_message(j->base.rc)))
		return;
	if (j->kind == JOB_GRPC_PUT) {
		PutMetadataResponse empty = PUT_METADATA_RESPONSE__INIT;
		service_grpc_finish_message(j->base.call, &empty.base);
		return;
	}
	struct buf scratch;
	buf_init(&scratch, 0);
	bool repaired = repair_utf8(&j->out.id, &scratch);
	repaired |= repair_utf8(&j->out.title, &scratch);
	repaired |= repair_utf8(&j->out.description, &scratch);
	repaired |= repair_utf8(&j->out.director, &scratch);
	buf_release(&scratch);
	if (repaired)
		log_warn("stored metadata is not valid UTF-8: answered with U+FFFD",
		         MV_LOG_S("movie_id", j->id));
	if (!j->out.id || !j->out.title || !j->out.description || !j->out.director) {
		grpc_call_finish(j->base.call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory",
		                 NULL, 0);
		return;
	}
	Metadata m = METADATA__INIT;
	m.id = j->out.id;
	m.title = j->out.title;
	m.description = j->out.description;
	m.director = j->out.director;
	GetMetadataResponse resp = GET_METADATA_RESPONSE__INIT;
	resp.metadata = &m;
	service_grpc_finish_message(j->base.call, &resp.base);
}

static void finish_http(struct service_job *base)
{
	struct job *j = (struct job *)base;
	if (j->base.rc != 0) {
		service_http_error(j->base.ex, service_http_status_from_err(j->base.rc),
		                   store_error_message(j->base.rc));
		return;
	}
	struct buf body;
	buf_init(&body, 0);
	const struct metadata *m = j->kind == JOB_HTTP_GET ? &j->out : &j->in;
	if (service_json_metadata(&body, m->id, m->title, m->description, m->director) != 0 ||
	    buf_append_str(&body, "\n") != 0) {
		buf_release(&body);
		service_http_error(j->base.ex, 503,
		                   "out of memory"); /* retryable: docs/internals/core.md */
		return;
	}
	server_http_respond(j->base.ex, 200, "application/json", body.data, body.len);
	buf_release(&body);
}

static void job_release(struct service_job *base)
{
	job_free((struct job *)base);
}

static const struct service_job_ops job_ops = {
    .work = job_work,
    .finish_grpc = finish_grpc,
    .finish_http = finish_http,
    .free = job_release,
};

static void job_start(struct job *j)
{
	service_job_start(&j->base, metadata_store_blocking(j->h->store));
}

static struct job *job_new(struct handlers *h, enum job_kind kind)
{
	struct job *j = calloc(1, sizeof(*j));
	if (j) {
		j->base.ops = &job_ops;
		j->base.srv = h->srv;
		j->kind = kind;
		j->h = h;
	}
	return j;
}

/* ---- gRPC ---- */

static void grpc_get_metadata(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	if (!service_grpc_check_text(call, &get_metadata_request__descriptor, msg, len))
		return;
	GetMetadataRequest *req = get_metadata_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed GetMetadataRequest",
		                 NULL, 0);
		return;
	}
	const char *why = check_id(req->movie_id, req->movie_id ? strlen(req->movie_id) : 0);
	if (why) {
		get_metadata_request__free_unpacked(req, NULL);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, why, NULL, 0);
		return;
	}
	struct job *j = job_new(ctx, JOB_GRPC_GET);
	if (j)
		j->id = strdup(req->movie_id);
	get_metadata_request__free_unpacked(req, NULL);
	if (!j || !j->id) {
		if (j)
			job_free(j);
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	j->base.call = call;
	job_start(j);
}

static void grpc_put_metadata(struct grpc_call *call, const uint8_t *msg, size_t len, void *ctx)
{
	if (!service_grpc_check_text(call, &put_metadata_request__descriptor, msg, len))
		return;
	PutMetadataRequest *req = put_metadata_request__unpack(NULL, len, msg);
	if (!req) {
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "malformed PutMetadataRequest",
		                 NULL, 0);
		return;
	}
	if (!req->metadata) {
		put_metadata_request__free_unpacked(req, NULL);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, "metadata is required", NULL,
		                 0);
		return;
	}
	struct job *j = job_new(ctx, JOB_GRPC_PUT);
	if (j) {
		j->in.id = dup_or_empty(req->metadata->id);
		j->in.title = dup_or_empty(req->metadata->title);
		j->in.description = dup_or_empty(req->metadata->description);
		j->in.director = dup_or_empty(req->metadata->director);
	}
	put_metadata_request__free_unpacked(req, NULL);
	if (!j || !j->in.id || !j->in.title || !j->in.description || !j->in.director) {
		if (j)
			job_free(j);
		grpc_call_finish(call, GRPC_STATUS_RESOURCE_EXHAUSTED, "out of memory", NULL, 0);
		return;
	}
	const char *why = check_text(&j->in);
	if (why) {
		job_free(j);
		grpc_call_finish(call, GRPC_STATUS_INVALID_ARGUMENT, why, NULL, 0);
		return;
	}
	j->base.call = call;
	job_start(j);
}

/* ---- HTTP ---- */

static void http_get_metadata(struct http_exchange *ex, const struct http1_request *req,
                              struct handlers *h)
{
	char id[METADATA_ID_MAX + 1];
	int n = http1_query_get(req->query, "id", id, sizeof(id));
	if (n == MV_ETOOBIG) {
		service_http_error(ex, 400, "movie id too long");
		return;
	}
	if (n <= 0) {
		service_http_error(ex, 400,
		                   n == MV_EINVAL ? "malformed query string"
		                                  : "query parameter id is required");
		return;
	}
	const char *why = check_id(id, (size_t)n);
	if (why) {
		service_http_error(ex, 400, why);
		return;
	}
	struct job *j = job_new(h, JOB_HTTP_GET);
	if (j)
		j->id = strdup(id);
	if (!j || !j->id) {
		if (j)
			job_free(j);
		service_http_error(ex, 503, "out of memory");
		return;
	}
	j->base.ex = ex;
	job_start(j);
}

static char *json_string_field(json_t *obj, const char *key, bool *bad)
{
	json_t *v = json_object_get(obj, key);
	if (!v || json_is_null(v))
		return strdup("");
	/* jansson refuses invalid UTF-8 and \u0000 already (no JSON_ALLOW_NUL);
	 * the shared rule says so explicitly, with the true length. */
	if (!json_is_string(v) || text_check(json_string_value(v), json_string_length(v))) {
		*bad = true;
		return NULL;
	}
	return strdup(json_string_value(v));
}

static void http_put_metadata(struct http_exchange *ex, const struct http1_request *req,
                              struct handlers *h)
{
	json_error_t jerr;
	json_t *root = json_loadb(req->body.data ? req->body.data : "", req->body.len,
	                          JSON_REJECT_DUPLICATES, &jerr);
	if (!root || !json_is_object(root)) {
		json_decref(root);
		service_http_error(ex, 400, "body must be a JSON object");
		return;
	}
	struct job *j = job_new(h, JOB_HTTP_PUT);
	bool bad = false;
	if (j) {
		j->in.id = json_string_field(root, "id", &bad);
		j->in.title = json_string_field(root, "title", &bad);
		j->in.description = json_string_field(root, "description", &bad);
		j->in.director = json_string_field(root, "director", &bad);
	}
	json_decref(root);
	if (!j) {
		service_http_error(ex, 503, "out of memory");
		return;
	}
	if (bad) {
		job_free(j);
		service_http_error(ex, 400,
		                   "id, title, description and director must be strings of "
		                   "valid UTF-8 without NUL");
		return;
	}
	if (!j->in.id || !j->in.title || !j->in.description || !j->in.director) {
		job_free(j);
		service_http_error(ex, 503, "out of memory");
		return;
	}
	const char *why = check_text(&j->in);
	if (why) {
		job_free(j);
		service_http_error(ex, 400, why);
		return;
	}
	j->base.ex = ex;
	job_start(j);
}

static void http_metadata(struct http_exchange *ex, const struct http1_request *req, void *ctx)
{
	if (req->method == HTTP1_PUT)
		http_put_metadata(ex, req, ctx);
	else
		http_get_metadata(ex, req, ctx);
}

static int store_probe(void *ctx)
{
	struct handlers *h = ctx;
	return metadata_store_ping(h->store);
}

int metadata_handlers_register(struct server *srv, struct metadata_store *store)
{
	struct handlers *h = &handlers_ctx;
	h->srv = srv;
	h->store = store;
	int rc =
	    server_add_grpc(srv, "MetadataService", "GetMetadata", false, grpc_get_metadata, h);
	rc = rc ? rc
	        : server_add_grpc(srv, "MetadataService", "PutMetadata", false, grpc_put_metadata,
	                          h);
	rc = rc ? rc
	        : server_add_http(srv, "/metadata",
	                          HTTP1_METHOD_BIT(HTTP1_GET) | HTTP1_METHOD_BIT(HTTP1_PUT),
	                          http_metadata, h);
	if (rc)
		return rc;
	if (metadata_store_blocking(store))
		server_set_ready_probe(srv, store_probe, h, 1000);
	return 0;
}
