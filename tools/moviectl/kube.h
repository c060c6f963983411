/*
 * kube.h - a small Kubernetes API client for moviectl (libcurl + jansson).
 *
 * Three layers, each usable alone:
 *   1. configuration (kubeconfig.c): found the way kubectl finds it, including
 *      exec credential plugins and in-cluster service accounts;
 *   2. protocol code without I/O (kube_proto.c): the watch-stream decoder, the
 *      Status error parser, the ExecCredential parser, label selectors;
 *   3. the REST client (kube.c): GET, LIST (following `continue`), WATCH
 *      (resume, BOOKMARK, re-list on 410) and PATCH, with bounded retries and a
 *      timeout on every call.
 * The rollout judge and the undo planner are pure functions in rollout.h.
 *
 * Every function returns 0 or a negative MV_E* code (movie/err.h). Functions
 * that talk to the API server also fill a struct kube_error, which carries the
 * server's Status (HTTP code, reason, message) or a local explanation.
 * Nothing here is thread-safe: a client belongs to one thread.
 * Facts: the shared project notes, K8S-API.md §4 (REST, watch, Status), §5 (auth).
 */
#ifndef MOVIECTL_KUBE_H
#define MOVIECTL_KUBE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "movie/buf.h"

/* jansson's iteration macros take json_t *; this strips const from objects we
 * only read, without a cast-qual warning. */
#define JMUT(x) ((json_t *)(uintptr_t)(x))

/* Caps on untrusted bytes. */
#define KUBE_MAX_CONFIG_BYTES     ((size_t)4 * 1024 * 1024)  /* one kubeconfig file */
#define KUBE_MAX_CONFIG_FILES     64                         /* entries of KUBECONFIG */
#define KUBE_MAX_EXEC_OUTPUT      ((size_t)1024 * 1024)      /* plugin stdout */
#define KUBE_MAX_EXEC_ARGS        256                        /* args + env entries */
#define KUBE_EXEC_TIMEOUT_MS      60000                      /* plugin run time */
#define KUBE_MAX_TOKEN_BYTES      ((size_t)64 * 1024)        /* token files */
#define KUBE_MAX_STATUS_BYTES     ((size_t)1024 * 1024)      /* a Status body we parse */
#define KUBE_MAX_BODY_BYTES       ((size_t)64 * 1024 * 1024) /* one GET/LIST page/PATCH reply */
#define KUBE_MAX_EVENT_BYTES      ((size_t)16 * 1024 * 1024) /* one watch event */
#define KUBE_MAX_LIST_PAGES       10000                      /* `continue` chain length */
#define KUBE_TOKEN_FILE_REFRESH_S 60 /* tokenFile / service-account token re-read period */

/* ---- errors ---- */

/* What went wrong on a call. `http` is 0 when no HTTP answer arrived (then
 * `reason` is a local word such as "Timeout" or "ConnectionFailed"). */
struct kube_error {
	long http;         /* HTTP status, or Status.code of a watch ERROR event */
	char reason[64];   /* Status.reason: NotFound, Conflict, Invalid, Expired, ... */
	char message[512]; /* Status.message or a local explanation */
};

