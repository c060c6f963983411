/*
 * service.h - what every service's main() shares: the command line
 * (--config, --check-config, --print-config, --help-config, --version) and
 * the storage.* configuration keys of the services that have a store.
 */
#ifndef MOVIE_SERVICE_H
#define MOVIE_SERVICE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

#include "movie/cfg.h"
#include "movie/grpc.h"
#include "movie/store_config.h"

/* storage.* keys as loaded from YAML (owned by the config loader). */
struct storage_options {
	char *driver;
	char *sqlite_path;
	int64_t sqlite_busy_timeout_ms;
	char *mysql_host;
	int64_t mysql_port;
	char *mysql_user;
	char *mysql_password;
	char *mysql_password_file;
	char *mysql_database;
	int64_t mysql_pool_size;
	int64_t mysql_connect_timeout_ms;
	int64_t mysql_query_timeout_ms;
};

extern const char *const storage_drivers[];

#define STORAGE_OPTIONS(cfg_struct, member, sqlite_default)                          \
	{.key = "storage.driver",                                                    \
	 .type = CFG_ENUM,                                                           \
	 .offset = offsetof(cfg_struct, member.driver),                              \
	 .default_value = "sqlite",                                                  \
	 .enum_values = storage_drivers,                                             \
	 .help = "memory (tests), sqlite (embedded default) or mysql (production)"}, \
	    {.key = "storage.sqlite.path",                                           \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.sqlite_path),                     \
	     .default_value = sqlite_default,                                        \
	     .max = 4096,                                                            \
	     .help = "SQLite database file (WAL mode)"},                             \
	    {.key = "storage.sqlite.busy_timeout",                                   \
	     .type = CFG_DURATION_MS,                                                \
	     .offset = offsetof(cfg_struct, member.sqlite_busy_timeout_ms),          \
	     .default_value = "5s",                                                  \
	     .min = 0,                                                               \
	     .max = 600000,                                                          \
	     .help = "wait this long for a locked database"},                        \
	    {.key = "storage.mysql.host",                                            \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.mysql_host),                      \
	     .default_value = "127.0.0.1",                                           \
	     .max = 255,                                                             \
	     .help = "MariaDB/MySQL host (TCP)"},                                    \
	    {.key = "storage.mysql.port",                                            \
	     .type = CFG_INT,                                                        \
	     .offset = offsetof(cfg_struct, member.mysql_port),                      \
	     .default_value = "3306",                                                \
	     .min = 1,                                                               \
	     .max = 65535,                                                           \
	     .help = "MariaDB/MySQL port"},                                          \
	    {.key = "storage.mysql.user",                                            \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.mysql_user),                      \
	     .default_value = "movie",                                               \
	     .max = 255,                                                             \
	     .help = "database user"},                                               \
	    {.key = "storage.mysql.password",                                        \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.mysql_password),                  \
	     .default_value = "",                                                    \
	     .max = 4096,                                                            \
	     .flags = CFG_SECRET,                                                    \
	     .help = "database password (prefer password_file)"},                    \
	    {.key = "storage.mysql.password_file",                                   \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.mysql_password_file),             \
	     .default_value = "",                                                    \
	     .max = 4096,                                                            \
	     .help = "file holding the password (a mounted Secret)"},                \
	    {.key = "storage.mysql.database",                                        \
	     .type = CFG_STRING,                                                     \
	     .offset = offsetof(cfg_struct, member.mysql_database),                  \
	     .default_value = "movie",                                               \
	     .max = 64,                                                              \
	     .help = "database name"},                                               \
	    {.key = "storage.mysql.pool_size",                                       \
	     .type = CFG_INT,                                                        \
	     .offset = offsetof(cfg_struct, member.mysql_pool_size),                 \
	     .default_value = "4",                                                   \
	     .min = 1,                                                               \
	     .max = 64,                                                              \
	     .help = "connections"},                                                 \
	    {.key = "storage.mysql.connect_timeout",                                 \
	     .type = CFG_DURATION_MS,                                                \
	     .offset = offsetof(cfg_struct, member.mysql_connect_timeout_ms),        \
	     .default_value = "2s",                                                  \
	     .min = 100,                                                             \
	     .max = 600000,                                                          \
	     .help = "connect timeout"},                                             \
	{                                                                            \
		.key = "storage.mysql.query_timeout", .type = CFG_DURATION_MS,       \
		.offset = offsetof(cfg_struct, member.mysql_query_timeout_ms),       \
		.default_value = "5s", .min = 100, .max = 600000,                    \
		.help = "a hung database fails the call after this"                  \
	}

