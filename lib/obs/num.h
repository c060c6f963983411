/*
 * num.h - number formatting shared by the log and metrics writers (internal
 * to lib/obs).
 */
#ifndef MOVIE_OBS_NUM_H
#define MOVIE_OBS_NUM_H

#include <stddef.h>

/* Room for any output of obs_format_double, NUL included. */
#define OBS_DOUBLE_MAX 32

/* Write finite `v` into dst (OBS_DOUBLE_MAX bytes) as the shortest "%.Ng"
 * text that strtod reads back to the same value; integral values of magnitude
 * below 1e17 are written without exponent or fraction ("42", "-0").
 * Both JSON and the Prometheus text format accept the output.
 * Returns the length written (NaN and infinities are the caller's business). */
size_t obs_format_double(char *dst, double v);

#endif
