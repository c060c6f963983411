/*
 * testing.h - the minimal unit-test harness every tests/unit program uses.
 *
 * A test program defines test functions, lists them in main with RUN(), and
 * returns TEST_SUMMARY(). A failed CHECK prints file:line and the expression
 * and marks the current test failed; the program exits non-zero when any
 * test failed, which is what ctest reads.
 */
#ifndef MOVIE_TESTING_H
#define MOVIE_TESTING_H

#include <stdio.h>
#include <string.h>

static int testing_failed_checks;
static int testing_tests_run;
static int testing_tests_failed;

#define CHECK(expr)                                                                              \
	do {                                                                                     \
		if (!(expr)) {                                                                   \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
			testing_failed_checks++;                                                 \
		}                                                                                \
	} while (0)

#define CHECK_INT_EQ(a, b)                                                                \
	do {                                                                              \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b);           \
		if (check_a_ != check_b_) {                                               \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", \
			        __FILE__, __LINE__, #a, #b, check_a_, check_b_);          \
			testing_failed_checks++;                                          \
		}                                                                         \
	} while (0)

#define CHECK_STR_EQ(a, b)                                                                    \
	do {                                                                                  \
		const char *check_a_ = (a), *check_b_ = (b);                                  \
		if (!check_a_ || !check_b_ || strcmp(check_a_, check_b_) != 0) {              \
			fprintf(stderr, "%s:%d: CHECK failed: %s == %s (\"%s\" vs \"%s\")\n", \
			        __FILE__, __LINE__, #a, #b, check_a_ ? check_a_ : "(null)",   \
			        check_b_ ? check_b_ : "(null)");                              \
			testing_failed_checks++;                                              \
		}                                                                             \
	} while (0)

#define RUN(test_fn)                                            \
	do {                                                    \
		int before_ = testing_failed_checks;            \
		test_fn();                                      \
		testing_tests_run++;                            \
		if (testing_failed_checks != before_) {         \
			testing_tests_failed++;                 \
			fprintf(stderr, "FAIL %s\n", #test_fn); \
		} else {                                        \
			fprintf(stderr, "ok   %s\n", #test_fn); \
		}                                               \
	} while (0)

#define TEST_SUMMARY()                                                                       \
	(fprintf(stderr, "%d passed, %d failed\n", testing_tests_run - testing_tests_failed, \
	         testing_tests_failed),                                                      \
	 testing_tests_failed ? 1 : 0)

#endif
