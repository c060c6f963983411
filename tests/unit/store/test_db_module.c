/* Loading storage driver modules through their one exported table
 * (movie/db_module.h), against the modules of this build (build/lib/movie/,
 * found from build/tests/ as <exe dir>/../lib/movie). */
#include <stdio.h>
#include <string.h>

#include "movie/db_module.h"
#include "store_driver.h" /* services/rating: struct rating_store_ops */
#include "../testing.h"

static void test_loads_the_rating_table(void)
{
	char why[512] = "";
	const struct rating_store_ops *ops =
	    db_module_ops("movie-mysql-rating.so", "rating", sizeof(*ops), why, sizeof(why));
	CHECK(ops != NULL);
	if (!ops) {
		fprintf(stderr, "db_module_ops: %s\n", why);
		return;
	}
	CHECK_STR_EQ(ops->name, "mysql");
	CHECK(ops->blocking);
	CHECK(ops->open != NULL && ops->apply != NULL && ops->aggregate != NULL);
	/* Loaded once: the same table again. */
	CHECK(db_module_ops("movie-mysql-rating.so", "rating", sizeof(*ops), why, sizeof(why)) ==
	      ops);
}

static void test_refuses_another_layout(void)
{
	char why[512] = "";
	CHECK(db_module_ops("movie-mysql-rating.so", "rating", 8, why, sizeof(why)) == NULL);
	CHECK(strstr(why, "is not a rating driver of this build") != NULL);
	CHECK(strstr(why, "want ABI 1, rating store, ops 8 bytes") != NULL);
}

static void test_refuses_another_services_module(void)
{
	char why[512] = "";
	CHECK(db_module_ops("movie-mysql-metadata.so", "rating", sizeof(struct rating_store_ops),
	                    why, sizeof(why)) == NULL);
	CHECK(strstr(why, "is not a rating driver") != NULL);
	CHECK(strstr(why, "metadata store") != NULL);
}

static void test_missing_module_names_the_paths(void)
{
	char why[512] = "";
	CHECK(db_module_ops("movie-mysql-nothing.so", "rating", 8, why, sizeof(why)) == NULL);
	CHECK(strstr(why, "is not installed") != NULL);
	CHECK(strstr(why, "lib/movie") != NULL);
	/* errbuf is optional. */
	CHECK(db_module_ops("movie-mysql-nothing.so", "rating", 8, NULL, 0) == NULL);
}

int main(void)
{
	RUN(test_loads_the_rating_table);
	RUN(test_refuses_another_layout);
	RUN(test_refuses_another_services_module);
	RUN(test_missing_module_names_the_paths);
	return TEST_SUMMARY();
}
