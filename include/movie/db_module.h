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
 * build tree's and the images' layout) and then next to the executable.
 *
 * The contract between a module and the program is one table: a module
 * exports exactly one dynamic symbol, DB_MODULE_SYMBOL, a `struct db_module`
 * (a linker version script hides everything else). The module is
 * self-contained: it compiles in the helpers it shares with the stores and
 * resolves nothing against the executable, so programs export no symbols
 * (everything is built with -fvisibility=hidden and without -rdynamic).
 * tests/unit/store/test_exported_symbols.sh keeps both true.
 */
#ifndef MOVIE_DB_MODULE_H
#define MOVIE_DB_MODULE_H

#include <stddef.h>
#include <stdint.h>

/* Marks the one definition a module exports (everything else is hidden). */
#define DB_MODULE_EXPORT __attribute__((visibility("default")))

/* Name of the table every module exports. */
#define DB_MODULE_SYMBOL "movie_db_module"

/* Bumped whenever struct db_module or a store's ops table changes shape. */
#define DB_MODULE_ABI_VERSION 1

/* What a module exports under DB_MODULE_SYMBOL. */
struct db_module {
	uint32_t abi_version; /* DB_MODULE_ABI_VERSION the module was built with */
	const char *service;  /* the store it drives: "metadata", "rating" */
	size_t ops_size;      /* sizeof(*ops), checked against the program's */
	const void *ops;      /* the service's store ops table (store_driver.h) */
};

/* The ops table of the module file `module` ("movie-mysql-rating.so"),
 * loading it on first use (thread-safe; at most 4 modules). The module's
 * table must name `service`, carry DB_MODULE_ABI_VERSION and an ops table of
 * `ops_size` bytes. Returns NULL with a one-line reason in errbuf (when
 * non-NULL) when the module cannot be found or loaded, lacks the table or
 * was built for another service or version. */
const void *db_module_ops(const char *module, const char *service, size_t ops_size, char *errbuf,
                          size_t errbuf_size);

#endif
