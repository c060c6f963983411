/*
 * store_driver.h - choosing a service store's driver by name.
 *
 * Every service store has one ops table per driver (its store_driver.h):
 * memory and sqlite are linked in, mysql is a module loaded on demand
 * (movie/db_module.h). A store's open function asks this selector for the
 * table named by storage.driver, so the rule (built-ins first, then the
 * module movie-mysql-<service>.so for "mysql", else a clear error) is written
 * once for every service.
 */
#ifndef MOVIE_STORE_DRIVER_H
#define MOVIE_STORE_DRIVER_H

#include <stddef.h>

/* The ops table named `driver` for the store of `service` ("rating").
 * builtins: `count` ops tables of `ops_size` bytes each, whose first member is
 * the driver's name (`const char *name`). "mysql", when no built-in has that
 * name, loads movie-mysql-<service>.so and checks its table (db_module_ops).
 * Returns the table, or NULL with a one-line reason in errbuf (when non-NULL):
 * an unknown or NULL driver name, or a module that cannot be loaded.
 * Thread-safe. */
const void *store_driver_select(const char *driver, const void *const *builtins, size_t count,
                                const char *service, size_t ops_size, char *errbuf,
                                size_t errbuf_size);

#endif
