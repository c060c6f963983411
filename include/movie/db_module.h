/*
 * db_module.h - the MariaDB storage driver, loaded only when it is configured.
 *
 * The MariaDB client library pulls in libssl, libcrypto and libz (1.9 MB of
 * resident pages and most of the dynamic-linking time at start-up). Services
 * running on memory or SQLite storage should not pay for it, so each service's
 * MariaDB driver lives in a module (movie-mysql-metadata.so,
 * movie-mysql-rating.so), opened with dlopen when storage.driver is "mysql".
 *
 * A module is looked for in <directory of the executable>/../lib/movie/ (the
 * build tree's and the images' layout) and then next to the executable. It
 * resolves the helpers it shares with the stores (buf_*, metadata_strdup,
 * rating_plan_*) against the executable, which exports its symbols
 * (-rdynamic, set by the store libraries for every program linking them).
 */
#ifndef MOVIE_DB_MODULE_H
#define MOVIE_DB_MODULE_H

#include <stddef.h>

/* Address of `symbol` in the module file `module` ("movie-mysql-rating.so"),
 * loading it on first use (thread-safe; at most 4 modules). Returns NULL with
 * a one-line reason in errbuf when the module cannot be found or loaded or
 * lacks the symbol. */
const void *db_module_symbol(const char *module, const char *symbol, char *errbuf,
                             size_t errbuf_size);

#endif