/* Clear an error. */
void kube_error_clear(struct kube_error *e);
/* Set a local error (http 0) with a printf-style message. */
void kube_error_set(struct kube_error *e, const char *reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/*
 * Fill `e` from a response body: a Status object gives reason and message
 * (and code, when `http` is 0); any other body gives reason from the HTTP code
 * and its first bytes as message. Bodies over KUBE_MAX_STATUS_BYTES are not
 * parsed. Never fails.
 */
void kube_error_from_body(struct kube_error *e, long http, const char *body, size_t len);
/* Same from a decoded Status object (a watch ERROR event's object). */
void kube_error_from_status(struct kube_error *e, const json_t *status);
/* Print as kubectl does: "Error from server (Reason): message" for server
 * errors, "error: message" for local ones. */
void kube_error_print(const struct kube_error *e, const char *prog);

/* ---- configuration ---- */

struct kube_exec_config {
	char *api_version; /* client.authentication.k8s.io/v1 or v1beta1 */
	char *command;
	char **argv; /* argv[0] = command, NULL-terminated */
	char **env;  /* "NAME=value" entries added to ours, NULL-terminated */
	int interactive_always;
	int provide_cluster_info;
};

/* One resolved connection: the merged view of cluster + user + context. */
struct kube_config {
	char *server;          /* "https://host:port" (no trailing slash) */
	char *namespace;       /* never NULL after a successful load */
	char *context;         /* context name, or "in-cluster" */
	char *ca_file;         /* absolute path or NULL */
	struct buf ca_data;    /* PEM bytes (decoded base64) or empty */
	int insecure;          /* insecure-skip-tls-verify */
	char *tls_server_name; /* SNI and name checked in the certificate */
	char *proxy_url;       /* proxy-url (http, https, socks5); NULL: libcurl's env rules */
	char *cert_file, *key_file;
	struct buf cert_data, key_data; /* PEM bytes or empty */
	char *token;                    /* static bearer token or NULL */
	char *token_file; /* re-read every KUBE_TOKEN_FILE_REFRESH_S; wins over token */
	struct kube_exec_config *exec; /* NULL unless a credential plugin is configured */
};

/* Where kubectl would look. All fields may be NULL. */
struct kube_config_opts {
	const char *kubeconfig; /* --kubeconfig: the only file read when set */
	const char *context;    /* --context */
	const char *namespace;  /* --namespace / -n */
	/* Test seams (NULL: the real locations). */
	const char *env_kubeconfig; /* instead of $KUBECONFIG; "" = unset */
	const char *home;           /* instead of $HOME */
	const char *sa_dir;         /* instead of /var/run/secrets/kubernetes.io/serviceaccount */
};

/*
 * Resolve the configuration as kubectl does: --kubeconfig alone, else every
 * existing file of the ':'-separated KUBECONFIG list (the first file to set a
 * name or current-context wins), else ~/.kube/config; if none of these exists,
 * the in-cluster service account (KUBERNETES_SERVICE_HOST/PORT). Relative paths
 * in a file resolve against that file's directory. The namespace is --namespace,
 * else the context's, else (in-cluster) POD_NAMESPACE or the account's
 * namespace file, else "default".
 * `out` is initialised here and must be released with kube_config_release,
 * also after a failure. Writes a readable problem into err.
 * Returns 0, MV_ENOTFOUND (no configuration, unknown context/cluster/user),
 * MV_EINVAL (bad field, base64), MV_ESYNTAX (YAML), MV_ETOOBIG, MV_EIO, MV_ENOMEM.
 */
int kube_config_load(const struct kube_config_opts *opts, struct kube_config *out, char *err,
                     size_t errlen);

/*
 * The I/O-free core of kube_config_load for one file: merge the kubeconfig
 * in `data` into `*merged` (a jansson object owned by the caller, created when
 * NULL) with first-wins rules; relative paths are made absolute with `dir`.
 * Returns 0, MV_ESYNTAX, MV_EINVAL, MV_ETOOBIG, MV_ENOMEM.
 */
int kube_config_merge(json_t **merged, const char *data, size_t len, const char *dir, char *err,
                      size_t errlen);

/*
 * Pick context/cluster/user out of a merged kubeconfig (see kube_config_merge)
 * into `out` (initialised here; release it also after failure).
 * Returns 0, MV_ENOTFOUND, MV_EINVAL, MV_ENOMEM.
 */
int kube_config_resolve(const json_t *merged, const struct kube_config_opts *opts,
                        struct kube_config *out, char *err, size_t errlen);

/* Release what a load or resolve put in `c`; safe on a zeroed struct. */
void kube_config_release(struct kube_config *c);

/* A credential from an exec plugin (or nothing yet). */
struct kube_exec_cred {
	char *token;              /* NULL when cert+key are used */
	char *cert_pem, *key_pem; /* PEM strings, or NULL */
	time_t expires;           /* 0: no expiry given (cache for the process) */
};

/*
 * Parse a plugin's stdout (ExecCredential JSON of `api_version`). Requires
 * either status.token or both clientCertificateData and clientKeyData.
 * Returns 0, MV_ESYNTAX (not JSON), MV_EPROTO (wrong kind/apiVersion, no
 * credential, bad timestamp), MV_ETOOBIG (over KUBE_MAX_EXEC_OUTPUT), MV_ENOMEM.
 */
int kube_exec_cred_parse(const char *data, size_t len, const char *api_version,
                         struct kube_exec_cred *out, char *err, size_t errlen);
void kube_exec_cred_release(struct kube_exec_cred *c);

/*
 * Run the plugin of `cfg` (argv, env added to ours, KUBERNETES_EXEC_INFO set,
 * stdin /dev/null, stderr inherited) for at most `timeout_ms`, read at most
 * KUBE_MAX_EXEC_OUTPUT bytes, parse its credential into `out`.
 * Returns 0, MV_EIO (cannot start, non-zero exit, killed), MV_ETIMEDOUT (killed
 * after timeout_ms), MV_ETOOBIG, the codes of kube_exec_cred_parse.
 */
int kube_exec_run(const struct kube_exec_config *cfg, const char *server, int timeout_ms,
                  struct kube_exec_cred *out, char *err, size_t errlen);

/* Parse an RFC 3339 timestamp ("2026-12-01T10:00:00Z", "...+02:00", fractions
 * allowed). Returns 0 or MV_EINVAL. */
int kube_parse_time(const char *s, time_t *out);

/* ---- protocol helpers (no I/O) ---- */

/*
 * Render a LabelSelector object ({matchLabels, matchExpressions}) as the string
 * kubectl and the controllers send: matchLabels sorted "k=v", then expressions
 * ("k in (a,b)", "k notin (a)", "k", "!k"), comma separated. Appends to `out`.
 * Returns 0, MV_EINVAL (not a selector, unknown operator), MV_ETOOBIG, MV_ENOMEM.
 */
int kube_selector_string(const json_t *selector, struct buf *out);

enum kube_event_type {
	KUBE_EVENT_ADDED,
	KUBE_EVENT_MODIFIED,
	KUBE_EVENT_DELETED,
	KUBE_EVENT_BOOKMARK,
	KUBE_EVENT_ERROR,
};

struct kube_event {
	enum kube_event_type type;
	json_t *object; /* owned reference; the Status object for ERROR */
};

/* Release the event's object; safe on a zeroed event. */
void kube_event_release(struct kube_event *ev);

/*
 * Watch stream decoder: feed it the bytes of a watch response body in any
 * chunking; it frames top-level JSON objects the way a JSON stream decoder does
 * (whitespace, newlines or nothing between them), not by lines.
 */
struct kube_watch_decoder {
	struct buf in;    /* undelivered bytes */
	size_t scan;      /* bytes of `in` already scanned */
	size_t start;     /* offset of the current object's '{' (valid when depth > 0) */
	int depth;        /* nesting depth at `scan` */
	int in_string;    /* inside a JSON string at `scan` */
	int escape;       /* previous byte was a backslash inside a string */
	size_t max_event; /* cap on one event's bytes */
};

/* max_event 0 means KUBE_MAX_EVENT_BYTES. */
void kube_watch_decoder_init(struct kube_watch_decoder *d, size_t max_event);
void kube_watch_decoder_release(struct kube_watch_decoder *d);
/* Append bytes. Returns 0, MV_ETOOBIG (an event would exceed max_event), MV_ENOMEM. */
int kube_watch_decoder_feed(struct kube_watch_decoder *d, const void *data, size_t len);
/*
 * Take the next complete event. Returns 1 (ev filled; release it), 0 (need
 * more bytes), MV_EPROTO (a value that is not an event object, unknown type,
 * missing object, bytes other than whitespace between events), MV_ESYNTAX (bad
 * JSON), MV_ENOMEM. After an error the stream must be dropped.
 */
int kube_watch_decoder_next(struct kube_watch_decoder *d, struct kube_event *ev);
/* 1 when bytes of an unfinished event are buffered (a truncated stream). */
int kube_watch_decoder_partial(const struct kube_watch_decoder *d);

/* ---- the REST client ---- */

enum kube_patch_type {
	KUBE_PATCH_JSON,      /* application/json-patch+json (RFC 6902) */
	KUBE_PATCH_MERGE,     /* application/merge-patch+json (RFC 7386) */
	KUBE_PATCH_STRATEGIC, /* application/strategic-merge-patch+json */
};

struct kube_client_opts {
	long timeout_ms;         /* one request (not a watch); 0: 30000 */
	long connect_timeout_ms; /* 0: 10000 */
	int max_retries;         /* on 429/5xx/connection loss; 0: 5; <0: none */
	long backoff_base_ms;    /* first back-off (doubles, full jitter); 0: 250 */
	long backoff_max_ms;     /* 0: 8000 */
	const char *user_agent;  /* NULL: "moviectl" */
	long token_refresh_ms;   /* tokenFile re-read period; 0: KUBE_TOKEN_FILE_REFRESH_S */
};

struct kube_client;

/*
 * A client over `cfg` (copied; cfg may be released afterwards). Reads no file
 * and runs no plugin yet: credentials are fetched on the first request.
 * Returns 0, MV_EINVAL (no server), MV_ENOMEM.
 */
int kube_client_new(const struct kube_config *cfg, const struct kube_client_opts *opts,
                    struct kube_client **out);
void kube_client_free(struct kube_client *c);

/* The namespace the configuration selected. */
const char *kube_client_namespace(const struct kube_client *c);

/*
 * GET `path` (absolute API path with an optional query, e.g.
 * "/apis/apps/v1/namespaces/prod/deployments/web"). On 2xx *out is the decoded
 * object (caller decrefs). Retries 429, 5xx and connection failures up to
 * max_retries with jittered exponential back-off (Retry-After honoured, capped).
 * Returns 0, MV_ENOTFOUND (404), MV_EEXIST (409), MV_EINVAL (4xx other),
 * MV_EUNAVAIL (5xx/429/connection, after retries), MV_ETIMEDOUT, MV_ETOOBIG,
 * MV_EPROTO (2xx body not a JSON object), MV_EIO (credentials), MV_ENOMEM;
 * err says more.
 */
int kube_get(struct kube_client *c, const char *path, json_t **out, struct kube_error *err);

/*
 * LIST a collection `path` (no query) with optional selectors (NULL: none),
 * following `continue` tokens (at most KUBE_MAX_LIST_PAGES pages). *items gets
 * a new array of every item; *rv (may be NULL) the list's resourceVersion
 * (caller frees). A 410 on a continue token restarts the list once from the
 * beginning. Returns the codes of kube_get.
 */
int kube_list(struct kube_client *c, const char *path, const char *label_selector,
              const char *field_selector, json_t **items, char **rv, struct kube_error *err);

/*
 * PATCH `path` with `body` of `type`. A JSON patch whose `test` op fails comes
 * back 422 (MV_EINVAL, reason "Invalid"); a stale resourceVersion in a merge
 * patch 409 (MV_EEXIST, reason "Conflict"). Only 429 and failures to connect
 * are retried: after a 5xx or a lost connection the patch may have been
 * applied, so the caller re-reads and decides. *out (may be NULL) gets the
 * patched object. Returns the codes of kube_get.
 */
int kube_patch(struct kube_client *c, const char *path, enum kube_patch_type type, const char *body,
               json_t **out, struct kube_error *err);

/*
 * POST (create) the JSON object `body` into collection `path`. Retried like
 * kube_patch (429 and failures to connect only). *out (may be NULL) gets the
 * created object. A name already taken is MV_EEXIST (409).
 * Returns the codes of kube_get.
 */
int kube_create(struct kube_client *c, const char *path, const char *body, json_t **out,
                struct kube_error *err);

/*
 * Called for every event of kube_watch_until: list items arrive as ADDED, then
 * watch events (never BOOKMARK or ERROR: those are handled inside). When an
 * object seen before is gone from a re-list, a DELETED event with the last seen
 * object is delivered. Return 0 to go on, 1 to stop (kube_watch_until returns
 * 0), a negative code to stop with that code. The event is borrowed.
 */
typedef int (*kube_event_fn)(void *user, const struct kube_event *ev);

/*
 * LIST then WATCH collection `path` with the selectors until the callback stops
 * or `deadline` (CLOCK_MONOTONIC seconds; 0 = none) passes. Watches resume from
 * the last resourceVersion seen (objects and BOOKMARKs); an expired version
 * (HTTP 410, or 200 then an ERROR event with code 410) re-lists. Connection
 * losses and 429/5xx back off and retry up to max_retries in a row.
 * Returns 0 (callback stopped), MV_ETIMEDOUT (deadline), the callback's code,
 * or the codes of kube_get.
 */
int kube_watch_until(struct kube_client *c, const char *path, const char *label_selector,
                     const char *field_selector, double deadline, kube_event_fn fn, void *user,
                     struct kube_error *err);

/* CLOCK_MONOTONIC in seconds (what deadlines are measured against). */
double kube_now(void);

/* Percent-encode `s` for a query value into out (appends). Returns 0, MV_ETOOBIG, MV_ENOMEM. */
int kube_query_escape(struct buf *out, const char *s);

#endif
