#include "num.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "movie/banned.h"

size_t obs_format_double(char *dst, double v)
{
	int n;
	/* Below 1e17 every integral double prints exactly with %.0f, and
	 * Prometheus users expect counts and byte sizes without an exponent. */
	if (v == trunc(v) && fabs(v) < 1e17) {
		n = snprintf(dst, OBS_DOUBLE_MAX, "%.0f", v);
		return n > 0 ? (size_t)n : 0;
	}
	for (int prec = 15; prec < 17; prec++) {
		n = snprintf(dst, OBS_DOUBLE_MAX, "%.*g", prec, v);
		if (n > 0 && strtod(dst, NULL) == v)
			return (size_t)n;
	}
	n = snprintf(dst, OBS_DOUBLE_MAX, "%.17g", v);
	return n > 0 ? (size_t)n : 0;
}