/* Fill a store_config that borrows the strings of `opts`. */
void storage_options_to_store_config(const struct storage_options *opts, struct store_config *out);

/* Parse the command line and load the configuration (schema defaults, each
 * --config file in order, environment, secrets). Prints errors to stderr as
 * "program: file:line:column: key: message".
 * Sets *done to true when the command line asked for something other than
 * running the service (--check-config, --print-config, --help-config,
 * --version, --help) and it was done: the program exits now, with status 0
 * when the result is 0.
 * Returns 0 (config loaded, or *done), MV_EINVAL for a bad command line, or
 * cfg_load's error (MV_ESYNTAX, MV_EINVAL, MV_ERANGE, MV_ETOOBIG, MV_EIO,
 * MV_ENOMEM); the program then exits 1. `config` holds a loaded configuration
 * (release it with cfg_release) only when the result is 0 and *done is false. */
int service_load_config(int argc, char **argv, const struct cfg_schema *schema, void *config,
                        bool *done);

/* Run `work(arg)` then `done(arg)`: inline when the store never blocks
 * (memory), else work on the thread pool and done back on this loop.
 * Only from a handler. Returns 0, or an error from server_queue_work (then
 * neither callback ran). */
int service_dispatch(bool blocking, void (*work)(void *arg), void (*done)(void *arg), void *arg);

/* The common end of a store-backed gRPC call: when the store failed
 * (err != 0) finish with the matching status and `message`; when the call's
 * deadline passed meanwhile, finish with DEADLINE_EXCEEDED. Returns true when
 * the call was finished here, false when the caller answers OK. */
bool service_grpc_finish_failed(struct grpc_call *call, int err, const char *message);

/* Apply the string rules of movie/text.h (valid UTF-8, no NUL) to every
 * string field of the raw request msg[0..len) of type `desc`, before it is
 * unpacked (unpacking loses the length of a string with an embedded NUL).
 * When a field breaks them, finish `call` with INVALID_ARGUMENT
 * "<field>: <reason>" and return false; else return true (malformed bytes
 * pass: the unpacker reports those). On the call's loop only. */
bool service_grpc_check_text(struct grpc_call *call, const ProtobufCMessageDescriptor *desc,
                             const uint8_t *msg, size_t len);

/* Finish `call` OK with `msg` serialized as its response (an empty message
 * for Put* calls). Answers RESOURCE_EXHAUSTED when the buffer cannot be had. */
void service_grpc_finish_message(struct grpc_call *call, const ProtobufCMessage *msg);

struct buf;
/* Append the JSON object of a movie's metadata, {"id","title","description",
 * "director"} (the shape GET /metadata and GET /movie share), no newline.
 * Returns 0, MV_ENOMEM, MV_ETOOBIG. */
int service_json_metadata(struct buf *out, const char *id, const char *title,
                          const char *description, const char *director);

struct http_exchange;
/* Answer an HTTP request with {"error": message} and `status`. */
void service_http_error(struct http_exchange *ex, int status, const char *message);
/* The HTTP status for a runtime error: 404 not found, 400 invalid, 413 too
 * big, 503 unavailable / timed out / out of memory, 500 otherwise. */
int service_http_status_from_err(int err);

#endif
